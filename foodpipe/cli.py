"""The ``foodpipe`` command. Each subcommand parses its flags into a typed config and calls one
function; a ``FoodpipeError`` becomes a one-line message and exit code 2, never a traceback (only
an unexpected exception, a bug, prints one, redacted, and exits 1)."""

import argparse
import json
import os
import sys
import traceback

from foodpipe import logs, schema
from foodpipe.errors import FoodpipeError
from foodpipe.process import exit_now
from trainer import config as train_config

EXIT_ERROR = 2


def _s3_settings(args):
    from foodpipe import s3

    settings = s3.S3Settings.from_env(getattr(args, "s3_endpoint", None))
    settings.apply_to_environment()
    return settings


def cmd_s3_server(args) -> int:
    from foodpipe import s3_server

    return s3_server.serve(args.host, args.port)


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from foodpipe import synth

    config = synth.SynthConfig(args.out, args.classes, args.per_class, args.seed, args.corrupt)
    with tqdm(total=config.classes * config.per_class, desc="synth", unit="img", disable=args.quiet) as bar:
        counts = synth.generate(config, progress=bar.update)
    print(f"wrote {counts['images']} images in {counts['classes']} classes (+{counts['corrupt']} corrupt) to {args.out}")
    return 0


def cmd_upload(args) -> int:
    from foodpipe import upload

    stats = upload.upload(args.src, args.dest, _s3_settings(args), workers=args.workers,
                          create_bucket=args.create_bucket, show_progress=not args.quiet)
    print(f"uploaded {stats['uploaded']} objects ({stats['bytes'] / 1e6:.1f} MB), "
          f"skipped {stats['skipped']} already present, to {args.dest}")
    return 0


def cmd_preprocess(argv) -> int:
    from beam_pipelines import preprocess

    return preprocess.main(argv)


def cmd_bench(args) -> int:
    from foodpipe import bench

    return bench.main(args)


def cmd_demo(args) -> int:
    from foodpipe import demo

    return demo.run(args)


def print_result(result) -> None:
    """The command's result as the last line of stdout, for scripts."""
    print(json.dumps(result), flush=True)


def cmd_train(args) -> int:
    from trainer import train

    config = train_config.from_args(args)
    _s3_settings(args)
    print_result(train.train_and_evaluate(config))
    return 0


def cmd_evaluate(args) -> int:
    from trainer import evaluate

    _s3_settings(args)
    output_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else None
    result = evaluate.evaluate(args.model, args.data, args.split, args.batch_size, args.mlflow_uri, output_dir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print_result(result)
    return 0


def cmd_select(args) -> int:
    from trainer import evaluate

    result, compared = evaluate.select(args.experiment, args.mlflow_uri, args.register, args.metric, args.alias)
    print_table(compared)
    print_result(result)
    return 0


def print_table(rows: list[dict]) -> None:
    """``rows`` as aligned columns (floats with 4 decimals)."""
    shown = [{key: f"{value:.4f}" if isinstance(value, float) else str(value) for key, value in row.items()}
             for row in rows]
    widths = {key: max(len(key), *(len(row[key]) for row in shown)) for key in shown[0]}
    print("  ".join(key.ljust(width) for key, width in widths.items()))
    for row in shown:
        print("  ".join(row[key].ljust(width) for key, width in widths.items()))


def cmd_predict(args) -> int:
    from trainer import evaluate

    _s3_settings(args)
    results = evaluate.predict(args.model, args.images, args.top_k, args.mlflow_uri)
    for result in results:
        ranked = ", ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"])
        print(f"{result['image']}: {ranked}")
    if args.json:
        print_result(results)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foodpipe", description="Food-101 classification on TensorFlow's data stack.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("s3-server", help="embedded S3-compatible endpoint (moto) for local work and tests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000, help="0 picks a free port (printed)")
    p.set_defaults(func=cmd_s3_server)

    p = commands.add_parser("synth", help="write a sample dataset in Food-101 layout")
    p.add_argument("out")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--per-class", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corrupt", type=int, default=0, help="add this many broken files")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = commands.add_parser("upload", help="copy a Food-101 folder or food-101.tar.gz to s3://bucket/prefix")
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--create-bucket", action="store_true", help="create the bucket if it does not exist")
    p.add_argument("--s3-endpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_upload)

    commands.add_parser("preprocess", add_help=False,
                        help="the Beam preprocessing job (see 'foodpipe preprocess --help')")

    p = commands.add_parser("bench", help="benchmarks")
    p.add_argument("what", choices=["preprocess", "input", "train"])
    p.add_argument("--input", help="raw dataset for 'bench preprocess'")
    p.add_argument("--data", help="preprocessed dataset for 'bench input'")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=2000, help="images timed per pipeline after warm-up")
    p.add_argument("--seed-images", type=int, default=256, help="images timed for the (slow) seed baseline")
    p.add_argument("--model", default="resnet", help="'bench train': the model to train")
    p.add_argument("--steps", type=int, default=20, help="'bench train': steps timed per input, after warm-up")
    p.add_argument("--mixed-precision", action="store_true", help="'bench train': float16 compute (GPUs)")
    p.add_argument("--jit-compile", action="store_true", help="'bench train': XLA-compile the train step")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser("train", help="train a model, log it to MLflow; the last line is JSON")
    train_config.add_arguments(p)
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("evaluate", help="accuracy and loss of a model on a split; the last line is JSON")
    p.add_argument("--model", required=True, help="runs:/RUN/model, models:/NAME/VERSION, models:/NAME@ALIAS, "
                                                  "an MLflow model folder or a .keras file")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default=schema.TEST, choices=schema.SPLITS)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", metavar="FILE", help="also write the result to FILE, and the error analysis beside "
                                                  "it in evaluation/SPLIT/")
    p.add_argument("--mlflow-uri")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("select", help="the best finished run of an experiment by a metric (JSON), after a "
                                           "table of the runs compared")
    p.add_argument("--experiment", required=True)
    p.add_argument("--metric", default="val_accuracy",
                   help="any logged metric (default val_accuracy); the lowest wins for names ending in loss or ece")
    p.add_argument("--register", metavar="NAME", help="also register its model in the MLflow Model Registry")
    p.add_argument("--alias", help="with --register: the registry alias moved to the new version, so that "
                                   "models:/NAME@ALIAS names it (default champion)")
    p.add_argument("--mlflow-uri")
    p.set_defaults(func=cmd_select)

    p = commands.add_parser("predict", help="class and probability for each image (local or s3://)")
    p.add_argument("--model", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    p.add_argument("--mlflow-uri")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("demo", help="the whole path on embedded defaults, from nothing")
    p.add_argument("--workdir", default="demo-output")
    p.add_argument("--per-class", type=int, default=120, help="images per class")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--image-size", type=int, default=64)
    p.set_defaults(func=cmd_demo)
    return parser


def run_command(argv=None) -> int:
    """Run one command in this process and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logs.setup()
    try:
        if argv and argv[0] == "preprocess":  # Beam's own flags pass through untouched
            return cmd_preprocess(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except FoodpipeError as exc:
        print(f"foodpipe: error: {logs.redact(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("foodpipe: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: the traceback, then exit 1 deliberately (see exit_now)
        print(logs.redact(traceback.format_exc()), file=sys.stderr, end="")
        return 1


def main() -> None:
    exit_now(run_command())
