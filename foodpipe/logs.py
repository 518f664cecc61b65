"""Logging for the commands: foodpipe's own messages at INFO, everything else at WARNING, minus
import-time noise that says nothing to a foodpipe user."""

import logging
import os

KNOWN_NOISE = (
    "apitools not found",  # Beam's GCP extras, which foodpipe does not use
    "Discarding unparseable args",  # Beam workers, about the DirectRunner's own flags
    "No semi_persistent_directory found",  # Beam workers started by the DirectRunner
    "default partition size",  # Beam's Dask runner
)


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_NOISE)


def setup() -> None:
    if getattr(setup, "done", False):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ start-up chatter, here and in workers
    handlers = []
    for _ in range(2):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_DropKnownNoise())
        handlers.append(handler)
    # The command owns the process: replace handlers that imports (Beam) may have installed.
    logging.basicConfig(level=logging.WARNING, handlers=handlers[:1], force=True)
    logging.getLogger("foodpipe").addHandler(handlers[1])
    logging.getLogger("foodpipe").setLevel(logging.INFO)
    # Libraries (Beam's runner among them) may add root handlers later: keep ours the only voice.
    logging.getLogger("foodpipe").propagate = False
    setup.done = True
