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
