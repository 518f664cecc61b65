"""The default recipe on real images (scikit-learn's handwritten digits, in frames of every aspect
ratio), judged against a classic baseline on the same split. Synth data is for plumbing only."""

import json

import pytest

from beam_pipelines import preprocess
from tests import realdata
from tests.conftest import foodpipe


@pytest.mark.slow
def test_default_recipe_on_real_digits_is_far_above_chance_and_near_an_svm(tmp_path):
    raw, data = str(tmp_path / "raw"), str(tmp_path / "digits")
    realdata.write_digits(raw)
    preprocess.run(["--input", raw, "--output", data])
    mlflow = f"sqlite:///{tmp_path}/mlflow.db"
    # The command, with the defaults (digits change meaning when mirrored: --no-flip).
    trained = foodpipe("train", "--data", data, "--model", "resnet", "--image-size", "64", "--epochs", "15",
                       "--batch-size", "64", "--no-flip", "--mlflow-uri", mlflow)
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout.strip().splitlines()[-1])
    evaluated = foodpipe("evaluate", "--model", result["model_uri"], "--data", data, "--split", "test",
                         "--mlflow-uri", mlflow)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    test_accuracy = json.loads(evaluated.stdout.strip().splitlines()[-1])["accuracy"]
    baseline = realdata.svm_baseline(data)
    print(f"digits: recipe val {result['val_accuracy']:.3f} test {test_accuracy:.3f}; "
          f"RBF SVM val {baseline['val_accuracy']:.3f} test {baseline['test_accuracy']:.3f}")
    # Runs differ (random crops and augmentations): measured test 0.944-0.989, val 0.975-0.99. The
    # test split holds 90 images (one error is 1.1 points), so the comparison with the SVM is made
    # on the 360 val images, where 5 points are 18 errors.
    assert test_accuracy >= 0.9  # chance is 0.10
    assert result["val_accuracy"] >= baseline["val_accuracy"] - 0.05
