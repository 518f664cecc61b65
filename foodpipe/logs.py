"""Logging for the commands: foodpipe's own messages at INFO, everything else at WARNING, minus
import-time noise that says nothing to a foodpipe user."""

import logging
import os
import re

KNOWN_NOISE = (
    "apitools not found",  # Beam's GCP extras, which foodpipe does not use
    "Discarding unparseable args",  # Beam workers, about the DirectRunner's own flags
    "No semi_persistent_directory found",  # Beam workers started by the DirectRunner
    "default partition size",  # Beam's Dask runner
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


def setup() -> None:
    if getattr(setup, "done", False):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ start-up chatter, here and in workers
    # Every log record of the process, whichever library's logger and handler it goes through.
    logging.setLogRecordFactory(_redacting_record_factory(logging.getLogRecordFactory()))
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
