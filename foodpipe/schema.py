"""The preprocessed dataset's contract, declared once: the Beam writer and the tf.data reader both
use these names, ``to_example`` and ``feature_spec``. See ../shared/CONTRACT.md."""

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")

METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.parquet"
REJECTED_FILE = "rejected.jsonl"
SHARD_SUFFIX = ".tfrecord"

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
LABEL = "image/class/label"
CLASS_TEXT = "image/class/text"
IMAGE_ID = "image/id"

MANIFEST_COLUMNS = ("id", "uri", "label", "class_name", "split", "height", "width")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def is_shard_name(name: str) -> bool:
    parts = name[: -len(SHARD_SUFFIX)].split("-") if name.endswith(SHARD_SUFFIX) else []
    return len(parts) == 4 and parts[0] in SPLITS and parts[2] == "of" and parts[1].isdigit() and parts[3].isdigit()


def to_example(encoded_jpeg: bytes, image_id: str, label: int, class_name: str, height: int, width: int) -> bytes:
    """A serialized ``tf.train.Example`` holding one stored (RGB JPEG) image."""
    import tensorflow as tf

    def _bytes(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {
        ENCODED: _bytes(encoded_jpeg),
        FORMAT: _bytes(b"jpeg"),
        HEIGHT: _int(height),
        WIDTH: _int(width),
        LABEL: _int(label),
        CLASS_TEXT: _bytes(class_name.encode()),
        IMAGE_ID: _bytes(image_id.encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def feature_spec() -> dict:
    """What ``tf.io.parse_example`` needs to read the records ``to_example`` writes."""
    import tensorflow as tf

    return {
        ENCODED: tf.io.FixedLenFeature([], tf.string),
        FORMAT: tf.io.FixedLenFeature([], tf.string),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        CLASS_TEXT: tf.io.FixedLenFeature([], tf.string),
        IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
    }
