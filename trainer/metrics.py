"""Classification metrics from true labels and predicted probabilities, in numpy (no scikit-learn
at run time; the loss is Keras' own): the confusion matrix, per-class precision/recall/F1 with their macro and weighted
averages, top-k accuracy and the expected calibration error."""

import numpy as np

CALIBRATION_BINS = 15


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float:
    """The share of correct predictions: the diagonal of the confusion matrix over its total."""
    return float(np.trace(matrix) / max(matrix.sum(), 1))


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Support, precision, recall and F1 of every class; 0 where a ratio has nothing to count."""
    true_positives = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return {"support": support, "precision": precision, "recall": recall, "f1": f1}


def averages(classes: dict[str, np.ndarray]) -> dict[str, float]:
    """Macro (every class counts the same) and support-weighted averages of precision, recall, F1."""
    weights = classes["support"] / max(classes["support"].sum(), 1)
    result = {}
    for name in ("precision", "recall", "f1"):
        result[f"macro_{name}"] = float(classes[name].mean())
        result[f"weighted_{name}"] = float((classes[name] * weights).sum())
    return result


def top_k(num_classes: int) -> int:
    """The k of top-k accuracy: 5, or fewer for few classes (top-k of every class would be 1.0)."""
    return max(1, min(5, num_classes - 1))


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """The reliability diagram's bins and the expected calibration error.

    Each prediction falls in the bin of its confidence (the top probability), ``bins`` equal
    intervals of [0, 1] (1.0 in the last); ECE = sum over bins of (share of predictions) times
    |accuracy - mean confidence|.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=confidence, minlength=bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    mean_confidence = np.divide(sums, counts, out=np.zeros(bins), where=counts > 0)
    accuracy = np.divide(hits, counts, out=np.zeros(bins), where=counts > 0)
    ece = float((counts / max(len(labels), 1) * np.abs(accuracy - mean_confidence)).sum())
    return {"counts": counts, "confidence": mean_confidence, "accuracy": accuracy, "ece": ece}


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The mean of Keras' sparse categorical cross-entropy: the loss the model is trained on (the
    training loop calls the same function)."""
    import keras

    losses = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    return float(np.mean(keras.ops.convert_to_numpy(losses)))


def summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Everything ``evaluate`` reports about a split, as plain numbers."""
    num_classes = probabilities.shape[1]
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), num_classes)
    k = top_k(num_classes)
    return {
        "accuracy": accuracy(matrix),
        "loss": cross_entropy(labels, probabilities),
        "count": int(len(labels)),
        **averages(per_class(matrix)),
        "top_k": k,
        "top_k_accuracy": top_k_accuracy(labels, probabilities, k),
        "ece": calibration(labels, probabilities)["ece"],
    }
