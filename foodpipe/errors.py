"""The exceptions users see: each message is printed as one line, without traceback, and sets the
process's exit code (see ``foodpipe.process``)."""


class FoodpipeError(Exception):
    """Bad input or environment, found before the work starts (a missing dataset, an unreachable
    server, an unknown class): exit code 2, as for a usage error."""

    exit_code = 2


class RunFailed(FoodpipeError):
    """The work started and could not finish (a store went away mid-job, a job step failed, data
    turned out to be corrupt): exit code 3. What was already written is named in the message."""

    exit_code = 3


class CorruptShards(RunFailed):
    """TFRecord shards TensorFlow cannot read to the end, each with TensorFlow's reason."""

    def __init__(self, shards: list[tuple[str, str]]):
        self.shards = list(shards)
        names = "; ".join(f"{path}: {reason}" for path, reason in self.shards)
        super().__init__(f"corrupt TFRecord shard(s) (rerun with skip_corrupt to skip them): {names}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line (at most ``limit`` characters), or its type's name if it has no text:
    what a one-line error says of a library's exception."""
    text = str(exc)
    return text.splitlines()[0][:limit] if text.strip() else type(exc).__name__
