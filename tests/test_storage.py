"""``foodpipe.storage``: the same behaviour for a local folder and for ``s3://`` (the embedded server)."""

import os
import tempfile
import uuid

import pytest

from foodpipe import s3, storage, uri
from foodpipe.errors import FoodpipeError


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """An empty folder of each kind, and the settings to reach it."""
    if request.param == "local":
        return str(tmp_path / "root"), None
    endpoint = request.getfixturevalue("s3_endpoint")
    settings = s3.S3Settings(endpoint_url=endpoint)
    bucket = f"storage-{uuid.uuid4().hex[:8]}"
    s3.check_bucket(settings, bucket, "making the test bucket", create=True)
    return f"s3://{bucket}/root", settings


def test_write_read_list_move_delete(root):
    folder, settings = root
    assert storage.list_files(folder, settings) == {}  # a folder that does not exist yet is empty
    files = {uri.join(folder, "a.bin"): b"alpha", uri.join(folder, "sub", "b.bin"): b"",
             uri.join(folder, "sub", "deep", "c.bin"): b"gamma!"}
    for location, data in files.items():
        storage.write(location, data, settings)
    assert storage.list_files(folder, settings) == {location: len(data) for location, data in files.items()}
    assert storage.list_files(folder, settings, recursive=False) == {uri.join(folder, "a.bin"): 5}
    assert all(storage.read(location, settings) == data for location, data in files.items())
    assert storage.exists(uri.join(folder, "a.bin"), settings)
    assert not storage.exists(uri.join(folder, "nothing.bin"), settings)

    storage.move(uri.join(folder, "a.bin"), uri.join(folder, "moved", "a.bin"), settings)
    assert storage.read(uri.join(folder, "moved", "a.bin"), settings) == b"alpha"
    assert not storage.exists(uri.join(folder, "a.bin"), settings)

    storage.write_json(uri.join(folder, "x.json"), {"b": [1, 2], "a": None}, settings)
    assert storage.read_json(uri.join(folder, "x.json"), settings) == {"a": None, "b": [1, 2]}

    storage.delete([uri.join(folder, "x.json"), uri.join(folder, "never-was.bin")], settings)  # gone is fine
    assert not storage.exists(uri.join(folder, "x.json"), settings)
    storage.delete_tree(folder, settings)
    assert storage.list_files(folder, settings) == {}
    storage.delete_tree(folder, settings)  # twice is fine


def test_a_local_listing_is_sorted_depth_first_and_follows_no_folder_link(tmp_path):
    """Each folder's files in name order, then its subfolders' in name order; a link to a file is
    listed with its target's size, a dangling one with 0; a link to a folder is not followed."""
    import os

    for name in ("x", "a/y", "a/b/q", "a/b/c/w", "a/z/k", "b/m"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"1" * len(name))
    os.symlink(tmp_path / "a", tmp_path / "b" / "folder-link")
    os.symlink(tmp_path / "nothing", tmp_path / "b" / "dangling")
    os.symlink(tmp_path / "a" / "b" / "c" / "w", tmp_path / "a" / "file-link")
    found = storage.list_files(str(tmp_path))
    assert [(os.path.relpath(path, tmp_path), size) for path, size in found.items()] == [
        ("x", 1), ("a/file-link", 7), ("a/y", 3), ("a/b/q", 5), ("a/b/c/w", 7), ("a/z/k", 5), ("b/dangling", 0),
        ("b/m", 3)]
    assert list(storage.list_files(str(tmp_path / "a"), recursive=False)) == [
        str(tmp_path / "a" / "file-link"), str(tmp_path / "a" / "y")]


def test_write_from_an_open_file_copies_from_its_position_to_its_end(root, monkeypatch):
    folder, settings = root
    monkeypatch.setattr(storage, "CHUNK_BYTES", 7)  # several chunks for a local copy
    with tempfile.TemporaryFile() as f:
        f.write(b"skipped|" + bytes(range(256)) * 3)
        f.seek(len(b"skipped|"))
        storage.write(uri.join(folder, "from-file.bin"), f, settings)
    assert storage.read(uri.join(folder, "from-file.bin"), settings) == bytes(range(256)) * 3
    with tempfile.TemporaryFile() as empty:  # an empty shard is written this way too
        storage.write(uri.join(folder, "empty.bin"), empty, settings)
    assert storage.read(uri.join(folder, "empty.bin"), settings) == b""


