"""Splits that users bring, end to end on real photographs (scikit-image's, cut into subjects):
Food-101's official lists, a split file, groups that never cross splits, bad lists, held-out sets."""

import collections
import hashlib
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from beam_pipelines import preprocess
from foodpipe import schema
from tests import realdata
from tests.conftest import foodpipe

pytestmark = pytest.mark.slow

PHOTOS = ("coffee", "chelsea", "rocket")
GRID, PER_SUBJECT = 3, 4  # 9 subjects of 4 patches per class: 36 images a class


@pytest.fixture(scope="module")
def food(tmp_path_factory):
    """Real patches in Food-101 layout with official-style lists: per class, test.txt holds the
    subjects of the last grid row, train.txt the rest but one image (which no list names), and each
    list names one id that has no image."""
    raw = str(tmp_path_factory.mktemp("food"))
    realdata.write_photo_subjects(raw, PHOTOS, grid=GRID, per_subject=PER_SUBJECT)
    lists = {"train": [], "test": []}
    unlisted = []
    for name in PHOTOS:
        stems = sorted(f.rsplit(".", 1)[0] for f in os.listdir(os.path.join(raw, "images", name)))
        unlisted.append(f"{name}/{stems[0]}")
        for stem in stems[1:]:
            lists["test" if stem.startswith(f"c{GRID - 1}") else "train"].append(f"{name}/{stem}")
        lists["train"].append(f"{name}/gone_train")
        lists["test"].append(f"{name}/gone_test")
    os.makedirs(os.path.join(raw, "meta"))
    for split_name, ids in lists.items():
        with open(os.path.join(raw, "meta", f"{split_name}.txt"), "w") as f:
            f.write("".join(f"{image_id}\n" for image_id in ids))
    return raw, lists, unlisted


def run_job(raw, output, *args):
    """``(result line, manifest rows, metadata)`` of a successful ``foodpipe preprocess``."""
    done = foodpipe("preprocess", "--input", raw, "--output", str(output), "--quiet", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(output, schema.METADATA_FILE)) as f:
        metadata = json.load(f)
    rows = pq.read_table(os.path.join(output, schema.MANIFEST_FILE)).to_pylist()
    return json.loads(done.stdout.strip().splitlines()[-1]), rows, metadata


def ids_in(rows, *splits):
    return {row["id"] for row in rows if row["split"] in splits}


def rejected(output):
    with open(os.path.join(output, schema.REJECTED_FILE)) as f:
        return [json.loads(line) for line in f]


def test_split_from_meta_follows_the_official_lists_to_the_image(food, tmp_path):
    raw, lists, unlisted = food
    line, rows, metadata = run_job(raw, tmp_path / "ds", "--split-from", "meta")
    present = {row["id"] for row in rows}
    assert ids_in(rows, "test") == set(lists["test"]) - {f"{c}/gone_test" for c in PHOTOS}
    assert ids_in(rows, "train", "val") == set(lists["train"]) - {f"{c}/gone_train" for c in PHOTOS}
    per_class = collections.Counter((row["class_name"], row["split"]) for row in rows)
    for name in PHOTOS:  # 23 official train images a class: round(23 * 0.2) = 5 to val, exactly
        assert (per_class[name, "train"], per_class[name, "val"], per_class[name, "test"]) == (18, 5, 12)
    assert not present & set(unlisted)
    assert sorted(r["uri"].split("/images/")[1].rsplit(".", 1)[0] for r in rejected(tmp_path / "ds")) == sorted(unlisted)
    assert {r["reason"] for r in rejected(tmp_path / "ds")} == {"not in split lists"}
    missing = sorted(f"{c}/gone_{s}" for c in PHOTOS for s in ("test", "train"))
    assert line["listed_missing"] == {"count": 6, "ids": missing} and line["split_source"] == "meta"
    digests = {name: hashlib.sha256(open(os.path.join(raw, "meta", name), "rb").read()).hexdigest()
               for name in ("train.txt", "test.txt")}
    assert metadata["split_source"] == {"source": "meta", "lists": digests, "val_fraction": 0.2,
                                        "unlisted": "reject", "listed_missing": line["listed_missing"]}
    assert metadata["rejected_reasons"] == {"not in split lists": 3}


