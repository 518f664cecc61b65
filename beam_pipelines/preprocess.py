"""The preprocessing job: ``python -m beam_pipelines.preprocess`` or ``foodpipe preprocess``.

    python -m beam_pipelines.preprocess --input s3://raw/food-101 --output s3://datasets/food10 \
        --classes-file foodpipe/classes/seed10.txt [--runner DaskRunner --dask_client_address tcp://h:8786]

Job flags are parsed here; every other flag must be one of Beam's ``PipelineOptions`` and goes to
Beam. Without ``--runner`` the job runs on the DirectRunner in multi-processing mode, one worker
per core.
"""

import argparse
import collections
import contextlib
import datetime
import difflib
import functools
import importlib
import logging
import os
import re
import sys
import time
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import config as job_config
from beam_pipelines import output, preflight, transforms
from beam_pipelines import progress as progress_lines
from beam_pipelines.stats import mean_std
from foodpipe import __version__, logs, process, s3, schema, storage
from foodpipe.errors import FoodpipeError, RunFailed
from foodpipe.images import PixelSums

log = logging.getLogger("foodpipe.preprocess")


def default_runner_flags(beam_args: list[str]) -> list[str]:
    """Force a runner: Beam's own default (Prism) downloads a binary, which fails offline.

    Without ``--runner``: the DirectRunner, multi-processing, one worker per core. Each default
    fills in only a flag the user did not give.
    """
    given = {arg.split("=", 1)[0] for arg in beam_args if arg.startswith("--")}
    if "--runner" in given:
        return []
    defaults = {
        "--runner": "DirectRunner",
        "--direct_running_mode": "multi_processing",
        "--direct_num_workers": str(os.cpu_count() or 1),
        "--default_sdk_harness_log_level": "WARNING",
    }
    return [f"{flag}={value}" for flag, value in defaults.items() if flag not in given]


# Runners Beam does not know by their short name.
RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


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
    with distributed.Client(address, timeout=given.get("timeout") or 30) as client:
        threads = sum(client.nthreads().values())
    return [f"--dask_npartitions={PARTITIONS_PER_DASK_THREAD * max(1, threads)}"]


def pipeline_options(beam_args: list[str], settings: s3.S3Settings) -> PipelineOptions:
    beam_args = resolve_runner_aliases(beam_args) + settings.beam_flags()
    options = PipelineOptions(beam_args + default_runner_flags(beam_args))
    if runner_name(options) == "DaskRunner":
        options = PipelineOptions(beam_args + dask_partition_flags(options))
    return options


def runner_name(options: PipelineOptions) -> str:
    return str(options.view_as(beam.options.pipeline_options.StandardOptions).runner).rsplit(".", 1)[-1]


def workers_on_this_host(options: PipelineOptions) -> bool:
    """Whether the job's workers run on this machine (the DirectRunner; a Dask cluster on loopback)."""
    runner = runner_name(options)
    if runner != "DaskRunner":
        return runner == "DirectRunner"
    address = options.get_all_options(drop_default=True).get("address")  # none: the runner's local cluster
    return not address or urlparse(address).hostname in ("127.0.0.1", "localhost")


def build_metadata(config, planned: preflight.Plan, summary: dict, runner: str, seconds: float,
                   timeline: dict | None = None) -> dict:
    splits = {}
    for split_name in schema.SPLITS:
        shards = [s for s in summary["shards"] if s["split"] == split_name]
        splits[split_name] = {
            "count": sum(s["count"] for s in shards),
            "shards": [s["name"] for s in shards],
            "bytes": sum(s["bytes"] for s in shards),
            "class_counts": {c: n for s, c, n in summary["class_counts"] if s == split_name},
        }
    sums = PixelSums(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["pixel_sums"].items()})
    stats = None  # a held-out set (no train split): a model brings its own
    if sums.count:
        mean, std = mean_std(sums)
        stats = {"mean": mean, "std": std, "computed_on": schema.TRAIN, "pixels": sums.count}
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "classes": planned.classes,
        "splits": splits,
        "split_source": planned.split_plan.description,
        "stats": stats,
        "rejected": summary["rejected"]["count"],
        "rejected_reasons": summary["rejected"]["reasons"],
        "images": sum(s["count"] for s in splits.values()),
        "image_sides": {"min": summary["manifest"]["min_side"], "max": summary["manifest"]["max_side"]},
        "max_side": config.max_side,
        "source": config.input,
        "config": config.as_params(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "job": {"runner": runner, "seconds": round(seconds, 3), "foodpipe_version": __version__,
                "timeline": timeline or {}, "shard_writers": shard_writer_shares(summary["shards"])},
    }


def shard_writer_shares(shards: list[dict]) -> list[int]:
    """How many shards each worker process wrote, most first: how the writing was spread."""
    return sorted(collections.Counter(s["writer"] for s in shards).values(), reverse=True)


