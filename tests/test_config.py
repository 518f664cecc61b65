"""The one config system (``foodpipe.config``): every flag of every command comes from a setting
whose default is written in one place; ``--config FILE.yaml`` works for every command, with flags
given winning; a resolved config written by ``to_yaml`` reads back to the same config."""

import argparse
import ast
import dataclasses
import pathlib

import pytest

from beam_pipelines import options
from foodpipe import config as settings
from foodpipe.commands import cli
from foodpipe.errors import FoodpipeError
from tests.conftest import REPO
from tests.test_cli import every_parser
from trainer.config import TrainConfig

PACKAGES = ("foodpipe", "beam_pipelines", "tfdata", "models", "trainer")
# The flags every command shares, made by one helper each in foodpipe.process / foodpipe.config.
PLAIN = {"help", "version", "json", "quiet", "verbose", "config", "s3_endpoint", "mlflow_uri"}


def written_settings() -> dict[str, ast.AST]:
    """``{module.Class.name: the default's expression}`` of every field written as ``setting(...)``."""
    found = {}
    for package in PACKAGES:
        for path in sorted((pathlib.Path(REPO) / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef):
                    continue
                for field in node.body:
                    call = getattr(field, "value", None)
                    if isinstance(field, ast.AnnAssign) and isinstance(call, ast.Call) \
                            and getattr(call.func, "id", None) == "setting":
                        key = f"{module}.{node.name}.{field.target.id}"
                        assert key not in found, f"{key} written twice"
                        found[key] = call.args[0] if call.args else None
    return found


def flags_of_every_command():
    """``(command, action)`` for every flag of every command."""
    return [(name, action) for name, parser in every_parser().items() for action in parser._actions
            if action.dest not in PLAIN and not isinstance(action, argparse._SubParsersAction)]


def test_each_flags_default_is_written_in_exactly_one_place():
    written = written_settings()
    flags = flags_of_every_command()
    assert len(flags) > 100
    by_name: dict[str, dict[str, str]] = {}
    for command, action in flags:
        origin = getattr(action, "origin", None)
        assert origin, f"{command} {action.dest}: a flag made by hand, not from a config's setting"
        assert origin in written, f"{command} {action.dest}: its default is not written in a setting ({origin})"
        if isinstance(written[origin], ast.Constant):  # the default the flag has is the one written there
            assert action.default == written[origin].value, (command, action.dest)
        by_name.setdefault(action.dest, {})[origin] = action.help
    for name, origins in by_name.items():  # one name, several settings: each must be a setting of its own
        helps = list(origins.values())
        assert len(set(helps)) == len(helps), f"--{name} is defined in {sorted(origins)} with the same help: a copy"
    shared = {name for name, origins in by_name.items() if len(origins) == 1
              and sum(1 for _, action in flags if action.dest == name) > 1}
    assert {"data", "batch_size", "split_file", "mixed_precision"} <= shared  # taken with like()
    assert set(by_name["image_size"]) == {"tfdata.config.InputConfig.image_size",  # train, bench input/train
                                          "foodpipe.commands.configs.DemoConfig.image_size"}  # the demo's own


def test_no_flag_is_made_by_hand_with_a_default():
    """Flags come from settings: an ``add_argument`` with a written default anywhere is a second place."""
    found = []
    for package in PACKAGES:
        for path in sorted((pathlib.Path(REPO) / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                    found += [f"{path.name}:{node.lineno}" for keyword in node.keywords
                              if keyword.arg == "default" and isinstance(keyword.value, ast.Constant)]
    assert found == []


def test_a_nested_config_builds_from_flat_settings_and_back():
    config = settings.from_flat(TrainConfig, {"data": "d", "image_size": 48, "dropout": 0.3, "epochs": 2,
                                              "seed": 7, "weights": "none"})
    assert (config.input.image_size, config.model_config.dropout, config.epochs, config.seed) == (48, 0.3, 2, 7)
    assert config.model_config.weights is None  # parsed: "none" means no weights
    flat = settings.flatten(config)
    assert flat["image_size"] == 48 and flat["crop_area_min"] == 0.5 and "input" not in flat
    assert settings.from_flat(TrainConfig, flat) == config
    with pytest.raises(FoodpipeError, match="TrainConfig has no setting image_sise"):
        settings.from_flat(TrainConfig, {"data": "d", "image_sise": 48})


def test_to_yaml_reads_back_through_the_command_line_to_the_same_config(tmp_path):
    config = settings.from_flat(TrainConfig, {"data": str(tmp_path), "image_size": 40, "flip": False,
                                              "weights": "none", "crop_aspect_max": 1.5, "mlflow_uri": "http://x"})
    written = tmp_path / "config.yaml"
    written.write_text(settings.to_yaml(config, leave_out=("mlflow_uri",)))
    assert "mlflow_uri" not in written.read_text() and "weights: none" in written.read_text()
    _, again = cli.parse(["train", "--config", str(written), "--mlflow-uri", "http://x"])
    assert again == config


def test_every_command_takes_a_config_file_with_required_flags_from_it_and_flags_winning(tmp_path):
    file = tmp_path / "evaluate.yaml"
    file.write_text(f"model: {tmp_path}/m.keras\ndata: {tmp_path}\nsplit: val\ntta: flip\n")
    args, config = cli.parse(["evaluate", "--config", str(file), "--split", "test"])
    assert (config.model, config.split, config.tta, config.batch_size) == (f"{tmp_path}/m.keras", "test", "flip", 64)
    file.write_text(f"data: {tmp_path}\nimages: 50\nimage_size: 96\n")
    _, config = cli.parse(["bench", "input", "--config", str(file)])
    assert (config.images, config.image_size, config.seed_images) == (50, 96, 256)
    file.write_text("classes: 2\nper_class: 3\n")
    _, config = cli.parse(["synth", str(tmp_path / "out"), "--config", str(file), "--per-class", "4"])
    assert (config.classes, config.per_class, config.out) == (2, 4, str(tmp_path / "out"))
    file.write_text("classes: 2\nepochs: 3\n")
    with pytest.raises(FoodpipeError, match=f"config file {file}: epochs is not a setting of synth"):
        cli.parse(["synth", str(tmp_path / "out"), "--config", str(file), "--per-class", "4"])
    with pytest.raises(FoodpipeError, match="--config needs a file"):
        cli.parse(["synth", str(tmp_path / "out"), "--config"])


def test_the_jobs_config_file_takes_its_settings_and_beams_options(tmp_path):
    file = tmp_path / "job.yaml"
    file.write_text(f"input: {tmp_path}/raw\noutput: {tmp_path}/out\nsplit: 0.5,0.3,0.2\nshard_size_mb: 8\n"
                    "direct_num_workers: 1\n")
    config, _, beam_args = options.parse(["--config", str(file), "--seed", "3"])
    assert (config.split, config.shard_size_mb, config.seed) == ((0.5, 0.3, 0.2), 8.0, 3)
    assert config.input == f"{tmp_path}/raw" and "--direct_num_workers=1" in beam_args
    file.write_text(f"input: {tmp_path}/raw\noutput: {tmp_path}/out\nshard_size: 8\n")
    with pytest.raises(FoodpipeError, match=f"config file {file}: shard_size is not a setting of preprocess"):
        options.parse(["--config", str(file)])


def test_a_choice_is_checked_by_the_config_in_one_line():
    with pytest.raises(FoodpipeError, match="unknown framing 'zoom': choose one of squash, pad, crop"):
        settings.from_flat(TrainConfig, {"data": "d", "framing": "zoom"})
    assert dataclasses.is_dataclass(settings.from_flat(TrainConfig, {"data": "d", "framing": "pad"}).input)
