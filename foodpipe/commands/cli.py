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

from foodpipe import __version__, logs, process, schema
from foodpipe.errors import FoodpipeError
from tfdata.config import InputConfig
from trainer import config as train_config

DESCRIPTION = """Food-101 classification on TensorFlow's data stack.

Exit codes: 0 done, 1 a bug (a traceback), 2 a usage error or bad input (one line),
3 the work started and failed (one line), 130 interrupted."""


def _s3_settings(args):
    from foodpipe import s3

    settings = s3.S3Settings.from_env(getattr(args, "s3_endpoint", None))
    settings.apply_to_environment()
    return settings


def cmd_s3_server(args):
    from foodpipe.tools import s3_server

    return s3_server.serve(args.host, args.port)


def cmd_synth(args) -> dict:
    from tqdm import tqdm

    from foodpipe.tools import synth

    config = synth.SynthConfig(args.out, args.classes, args.per_class, args.seed, args.corrupt)
    with tqdm(total=config.classes * config.per_class, desc="synth", unit="img", disable=args.quiet) as bar:
        counts = synth.generate(config, progress=bar.update)
    print(f"wrote {counts['images']} images in {counts['classes']} classes (+{counts['corrupt']} corrupt) to {args.out}")
    return {**counts, "out": args.out}


def cmd_upload(args) -> dict:
    from foodpipe.tools import upload

    stats = upload.upload(args.src, args.dest, _s3_settings(args), workers=args.workers,
                          create_bucket=args.create_bucket, show_progress=not args.quiet)
    print(f"uploaded {stats['uploaded']} objects ({stats['bytes'] / 1e6:.1f} MB), "
          f"skipped {stats['skipped']} already present, to {args.dest}")
    return {**stats, "dest": args.dest}


def cmd_bench_preprocess(args) -> dict:
    from foodpipe.commands import bench

    runner = ([f"--runner={args.runner}"] if args.runner else []) + \
        ([f"--dask_client_address={args.dask_client_address}"] if args.dask_client_address else []) + \
        ([f"--direct_num_workers={args.direct_num_workers}"] if args.direct_num_workers else [])
    both = (["--s3-endpoint", args.s3_endpoint] if args.s3_endpoint else []) + \
        (["--split-file", args.split_file] if args.split_file else []) + \
        (["--group-pattern", args.group_pattern] if args.group_pattern else [])
    return bench.print_table(bench.bench_preprocess(args.input, both, runner, _s3_settings(args), args.repeats))


def cmd_bench_input(args) -> dict:
    from foodpipe.commands import bench

    _s3_settings(args)
    return bench.print_table(bench.bench_input(args.data, args.image_size, args.batch_size, args.images,
                                               args.seed_images))


def cmd_bench_train(args) -> dict:
    from foodpipe.commands import bench

    _s3_settings(args)
    return bench.print_table(bench.bench_train(args.data, args.model, args.image_size, args.batch_size, args.steps,
                                               args.mixed_precision, args.jit_compile))


def cmd_demo(args) -> dict:
    from foodpipe.commands import demo

    return demo.run(args)


def cmd_train(args) -> dict:
    from trainer import train

    config = train_config.from_args(args)
    _s3_settings(args)
    return train.train_and_evaluate(config, progress=not args.quiet)


def cmd_evaluate(args) -> dict:
    from trainer import evaluate

    _s3_settings(args)
    output_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else None
    return evaluate.evaluate(args.model, args.data, args.split, args.batch_size, args.mlflow_uri, output_dir, args.tta)


def cmd_select(args) -> dict:
    from trainer import registry

    result, compared = registry.select(args.experiment, args.mlflow_uri, args.register, args.metric, args.alias)
    print_table(compared)
    return result


def print_table(rows: list[dict]) -> None:
    """``rows`` as aligned columns (floats with 4 decimals)."""
    shown = [{key: f"{value:.4f}" if isinstance(value, float) else str(value) for key, value in row.items()}
             for row in rows]
    widths = {key: max(len(key), *(len(row[key]) for row in shown)) for key in shown[0]}
    print("  ".join(key.ljust(width) for key, width in widths.items()))
    for row in shown:
        print("  ".join(row[key].ljust(width) for key, width in widths.items()))