def check_every_class_written(classes, metadata) -> None:
    written = {c for split in metadata["splits"].values() for c, n in split["class_counts"].items() if n}
    empty = [c for c in classes if c not in written]
    if empty:
        raise FoodpipeError(f"no valid images in class(es): {', '.join(empty)} (see rejected.jsonl reasons)")


# botocore's names for "the S3 server is not there", as they appear in a worker's error text.
S3_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError")


def describe_job_failure(exc: BaseException, settings: s3.S3Settings) -> str:
    """Beam and Dask wrap worker errors in pages of context; keep the root cause's telling line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if any(name in str(exc) for name in S3_UNREACHABLE):  # a worker lost the store
        step = re.search(r"\[while running '([^']+)'\]", str(exc))
        return (f"cannot reach the S3 endpoint {settings.endpoint_url or 'AWS S3'} while running the job"
                f"{f' (step {step.group(1)})' if step else ''}: is the server running? The output was not changed")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(("http", "[while running", "File ", "Traceback"))]
    detail = telling[-1] if telling else type(exc).__name__
    if ":" not in detail.split(" ", 1)[0]:
        detail = f"{type(exc).__name__}: {detail}"
    return f"the preprocessing job failed: {detail[:500]}"


def publish(config, planned: preflight.Plan, staging: str, runner: str, seconds: float,
            settings: s3.S3Settings, timeline: dict | None = None) -> dict:
    """Turns the job's summary into metadata and commits the staged dataset to the output."""
    try:
        summary = storage.read_json(f"{staging}/{transforms.SUMMARY_FILE}", settings)
        metadata = build_metadata(config, planned, summary, runner, seconds, timeline)
        check_every_class_written(planned.classes, metadata)
        files = [s["name"] for s in summary["shards"]] + [schema.MANIFEST_FILE, schema.REJECTED_FILE]
        output.commit(staging, config.output, files, metadata, settings)
    except FoodpipeError:
        raise
    except Exception as exc:  # the store went away while publishing: metadata.json comes last
        what = f"publishing {config.output} (not complete, no {schema.METADATA_FILE}: run the job again)"
        raise RunFailed(str(storage.describe(exc, config.output, what, settings))) from None
    return metadata


def remove_staging(staging: str, settings: s3.S3Settings) -> None:
    """Best effort: a failed job's error matters more than its leftovers, which are only named."""
    try:
        storage.delete_tree(staging, settings)
    except Exception as exc:
        log.warning("preprocess: could not remove the staging folder %s (%s); the next run into this output "
                    "removes it", staging, type(exc).__name__)


DESCRIPTION = """The preprocessing job: raw images in Food-101 layout (local or s3://) become validated,
split, sharded TFRecords with metadata.json, manifest.parquet and rejected.jsonl (docs/FORMAT.md).

Besides the job's flags below, any --flag must be one of Beam's pipeline options (e.g. --runner,
--direct_num_workers, --dask_client_address); a flag that is neither is an error. Without --runner
the job runs on the DirectRunner, multi-processing, one worker per core."""


def build_parser() -> argparse.ArgumentParser:
    parser = process.CommandParser(prog="foodpipe preprocess", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"foodpipe {__version__}")
    job_config.add_arguments(parser)
    process.add_output_flags(parser)
    return parser


@functools.lru_cache(maxsize=1)
def beam_option_flags() -> frozenset[str]:
    """Every flag Beam's pipeline options define, the Dask runner's included."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    try:
        importlib.import_module("apache_beam.runners.dask.dask_runner")  # defines the Dask runner's options
    except ImportError:  # the dask extra is not installed
        pass

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    parser = _BeamArgumentParser(add_help=False, conflict_handler="resolve", allow_abbrev=False)
    for options in set(subclasses(PipelineOptions)):
        options._add_argparse_args(parser)
    return frozenset(flag for action in parser._actions for flag in action.option_strings)


def check_beam_flags(parser: argparse.ArgumentParser, beam_args: list[str]) -> None:
    """A usage error for a flag that is neither the job's nor Beam's (Beam would only log that it
    discards it), with the closest known flag."""
    ours = [flag for action in parser._actions for flag in action.option_strings]
    for arg in beam_args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in beam_option_flags():
            close = difflib.get_close_matches(flag, ours + sorted(beam_option_flags()), n=1, cutoff=0.75)
            parser.error(f"unknown flag {flag}" + (f" (did you mean {close[0]}?)" if close else ""))


def parse(argv) -> tuple[job_config.PreprocessConfig, argparse.Namespace, list[str]]:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    check_beam_flags(parser, beam_args)
    return job_config.PreprocessConfig.from_args(args), args, beam_args


def run(argv=None, progress: bool = True) -> dict:
    """Runs the job and commits its output; returns the dataset's metadata."""
    config, args, beam_args = parse(argv)
    return execute(config, beam_args, args.s3_endpoint, progress=progress)


