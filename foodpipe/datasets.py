"""Reading what the preprocessing job wrote, besides the shards: ``metadata.json`` (the dataset's
description; its absence means the dataset is incomplete) and ``manifest.parquet`` (one row per
image). Local or ``s3://``, through ``foodpipe.storage``."""

import dataclasses
import hashlib
import io
import json

from foodpipe import s3, schema, storage, uri
from foodpipe.errors import FoodpipeError


def load_metadata_and_digest(data_uri: str, settings: s3.S3Settings | None = None) -> tuple[dict, str]:
    """``(metadata, SHA-256 of the metadata.json file)``, from one read."""
    path = uri.join(data_uri, schema.METADATA_FILE)
    try:
        data = storage.read(path, settings)
    except FileNotFoundError:
        raise FoodpipeError(f"dataset incomplete: no {schema.METADATA_FILE} at {data_uri}") from None
    except Exception as exc:
        raise storage.describe(exc, path, f"reading {path}", settings) from None
    try:
        metadata = json.loads(data)
    except ValueError:
        raise FoodpipeError(f"{path} is not JSON: the dataset is damaged, run the job again") from None
    if not isinstance(metadata, dict) or metadata.get("schema_version") != schema.SCHEMA_VERSION:
        found = metadata.get("schema_version") if isinstance(metadata, dict) else None
        raise FoodpipeError(f"{path} has schema_version {found}, this foodpipe reads {schema.SCHEMA_VERSION}")
    return metadata, hashlib.sha256(data).hexdigest()


def load_metadata(data_uri: str, settings: s3.S3Settings | None = None) -> dict:
    return load_metadata_and_digest(data_uri, settings)[0]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A preprocessed dataset as its ``metadata.json`` describes it (as TFDS's ``DatasetInfo``):
    read once (``load``) and passed along, so one run never reads the file twice."""

    uri: str
    metadata: dict = dataclasses.field(repr=False)  # the file as written (logged with each run)
    sha256: str = ""  # of the metadata.json file: which version of the dataset a run read

    @property
    def classes(self) -> list[str]:
        return self.metadata["classes"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits(self) -> list[str]:
        return list(self.metadata["splits"])

    @property
    def pixel_stats(self) -> tuple[list[float], list[float]] | None:
        """The train split's per-channel ``(mean, std)``; None for a held-out set (no train split)."""
        stats = self.metadata["stats"]
        return None if stats is None else (stats["mean"], stats["std"])

    @property
    def largest_side(self) -> int | None:
        return self.metadata.get("image_sides", {}).get("max")

    def count(self, split: str) -> int:
        return self.metadata["splits"][split]["count"]

    def shard_names(self, split: str) -> list[str]:
        return self.metadata["splits"][split]["shards"]


def load(data: "str | DatasetInfo", settings: s3.S3Settings | None = None) -> DatasetInfo:
    """The ``DatasetInfo`` of a dataset URI (one read of its metadata.json); an info is returned as is."""
    if isinstance(data, DatasetInfo):
        return data
    metadata, digest = load_metadata_and_digest(data, settings)
    return DatasetInfo(data, metadata, digest)


def read_manifest(data_uri: str, settings: s3.S3Settings | None = None, split: str | None = None) -> list[dict]:
    """The rows of the dataset's ``manifest.parquet`` (of one split, if given)."""
    import pyarrow.parquet as pq

    path = uri.join(data_uri, schema.MANIFEST_FILE)
    try:
        rows = pq.read_table(io.BytesIO(storage.read(path, settings))).to_pylist()
    except Exception as exc:
        raise storage.describe(exc, path, f"reading {path}", settings) from None
    return [row for row in rows if split is None or row["split"] == split]