def test_a_missing_file_reads_as_file_not_found_and_describes_in_one_line(root):
    folder, settings = root
    missing = uri.join(folder, "missing.json")
    with pytest.raises(FileNotFoundError) as caught:
        storage.read(missing, settings)
    message = str(storage.describe(caught.value, missing, f"reading {missing}", settings))
    assert message == f"{missing} does not exist (while reading {missing})"


def test_create_exclusively_creates_once(root):
    folder, settings = root
    lock = uri.join(folder, "lock")
    assert storage.create_exclusively(lock, b"first", settings)
    assert not storage.create_exclusively(lock, b"second", settings)
    assert storage.read(lock, settings) == b"first"


def test_copy_tree_between_kinds(root, tmp_path):
    folder, settings = root
    storage.write(uri.join(folder, "images", "pizza", "1.jpg"), b"one", settings)
    storage.write(uri.join(folder, "meta", "classes.txt"), b"pizza\n", settings)
    local = str(tmp_path / "copy")
    written = storage.copy_tree(folder, local, settings)
    assert sorted(written) == [os.path.join(local, "images", "pizza", "1.jpg"),
                               os.path.join(local, "meta", "classes.txt")]
    assert open(os.path.join(local, "meta", "classes.txt"), "rb").read() == b"pizza\n"


def test_a_file_written_piece_by_piece_appears_whole_or_not_at_all(root):
    """``storage.writing`` (how a shard is written): the pieces appear at once when the block ends;
    an error in the block leaves the old file as it was and nothing partial beside it."""
    folder, settings = root
    target = uri.join(folder, "piecewise.bin")
    storage.write(target, b"old", settings)
    with pytest.raises(RuntimeError, match="the encoder failed"):
        with storage.writing(target, settings) as f:
            f.write(b"new, ")
            raise RuntimeError("the encoder failed")
    assert storage.read(target, settings) == b"old"
    assert sorted(storage.list_files(folder, settings)) == [target]
    with storage.writing(target, settings) as f:
        f.write(b"new, ")
        f.write(b"in two pieces")
        assert storage.read(target, settings) == b"old"  # not in place before the block ends
    assert storage.read(target, settings) == b"new, in two pieces"


def test_a_local_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "data.bin"
    storage.write(str(target), b"old")

    def fail_at_the_rename(source, dest):  # the cut point: the new bytes are written, not yet in place
        assert open(source, "rb").read() == b"new"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_at_the_rename)
    with pytest.raises(OSError):
        storage.write(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path / "out")) == ["data.bin"]  # no temporary left behind


def test_folder_checks(tmp_path, s3_endpoint):
    settings = s3.S3Settings(endpoint_url=s3_endpoint)
    with pytest.raises(FoodpipeError, match="folder does not exist"):
        storage.check_folder(str(tmp_path / "none"), "reading it")
    storage.check_folder(str(tmp_path / "none"), "writing it", must_exist=False)
    assert (tmp_path / "none").is_dir()  # a folder to write is made
    (tmp_path / "file").write_bytes(b"")
    for blocked, reason in ((tmp_path / "file", "a file is there"), (tmp_path / "file" / "sub", "Not a directory")):
        with pytest.raises(FoodpipeError, match=f"^cannot make the folder at {blocked}: {reason}$"):
            storage.check_folder(str(blocked), "writing it", must_exist=False)
    with pytest.raises(FoodpipeError, match="bucket 'no-such-bucket-here' does not exist"):
        storage.check_folder("s3://no-such-bucket-here/x", "reading it", settings)
    with pytest.raises(FoodpipeError, match="one is on S3 and the other is not"):
        storage.move(str(tmp_path / "a"), "s3://bucket/a", settings)
