import json

import pytest
import tensorflow as tf

from foodpipe import schema
from foodpipe.tfrecord import TFRecordWriter


def write_records(path, records):
    with open(path, "wb") as f:
        writer = TFRecordWriter(f)
        for record in records:
            writer.write(record)
    return writer


def test_example_round_trip_through_tf_data(tmp_path):
    path = str(tmp_path / "x.tfrecord")
    examples = [schema.to_example(b"\xff\xd8jpeg%d" % i, f"pizza/{i}", i, "pizza", 10 + i, 20 + i) for i in range(3)]
    writer = write_records(path, examples)
    assert writer.records == 3
    parsed = [tf.io.parse_single_example(r, schema.feature_spec()) for r in tf.data.TFRecordDataset(path)]
    assert [p[schema.IMAGE_ID].numpy() for p in parsed] == [b"pizza/0", b"pizza/1", b"pizza/2"]
    assert [int(p[schema.LABEL]) for p in parsed] == [0, 1, 2]
    assert [int(p[schema.HEIGHT]) for p in parsed] == [10, 11, 12]
    assert [int(p[schema.WIDTH]) for p in parsed] == [20, 21, 22]
    assert parsed[2][schema.ENCODED].numpy() == b"\xff\xd8jpeg2"
    assert parsed[0][schema.CLASS_TEXT].numpy() == b"pizza"
    assert parsed[0][schema.FORMAT].numpy() == b"jpeg"


def test_examples_equal_tensorflows_own(tmp_path):
    """Our wire-format encoder and tf.train.Example agree, large values and big payloads included."""
    payload = bytes(range(256)) * 1000
    ours = schema.to_example(payload, "ice_cream/3141592", 100, "ice_cream", 2**40, 300)
    theirs = tf.train.Example()
    theirs.ParseFromString(ours)
    feature = theirs.features.feature
    assert feature[schema.ENCODED].bytes_list.value == [payload]
    assert feature[schema.HEIGHT].int64_list.value == [2**40]
    assert feature[schema.LABEL].int64_list.value == [100]
    assert feature[schema.IMAGE_ID].bytes_list.value == [b"ice_cream/3141592"]
    assert set(feature.keys()) == set(schema.feature_spec())
    reference = tf.train.Example()
    for key, value in feature.items():
        reference.features.feature[key].CopyFrom(value)
    assert reference == theirs


def test_tensorflow_checks_our_crcs(tmp_path):
    path = tmp_path / "x.tfrecord"
    write_records(str(path), [b"payload-one", b"payload-two"])
    data = bytearray(path.read_bytes())
    data[15] ^= 0xFF  # flip a byte inside the first record's data
    path.write_bytes(bytes(data))
    try:
        list(tf.data.TFRecordDataset(str(path)))
    except tf.errors.DataLossError:
        return
    raise AssertionError("a corrupted record was read without a CRC error")


def test_shard_names():
    name = schema.shard_name("train", 3, 12)
    assert name == "train-00003-of-00012.tfrecord"
    assert schema.is_shard_name(name)
    assert not schema.is_shard_name("train-3-of-12.tfrecord.tmp")
    assert not schema.is_shard_name("other-00000-of-00001.tfrecord")


@pytest.mark.parametrize("content,found", [({"schema_version": 2, "classes": ["a"]}, "2"),
                                           ({"classes": ["a"]}, "None"), ([1, 2], "None")])
def test_a_dataset_of_another_schema_version_is_refused(tmp_path, content, found):
    from foodpipe import datasets
    from foodpipe.errors import FoodpipeError

    (tmp_path / schema.METADATA_FILE).write_text(json.dumps(content))
    with pytest.raises(FoodpipeError, match=f"has schema_version {found}, this foodpipe reads 1"):
        datasets.load_metadata(str(tmp_path))
    (tmp_path / schema.METADATA_FILE).write_text(json.dumps({"schema_version": 1, "classes": ["a"]}))
    assert datasets.load_metadata(str(tmp_path))["classes"] == ["a"]
