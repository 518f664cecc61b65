"""The layering rule, checked on the source: every ``import`` statement of every module, including
those inside functions.

- The commands (``foodpipe/commands/``: ``cli.py``, ``demo.py``, ``bench.py``; and
  ``foodpipe/__main__.py``) are the top floor: nothing else imports them.
- The tools (``foodpipe/tools/``: the embedded S3 server, synth, upload, the dataset report) stand
  on the ground floor alone: they import no library.
- The libraries are ``beam_pipelines/``, ``tfdata/``, ``models/`` and ``trainer/``; ``tfdata/``,
  ``models/`` and ``trainer/`` never import ``beam_pipelines/``, and ``models/`` imports no other
  library.
- The rest of ``foodpipe/`` is the ground floor: it imports no library, no tool and no command.
- Storage clients: boto3/botocore only in ``foodpipe/storage.py``, ``foodpipe/s3.py`` and the
  embedded server; minio only in ``foodpipe/s3.py`` and the benchmark's re-creation of the seed's
  loader; Beam's ``FileSystems`` nowhere (``foodpipe.storage`` is the one storage layer).
"""

import ast
import pathlib
import subprocess
import sys

import pytest

import models
from tests.conftest import REPO as REPO_DIR
from foodpipe.config import settings
from trainer.config import TrainConfig

