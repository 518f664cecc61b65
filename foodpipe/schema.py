"""The preprocessed dataset's contract, declared once: the Beam writer and the tf.data reader both
use these names, ``to_example`` and ``feature_spec``. See ../shared/CONTRACT.md."""

SCHEMA_VERSION = 1
TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)  # the stats are computed on TRAIN

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

# The manifest's columns and their Arrow types; ``group`` is null unless the job was given groups.
MANIFEST_COLUMNS = {"id": "string", "uri": "string", "label": "int64", "class_name": "string", "split": "string",
                    "height": "int64", "width": "int64", "group": "string"}


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def is_shard_name(name: str) -> bool:
    parts = name[: -len(SHARD_SUFFIX)].split("-") if name.endswith(SHARD_SUFFIX) else []
    return len(parts) == 4 and parts[0] in SPLITS and parts[2] == "of" and parts[1].isdigit() and parts[3].isdigit()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    return _field(1, _field(1, value))  # Feature.bytes_list = BytesList{value: [value]}


def _int64_feature(value: int) -> bytes:
    return _field(3, _field(1, _varint(value)))  # Feature.int64_list = Int64List{value: [value]} (packed)


def to_example(encoded_jpeg: bytes, image_id: str, label: int, class_name: str, height: int, width: int) -> bytes:
    """A serialized ``tf.train.Example`` holding one stored (RGB JPEG) image.

    The protobuf wire format is written directly (Example{features: Features{feature: map}}), so
    Beam workers need no TensorFlow: importing it costs seconds per worker. Tests parse the result
    with ``tf.io.parse_single_example``.
    """
    if min(label, height, width) < 0:
        raise ValueError(f"label, height and width must not be negative: {(label, height, width)}")
    features = {
        ENCODED: _bytes_feature(encoded_jpeg),
        FORMAT: _bytes_feature(b"jpeg"),
        HEIGHT: _int64_feature(height),
        WIDTH: _int64_feature(width),
        LABEL: _int64_feature(label),
        CLASS_TEXT: _bytes_feature(class_name.encode()),
        IMAGE_ID: _bytes_feature(image_id.encode()),
    }
    entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, value)) for key, value in features.items())
    return _field(1, entries)


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
