"""The ``foodpipe`` command. Each subcommand parses its flags into a typed config and calls one
function. The conventions, the same for every command (see ``foodpipe.process``):

- a command with a result prints it as one JSON line, the last line of stdout; ``--json FILE``
  also writes it to FILE;
- ``--quiet`` turns progress bars and progress lines off; ``--verbose`` shows every library's
  messages unfiltered;
- ``--s3-endpoint`` on every command that talks to S3, ``--mlflow-uri`` on every command that
  talks to MLflow;
- errors are one redacted line starting ``foodpipe: error:``; exit codes 0 done, 1 a bug, 2 a usage
  error or bad input, 3 the work failed, 130 interrupted.
"""

import argparse
import os
import sys

from foodpipe import __version__, config as settings, logs, process
from foodpipe.commands import configs
from trainer.config import TrainConfig, TuneConfig

DESCRIPTION = """Food-101 classification on TensorFlow's data stack.

Exit codes: 0 done, 1 a bug (a traceback), 2 a usage error or bad input (one line),
3 the work started and failed (one line), 130 interrupted."""


def _s3_settings(args):
    from foodpipe import s3

    settings = s3.S3Settings.from_env(getattr(args, "s3_endpoint", None))
    settings.apply_to_environment()
    return settings


def cmd_s3_server(config: configs.S3ServerConfig, args):
    from foodpipe.tools import s3_server

    return s3_server.serve(config.host, config.port)


def cmd_dispatcher(config: configs.DispatcherConfig, args):
    from tfdata import service_servers as input_service

    _s3_settings(args)
    return input_service.dispatcher(config.port, config.work_dir)


def cmd_worker(config: configs.WorkerConfig, args):
    from tfdata import service_servers as input_service

    _s3_settings(args)
    return input_service.worker(config.dispatcher, config.port, config.address)


def cmd_synth(config, args) -> dict:
    from tqdm import tqdm

    from foodpipe import storage
    from foodpipe.tools import synth

    storage.make_local_folder(config.out, "synth's output")  # before the progress bar
    with tqdm(total=config.classes * config.per_class, desc="synth", unit="img", disable=args.quiet) as bar:
        counts = synth.generate(config, progress=bar.update)
    print(f"wrote {counts['images']} images in {counts['classes']} classes (+{counts['corrupt']} corrupt) "
          f"to {config.out}")
    return {**counts, "out": config.out}


def cmd_upload(config: configs.UploadConfig, args) -> dict:
    from foodpipe.tools import upload

    stats = upload.upload(config.src, config.dest, _s3_settings(args), workers=config.workers,
                          create_bucket=config.create_bucket, show_progress=not args.quiet)
    print(f"uploaded {stats['uploaded']} objects ({stats['bytes'] / 1e6:.1f} MB), "
          f"skipped {stats['skipped']} already present, to {config.dest}")
    return {**stats, "dest": config.dest}


def cmd_bench_preprocess(config: configs.BenchPreprocessConfig, args) -> dict:
    from foodpipe.commands import bench

    runner = [f"--{name}={getattr(config, name)}" for name in ("runner", "dask_client_address", "direct_num_workers")
              if getattr(config, name)]
    both = (["--s3-endpoint", args.s3_endpoint] if args.s3_endpoint else []) + \
        (["--split-file", config.split_file] if config.split_file else []) + \
        (["--group-pattern", config.group_pattern] if config.group_pattern else [])
    return bench.print_table(bench.bench_preprocess(config.input, both, runner, _s3_settings(args), config.repeats))


def cmd_bench_input(config: configs.BenchInputConfig, args) -> dict:
    from foodpipe.commands import bench

    _s3_settings(args)
    return bench.print_table(bench.bench_input(config.data, config.image_size, config.batch_size, config.images,
                                               config.seed_images, config.input_service))


