"""``foodpipe demo``: the whole path on embedded defaults, from nothing to a prediction.

Starts the embedded S3 server (unless ``AWS_ENDPOINT_URL`` points at one), makes a Food-101-layout
sample with the ten classes of classes/seed10.txt, uploads it, runs the Beam job S3 -> S3, logs an exploratory
report of the dataset to MLflow, trains the from-scratch model reading ``s3://``, evaluates it on
the test split, selects the best run and predicts one image. MLflow runs go to a local store under
``WORKDIR/mlruns``, which is kept between demos; everything else in ``WORKDIR`` is made anew.
"""

import contextlib
import os
import shutil
import subprocess
import sys

from foodpipe import classes, datasets, s3, schema, storage
from foodpipe.commands.configs import DemoConfig
from foodpipe.config import from_flat
from foodpipe.tools import explore, synth, upload
from foodpipe.errors import FoodpipeError

BUCKET = "foodpipe-demo"
EXPERIMENT = "foodpipe-demo"


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


def log_dataset_report(dataset_uri: str, metadata: dict, tracking_uri: str) -> dict:
    from trainer import tracking

    writer = tracking.MlflowWriter(tracking_uri, EXPERIMENT, run_name="dataset-report")
    summary, files = explore.write_report(dataset_uri, metadata, writer.scratch_dir())  # removed by finish
    writer.start({"data": dataset_uri, "images": summary["images"], "rejected": summary["rejected"]},
                 {"kind": "dataset-report"})
    for path in files:
        writer.log_artifact(path, "dataset_report")
    writer.finish()
    return summary


def make_dataset(raw_dir: str, per_class: int, settings: s3.S3Settings, tracking_uri: str) -> tuple[str, dict]:
    """Synth images, uploaded to the embedded S3, through the Beam job, with the dataset report
    logged to MLflow: ``(dataset URI, the job's metadata)``."""
    from beam_pipelines import preprocess

    step(f"synthesizing 10 classes x {per_class} Food-101-sized images in {raw_dir}")
    synth.generate(synth.SynthConfig(raw_dir, classes=10, per_class=per_class, seed=0, corrupt=3))
    raw_uri, dataset_uri = f"s3://{BUCKET}/raw/food-101", f"s3://{BUCKET}/datasets/food10"
    step(f"uploading to {raw_uri}")
    upload.upload(raw_dir, raw_uri, settings, create_bucket=True, show_progress=False)
    step(f"running the Beam job {raw_uri} -> {dataset_uri}")
    classes_file = str(classes.BUILTIN_DIR / "seed10.txt")
    metadata = preprocess.run(["--input", raw_uri, "--output", dataset_uri, "--classes-file", classes_file,
                               "--shard-size-mb", "4"])
    counts = ", ".join(f"{name} {info['count']}" for name, info in metadata["splits"].items())
    mean, std = ([round(value, 1) for value in metadata["stats"][key]] for key in ("mean", "std"))
    step(f"dataset: {counts}; {metadata['rejected']} rejected; mean {mean} std {std}")
    step("logging the exploratory report (class counts, image sizes, mean/std) to MLflow")
    log_dataset_report(dataset_uri, metadata, tracking_uri)
    return dataset_uri, metadata


def run(demo: DemoConfig, quiet: bool = False) -> dict:
    from trainer import evaluate, predict, registry, train, tracking
    from trainer.config import TrainConfig

    workdir = storage.make_local_folder(os.path.abspath(demo.workdir), "the demo's --workdir")
    raw_dir, local_copy = os.path.join(workdir, "raw"), os.path.join(workdir, "food10")
    store = os.path.join(workdir, "mlruns")
    for made in (raw_dir, local_copy):
        shutil.rmtree(made, ignore_errors=True)
    tracking_uri = tracking.local_store_uri(store)
    with s3_endpoint() as endpoint:
        settings = s3.S3Settings(endpoint_url=endpoint)
        settings.apply_to_environment()
        dataset_uri, metadata = make_dataset(raw_dir, demo.per_class, settings, tracking_uri)

        step(f"training the from-scratch model for {demo.epochs} epoch(s) at {demo.image_size} px "
             f"from {dataset_uri}")
        config = from_flat(TrainConfig, dict(
            data=dataset_uri, model="resnet", image_size=demo.image_size, epochs=demo.epochs, batch_size=32,
            num_blocks=3, mlflow_uri=tracking_uri, experiment=EXPERIMENT))
        trained = train.train_and_evaluate(config, progress=not quiet)
        step(f"evaluating {trained['model_uri']} on the test split")
        scores = evaluate.evaluate(trained["model_uri"], dataset_uri, schema.TEST, tracking_uri=tracking_uri)
        step(f"test accuracy {scores['accuracy']:.3f} on {scores['count']} images")
        best = registry.select(EXPERIMENT, tracking_uri)[0]
        step(f"best run of experiment {EXPERIMENT!r}: {best['run_id']} (val_accuracy {best['val_accuracy']:.3f})")
        test_image = datasets.read_manifest(dataset_uri, split=schema.TEST)[0]
        image = test_image["uri"]
        prediction = predict.predict(best["model_uri"], [image], tracking_uri=tracking_uri)[0]["predictions"][0]
        step(f"prediction for {image} (true class {test_image['class_name']}): {prediction['class']} "
             f"({prediction['probability']:.3f})")
        storage.copy_tree(dataset_uri, local_copy, settings)

    ui = f"mlflow ui --backend-store-uri {tracking_uri}"
    step(f"dataset copied to {local_copy}; MLflow runs in {store}; look at them with: {ui}")
    summary = {"endpoint": endpoint, "dataset": dataset_uri, "local_copy": local_copy,
               "splits": {name: info["count"] for name, info in metadata["splits"].items()},
               "run_id": trained["run_id"], "test_accuracy": scores["accuracy"], "selected_run_id": best["run_id"],
               "prediction": {"image": image, **prediction}, "mlflow_ui": ui}
    return summary
