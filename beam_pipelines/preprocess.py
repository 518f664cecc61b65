"""The preprocessing job: ``python -m beam_pipelines.preprocess`` or ``foodpipe preprocess``.

    python -m beam_pipelines.preprocess --input s3://raw/food-101 --output s3://datasets/food10 \
        --classes-file foodpipe/classes/seed10.txt [--runner DaskRunner --dask_client_address tcp://h:8786]

``run(argv)`` in the style of Beam's own examples: parse the options (``options``), plan the input
(``preflight``), build and run the graph (``transforms``), then publish the staged output with its
metadata (``metadata``, ``output``).
"""

import contextlib
import logging
import re
import sys
import time

import apache_beam as beam

from beam_pipelines import config as job_config
from beam_pipelines import output, preflight, transforms
from beam_pipelines import progress as progress_lines
from beam_pipelines.metadata import build_metadata, check_every_class_written, result_line, stage_timeline, summary_line
from beam_pipelines.options import parse, pipeline_options, runner_name, workers_on_this_host
from foodpipe import logs, process, process_memory, s3, schema, storage
from foodpipe.errors import FoodpipeError, RunFailed

log = logging.getLogger("foodpipe.preprocess")


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
    with progress or contextlib.nullcontext(), process_memory.arenas_limited_for_children():
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
    to_read = sum(len(task.images) for task in planned.placed.tasks)
    log.info("preprocess: %d classes, %d files from %s -> %s in %d shards (runner %s)", len(planned.classes),
             len(planned.paths), config.input, config.output, len(planned.placed.tasks), runner)
    tracker = progress_lines.Progress(to_read) if progress and workers_on_this_host(options) else None
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


def main(argv=None) -> int:
    process_memory.limit_arenas()  # this process is the job: before the runner's threads start
    logs.setup(verbose="--verbose" in (argv or []))
    config, args, beam_args = parse(argv)
    process.check_result_file(args.json)
    process.emit_result(result_line(execute(config, beam_args, args.s3_endpoint, progress=not args.quiet)), args.json)
    return 0


if __name__ == "__main__":
    process.main(lambda: main(sys.argv[1:]))