def cmd_bench_train(config: configs.BenchTrainConfig, args) -> dict:
    from foodpipe.commands import bench

    _s3_settings(args)
    return bench.print_table(bench.bench_train(config.data, config.model, config.image_size, config.batch_size,
                                               config.steps, config.mixed_precision, config.jit_compile))


def cmd_demo(config: configs.DemoConfig, args) -> dict:
    from foodpipe.commands import demo

    return demo.run(config, quiet=args.quiet)


def _dataset_found(args, data: str) -> None:
    """S3 settings applied, and ``data``'s metadata read: a wrong ``--data`` is one line at once, not
    after TensorFlow's seconds of imports (the command reads the metadata again)."""
    from foodpipe import datasets

    _s3_settings(args)
    datasets.load(data)


def cmd_train(config: TrainConfig, args) -> dict:
    _dataset_found(args, config.data)
    from trainer import train

    return train.train_and_evaluate(config, progress=not args.quiet)


def cmd_tune(config: TuneConfig, args) -> dict:
    _dataset_found(args, config.train.data)
    from trainer import tune

    result = tune.run(config, progress=not args.quiet)
    best = result["best"]  # tune fails with one line when no trial finished
    print(f"study {result['study']}: {result['trials']}; best: trial {best['trial']}, "
          f"val_accuracy {best['val_accuracy']:.4f}, run {best['run_id']}, {best['params']}")
    return result


def cmd_evaluate(config: configs.EvaluateConfig, args) -> dict:
    _dataset_found(args, config.data)
    from trainer import evaluate

    output_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else None
    return evaluate.evaluate(config.model, config.data, config.split, config.batch_size, args.mlflow_uri, output_dir,
                             config.tta)


def cmd_select(config: configs.SelectConfig, args) -> dict:
    from trainer import registry

    result, compared = registry.select(config.experiment, args.mlflow_uri, config.register, config.metric,
                                       config.alias)
    process.print_rows(compared)
    return result


def cmd_predict(config: configs.PredictConfig, args) -> list:
    from trainer import predict

    _s3_settings(args)
    results = predict.predict(config.model, config.images, config.top_k, args.mlflow_uri)
    for result in results:
        ranked = ", ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"])
        print(f"{result['image']}: {ranked}")
    return results


def add_command(commands, name: str, function, help: str, config_class, result: bool = True,
                s3: bool = False, mlflow: bool = False):
    """A subcommand: a flag for each setting of ``config_class`` (and ``--config FILE``), then the
    S3 and MLflow flags if it talks to them, then the output flags."""
    parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    settings.add_flags(parser, config_class)
    settings.add_config_flag(parser)
    if mlflow:
        process.add_mlflow_flag(parser)
    if s3:
        process.add_s3_flag(parser)
    process.add_output_flags(parser, result=result)
    parser.set_defaults(func=function, config_class=config_class)
    return parser


def add_bench_commands(bench) -> None:
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    add_command(benchmarks, "preprocess", cmd_bench_preprocess,
                "the Beam job (default runner) against a single-process loop, time and peak memory",
                configs.BenchPreprocessConfig, s3=True)
    add_command(benchmarks, "input", cmd_bench_input,
                "input throughput: decode-only, train and eval pipelines, the pure-TF peer, the seed's Sequence, and "
                "the input service",
                configs.BenchInputConfig, s3=True)
    add_command(benchmarks, "train", cmd_bench_train,
                "training steps fed by the real input against the same batches cached in memory",
                configs.BenchTrainConfig, s3=True)


def add_service_commands(service) -> None:
    roles = service.add_subparsers(dest="role", required=True, metavar="ROLE")
    add_command(roles, "dispatcher", cmd_dispatcher, "the service's dispatcher: hands out each epoch's shard files "
                "to the workers, until SIGTERM", configs.DispatcherConfig, result=False, s3=True)
    add_command(roles, "worker", cmd_worker, "an input worker: reads, decodes and augments batches for the "
                "trainers, until SIGTERM", configs.WorkerConfig, result=False, s3=True)


