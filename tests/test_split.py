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
    ("0,0.5,0.5", "non-empty train"),
])
def test_bad_fractions_are_refused(text, message):
    with pytest.raises(FoodpipeError, match=message):
        split.parse_fractions(text)
