import json

from foodpipe.tools import explore


def test_summary_counts_every_class_in_every_split_and_sizes():
    metadata = {"classes": ["a", "b"], "splits": {"train": {}, "val": {}, "test": {}}, "rejected": 2,
                "stats": {"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}}
    manifest = [{"split": "train", "class_name": "a", "height": 300, "width": 512},
                {"split": "train", "class_name": "a", "height": 512, "width": 400},
                {"split": "val", "class_name": "b", "height": 222, "width": 512}]
    summary = explore.summarize(metadata, manifest)
    assert summary["class_counts"] == {"train": {"a": 2, "b": 0}, "val": {"a": 0, "b": 1}, "test": {"a": 0, "b": 0}}
    assert summary["image_sizes"]["height"] == {"min": 222, "median": 300.0, "max": 512}
    assert summary["images"] == 3 and summary["rejected"] == 2 and summary["mean"] == [1.0, 2.0, 3.0]
    json.dumps(summary)  # report.json must be writable as is
