"""How every foodpipe command behaves as a process, whichever entry point starts it (``foodpipe``,
``python -m beam_pipelines.preprocess``): argument parsing, the result line, errors, exit codes.

Exit codes: 0 done; 1 a bug (an unexpected exception: its traceback, redacted); 2 a usage error or
bad input found before any work (one line); 3 the work started and failed (one line); 130
interrupted. Every error line starts with ``foodpipe: error:`` and is redacted.
"""

import argparse
import json
import logging
import os
import sys
import traceback

from foodpipe import logs, storage
from foodpipe.errors import FoodpipeError, RunFailed

EXIT_BUG, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
PREFIX = "foodpipe: error:"


def has_default(action: argparse.Action) -> bool:
    """Whether ``action`` has a default worth showing. By identity: ``0 == False``, and a default of
    0 (``--seed``, ``--corrupt``) is one to show."""
    return not (action.default is None or action.default is False or action.default == argparse.SUPPRESS)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default (when it has one worth showing) and keeps descriptions as written."""

    def _get_help_string(self, action):
        if not has_default(action) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """argparse with foodpipe's conventions: defaults in ``--help``, and a usage error is one line
    with foodpipe's prefix (exit code 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PREFIX} {message} (see '{self.prog} --help')\n")


S3_ENDPOINT_HELP = "S3 endpoint URL (default: $AWS_ENDPOINT_URL, else AWS)"
MLFLOW_URI_HELP = "MLflow tracking server or store (default: $MLFLOW_TRACKING_URI, else ./mlruns)"


def add_s3_flag(parser: argparse.ArgumentParser) -> None:
    """``--s3-endpoint``, on every command that talks to S3 (credentials only from the environment)."""
    parser.add_argument("--s3-endpoint", help=S3_ENDPOINT_HELP)


def add_mlflow_flag(parser: argparse.ArgumentParser) -> None:
    """``--mlflow-uri``, on every command that talks to MLflow."""
    parser.add_argument("--mlflow-uri", help=MLFLOW_URI_HELP)


def add_output_flags(parser: argparse.ArgumentParser, result: bool = True) -> None:
    """``--quiet``, ``--verbose`` and (for a command with a result) ``--json FILE``."""
    if result:
        parser.add_argument("--json", metavar="FILE", help="also write the result (the last stdout line) to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    parser.add_argument("--verbose", action="store_true",
                        help="show every library's messages too (TensorFlow, Beam, MLflow), unfiltered")


def print_rows(rows: list[dict]) -> None:
    """``rows`` as aligned columns under their keys (floats with 4 decimals)."""
    shown = [{key: f"{value:.4f}" if isinstance(value, float) else str(value) for key, value in row.items()}
             for row in rows]
    widths = {key: max(len(key), *(len(row[key]) for row in shown)) for key in shown[0]}
    print("  ".join(key.ljust(width) for key, width in widths.items()))
    for row in shown:
        print("  ".join(row[key].ljust(width) for key, width in widths.items()))


def check_result_file(json_file: str | None) -> None:
    """Before any work: ``--json FILE`` can be written (its folder is made if missing); else one
    line, exit 2, rather than a traceback once the work is done."""
    if not json_file:
        return
    folder = storage.make_local_folder(os.path.dirname(os.path.abspath(json_file)), "the --json file's folder")
    if os.path.isdir(json_file) or not os.access(json_file if os.path.exists(json_file) else folder, os.W_OK):
        raise FoodpipeError(f"--json {json_file} cannot be written: "
                            f"{'a folder is there' if os.path.isdir(json_file) else 'no permission'}")


def emit_result(result, json_file: str | None = None) -> None:
    """The command's result: one JSON line, the last line of stdout; with ``json_file`` also there
    (a file that cannot be written after all is one line, exit 3: the result is the line above)."""
    print(json.dumps(result), flush=True)
    if json_file:
        try:
            with open(json_file, "w") as f:
                json.dump(result, f, indent=2)
        except OSError as exc:
            raise RunFailed(f"the result could not be written to {json_file} ({exc.strerror or exc}); "
                            f"it is the last line of stdout") from None


def run(function) -> int:
    """Call ``function()`` (which returns an exit code) and turn whatever it raises into one."""
    try:
        return function()
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except FoodpipeError as exc:
        print(f"{PREFIX} {logs.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("foodpipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: the traceback, then exit 1 deliberately (see exit_now)
        print(logs.redact(traceback.format_exc()), file=sys.stderr, end="")
        return EXIT_BUG


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
    logs.stop_filtering_stderr()
    os._exit(code)


def main(function) -> None:
    """The whole process: ``function()`` under ``run``, then ``exit_now`` with its code. Unless the
    command line says ``--verbose``, library noise on descriptor 2 is filtered (``logs.filter_stderr``)."""
    if "--verbose" not in sys.argv[1:]:
        logs.filter_stderr()
    exit_now(run(function))
