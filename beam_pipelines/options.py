"""The job's options: its own flags (``beam_pipelines.config``), Beam's pipeline options for every
other flag, and the runner defaults foodpipe sets.

Without ``--runner`` the job runs on the DirectRunner in multi-processing mode, one worker per core
(Beam's own default, Prism, downloads a binary, which fails offline; Beam's DirectRunner tries it
first, foodpipe's does not). On the Dask runner the bag
is cut in partitions by the cluster's size. A flag that is neither the job's nor Beam's is a usage
error, found with Beam's public ``PipelineOptions.get_all_options``.
"""

import argparse
import difflib
import functools
import importlib
import os
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import config as job_config
from foodpipe import __version__, config as settings, process, s3
from foodpipe.errors import FoodpipeError, first_line


def default_runner_flags(beam_args: list[str]) -> list[str]:
    """Force a runner: Beam's own default (Prism) downloads a binary, which fails offline.

    Without ``--runner``: the DirectRunner, multi-processing, one worker per core. Each default
    fills in only a flag the user did not give.
    """
    given = {arg.split("=", 1)[0] for arg in beam_args if arg.startswith("--")}
    if "--runner" in given:
        return []
    defaults = {
        "--runner": RUNNER_ALIASES["DirectRunner"],
        "--direct_running_mode": "multi_processing",
        "--direct_num_workers": str(os.cpu_count() or 1),
        "--default_sdk_harness_log_level": "WARNING",
    }
    return [f"{flag}={value}" for flag, value in defaults.items() if flag not in given]


class DirectRunner(beam.runners.runner.PipelineRunner):
    """Beam's DirectRunner for a batch job (its FnApiRunner, honouring ``--direct_running_mode`` and
    ``--direct_num_workers``), without its first try of Prism: Beam's own ``DirectRunner`` (2.77)
    first hands a batch job to Prism, which downloads a Go binary. Offline the download fails and
    it falls back; online the job would run on Prism's one loopback worker process, not one
    process per core. ``--runner DirectRunner`` means this class; Beam's stays reachable by its
    full name, ``apache_beam.runners.direct.direct_runner.DirectRunner``."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=provision).run_pipeline(pipeline, options)


# Runners by short name: Dask's, which Beam does not know so, and the DirectRunner above.
RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner",
                  "DirectRunner": "beam_pipelines.options.DirectRunner"}


def resolve_runner_aliases(beam_args: list[str]) -> list[str]:
    resolved, previous = [], None
    for arg in beam_args:
        if previous == "--runner":
            arg = RUNNER_ALIASES.get(arg, arg)
        elif arg.startswith("--runner="):
            arg = "--runner=" + RUNNER_ALIASES.get(arg.split("=", 1)[1], arg.split("=", 1)[1])
        resolved.append(arg)
        previous = arg
    return resolved


PARTITIONS_PER_DASK_THREAD = 4


def dask_partition_flags(options: PipelineOptions) -> list[str]:
    """On the Dask runner, ``--dask_npartitions`` = 4 per thread of the cluster, unless given.

    Beam's Dask runner makes one bag partition per 128 ``Create`` elements and runs each step once
    per partition: below ~256 images every image would be validated by one worker, and the
    partition count of a large input has nothing to do with the cluster. 4 partitions per thread
    keep every worker busy and let the scheduler balance them.
    """
    given = options.get_all_options(drop_default=True)
    if given.get("npartitions") or given.get("partition_size"):
        return []
    import distributed

    address = given.get("address")
    if not address:  # the runner starts a local cluster
        return [f"--dask_npartitions={PARTITIONS_PER_DASK_THREAD * (os.cpu_count() or 1)}"]
    try:
        with distributed.Client(address, timeout=given.get("timeout") or 30) as client:
            threads = sum(client.nthreads().values())
    except OSError as exc:  # no scheduler there: before the job starts
        raise FoodpipeError(f"cannot reach the Dask scheduler at {address}: {first_line(exc, 300)}") from None
    return [f"--dask_npartitions={PARTITIONS_PER_DASK_THREAD * max(1, threads)}"]


def pipeline_options(beam_args: list[str], settings: s3.S3Settings) -> PipelineOptions:
    beam_args = resolve_runner_aliases(beam_args) + settings.beam_flags()
    options = PipelineOptions(beam_args + default_runner_flags(beam_args))
    check_runner(options)
    if runner_name(options) == "DaskRunner":
        options = PipelineOptions(beam_args + dask_partition_flags(options))
    return options


def check_runner(options: PipelineOptions) -> None:
    """A ``--runner`` Beam does not know, or whose extras are not installed, is one line before the
    job starts (Beam would say so only when the pipeline runs)."""
    runner = options.view_as(beam.options.pipeline_options.StandardOptions).runner
    try:
        beam.runners.create_runner(runner)
    except (ValueError, ImportError) as exc:
        raise FoodpipeError(f"--runner {runner}: {first_line(exc, 300)}") from None


def runner_name(options: PipelineOptions) -> str:
    return str(options.view_as(beam.options.pipeline_options.StandardOptions).runner).rsplit(".", 1)[-1]


def workers_on_this_host(options: PipelineOptions) -> bool:
    """Whether the job's workers run on this machine (the DirectRunner; a Dask cluster on loopback)."""
    runner = runner_name(options)
    if runner != "DaskRunner":
        return runner == "DirectRunner"
    address = options.get_all_options(drop_default=True).get("address")  # none: the runner's local cluster
    return not address or urlparse(address).hostname in ("127.0.0.1", "localhost")


