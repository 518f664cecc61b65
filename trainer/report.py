"""The run's pictures, as PNG files: training curves, confusion matrices, the gallery of mistakes
and the reliability diagram."""

import matplotlib

matplotlib.use("Agg")  # no display on training machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curves(history: dict[str, list[float]], path: str) -> str:
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss"):
        if key in history:
            loss_axis.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
    for key in ("accuracy", "val_accuracy"):
        if key in history:
            accuracy_axis.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str,
                          title: str = "validation confusion matrix") -> str:
    """Counts (left) and each row normalised to the true class's support (right). Cells carry their
    numbers up to 30 classes; beyond that the colour says it and the labels shrink, so 101 classes
    stay readable."""
    count = len(class_names)
    side = min(max(4.0, 0.16 * count + 2), 24.0)
    font = max(3.0, min(8.0, 300 / count))
    figure, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    support = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    for axis, values, label in ((axes[0], matrix, "counts"), (axes[1], normalised, "share of the true class")):
        image = axis.imshow(values, cmap="Blues", vmin=0)
        axis.set_xticks(range(count), class_names, rotation=90, fontsize=font)
        axis.set_yticks(range(count), class_names, fontsize=font)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{title}: {label}")
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        if count <= 30:
            top = values.max() or 1
            for (row, column), value in np.ndenumerate(values):
                text = str(value) if values is matrix else f"{value:.2f}"
                axis.text(column, row, text, ha="center", va="center", fontsize=font,
                          color="white" if value > top / 2 else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_mistakes(images: np.ndarray, true_names: list[str], predicted_names: list[str],
                  probabilities: np.ndarray, path: str, columns: int = 6) -> str:
    """A gallery of mistakes: each image as the model saw it, its true class, the predicted class
    and the probability the model gave it."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index])
            axis.set_title(f"true {true_names[index]}\npred {predicted_names[index]} {probabilities[index]:.2f}",
                           fontsize=7)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_calibration(bins: dict, path: str) -> str:
    """Reliability diagram: accuracy against mean confidence per confidence bin, and how many
    predictions fall in each bin."""
    edges = np.linspace(0, 1, len(bins["counts"]) + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    figure, (axis, histogram) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]},
                                             sharex=True)
    filled = bins["counts"] > 0
    axis.bar(centres[filled], bins["accuracy"][filled], width=width, edgecolor="black", label="accuracy")
    axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfectly calibrated")
    axis.plot(bins["confidence"][filled], bins["accuracy"][filled], "o", color="red", label="mean confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"reliability diagram (ECE {bins['ece']:.3f})")
    axis.legend(loc="upper left", fontsize=8)
    histogram.bar(centres, bins["counts"], width=width, edgecolor="black")
    histogram.set_xlabel("confidence (top probability)")
    histogram.set_ylabel("predictions")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
