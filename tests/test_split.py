import subprocess
import sys

import pytest

from beam_pipelines import split
from foodpipe.errors import FoodpipeError

SEED_FRACTIONS = (0.75, 0.2, 0.05)


def counts(assignment):
    return [list(assignment.values()).count(name) for name in ("train", "val", "test")]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 99, 750, 1000, 1301])
@pytest.mark.parametrize("fractions", [SEED_FRACTIONS, (0.8, 0.1, 0.1), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)])
def test_counts_are_exact_to_one_image(n, fractions):
    got = counts(split.assign([f"c/{i}" for i in range(n)], fractions, seed=0))
    assert sum(got) == n
    for count, fraction in zip(got, fractions):
        assert abs(count - n * fraction) <= 1


def test_seed_report_split_of_1000_per_class():
    assert counts(split.assign([f"pizza/{i}" for i in range(1000)], SEED_FRACTIONS, seed=0)) == [750, 200, 50]


def test_assignment_ignores_input_order_and_depends_on_seed():
    ids = [f"ramen/{i}" for i in range(200)]
    first = split.assign(ids, SEED_FRACTIONS, seed=1)
    assert split.assign(list(reversed(ids)), SEED_FRACTIONS, seed=1) == first
    assert split.assign(ids, SEED_FRACTIONS, seed=2) != first


def test_hash_is_the_same_in_another_process():
    code = "from beam_pipelines.split import stable_hash; print(stable_hash(3, 'split', 'sushi/42'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, check=True)
    assert int(other.stdout) == split.stable_hash(3, "split", "sushi/42")


@pytest.mark.parametrize("text,message", [
    ("0.8,0.3,-0.1", "negative"),
    ("0.5,0.4,0.2", "sum to 1"),
    ("0.5,0.5", "three fractions"),
    ("a,b,c", "three numbers"),
])
def test_bad_fractions_are_refused(text, message):
    with pytest.raises(FoodpipeError, match=message):
        split.parse_fractions(text)


def test_a_held_out_set_has_only_a_test_split():
    assert split.parse_fractions("0,0,1") == (0, 0, 1)
    assert counts(split.assign([f"c/{i}" for i in range(10)], (0, 0, 1), seed=0)) == [0, 0, 10]


@pytest.mark.parametrize("sizes", [[1] * 40, [4] * 10, [1, 2, 3, 4, 5, 6, 7, 8], [3, 3, 1, 1, 9, 2, 2, 2, 5, 1, 1]])
@pytest.mark.parametrize("fractions", [SEED_FRACTIONS, (0.6, 0.2, 0.2), (0.8, 0.2, 0.0)])
def test_groups_never_cross_splits_and_sizes_stay_within_one_group(sizes, fractions):
    group_of = {f"c/g{g}__{i}": f"g{g}" for g, size in enumerate(sizes) for i in range(size)}
    placed = split.assign(list(group_of), fractions, seed=4, group_of=group_of.get)
    by_group = {}
    for image_id, name in placed.items():
        by_group.setdefault(group_of[image_id], set()).add(name)
    assert all(len(names) == 1 for names in by_group.values())
    for count, fraction in zip(counts(placed), fractions):
        assert abs(count - len(group_of) * fraction) <= max(sizes)


def test_one_image_groups_are_the_plain_split():
    ids = [f"c/{i}" for i in range(300)]
    assert split.assign(ids, SEED_FRACTIONS, 3, group_of=lambda image_id: image_id) == split.assign(ids, SEED_FRACTIONS, 3)


def test_meta_lists_pool_train_for_the_hash_unless_there_is_a_val_list():
    lists = {"train.txt": "a/1\na/2\n\nb/3\n", "test.txt": "a/9\n"}
    assert split.parse_meta_lists(lists) == {"a/1": None, "a/2": None, "b/3": None, "a/9": "test"}
    assert split.parse_meta_lists({**lists, "val.txt": "b/4\n"}) == \
        {"a/1": "train", "a/2": "train", "b/3": "train", "a/9": "test", "b/4": "val"}


@pytest.mark.parametrize("text,message", [
    ("id,split\na/1,train\n", "line must be the header image_id,split"),
    ("", "line must be the header image_id,split"),
    ("image_id,split\na/1,train\na/2,holdout\n", "line 3: unknown split 'holdout'"),
    ("image_id,split\na/1,train\na/2\n", "line 3: expected two values"),
    ("image_id,split\na/1,train,x\n", "line 2: expected two values"),
    ("image_id,split\na/1,train\na/1,test\n", "line 3: a/1 is listed in two splits \\(train and test\\)"),
    ("image_id,split\n1005649,train\n", "line 2: '1005649' is not an image id"),
])
def test_bad_split_files_are_refused_naming_the_line(text, message):
    with pytest.raises(FoodpipeError, match="^splits.csv.*" + message):
        split.parse_split_file(text, "splits.csv")


def test_a_split_file_may_repeat_a_line_and_skip_blank_ones():
    text = "image_id,split\na/1,train\n\na/1,train\nb/2 , test\n"
    assert split.parse_split_file(text, "s.csv") == {"a/1": "train", "b/2": "test"}


def test_meta_lists_refuse_an_id_in_two_lists():
    with pytest.raises(FoodpipeError, match="meta/test.txt line 1: a/1 is listed in two splits"):
        split.parse_meta_lists({"train.txt": "a/1\n", "test.txt": "a/1\n"})


def test_group_files_and_patterns():
    assert split.parse_group_file("image_id,group\na/1,s1\na/2,s1\n", "g.csv") == {"a/1": "s1", "a/2": "s1"}
    with pytest.raises(FoodpipeError, match="g.csv line 3: a/1 is in two groups"):
        split.parse_group_file("image_id,group\na/1,s1\na/1,s2\n", "g.csv")
    with pytest.raises(FoodpipeError, match="needs a capture group"):
        split.compile_group_pattern("__")
    with pytest.raises(FoodpipeError, match="is not a regular expression"):
        split.compile_group_pattern("(")
    plan = split.SplitPlan(pattern=r"^(.+)__")
    assert (plan.group("coffee/c01__3"), plan.group("coffee/loose")) == ("coffee/c01", None)


def test_groups_across_classes_are_placed_together():
    group_of = {"a/1": "x", "b/1": "x", "a/2": "y", "b/2": None}
    assert split.mixed_groups(group_of, group_of.get) == frozenset({"x"})
    plan = split.SplitPlan(fractions=(0.5, 0.5, 0.0), groups=group_of, mixed=frozenset({"x"}))
    assert plan.stratum("a", "x") == plan.stratum("b", "x") != "a"
    assert plan.stratum("a", "y") == "a"