@pytest.mark.parametrize("policy", ["train", "skip"])
def test_unlisted_images_go_to_train_or_are_skipped(food, tmp_path, policy):
    raw, _, unlisted = food
    _, rows, metadata = run_job(raw, tmp_path / "ds", "--split-from", "meta", "--unlisted", policy,
                                "--val-fraction", "0.3")
    if policy == "train":
        assert set(unlisted) <= ids_in(rows, "train")
    else:
        assert not set(unlisted) & {row["id"] for row in rows} and rejected(tmp_path / "ds") == []
        assert metadata["split_source"]["unlisted_skipped"] == len(unlisted)
    assert metadata["split_source"]["unlisted"] == policy and metadata["split_source"]["val_fraction"] == 0.3


def test_a_val_list_is_the_val_split_as_it_is(food, tmp_path):
    raw, lists, _ = food
    copy = tmp_path / "raw"
    shutil.copytree(os.path.join(raw, "images"), copy / "images")
    os.makedirs(copy / "meta")
    val = [image_id for image_id in lists["train"] if "c1" in image_id and "gone" not in image_id]
    for name, ids in (("train", [i for i in lists["train"] if i not in val]), ("test", lists["test"]),
                      ("val", val)):
        (copy / "meta" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    _, rows, metadata = run_job(str(copy), tmp_path / "ds", "--split-from", "meta")
    assert ids_in(rows, "val") == set(val) and "val_fraction" not in metadata["split_source"]
    assert set(metadata["split_source"]["lists"]) == {"train.txt", "test.txt", "val.txt"}


def test_a_split_file_places_every_image_as_it_says(food, tmp_path):
    raw, _, _ = food
    wanted = {}
    for name in PHOTOS:
        for index, stem in enumerate(sorted(os.listdir(os.path.join(raw, "images", name)))):
            wanted[f"{name}/{stem.rsplit('.', 1)[0]}"] = schema.SPLITS[index % 3]
    split_file = tmp_path / "splits.csv"
    split_file.write_text("image_id,split\n" + "".join(f"{i},{s}\n" for i, s in wanted.items()))
    line, rows, metadata = run_job(raw, tmp_path / "ds", "--split-file", str(split_file))
    assert {row["id"]: row["split"] for row in rows} == wanted
    assert metadata["split_source"] == {
        "source": "file", "file": str(split_file), "sha256": hashlib.sha256(split_file.read_bytes()).hexdigest(),
        "unlisted": "reject", "listed_missing": {"count": 0, "ids": []}}
    assert line["listed_missing"]["count"] == 0 and line["splits"] == {"train": 36, "val": 36, "test": 36}


def check_groups_kept_whole(rows, fractions, group_size):
    where = collections.defaultdict(set)
    for row in rows:
        assert row["group"] is not None
        where[row["group"]].add(row["split"])
    assert where and all(len(splits) == 1 for splits in where.values()), where
    per_class = collections.Counter((row["class_name"], row["split"]) for row in rows)
    for name in PHOTOS:
        total = sum(per_class[name, s] for s in schema.SPLITS)
        for split_name, fraction in zip(schema.SPLITS, fractions):
            assert abs(per_class[name, split_name] - total * fraction) <= group_size, (name, per_class)


def test_a_group_pattern_keeps_each_subject_in_one_split(food, tmp_path):
    raw, _, _ = food
    _, rows, metadata = run_job(raw, tmp_path / "ds", "--split", "0.5,0.25,0.25", "--group-pattern", "^(.+)__")
    check_groups_kept_whole(rows, (0.5, 0.25, 0.25), PER_SUBJECT)
    assert len({row["group"] for row in rows}) == len(PHOTOS) * GRID * GRID
    assert metadata["split_source"]["groups"] == {"source": "pattern", "pattern": "^(.+)__",
                                                  "groups": len(PHOTOS) * GRID * GRID, "ungrouped": 0}


def test_a_group_file_keeps_its_groups_whole(food, tmp_path):
    raw, _, _ = food
    rows = []
    for name in PHOTOS:  # two subjects to a group: groups of 8
        for stem in sorted(os.listdir(os.path.join(raw, "images", name))):
            rows.append((f"{name}/{stem.rsplit('.', 1)[0]}", f"{name}-{int(stem[1:3]) // 2}"))
    groups = tmp_path / "groups.csv"
    groups.write_text("image_id,group\n" + "".join(f"{i},{g}\n" for i, g in rows))
    _, manifest, metadata = run_job(raw, tmp_path / "ds", "--group-file", str(groups))
    check_groups_kept_whole(manifest, (0.75, 0.2, 0.05), 2 * PER_SUBJECT)
    assert metadata["split_source"]["groups"]["sha256"] == hashlib.sha256(groups.read_bytes()).hexdigest()


@pytest.mark.parametrize("lines,extra,message", [
    ("image_id,split\ncoffee/c00__0,train\ncoffee/c00__0,test\n", [],
     "line 3: coffee/c00__0 is listed in two splits (train and test)"),
    ("image_id,split\ncoffee/c00__0,holdout\n", [], "line 2: unknown split 'holdout'"),
    ("image_id,split\ncoffee/c00__0\n", [], "line 2: expected two values image_id,split"),
    ("id;split\n", [], "the first line must be the header image_id,split"),
    ("image_id,split\n", ["--split", "0.5,0.5,0"], "--split gives fractions and --split-file gives lists"),
    ("image_id,split\n", ["--group-pattern", "^(.+)__"], "a --split-file already places every image"),
    (None, ["--split-file", "/no/such/splits.csv"], "cannot read --split-file /no/such/splits.csv: no such file"),
    (None, ["--split-from", "meta", "--split-file", "x.csv"], "give one"),
    (None, ["--group-pattern", "__"], "needs a capture group"),
    (None, ["--split-from", "meta", "--val-fraction", "1"], "--val-fraction must be at least 0 and below 1"),
])
def test_bad_lists_stop_the_job_before_any_worker_with_one_line(food, tmp_path, lines, extra, message):
    raw, _, _ = food
    args = ["preprocess", "--input", raw, "--output", str(tmp_path / "ds")]
    if lines is not None:
        (tmp_path / "splits.csv").write_text(lines)
        args += ["--split-file", str(tmp_path / "splits.csv")]
    result = foodpipe(*args, *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "ds").exists()


def test_split_from_meta_without_the_lists_is_one_line(tmp_path):
    realdata.write_photo_subjects(str(tmp_path / "raw"), PHOTOS[:1], grid=2, per_subject=2)
    result = foodpipe("preprocess", "--input", str(tmp_path / "raw"), "--output", str(tmp_path / "ds"),
                      "--split-from", "meta")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'raw'}/meta/train.txt: no such file" in result.stderr


