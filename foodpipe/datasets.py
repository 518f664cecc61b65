"""Reading what the preprocessing job wrote, besides the shards: ``metadata.json`` (the dataset's
description; its absence means the dataset is incomplete) and ``manifest.parquet`` (one row per
image). Local or ``s3://``, through ``foodpipe.storage``."""

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


def read_manifest(data_uri: str, settings: s3.S3Settings | None = None, split: str | None = None) -> list[dict]:
    """The rows of the dataset's ``manifest.parquet`` (of one split, if given)."""
    import pyarrow.parquet as pq

    path = uri.join(data_uri, schema.MANIFEST_FILE)
    try:
        rows = pq.read_table(io.BytesIO(storage.read(path, settings))).to_pylist()
    except Exception as exc:
        raise storage.describe(exc, path, f"reading {path}", settings) from None
    return [row for row in rows if split is None or row["split"] == split]
