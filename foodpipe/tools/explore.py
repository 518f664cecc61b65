"""The dataset's exploratory report: class counts per split, the image-size distribution and the
channel statistics, as numbers (``report.json``) and PNG plots. Read from what the Beam job wrote
(``metadata.json`` and ``manifest.parquet``), local or ``s3://``."""

import json
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from foodpipe import datasets  # noqa: E402


def summarize(metadata: dict, manifest: list[dict]) -> dict:
    classes = metadata["classes"]
    counts = {split: {name: 0 for name in classes} for split in metadata["splits"]}
    for row in manifest:
        counts[row["split"]][row["class_name"]] += 1
    heights = np.array([row["height"] for row in manifest])
    widths = np.array([row["width"] for row in manifest])
    sides = {"height": heights, "width": widths}
    return {
        "images": len(manifest),
        "rejected": metadata.get("rejected", 0),
        "class_counts": counts,
        "image_sizes": {name: {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}
                        for name, values in sides.items()},
        "mean": metadata["stats"]["mean"],
        "std": metadata["stats"]["std"],
    }


def plot_class_counts(summary: dict, path: str) -> None:
    counts = summary["class_counts"]
    classes = list(next(iter(counts.values())))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(classes)), 4))
    bottom = np.zeros(len(classes))
    for split, per_class in counts.items():
        values = np.array([per_class[name] for name in classes])
        axis.bar(classes, values, bottom=bottom, label=split)
        bottom += values
    axis.set_ylabel("images")
    axis.set_title("images per class and split")
    axis.tick_params(axis="x", rotation=90)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_image_sizes(manifest: list[dict], path: str) -> None:
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter([row["width"] for row in manifest], [row["height"] for row in manifest], s=6, alpha=0.5)
    axis.set_xlabel("width (px)")
    axis.set_ylabel("height (px)")
    axis.set_title("image sizes")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_channel_stats(summary: dict, path: str) -> None:
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.bar(["R", "G", "B"], summary["mean"], yerr=summary["std"], color=["tab:red", "tab:green", "tab:blue"],
             capsize=6)
    axis.set_ylim(0, 255)
    axis.set_title("train-split mean ± std (pixel units)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(data_uri: str, metadata: dict, out_dir: str) -> tuple[dict, list[str]]:
    """``(summary, files written)`` for the dataset at ``data_uri``."""
    os.makedirs(out_dir, exist_ok=True)
    manifest = datasets.read_manifest(data_uri)
    summary = summarize(metadata, manifest)
    files = [os.path.join(out_dir, name) for name in
             ("report.json", "class_counts.png", "image_sizes.png", "channel_stats.png")]
    with open(files[0], "w") as f:
        json.dump(summary, f, indent=2)
    plot_class_counts(summary, files[1])
    plot_image_sizes(manifest, files[2])
    plot_channel_stats(summary, files[3])
    return summary, files
