"""``foodpipe demo`` end to end in a reduced form (fewer and smaller images, fewer epochs), twice in one folder."""

import json
import os
import socket
from urllib.parse import urlparse

import pytest

from foodpipe import classes
from tests.conftest import foodpipe

pytestmark = pytest.mark.slow


CANARY = "fp-canary-Zq7xW2vK9sLmT4"  # a secret key nobody could mistake for anything else


def canary_env():
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "MLFLOW_TRACKING_URI")}
    return {**env, "AWS_SECRET_ACCESS_KEY": CANARY}


SHORT = ("--per-class", "20", "--epochs", "1", "--image-size", "32")  # plumbing only: it learns little
LEARNS = ("--per-class", "40", "--epochs", "6", "--image-size", "48")  # test accuracy 0.9, 0.9, 0.9 in 3 runs


def run_demo(workdir, printed: list, size=SHORT):
    result = foodpipe("demo", "--workdir", workdir, *size, env=canary_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    printed += [result.stdout, result.stderr]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def assert_secret_nowhere(printed: list[str], root: str):
    """Not in any output or log line, nor in any file: the MLflow database (params, tags, metrics),
    its artifacts, metadata.json, the manifest, rejected.jsonl, the shards."""
    for text in printed:
        assert CANARY not in text
    needle = CANARY.encode()
    scanned = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                assert needle not in f.read(), os.path.join(folder, name)
            scanned += 1
    assert scanned > 20


def test_demo_goes_from_nothing_to_a_prediction_and_runs_twice_leaking_no_secret(tmp_path):
    import mlflow

    workdir, printed = str(tmp_path / "demo"), []
    first, stdout = run_demo(workdir, printed, LEARNS)
    # 75/20/5 of each class's listed files (40 images, and the 3 broken files among them), less the
    # broken ones where they fell: the split is decided from the listing, before any file is read.
    assert first["splits"] == {"train": 301, "val": 80, "test": 19}
    # Synth's classes are learnable on purpose: the demo's model must learn them (chance is 0.1).
    # Quality is judged on real images, in test_quality.py.
    assert first["test_accuracy"] >= 0.6, first
    # The figure the demo reports is its model's accuracy on the test split: evaluate agrees, run
    # apart on the local copy.
    evaluated = foodpipe("evaluate", "--model", f"runs:/{first['run_id']}/model", "--data", first["local_copy"],
                         "--mlflow-uri", first["mlflow_ui"].split()[-1], env=canary_env())
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert scores["count"] == first["splits"]["test"] and scores["accuracy"] == pytest.approx(first["test_accuracy"])
    printed += [evaluated.stdout, evaluated.stderr]
    assert first["prediction"]["class"] in classes.builtin("seed10")
    assert first["prediction"]["image"].startswith("s3://")
    for shown in ("embedded S3 server", "running the Beam job", "exploratory report", "training", "evaluating",
                  "best run", "prediction for", "mlflow ui --backend-store-uri"):
        assert shown in stdout, shown
    with open(os.path.join(first["local_copy"], "metadata.json")) as f:
        assert json.load(f)["classes"] == sorted(classes.builtin("seed10"))
    endpoint = urlparse(first["endpoint"])
    with pytest.raises(OSError):  # the embedded server was stopped
        socket.create_connection((endpoint.hostname, endpoint.port), timeout=2).close()

    second, _ = run_demo(workdir, printed)  # the same folder again: data made anew, MLflow runs kept
    client = mlflow.MlflowClient(first["mlflow_ui"].split()[-1])
    experiment = client.get_experiment_by_name("foodpipe-demo").experiment_id
    runs = client.search_runs([experiment])
    trained = {run.info.run_id for run in runs if "val_accuracy" in run.data.metrics}
    assert trained == {first["run_id"], second["run_id"]}
    assert second["selected_run_id"] in trained
    reports = [run for run in runs if run.data.tags.get("kind") == "dataset-report"]
    assert len(reports) == 2
    names = {a.path for a in client.list_artifacts(reports[0].info.run_id, "dataset_report")}
    assert names == {f"dataset_report/{n}" for n in ("report.json", "class_counts.png", "image_sizes.png",
                                                      "channel_stats.png")}
    assert client.get_run(second["run_id"]).data.metrics["test_accuracy"] == pytest.approx(second["test_accuracy"])

    # Error messages too: a missing bucket, and a tracking URI that carries a password.
    env = {**canary_env(), "AWS_ENDPOINT_URL": first["endpoint"]}
    failed = [foodpipe("preprocess", "--input", "s3://no-such-bucket/raw", "--output", str(tmp_path / "x"), env=env),
              foodpipe("train", "--data", first["local_copy"], "--mlflow-uri", f"http://user:{CANARY}@127.0.0.1:9",
                       env=env)]
    assert [result.returncode for result in failed] == [2, 2], [result.stderr for result in failed]
    printed += [text for result in failed for text in (result.stdout, result.stderr)]
    assert_secret_nowhere(printed, workdir)