REPO = pathlib.Path(REPO_DIR)
PACKAGES = ("foodpipe", "beam_pipelines", "tfdata", "models", "trainer")
LIBRARIES = ("beam_pipelines", "tfdata", "models", "trainer")
COMMANDS = ("foodpipe.commands", "foodpipe.__main__")
TOOLS = ("foodpipe.tools",)
ALLOWED_CLIENTS = {
    "boto3": {"foodpipe.storage", "foodpipe.s3", "foodpipe.tools.s3_server"},
    "botocore": {"foodpipe.storage", "foodpipe.s3", "foodpipe.tools.s3_server"},
    "minio": {"foodpipe.s3", "tfdata.bench"},
    "apache_beam.io.filesystems": set(),
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports, by full name (``from a import b`` counts as ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def all_imports() -> dict[str, set[str]]:
    return {module_name(path): imported_names(path)
            for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def within(name: str, modules) -> bool:
    return any(name == module or name.startswith(module + ".") for module in modules)


def violations(imports: dict[str, set[str]]) -> list[str]:
    found = []
    for module, names in imports.items():
        package = module.split(".")[0]
        for name in sorted(names):
            if not within(module, COMMANDS) and within(name, COMMANDS):
                found.append(f"{module} imports the command module {name}")
            if package in ("tfdata", "models", "trainer") and within(name, ["beam_pipelines"]):
                found.append(f"{module} imports {name}: only the job uses beam_pipelines")
            if package == "models" and within(name, ["tfdata", "trainer"]):
                found.append(f"{module} imports {name}: models stand alone")
            if within(module, TOOLS) and within(name, LIBRARIES):
                found.append(f"{module} is a tool but imports the library {name}")
            ground = package == "foodpipe" and not within(module, COMMANDS + TOOLS)
            if ground and within(name, LIBRARIES):
                found.append(f"{module} is on the ground floor but imports the library {name}")
            if ground and within(name, TOOLS):
                found.append(f"{module} is on the ground floor but imports the tool {name}")
            for client, allowed in ALLOWED_CLIENTS.items():
                if within(name, [client]) and module not in allowed:
                    found.append(f"{module} imports {name}: storage goes through foodpipe.storage")
    return sorted(set(found))


def test_the_layering_rule_holds():
    imports = all_imports()
    assert {"foodpipe.storage", "beam_pipelines.preprocess", "trainer.train", "foodpipe.commands.cli",
            "foodpipe.tools.synth"} <= set(imports)
    assert violations(imports) == []


@pytest.mark.parametrize("module,name,complaint", [
    ("beam_pipelines.preprocess", "foodpipe.commands.cli", "imports the command module"),
    ("foodpipe.tools.synth", "foodpipe.commands.demo", "imports the command module"),
    ("trainer.evaluate", "beam_pipelines.images", "only the job uses beam_pipelines"),
    ("foodpipe.tools.upload", "boto3", "storage goes through foodpipe.storage"),
    ("foodpipe.schema", "tfdata.pipeline", "ground floor but imports the library"),
    ("foodpipe.storage", "foodpipe.tools.upload", "ground floor but imports the tool"),
    ("foodpipe.tools.explore", "tfdata.pipeline", "a tool but imports the library"),
    ("tfdata.pipeline", "apache_beam.io.filesystems", "storage goes through foodpipe.storage"),
])
def test_each_kind_of_violation_is_caught(module, name, complaint):
    imports = all_imports()
    imports[module] = imports[module] | {name}
    assert any(module in line and complaint in line for line in violations(imports))


def test_function_level_imports_count(tmp_path):
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from foodpipe.commands.cli import main\n    import boto3\n")
    assert {"foodpipe.commands.cli", "foodpipe.commands.cli.main", "boto3"} <= imported_names(source)


def test_every_model_hyperparameter_is_a_trainer_flag_with_the_builder_default():
    fields = {field.name: field.default for field in settings(TrainConfig)}
    for name in models.NAMES:
        for parameter, default in models.hyperparameters(name).items():
            assert parameter in fields, f"{name}'s {parameter} has no TrainConfig field"
            if parameter != "weights":  # the trainer asks for ImageNet weights; the builder defaults to none
                assert fields[parameter] == default, (name, parameter)


def test_every_library_logger_is_under_foodpipe_so_its_info_lines_show():
    """The commands show the ``foodpipe`` logger's INFO lines (``logs.setup``): a library module
    logging under its bare module name (``trainer.train``) would be silently dropped."""
    named = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger" and node.args:
                    named[module_name(path)] = ast.unparse(node.args[0])
    loggers = {module: name for module, name in named.items() if module != "foodpipe.logs"}
    assert loggers and all(name.startswith(("'foodpipe", '"foodpipe', "f'foodpipe", 'f"foodpipe', "'werkzeug"))
                           for name in loggers.values()), loggers
    shown = subprocess.run([sys.executable, "-c", (
        "from foodpipe import logs; logs.setup()\n"
        "from trainer import checkpoint, tracking, train\n"
        "for module in (checkpoint, tracking, train): module.log.info('info from %s', module.__name__)")],
        capture_output=True, text=True, cwd=REPO_DIR, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for module in ("trainer.checkpoint", "trainer.tracking", "trainer.train"):
        assert f"info from {module}" in shown.stderr, shown.stderr[-2000:]


def test_first_line_of_an_exception():
    from foodpipe.errors import first_line

    assert first_line(ValueError("bad thing\nwith detail")) == "bad thing"
    assert first_line(ValueError("x" * 500), 200) == "x" * 200
    assert first_line(KeyError()) == "KeyError" and first_line(RuntimeError("  \n")) == "RuntimeError"


FUNCTION_LINES = 50


def test_no_function_is_longer_than_the_limit():
    """A function that does one job reads on one screen: none in the packages runs over 50 lines."""
    long = [f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > FUNCTION_LINES]
    assert long == []


def test_every_first_party_import_resolves_including_those_inside_functions():
    """A module moved or renamed leaves no import behind, not even one inside a function that only a
    slow test would run (``from foodpipe import s3, synth`` outlived synth's move to tools/)."""
    import importlib

    first_party = PACKAGES + ("tests",)
    missing = []
    for package in first_party:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and within(node.module, first_party):
                    module = importlib.import_module(node.module)
                    missing += [f"{module_name(path)}: {node.module}.{alias.name}" for alias in node.names
                                if not hasattr(module, alias.name)
                                and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
                elif isinstance(node, ast.Import):
                    missing += [f"{module_name(path)}: {alias.name}" for alias in node.names
                                if within(alias.name, first_party) and importlib.util.find_spec(alias.name) is None]
    assert missing == []
