"""Logging for the commands: foodpipe's own messages at INFO, everything else at WARNING, minus
messages that say nothing to a foodpipe user (``KNOWN_NOISE``). ``--verbose`` shows everything.

The noise comes two ways: through Python's logging in this process (a logging filter drops it), and
straight to file descriptor 2 from TensorFlow's C++ logging and from Beam's worker processes, which
inherit it. For the second, a command process routes descriptor 2 through a thread that drops those
lines (``filter_stderr``); Python's own ``sys.stderr`` keeps the real stream, so progress bars and
log lines are not delayed.
"""

import io
import logging
import os
import re
import sys
import threading

KNOWN_NOISE = (
    "tf.data service AutoScaler",  # the dispatcher, about autoscaling metrics foodpipe does not use
    "apitools not found",  # Beam's GCP extras, which foodpipe does not use
    "Discarding unparseable args",  # Beam workers, about the DirectRunner's own flags
    "No semi_persistent_directory found",  # Beam workers started by the DirectRunner
    "Logging handler created",  # Beam workers
    "default partition size",  # Beam's Dask runner
    # urllib3 under MLflow's client, each retry: foodpipe's own line says the server is unreachable or away.
    "Retrying (Retry(",
    # TensorFlow 2.16's C++ runtime, each time a finite dataset ends (tensorflow/tensorflow#62963).
    "Local rendezvous is aborting with status: OUT_OF_RANGE",
)


# ``scheme://user:password@host``: libraries (MLflow's retry warnings among them) log URLs whole.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*):[^@\s/]+@")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def redact(text: str) -> str:
    """``text`` without URL passwords or the values of the secret environment variables."""
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return text


def _redacting_record_factory(default_factory):
    def factory(*args, **kwargs):
        record = default_factory(*args, **kwargs)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    return factory


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_NOISE)


_stderr_filter: tuple[threading.Thread, int] | None = None


def filter_stderr(noise=KNOWN_NOISE) -> None:
    """Drop the lines holding any of ``noise`` from what is written to file descriptor 2 directly
    (C++ logging, child processes). Python's ``sys.stderr`` is moved to a copy of the real stream."""
    global _stderr_filter
    if _stderr_filter is not None:
        return
    sys.stderr.flush()
    real = os.dup(2)
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(real), "wb", buffering=0), line_buffering=True,
                                  errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    patterns = [text.encode() for text in noise]

    def pump():
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not any(p in line for p in patterns))
                if kept:
                    os.write(real, kept)
            if pending and not any(p in pending for p in patterns):
                os.write(real, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    _stderr_filter = (thread, real)


def stop_filtering_stderr(timeout_s: float = 5.0) -> None:
    """Give descriptor 2 back to the real stream and let the filter write out what it holds."""
    global _stderr_filter
    if _stderr_filter is None:
        return
    thread, real = _stderr_filter
    os.dup2(real, 2)  # closes this process's end of the pipe; the filter ends when the children's close
    thread.join(timeout_s)
    _stderr_filter = None


def progress_seconds() -> float:
    """How often a progress line is printed when the output is not a terminal (the trainer's steps,
    the job's validation): ``FOODPIPE_PROGRESS_SECONDS``, default 10."""
    return float(os.environ.get("FOODPIPE_PROGRESS_SECONDS", "10"))


def setup(verbose: bool = False) -> None:
    if getattr(setup, "done", False):
        return
    # TensorFlow's C++ start-up chatter (INFO), here and in workers; --verbose: everything.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "1")
    # Every log record of the process, whichever library's logger and handler it goes through.
    logging.setLogRecordFactory(_redacting_record_factory(logging.getLogRecordFactory()))
    handlers = []
    for _ in range(2):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        if not verbose:
            handler.addFilter(_DropKnownNoise())
        handlers.append(handler)
    # The command owns the process: replace handlers that imports (Beam) may have installed.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=handlers[:1], force=True)
    logging.getLogger("foodpipe").addHandler(handlers[1])
    logging.getLogger("foodpipe").setLevel(logging.INFO)
    # Libraries (Beam's runner among them) may add root handlers later: keep ours the only voice.
    logging.getLogger("foodpipe").propagate = False
    setup.done = True
