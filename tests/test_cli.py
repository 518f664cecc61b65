"""The command line's conventions (help, defaults, result lines, usage errors, exit codes) and its
last line of defence: an unexpected error still exits with a real code."""

import argparse
import json
import subprocess
import sys

import pytest

from foodpipe import __version__
from foodpipe.commands import cli
from tests.conftest import REPO, foodpipe


def test_an_unexpected_error_prints_a_redacted_traceback_and_returns_1(monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret-4711")

    def broken(config, args):
        raise RuntimeError("boom near canary-secret-4711 and http://user:hunter22@mlflow:5000")

    monkeypatch.setattr(cli, "cmd_predict", broken)
    assert cli.run_command(["predict", "--model", "m.keras", "x.jpg"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "RuntimeError: boom near ***" in err
    assert "canary-secret-4711" not in err and "hunter22" not in err


@pytest.mark.parametrize("command", [["train"], ["tune", "--search", "lr=log:1e-4:1e-2"], ["evaluate", "--model", "m"]])
def test_a_missing_dataset_is_one_line_before_tensorflow_is_imported(command, tmp_path):
    missing = str(tmp_path / "no-dataset")
    code = ("import sys; from foodpipe.commands import cli; "
            f"code = cli.run_command({[*command, '--data', missing]!r}); print(code, 'tensorflow' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert child.stdout.split() == ["2", "False"], child.stdout + child.stderr[-2000:]
    assert child.stderr.strip() == f"foodpipe: error: dataset incomplete: no metadata.json at {missing}"


@pytest.mark.parametrize("command", [["select", "--experiment", "smoke"], ["predict", "--model", "runs:/0123/model"]])
def test_reading_runs_from_a_local_store_that_is_not_there_is_one_line_and_makes_none(command, tmp_path):
    from PIL import Image

    store, image = tmp_path / "no-store", tmp_path / "food.jpg"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(image)
    result = foodpipe(*command, "--mlflow-uri", str(store), *([str(image)] if command[0] == "predict" else []))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"foodpipe: error: no MLflow store at {store / 'mlflow.db'}: nothing has been ")
    assert not store.exists()


SYNTH = ["synth", "--classes", "1", "--per-class", "1"]


@pytest.mark.parametrize("command,message", [
    ([*SYNTH, "OUT", "--json", "A_FILE/result.json"], "cannot make the --json file's folder at A_FILE: a file is there"),
    ([*SYNTH, "OUT", "--json", "TMP"], "--json TMP cannot be written: a folder is there"),
    ([*SYNTH, "A_FILE/out"], "cannot make synth's output at A_FILE/out: Not a directory"),
    (["demo", "--workdir", "A_FILE"], "cannot make the demo's --workdir at A_FILE: a file is there"),
], ids=["json-folder-blocked", "json-is-a-folder", "output-blocked", "demo-workdir-blocked"])
def test_a_path_that_cannot_be_written_is_one_line_before_any_work(command, message, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    paths = {"A_FILE": str(a_file), "TMP": str(tmp_path), "OUT": str(tmp_path / "out")}

    def placed(text: str) -> str:
        for name, path in paths.items():
            text = text.replace(name, path)
        return text

    result = foodpipe(*map(placed, command))
    assert result.returncode == 2 and result.stderr.strip() == f"foodpipe: error: {placed(message)}", result.stderr
    assert not (tmp_path / "out").exists()


def test_a_result_file_unwritable_after_the_work_is_exit_3_with_the_result_on_stdout(tmp_path, capsys):
    from foodpipe import process
    from foodpipe.errors import RunFailed

    gone = tmp_path / "gone" / "result.json"  # its folder removed while the work ran
    with pytest.raises(RunFailed, match=f"could not be written to {gone} .*last line of stdout") as raised:
        process.emit_result({"images": 3}, str(gone))
    assert raised.value.exit_code == 3 and json.loads(capsys.readouterr().out.splitlines()[-1]) == {"images": 3}


@pytest.mark.parametrize("command,allowed", [
    (["s3-server", "--port", "99999"], "0 and 65535"),  # a socket took it modulo 65536: it served on 34463
    (["input-service", "worker", "--dispatcher", "127.0.0.1:1", "--port", "70000"], "0 and 65535"),
    (["input-service", "dispatcher", "--port", "65535"], "1 and 65534"),  # its workers' presence: the next port
], ids=["s3-server", "input-service-worker", "input-service-dispatcher"])
def test_a_port_out_of_range_is_one_line_before_any_server_starts(command, allowed):
    result = foodpipe(*command, timeout=120)  # the timeout only ends a broken test: a server serving for ever
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    assert result.stderr.strip() == f"foodpipe: error: port must be between {allowed}, got {command[-1]}"


def subcommand_parsers(parser, prefix: str = "") -> dict:
    """``{name: parser}`` of every (sub)command, nested ones (``bench input``) included."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(subcommand_parsers(sub, f"{prefix}{name} "))
    return found


def every_parser():
    from beam_pipelines import options

    parsers = subcommand_parsers(cli.build_parser())
    parsers["preprocess"] = options.build_parser()  # the top-level entry is a pass-through
    return parsers


def test_every_flag_has_help_and_shows_its_default():
    parsers = every_parser()
    assert {"synth", "upload", "train", "evaluate", "select", "predict", "demo", "bench input", "bench train",
            "bench preprocess", "preprocess", "s3-server"} <= set(parsers)
    for name, parser in parsers.items():
        if name == "bench":
            continue  # only chooses the benchmark
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            if not (action.default is None or action.default is False or action.default is argparse.SUPPRESS):
                shown = "(default: " in parser._get_formatter()._get_help_string(action) or \
                        "default" in action.help
                assert shown, f"{name} {action.option_strings[0]} does not show its default"
        assert "``" not in text, f"{name}'s help shows raw reStructuredText"
    for name, flag in (("synth", "--seed"), ("synth", "--corrupt"), ("preprocess", "--seed"), ("train", "--seed"),
                       ("train", "--noise-std"), ("train", "--freeze-fraction")):
        action = next(a for a in parsers[name]._actions if flag in a.option_strings)
        assert action.default == 0 and "(default: " in parsers[name]._get_formatter()._get_help_string(action), \
            f"{name} {flag}"  # 0 == False: a default of 0 was once taken for 'no default'
    train = parsers["train"].format_help()
    for choices in ("{resnet,nasnet}", "{adam,sgd}", "{auto,default,mirrored,multiworker}"):
        assert choices in train
    assert "{train,val,test}" in parsers["evaluate"].format_help()


def test_commands_with_a_result_take_json_quiet_verbose_and_their_servers_flags():
    parsers = every_parser()
    flags = {name: {flag for action in parser._actions for flag in action.option_strings}
             for name, parser in parsers.items()}
    for name in ("synth", "upload", "preprocess", "train", "evaluate", "select", "predict", "demo",
                 "bench input", "bench train", "bench preprocess"):
        assert {"--json", "--quiet", "--verbose"} <= flags[name], name
    for name in ("upload", "preprocess", "train", "evaluate", "predict", "bench input", "bench train",
                 "bench preprocess"):
        assert "--s3-endpoint" in flags[name], name
    for name in ("train", "evaluate", "select", "predict"):
        assert "--mlflow-uri" in flags[name], name
    assert {"--mixed-precision", "--no-mixed-precision", "--jit-compile", "--no-jit-compile"} <= flags["bench train"]


def test_version():
    result = foodpipe("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"foodpipe {__version__}"


def test_usage_errors_are_one_line_with_the_prefix_and_exit_2():
    for argv, message in [(["synth", "out"], "the following arguments are required: --classes"),
                          (["evaluate", "--model", "m", "--data", "d", "--split", "dev"],
                           "unknown split 'dev': choose one of train, val, test"),
                          (["no-such-command"], "invalid choice: 'no-such-command'")]:
        result = foodpipe(*argv)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last.startswith("foodpipe: error:") and message in last, result.stderr


@pytest.mark.parametrize("entry", [["-m", "foodpipe", "preprocess"], ["-m", "beam_pipelines.preprocess"]])
def test_a_mistyped_preprocess_flag_is_an_error_before_any_work(entry, raw_dataset, tmp_path):
    output = tmp_path / "out"
    classes = tmp_path / "classes.txt"
    classes.write_text("x\n")
    result = subprocess.run([sys.executable, *entry, "--input", raw_dataset, "--output", str(output),
                             "--classes_file", str(classes)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "foodpipe: error: unknown flag --classes_file (did you mean --classes-file?)")
    assert not output.exists()


def test_synth_prints_its_result_as_the_last_line_and_to_the_json_file(tmp_path):
    report = tmp_path / "synth.json"
    result = foodpipe("synth", str(tmp_path / "raw"), "--classes", "2", "--per-class", "3", "--quiet",
                      "--json", str(report))
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line == json.loads(report.read_text()) and line["images"] == 6 and line["classes"] == 2
    assert "synth:" not in result.stderr  # --quiet: no progress bar