def test_a_held_out_set_has_no_statistics_and_cannot_be_trained_on(food, tmp_path):
    raw, _, _ = food
    metadata = preprocess.run(["--input", raw, "--output", str(tmp_path / "held"), "--split", "0,0,1"], progress=False)
    assert metadata["stats"] is None and metadata["splits"]["test"]["count"] == 108
    assert metadata["splits"]["train"]["count"] == metadata["splits"]["val"]["count"] == 0
    refused = foodpipe("train", "--data", str(tmp_path / "held"), "--mlflow-uri", f"sqlite:///{tmp_path}/m.db")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
    assert "is a held-out set (no train split" in refused.stderr


def test_glyphs_split_by_font_hold_whole_fonts_out_of_train(tmp_path):
    """The glyph set's subject is the font, across every letter: a font's images all land in one
    split (the quality measurements' promise that test fonts are fonts train never saw)."""
    raw, data = str(tmp_path / "raw"), str(tmp_path / "glyphs")
    fonts = realdata.GLYPH_FONTS[:10]
    count = realdata.write_glyphs(raw, fonts=fonts, letters="abe", per_subject=2)
    assert count == len(fonts) * 3 * 2
    preprocess.run(["--input", raw, "--output", data, "--split", "0.6,0.2,0.2",
                    "--group-pattern", realdata.SUBJECT_PATTERNS["glyphs"]])
    rows = pq.read_table(os.path.join(data, schema.MANIFEST_FILE)).to_pylist()
    splits_of_font = collections.defaultdict(set)
    for row in rows:
        splits_of_font[row["group"]].add(row["split"])
    assert set(splits_of_font) == {os.path.splitext(font)[0] for font in fonts}  # the group is the font alone
    assert all(len(splits) == 1 for splits in splits_of_font.values()), splits_of_font
    assert {split for splits in splits_of_font.values() for split in splits} == set(schema.SPLITS)
