"""Evaluation metrics and error-analysis files, against references worked out by hand."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from trainer import evaluate, metrics, report

# Six predictions over three classes; confidences 0.7, 0.6, 0.8, 0.85, 0.9, 0.5.
LABELS = np.array([0, 0, 1, 1, 2, 2])
PROBABILITIES = np.array([
    [0.70, 0.20, 0.10],  # right
    [0.30, 0.60, 0.10],  # wrong: 1 for 0
    [0.10, 0.80, 0.10],  # right
    [0.10, 0.85, 0.05],  # right
    [0.05, 0.05, 0.90],  # right
    [0.50, 0.30, 0.20],  # wrong: 0 for 2, and 2 is not in its top 2
])


def test_confusion_and_per_class_scores_by_hand():
    matrix = metrics.confusion_matrix(LABELS, PROBABILITIES.argmax(axis=1), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    classes = metrics.per_class(matrix)
    np.testing.assert_allclose(classes["precision"], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(classes["recall"], [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(classes["f1"], [1 / 2, 4 / 5, 2 / 3])
    averages = metrics.averages(classes)
    assert averages["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert averages["weighted_f1"] == pytest.approx(averages["macro_f1"])  # equal supports


def test_unequal_supports_weight_the_average_and_empty_classes_score_zero():
    matrix = np.array([[3, 1, 0], [0, 0, 0], [0, 1, 0]])  # class 1 never true, class 2 never right
    classes = metrics.per_class(matrix)
    np.testing.assert_allclose(classes["precision"], [1, 0, 0])
    np.testing.assert_allclose(classes["recall"], [3 / 4, 0, 0])
    averages = metrics.averages(classes)
    assert averages["weighted_recall"] == pytest.approx(4 / 5 * 3 / 4)
    assert averages["macro_recall"] == pytest.approx(3 / 4 / 3)


def test_top_k_and_expected_calibration_error_by_hand():
    assert metrics.top_k(3) == 2 and metrics.top_k(101) == 5 and metrics.top_k(2) == 1
    assert metrics.top_k_accuracy(LABELS, PROBABILITIES, 1) == pytest.approx(4 / 6)
    assert metrics.top_k_accuracy(LABELS, PROBABILITIES, 2) == pytest.approx(5 / 6)
    bins = metrics.calibration(LABELS, PROBABILITIES)
    # 15 bins of width 1/15: 0.5 -> bin 7, 0.6 -> 9, 0.7 -> 10, 0.8 and 0.85 -> 12, 0.9 -> 13.
    assert {i: int(n) for i, n in enumerate(bins["counts"]) if n} == {7: 1, 9: 1, 10: 1, 12: 2, 13: 1}
    assert bins["confidence"][12] == pytest.approx(0.825) and bins["accuracy"][9] == 0
    assert bins["ece"] == pytest.approx((0.5 + 0.6 + 0.3 + 2 * 0.175 + 0.1) / 6)
    perfect = metrics.calibration(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert perfect["ece"] == 0 and perfect["counts"][14] == 2  # confidence 1.0 is in the last bin


def test_summary_has_every_reported_figure():
    summary = metrics.summary(LABELS, PROBABILITIES)
    assert summary["accuracy"] == pytest.approx(4 / 6) and summary["count"] == 6 and summary["top_k"] == 2
    expected_loss = -np.mean(np.log(PROBABILITIES[np.arange(6), LABELS]))
    assert summary["loss"] == pytest.approx(expected_loss)
    assert summary["top_k_accuracy"] == pytest.approx(5 / 6) and summary["ece"] == pytest.approx(1.85 / 6)


def test_the_gallery_keeps_the_most_confident_mistakes_across_batches():
    keeper = evaluate.Mistakes(size=2)
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1).repeat(3, axis=3)
    ids = np.array([f"id{i}".encode() for i in range(6)])
    keeper.add(images[:3], LABELS[:3], PROBABILITIES[:3], ids[:3])  # one mistake: id1 (0.6)
    keeper.add(images[3:], LABELS[3:], PROBABILITIES[3:], ids[3:])  # one more: id5 (0.5)
    assert keeper.ids.tolist() == [b"id1", b"id5"] and keeper.images[:, 0, 0, 0].tolist() == [1, 5]
    keeper.add(images[:1], np.array([2]), np.array([[0.95, 0.03, 0.02]]), np.array([b"sure"]))
    assert keeper.ids.tolist() == [b"sure", b"id1"]  # the most confident first, at most 2


def test_error_analysis_files(tmp_path):
    names = [f"class_{i}" for i in range(3)]
    ids = np.array([f"id{i}".encode() for i in range(6)])
    keeper = evaluate.Mistakes()
    images = np.full((6, 32, 32, 3), 128, np.uint8)
    keeper.add(images, LABELS, PROBABILITIES, ids)
    paths = evaluate.write_error_analysis(str(tmp_path), names, "test", LABELS, PROBABILITIES, ids, keeper)
    assert sorted(os.path.basename(p) for p in paths) == ["calibration.png", "confusion_matrix.png", "mistakes.csv",
                                                          "mistakes.png", "per_class.csv"]
    rows = list(csv.DictReader(open(tmp_path / "per_class.csv")))
    assert [r["class"] for r in rows] == names and [r["support"] for r in rows] == ["2", "2", "2"]
    assert float(rows[1]["f1"]) == pytest.approx(0.8)
    mistakes = list(csv.DictReader(open(tmp_path / "mistakes.csv")))
    assert [(r["id"], r["true_class"], r["predicted_class"]) for r in mistakes] == [
        ("id1", "class_0", "class_1"), ("id5", "class_2", "class_0")]  # most confident first
    assert float(mistakes[1]["true_class_probability"]) == pytest.approx(0.2)
    gallery = Image.open(tmp_path / "mistakes.png")
    assert gallery.size == (round(2.4 * 6 * 100), round(2.6 * 100))  # one row of six places
    assert Image.open(tmp_path / "calibration.png").size == (500, 600)


@pytest.mark.parametrize("classes,side", [(10, 4.0), (101, 18.16)])
def test_confusion_matrix_plot_grows_with_the_classes(tmp_path, classes, side):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, 2000)
    matrix = metrics.confusion_matrix(labels, np.where(rng.random(2000) < 0.7, labels, rng.integers(0, classes, 2000)),
                                      classes)
    path = report.plot_confusion_matrix(matrix, [f"name_{i}" for i in range(classes)], str(tmp_path / "m.png"),
                                        title="test confusion matrix")
    assert Image.open(path).size == (round((2 * side + 1) * 100), round(side * 100))