def job_counters(result) -> dict[str, int]:
    """The job's Beam counters (``foodpipe.preprocess`` namespace) by name; empty where the runner
    does not report them."""
    try:
        found = result.metrics().query()["counters"]
    except Exception:  # not every runner implements metrics
        return {}
    totals: dict[str, int] = {}
    for counter in found:
        if counter.key.metric.namespace == transforms.NAMESPACE:
            value = counter.committed if counter.committed is not None else counter.attempted
            totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def run_pipeline(options, config, planned: preflight.Plan, staging: str, settings: s3.S3Settings,
                 progress: progress_lines.Progress | None) -> dict[str, int]:
    """Run the job graph to its end; returns its counters."""
    pipeline = beam.Pipeline(options=options)
    transforms.build(pipeline, config, planned, staging, settings, progress.folder if progress else None)
    with progress or contextlib.nullcontext():
        result = pipeline.run()
        result.wait_until_finish()
    return job_counters(result)


def execute(config: job_config.PreprocessConfig, beam_args: list[str], s3_endpoint: str | None = None,
            progress: bool = True) -> dict:
    settings = s3.S3Settings.from_env(s3_endpoint)
    settings.apply_to_environment()
    options = pipeline_options(beam_args, settings)
    runner = runner_name(options)

    job_started = time.time()  # wall clock: the workers' progress times are comparable with it
    planned = preflight.plan(config, settings)
    storage.check_folder(config.output, f"writing {config.output}", settings, must_exist=False)
    staging = output.new_staging_dir(config.output)
    log.info("preprocess: %d classes, %d files from %s -> %s (runner %s)", len(planned.classes), len(planned.paths),
             config.input, config.output, runner)
    tracker = progress_lines.Progress(len(planned.paths)) if progress and workers_on_this_host(options) else None
    planned_at = time.time() - job_started
    started = time.monotonic()
    with output.exclusive(config.output, settings):
        try:
            try:
                counters = run_pipeline(options, config, planned, staging, settings, tracker)
            except FoodpipeError:
                raise
            except Exception as exc:
                raise RunFailed(describe_job_failure(exc, settings)) from None
            seconds = time.monotonic() - started
            timeline = stage_timeline(job_started, planned_at, tracker)
            metadata = publish(config, planned, staging, runner, seconds, settings, timeline)
        finally:
            remove_staging(staging, settings)
    log.info("preprocess: %s", summary_line(metadata, counters))
    return metadata


def stage_timeline(job_started: float, planned_at: float, tracker: progress_lines.Progress | None) -> dict:
    """When the job started (epoch seconds) and, in seconds from then, when its input was planned,
    its first and last image validated (where its workers share this host) and its graph finished."""
    timeline = {"started": round(job_started, 3), "planned_s": round(planned_at, 3)}
    span = tracker.first_and_last if tracker else None
    if span:
        timeline.update(first_image_s=round(span[0] - job_started, 3), last_image_s=round(span[1] - job_started, 3))
    timeline["graph_done_s"] = round(time.time() - job_started, 3)
    return timeline


def summary_line(metadata: dict, counters: dict[str, int]) -> str:
    """What the job did, from its counters (where the runner reports them) and its metadata."""
    read = counters.get("images_read", metadata["images"] + metadata["rejected"])
    per_split = ", ".join(f"{name} {metadata['splits'][name]['count']}" for name in schema.SPLITS)
    reasons = ", ".join(f"{kind} {n}" for kind, n in metadata["rejected_reasons"].items())
    converted = f" ({counters['images_converted']} converted to JPEG)" if counters.get("images_converted") else ""
    seconds = metadata["job"]["seconds"]
    return (f"read {read} images, wrote {metadata['images']}{converted} ({per_split}), rejected "
            f"{metadata['rejected']}{f' ({reasons})' if reasons else ''}, in {seconds:.1f} s "
            f"({read / max(seconds, 1e-9):.0f} images/s) -> {metadata['config']['output']}")


def result_line(metadata: dict) -> dict:
    """What the command prints as its JSON result line."""
    return {"output": metadata["config"]["output"], "images": metadata["images"], "rejected": metadata["rejected"],
            "rejected_reasons": metadata["rejected_reasons"],
            "splits": {name: info["count"] for name, info in metadata["splits"].items()},
            "split_source": metadata["split_source"]["source"],
            **({"listed_missing": metadata["split_source"]["listed_missing"]}
               if "listed_missing" in metadata["split_source"] else {}),
            "seconds": metadata["job"]["seconds"], "runner": metadata["job"]["runner"]}


def main(argv=None) -> int:
    logs.setup(verbose="--verbose" in (argv or []))
    config, args, beam_args = parse(argv)
    process.emit_result(result_line(execute(config, beam_args, args.s3_endpoint, progress=not args.quiet)), args.json)
    return 0


if __name__ == "__main__":
    process.main(lambda: main(sys.argv[1:]))
