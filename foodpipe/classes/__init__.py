"""Class lists that ship with foodpipe: ``food101.txt`` (all of Food-101) and ``seed10.txt`` (the
ten classes of the seed report). A classes file holds one class name per line; ``#`` comments and
blank lines are ignored."""

from pathlib import Path

from foodpipe.errors import FoodpipeError

BUILTIN_DIR = Path(__file__).parent


def parse(text: str) -> list[str]:
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = [n for n in names if n]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FoodpipeError(f"classes file lists {', '.join(duplicates)} more than once")
    return names


def builtin(name: str) -> list[str]:
    return parse((BUILTIN_DIR / f"{name}.txt").read_text())