def cmd_predict(args) -> list:
    from trainer import predict

    _s3_settings(args)
    results = predict.predict(args.model, args.images, args.top_k, args.mlflow_uri)
    for result in results:
        ranked = ", ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"])
        print(f"{result['image']}: {ranked}")
    return results


def add_command(commands, name: str, function, help: str, result: bool = True, **kwargs):
    parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", **kwargs)
    process.add_output_flags(parser, result=result)
    parser.set_defaults(func=function)
    return parser


def add_bench_commands(bench) -> None:
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    p = add_command(benchmarks, "preprocess", cmd_bench_preprocess,
                    "the Beam job (default runner) against a single-process loop, time and peak memory")
    p.add_argument("--input", required=True, help="raw dataset in Food-101 layout (path or s3://)")
    p.add_argument("--runner", help="the job's Beam runner (default: the DirectRunner, one worker per core)")
    p.add_argument("--dask-client-address", help="with --runner DaskRunner: the scheduler, tcp://HOST:PORT")
    p.add_argument("--direct-num-workers", type=int, help="DirectRunner worker processes (default: one per core)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of the job and of the loop, alternated; the figures are each one's median run's")
    p.add_argument("--split-file", metavar="URI", help="the job's and the loop's --split-file (default: fractions)")
    p.add_argument("--group-pattern", metavar="REGEX", help="the job's and the loop's --group-pattern")
    process.add_s3_flag(p)
    p = add_command(benchmarks, "input", cmd_bench_input,
                    "input throughput: decode-only, train and eval pipelines, the seed's Sequence")
    p.add_argument("--data", required=True, help="preprocessed dataset (path or s3://)")
    p.add_argument("--image-size", type=int, default=InputConfig.image_size,
                   help="side of the model's input, in pixels")
    p.add_argument("--batch-size", type=int, default=InputConfig.batch_size, help="images per batch")
    p.add_argument("--images", type=int, default=2000, help="images timed per pipeline after warm-up")
    p.add_argument("--seed-images", type=int, default=256, help="images timed for the (slow) seed baseline")
    process.add_s3_flag(p)
    p = add_command(benchmarks, "train", cmd_bench_train,
                    "training steps fed by the real input against the same batches cached in memory")
    p.add_argument("--data", required=True, help="preprocessed dataset (path or s3://)")
    p.add_argument("--model", default="resnet", metavar="{" + ",".join(train_config.CHOICES["model"]) + "}",
                   help="the model to train")
    p.add_argument("--image-size", type=int, default=InputConfig.image_size,
                   help="side of the model's input, in pixels")
    p.add_argument("--batch-size", type=int, default=InputConfig.batch_size, help="global batch size")
    p.add_argument("--steps", type=int, default=20, help="steps timed per input, after warm-up")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=False,
                   help="float16 compute (GPUs)")
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=False,
                   help="XLA-compile the train step")
    process.add_s3_flag(p)


