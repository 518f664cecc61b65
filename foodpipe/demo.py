"""``foodpipe demo``: the data path from nothing, on embedded defaults.

Starts the embedded S3 server (unless ``AWS_ENDPOINT_URL`` points at one), makes a Food-101-layout
sample with the seed's ten classes, uploads it, runs the Beam job S3 -> S3, and copies the
dataset to ``WORKDIR/food10`` so it can be looked at after the (in-memory) server stops.
"""

import contextlib
import os
import shutil
import subprocess
import sys

from foodpipe import s3, synth, upload, uri
from foodpipe.errors import FoodpipeError

BUCKET = "foodpipe-demo"


@contextlib.contextmanager
def s3_endpoint():
    """The configured endpoint, or an embedded server started for the demo and stopped after."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        yield os.environ["AWS_ENDPOINT_URL"]
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", s3.EMBEDDED_ACCESS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", s3.EMBEDDED_SECRET_KEY)
    server = subprocess.Popen([sys.executable, "-m", "foodpipe", "s3-server", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("S3 endpoint: "):
            raise FoodpipeError("the embedded S3 server did not start")
        endpoint = line.split(": ", 1)[1].strip()
        step(f"embedded S3 server at {endpoint}")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=20)


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def download_prefix(settings: s3.S3Settings, source: str, destination: str) -> None:
    bucket, prefix = uri.split_s3(source)
    client = settings.boto3_client()
    os.makedirs(destination, exist_ok=True)
    for key in upload.existing_objects(client, bucket, prefix + "/"):
        client.download_file(bucket, key, os.path.join(destination, key[len(prefix) + 1:]))


def run(args) -> int:
    from beam_pipelines import preprocess

    workdir = os.path.abspath(args.workdir)
    raw_dir, local_copy = os.path.join(workdir, "raw"), os.path.join(workdir, "food10")
    shutil.rmtree(workdir, ignore_errors=True)
    with s3_endpoint() as endpoint:
        settings = s3.S3Settings(endpoint_url=endpoint)
        settings.apply_to_environment()
        step(f"synthesizing 10 classes x {args.per_class} Food-101-sized images in {raw_dir}")
        synth.generate(synth.SynthConfig(raw_dir, classes=10, per_class=args.per_class, seed=0, corrupt=3))
        raw_uri, dataset_uri = f"s3://{BUCKET}/raw/food-101", f"s3://{BUCKET}/datasets/food10"
        step(f"uploading to {raw_uri}")
        upload.upload(raw_dir, raw_uri, settings, create_bucket=True, show_progress=False)
        step(f"running the Beam job {raw_uri} -> {dataset_uri}")
        classes_file = os.path.join(os.path.dirname(__file__), "classes", "seed10.txt")
        metadata = preprocess.run(["--input", raw_uri, "--output", dataset_uri, "--classes-file", classes_file,
                                   "--shard-size-mb", "4"])
        download_prefix(settings, dataset_uri, local_copy)
    counts = ", ".join(f"{name} {info['count']}" for name, info in metadata["splits"].items())
    step(f"dataset: {counts}; {metadata['rejected']} rejected; mean {[round(m, 1) for m in metadata['stats']['mean']]}"
         f" std {[round(s, 1) for s in metadata['stats']['std']]}")
    step(f"copied to {local_copy} (metadata.json, manifest.parquet, rejected.jsonl, shards)")
    return 0