DESCRIPTION = """The preprocessing job: raw images in Food-101 layout (local or s3://) become validated,
split, sharded TFRecords with metadata.json, manifest.parquet and rejected.jsonl (docs/FORMAT.md).

Besides the job's flags below, any --flag must be one of Beam's pipeline options (e.g. --runner,
--direct_num_workers, --dask_client_address); a flag that is neither is an error. Without --runner
the job runs on the DirectRunner, multi-processing, one worker per core."""


class JobParser(process.CommandParser):
    """The job's flag parser; it remembers its flags, to suggest one for a misspelt flag."""

    def __init__(self, *args, **kwargs):
        self.flags: list[str] = []
        super().__init__(*args, **kwargs)

    def add_argument(self, *names, **kwargs):
        self.flags.extend(name for name in names if name.startswith("-"))
        return super().add_argument(*names, **kwargs)


def build_parser() -> JobParser:
    parser = JobParser(prog="foodpipe preprocess", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"foodpipe {__version__}")
    settings.add_flags(parser, job_config.PreprocessConfig)
    process.add_s3_flag(parser)
    settings.add_config_flag(parser)
    process.add_output_flags(parser)
    return parser


@functools.lru_cache(maxsize=1)
def register_runner_options() -> None:
    """Import the Dask runner's module, which defines its pipeline options (``--dask_client_address``…)."""
    try:
        importlib.import_module("apache_beam.runners.dask.dask_runner")
    except ImportError:  # the dask extra is not installed
        pass


def beam_flags() -> list[str]:
    """The flags of every pipeline option Beam defines (the Dask runner's included), as ``--dest``."""
    register_runner_options()
    return sorted(f"--{name}" for name in PipelineOptions([]).get_all_options())


def unknown_beam_flags(beam_args: list[str]) -> list[str]:
    """The flags among ``beam_args`` that no pipeline option takes (Beam would only log that it
    discards them), in the order given."""
    register_runner_options()
    known = PipelineOptions(beam_args).get_all_options(drop_default=True)
    kept = PipelineOptions(beam_args).get_all_options(drop_default=True, retain_unknown_options=True)
    unknown = set(kept) - set(known)
    flags = [arg.split("=", 1)[0] for arg in beam_args if arg.startswith("--")]
    return [flag for flag in flags if flag[2:] in unknown or flag[2:].replace("-", "_") in unknown]


def check_beam_flags(parser: "JobParser", beam_args: list[str]) -> None:
    """A usage error for a flag that is neither the job's nor Beam's, with the closest known flag."""
    for flag in unknown_beam_flags(beam_args):
        close = difflib.get_close_matches(flag, parser.flags + beam_flags(), n=1, cutoff=0.75)
        parser.error(f"unknown flag {flag}" + (f" (did you mean {close[0]}?)" if close else ""))


def spell(name: str) -> str:
    """A config file key's flag: the job's settings with dashes (``--shard-size-mb``), Beam's pipeline
    options as Beam spells them (``--direct_num_workers``)."""
    job = {field.name for field in settings.settings(job_config.PreprocessConfig)} | {"s3_endpoint"}
    return settings.flag(name) if name in job else f"--{name}"


def parse(argv) -> tuple[job_config.PreprocessConfig, argparse.Namespace, list[str]]:
    parser = build_parser()
    argv, location, from_file = settings.expand_config_file(list(argv), spell)
    args, beam_args = parser.parse_known_args(argv)
    settings.check_unknown(unknown_beam_flags(beam_args), location, from_file, "preprocess or a Beam option")
    check_beam_flags(parser, beam_args)
    return settings.from_args(job_config.PreprocessConfig, args), args, beam_args
