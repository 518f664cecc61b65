"""``evaluate``: a trained model's scores on a split, in one pass, and its error analysis (per-class
scores, confusion matrix, the most confident mistakes, calibration), logged to the model's run.
Models are named and loaded as ``trainer.loading`` says."""

import os
import time

import numpy as np
import tensorflow as tf

from foodpipe import datasets, schema, scratch
from foodpipe.errors import FoodpipeError
from tfdata import pipeline
from tfdata.config import InputConfig
from trainer import metrics, report, serving, tracking
from trainer.config import TTA
from trainer.loading import MLFLOW_SCHEMES, load_model, run_of

GALLERY_SIZE = 24


class Mistakes:
    """The most confident mistakes seen so far (at most ``size``, with the images the model saw),
    kept while the split streams by, so evaluation stays one pass without holding every image."""

    def __init__(self, size: int = GALLERY_SIZE):
        self.size = size
        self.images = self.labels = self.probabilities = self.ids = None  # shaped by the first batch

    def add(self, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, ids: np.ndarray) -> None:
        if self.labels is None:
            self.images, self.labels, self.probabilities, self.ids = images[:0], labels[:0], probabilities[:0], ids[:0]
        wrong = probabilities.argmax(axis=1) != labels
        if not wrong.any():
            return
        candidates = tuple(np.concatenate(pair) for pair in zip(
            (self.images, self.labels, self.probabilities, self.ids),
            (images[wrong], labels[wrong], probabilities[wrong], ids[wrong])))
        keep = np.argsort(-candidates[2].max(axis=1), kind="stable")[:self.size]
        self.images, self.labels, self.probabilities, self.ids = (array[keep] for array in candidates)


def classify(classifier, images, tta: str = "none") -> np.ndarray:
    """Class probabilities of a batch; with ``tta`` ``flip`` (test-time augmentation), the mean of
    the image's and its mirror image's."""
    probabilities = np.asarray(classifier(images, training=False))
    if tta == "flip":
        probabilities = (probabilities + np.asarray(classifier(tf.reverse(images, axis=[2]), training=False))) / 2
    return probabilities


def predict_with_ids(classifier, dataset, mistakes: Mistakes, tta: str = "none"):
    """``(labels, probabilities, ids)`` over a finite ``(images, labels, ids)`` dataset, one pass."""
    labels, probabilities, ids = [], [], []
    for images, batch_labels, batch_ids in dataset:
        batch_probabilities = classify(classifier, images, tta)
        mistakes.add(images.numpy(), batch_labels.numpy(), batch_probabilities, batch_ids.numpy())
        labels.append(batch_labels.numpy())
        probabilities.append(batch_probabilities)
        ids.append(batch_ids.numpy())
    return np.concatenate(labels), np.concatenate(probabilities), np.concatenate(ids)