def build_parser() -> argparse.ArgumentParser:
    parser = process.CommandParser(prog="foodpipe", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"foodpipe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_data_commands(commands)
    add_bench_commands(commands.add_parser("bench", help="benchmarks (see 'foodpipe bench BENCHMARK --help')",
                                           description="Benchmarks: each prints a table, then its JSON line."))
    add_model_commands(commands)
    add_service_commands(commands.add_parser(
        "input-service", help="the tf.data service's processes (see 'foodpipe input-service ROLE --help')",
        description="The tf.data service: a dispatcher and input workers that read, decode and augment the train "
                    "split for 'foodpipe train --input-service grpc://HOST:PORT'."))
    add_command(commands, "demo", cmd_demo, "the whole path on embedded defaults, from nothing", configs.DemoConfig)
    return parser


def add_data_commands(commands) -> None:
    """s3-server, synth, upload and preprocess (whose flags the job parses itself)."""
    from foodpipe.tools.synth import SynthConfig

    add_command(commands, "s3-server", cmd_s3_server,
                "an embedded S3-compatible endpoint (moto) for local work and tests", configs.S3ServerConfig,
                result=False)
    add_command(commands, "synth", cmd_synth, "write a sample dataset in Food-101 layout (for plumbing)", SynthConfig)
    add_command(commands, "upload", cmd_upload, "copy a Food-101 folder or food-101.tar.gz to s3://bucket/prefix",
                configs.UploadConfig, s3=True)
    commands.add_parser("preprocess", add_help=False,
                        help="the Beam preprocessing job (see 'foodpipe preprocess --help')")


def add_model_commands(commands) -> None:
    """train, tune, evaluate, select and predict."""
    add_command(commands, "train", cmd_train, "train a model and log it to MLflow", TrainConfig, s3=True)
    add_command(commands, "tune", cmd_tune, "a sweep over train's settings on Optuna: each trial a child MLflow run "
                                            "of the sweep's run, trials that fall behind pruned", TuneConfig, s3=True)
    p = add_command(commands, "evaluate", cmd_evaluate,
                    "accuracy, loss, per-class scores and calibration of a model on a split", configs.EvaluateConfig,
                    s3=True, mlflow=True)
    p.epilog = "With --json FILE, the error analysis is also written beside FILE, in evaluation/SPLIT/."
    add_command(commands, "select", cmd_select,
                "the best finished run of an experiment by a metric, after a table of the runs compared",
                configs.SelectConfig, mlflow=True)
    add_command(commands, "predict", cmd_predict, "class and probability for each image (local or s3://)",
                configs.PredictConfig, s3=True, mlflow=True)


def parse(argv: list[str]) -> tuple[argparse.Namespace, object]:
    """The command line and the command's config, with ``--config FILE``'s settings as flags before
    the others (so flags given win); a setting of the file that the command does not take is named
    with the file."""
    parser = build_parser()
    argv, location, from_file = settings.expand_config_file(argv, repeatable=settings.repeated(TuneConfig))
    args, unknown = parser.parse_known_args(argv)
    command = " ".join(argv[:2] if argv[0] in ("bench", "input-service") else argv[:1])
    settings.check_unknown(unknown, location, from_file, command)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args, settings.from_args(args.config_class, args)


def dispatch(argv: list[str]) -> int:
    logs.setup(verbose="--verbose" in argv)  # before any library is imported: import-time noise is filtered too
    if argv and argv[0] == "preprocess":  # Beam's own flags pass through; the job parses its flags itself
        from beam_pipelines import preprocess

        return preprocess.main(argv[1:])
    args, config = parse(argv)
    process.check_result_file(getattr(args, "json", None))
    result = args.func(config, args)
    if "json" not in args:  # a command without a result (s3-server): its own exit code
        return result or 0
    process.emit_result(result, args.json)
    return 0


def run_command(argv=None) -> int:
    """Run one command in this process and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return process.run(lambda: dispatch(argv))


def main() -> None:
    process.main(lambda: dispatch(sys.argv[1:]))
