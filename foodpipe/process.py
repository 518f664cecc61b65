"""How a foodpipe command process ends."""

import logging
import os
import sys


def exit_now(code: int) -> None:
    """Flush everything, then leave without running interpreter shutdown.

    With tensorflow-io's S3 filesystem loaded the process aborts during shutdown ("pure virtual
    method called", exit 134; tensorflow/io#2039), which would replace the real exit code.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