def build_parser() -> argparse.ArgumentParser:
    parser = process.CommandParser(prog="foodpipe", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"foodpipe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_data_commands(commands)
    add_bench_commands(commands.add_parser("bench", help="benchmarks (see 'foodpipe bench BENCHMARK --help')",
                                           description="Benchmarks: each prints a table, then its JSON line."))
    add_model_commands(commands)
    p = add_command(commands, "demo", cmd_demo, "the whole path on embedded defaults, from nothing")
    p.add_argument("--workdir", default="demo-output", help="where the demo's files go (made anew)")
    p.add_argument("--per-class", type=int, default=120, help="images per class")
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--image-size", type=int, default=64, help="side of the model's input, in pixels")
    return parser


def add_data_commands(commands) -> None:
    """s3-server, synth, upload and preprocess (whose flags the job parses itself)."""
    p = add_command(commands, "s3-server", cmd_s3_server,
                    "an embedded S3-compatible endpoint (moto) for local work and tests", result=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=9000, help="port to listen on; 0 picks a free one (printed)")

    p = add_command(commands, "synth", cmd_synth, "write a sample dataset in Food-101 layout (for plumbing)")
    p.add_argument("out", help="folder to write (Food-101 layout: images/CLASS/ID.jpg, meta/)")
    p.add_argument("--classes", type=int, required=True, help="number of classes (1-101)")
    p.add_argument("--per-class", type=int, required=True, help="images per class")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawing")
    p.add_argument("--corrupt", type=int, default=0, help="also write this many broken files")

    p = add_command(commands, "upload", cmd_upload, "copy a Food-101 folder or food-101.tar.gz to s3://bucket/prefix")
    p.add_argument("src", help="a folder in Food-101 layout, or the official food-101.tar.gz")
    p.add_argument("dest", help="s3://bucket/prefix")
    p.add_argument("--workers", type=int, default=16, help="parallel uploads")
    p.add_argument("--create-bucket", action="store_true", help="create the bucket if it does not exist")
    process.add_s3_flag(p)

    commands.add_parser("preprocess", add_help=False,
                        help="the Beam preprocessing job (see 'foodpipe preprocess --help')")


def add_model_commands(commands) -> None:
    """train, evaluate, select and predict."""
    p = add_command(commands, "train", cmd_train, "train a model and log it to MLflow")
    process.add_config_flag(p)
    train_config.add_arguments(p)
    process.add_s3_flag(p)

    p = add_command(commands, "evaluate", cmd_evaluate,
                    "accuracy, loss, per-class scores and calibration of a model on a split")
    p.add_argument("--model", required=True, help="runs:/RUN/model, models:/NAME/VERSION, models:/NAME@ALIAS, "
                                                  "an MLflow model folder or a .keras file")
    p.add_argument("--data", required=True, help="preprocessed dataset (path or s3://)")
    p.add_argument("--split", default=schema.TEST, choices=schema.SPLITS, help="the split to evaluate")
    p.add_argument("--batch-size", type=int, default=InputConfig.batch_size, help="images per batch")
    p.add_argument("--tta", default="none", metavar="{none,flip}",
                   help="test-time augmentation: flip averages each image's and its mirror image's probabilities")
    process.add_mlflow_flag(p)
    process.add_s3_flag(p)
    p.epilog = "With --json FILE, the error analysis is also written beside FILE, in evaluation/SPLIT/."

    p = add_command(commands, "select", cmd_select,
                    "the best finished run of an experiment by a metric, after a table of the runs compared")
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument("--metric", default="val_accuracy",
                   help="any logged metric; the lowest wins for names ending in loss or ece")
    p.add_argument("--register", metavar="NAME", help="also register its model in the MLflow Model Registry")
    p.add_argument("--alias", help="with --register: the registry alias moved to the new version, so that "
                                   "models:/NAME@ALIAS names it (default champion)")
    process.add_mlflow_flag(p)

    p = add_command(commands, "predict", cmd_predict, "class and probability for each image (local or s3://)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...), local or s3://")
    p.add_argument("--model", required=True, help="a model URI, as for evaluate")
    p.add_argument("--top-k", type=int, default=1, help="classes shown per image")
    process.add_mlflow_flag(p)
    process.add_s3_flag(p)


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line, with ``train --config FILE``'s settings as flags before the others; a
    setting of the file that no flag takes is named with the file."""
    parser = build_parser()
    if argv[:1] != ["train"]:
        return parser.parse_args(argv)
    argv, location, from_file = process.expand_config_file(argv)
    args, unknown = parser.parse_known_args(argv)
    for flag in unknown:
        if flag in from_file:
            raise FoodpipeError(f"config file {location}: {from_file[flag]} is not a setting of train")
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def dispatch(argv: list[str]) -> int:
    logs.setup(verbose="--verbose" in argv)  # before any library is imported: import-time noise is filtered too
    if argv and argv[0] == "preprocess":  # Beam's own flags pass through; the job parses its flags itself
        from beam_pipelines import preprocess

        return preprocess.main(argv[1:])
    args = parse(argv)
    result = args.func(args)
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