def write_error_analysis(directory: str, class_names: list[str], split: str, labels: np.ndarray,
                         probabilities: np.ndarray, ids: np.ndarray, mistakes: Mistakes) -> list[str]:
    """``per_class.csv``, ``confusion_matrix.png``, ``mistakes.png``, ``mistakes.csv`` and
    ``calibration.png`` into ``directory``; returns their paths."""
    import csv

    os.makedirs(directory, exist_ok=True)
    predictions = probabilities.argmax(axis=1)
    matrix = metrics.confusion_matrix(labels, predictions, len(class_names))
    classes = metrics.per_class(matrix)
    paths = {name: os.path.join(directory, name) for name in
             ("per_class.csv", "confusion_matrix.png", "mistakes.png", "mistakes.csv", "calibration.png")}
    with open(paths["per_class.csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "support", "precision", "recall", "f1"])
        for index, name in enumerate(class_names):
            writer.writerow([name, int(classes["support"][index])] +
                            [f"{classes[key][index]:.6f}" for key in ("precision", "recall", "f1")])
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-probabilities[wrong].max(axis=1), kind="stable")]
    with open(paths["mistakes.csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "true_class", "predicted_class", "probability", "true_class_probability"])
        for index in wrong:
            writer.writerow([ids[index].decode(), class_names[labels[index]], class_names[predictions[index]],
                             f"{probabilities[index].max():.6f}", f"{probabilities[index, labels[index]]:.6f}"])
    report.plot_confusion_matrix(matrix, class_names, paths["confusion_matrix.png"], title=f"{split} confusion matrix")
    report.plot_mistakes(mistakes.images, [class_names[i] for i in mistakes.labels],
                         [class_names[i] for i in mistakes.probabilities.argmax(axis=1)],
                         mistakes.probabilities.max(axis=1), paths["mistakes.png"])
    report.plot_calibration(metrics.calibration(labels, probabilities), paths["calibration.png"])
    return list(paths.values())


def class_difference(data: list[str], model: list[str]) -> str:
    """What differs between a dataset's classes and a model's, in a few words."""
    only_data, only_model = [c for c in data if c not in model], [c for c in model if c not in data]
    if not (only_data or only_model):
        return f"the same classes in another order (the data's: {', '.join(data)})"
    parts = [f"only in the data: {', '.join(only_data)}" if only_data else "",
             f"only in the model: {', '.join(only_model)}" if only_model else ""]
    return "; ".join(part for part in parts if part)


def log_scores(client, run_id: str, model_uri: str, info, split: str, name: str, result: dict) -> None:
    """The scores as ``NAME_*`` metrics of the model's run, linked to the dataset they were computed
    on (the split logged as a dataset input of the run, context ``evaluation``) and to the logged model."""
    from mlflow.entities import Metric

    evaluated = tracking.dataset_input(info, "evaluation", split)
    client.log_inputs(run_id, datasets=[evaluated])
    dataset, model_id = evaluated.dataset, tracking.logged_model_id(client, model_uri, run_id)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"{name}_{key}", float(value), now, 0, model_id=model_id,
                                             dataset_name=dataset.name, dataset_digest=dataset.digest, run_id=run_id)
                                      for key, value in result.items() if key not in ("top_k", "tta")])


def evaluate(model_uri: str, data_uri: str, split: str = schema.TEST, batch_size: int = InputConfig.batch_size,
             tracking_uri: str | None = None, output_dir: str | None = None, tta: str = TTA[0]) -> dict:
    """Accuracy, loss, macro/weighted precision/recall/F1, top-k accuracy and ECE of ``split``, in one
    pass; the error analysis (``write_error_analysis``) is logged to the model's run under
    ``evaluation/SPLIT/`` and, with ``output_dir``, written to ``output_dir/evaluation/SPLIT/``.
    With ``tta`` ``flip`` the scores are of ``classify``'s flip-averaged probabilities, logged as
    ``SPLIT_tta_flip_*`` metrics and under ``evaluation/SPLIT_tta_flip/``."""
    if tta not in TTA:
        raise FoodpipeError(f"unknown tta {tta!r}: choose one of {', '.join(TTA)}")
    reads_runs = model_uri.startswith(MLFLOW_SCHEMES)
    client = tracking.connect(tracking.chosen_uri(tracking_uri), create=False) if reads_runs else None
    model = load_model(model_uri, tracking_uri, client)
    preprocess, classifier = serving.parts(model)
    info = datasets.load(data_uri)
    if info.classes != preprocess.class_names:
        raise FoodpipeError(f"the classes of {data_uri} differ from the model's: "
                            f"{class_difference(info.classes, preprocess.class_names)}")
    config = InputConfig(image_size=preprocess.image_size, batch_size=batch_size, framing=preprocess.framing,
                         eval_crop_fraction=preprocess.crop_fraction)
    dataset = pipeline.eval_dataset(info, split, config, with_ids=True)
    mistakes = Mistakes()
    try:
        labels, probabilities, ids = predict_with_ids(classifier, dataset, mistakes, tta)
    except tf.errors.DataLossError:
        raise pipeline.explain_data_loss(info, split) from None
    result = metrics.summary(labels, probabilities)
    if tta != "none":
        result["tta"] = tta
    run_id = run_of(model_uri, client) if client is not None else None
    if not (run_id or output_dir):
        return result  # the error analysis would go nowhere
    name = split if tta == "none" else f"{split}_tta_{tta}"
    folder = f"evaluation/{name}"
    local = os.path.join(output_dir, folder) if output_dir else scratch.make("evaluation")
    try:
        files = write_error_analysis(local, info.classes, split, labels, probabilities, ids, mistakes)
        if run_id:
            log_scores(client, run_id, model_uri, info, split, name, result)
            for path in files:
                client.log_artifact(run_id, path, folder)
            result["run_id"] = run_id
    finally:
        if not output_dir:
            scratch.remove(local)
    return result
