"""What the job says about the dataset it wrote: ``metadata.json`` (``build_metadata``; see
docs/FORMAT.md), the stage timeline, the summary line and the command's JSON result line."""

import collections
import datetime
import time

from beam_pipelines import preflight
from beam_pipelines import progress as progress_lines
from beam_pipelines.stats import mean_std
from foodpipe import __version__, schema
from foodpipe.errors import FoodpipeError
from foodpipe.images import PixelSums


def build_metadata(config, planned: preflight.Plan, summary: dict, runner: str, seconds: float,
                   timeline: dict | None = None) -> dict:
    splits = {}
    for split_name in schema.SPLITS:
        shards = [s for s in summary["shards"] if s["split"] == split_name]
        splits[split_name] = {
            "count": sum(s["count"] for s in shards),
            "shards": [s["name"] for s in shards],
            "bytes": sum(s["bytes"] for s in shards),
            "class_counts": {c: n for s, c, n in summary["class_counts"] if s == split_name},
        }
    sums = PixelSums(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["pixel_sums"].items()})
    stats = None  # a held-out set (no train split): a model brings its own
    if sums.count:
        mean, std = mean_std(sums)
        stats = {"mean": mean, "std": std, "computed_on": schema.TRAIN, "pixels": sums.count}
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "classes": planned.classes,
        "splits": splits,
        "split_source": planned.split_plan.description,
        "stats": stats,
        "rejected": summary["rejected"]["count"],
        "rejected_reasons": summary["rejected"]["reasons"],
        "images": sum(s["count"] for s in splits.values()),
        "image_sides": {"min": summary["manifest"]["min_side"], "max": summary["manifest"]["max_side"]},
        "max_side": config.max_side,
        "source": config.input,
        "config": config.as_params(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "job": {"runner": runner, "seconds": round(seconds, 3), "foodpipe_version": __version__,
                "timeline": timeline or {}, "shard_writers": shard_writer_shares(summary["shards"])},
    }


def shard_writer_shares(shards: list[dict]) -> list[int]:
    """How many shards each worker process wrote, most first: how the writing was spread."""
    return sorted(collections.Counter(s["writer"] for s in shards).values(), reverse=True)


def check_every_class_written(classes, metadata) -> None:
    written = {c for split in metadata["splits"].values() for c, n in split["class_counts"].items() if n}
    empty = [c for c in classes if c not in written]
    if empty:
        raise FoodpipeError(f"no valid images in class(es): {', '.join(empty)} (see rejected.jsonl reasons)")


def stage_timeline(job_started: float, planned_at: float, tracker: progress_lines.Progress | None) -> dict:
    """When the job started (epoch seconds) and, in seconds from then, when its input was planned,
    its first and last image validated (where its workers share this host) and its graph finished."""
    timeline = {"started": round(job_started, 3), "planned_s": round(planned_at, 3)}
    span = tracker.first_and_last if tracker else None
    if span:
        timeline.update(first_image_s=round(span[0] - job_started, 3), last_image_s=round(span[1] - job_started, 3))
    timeline["graph_done_s"] = round(time.time() - job_started, 3)
    return timeline


def summary_line(metadata: dict, counters: dict[str, int]) -> str:
    """What the job did, from its counters (where the runner reports them) and its metadata."""
    read = counters.get("images_read", metadata["images"] + metadata["rejected"])
    per_split = ", ".join(f"{name} {metadata['splits'][name]['count']}" for name in schema.SPLITS)
    reasons = ", ".join(f"{kind} {n}" for kind, n in metadata["rejected_reasons"].items())
    converted = f" ({counters['images_converted']} converted to JPEG)" if counters.get("images_converted") else ""
    seconds = metadata["job"]["seconds"]
    return (f"read {read} images, wrote {metadata['images']}{converted} ({per_split}), rejected "
            f"{metadata['rejected']}{f' ({reasons})' if reasons else ''}, in {seconds:.1f} s "
            f"({read / max(seconds, 1e-9):.0f} images/s) -> {metadata['config']['output']}")


def result_line(metadata: dict) -> dict:
    """What the command prints as its JSON result line."""
    return {"output": metadata["config"]["output"], "images": metadata["images"], "rejected": metadata["rejected"],
            "rejected_reasons": metadata["rejected_reasons"],
            "splits": {name: info["count"] for name, info in metadata["splits"].items()},
            "split_source": metadata["split_source"]["source"],
            **({"listed_missing": metadata["split_source"]["listed_missing"]}
               if "listed_missing" in metadata["split_source"] else {}),
            "seconds": metadata["job"]["seconds"], "runner": metadata["job"]["runner"]}
