"""``foodpipe tune`` on real images (scikit-image's photographs, patches split by subject): a sweep
of short trials makes one parent run with its summary and a child run per trial; a sweep killed
mid-trial resumes to the requested trial count; bad input is one line before any trial."""

import json
import os
import signal
import subprocess
import sys
import threading
from urllib.parse import urlparse

import mlflow
import optuna
import pytest

from beam_pipelines import preprocess
from foodpipe.errors import FoodpipeError
from tests import realdata
from tests.conftest import REPO, foodpipe
from tests.faults import WITH_SIGINT, TcpProxy
from trainer import tune

SHORT = ["--image-size", "32", "--num-blocks", "2", "--filters", "8", "--dense-units", "16", "--batch-size", "32",
         "--epochs", "2", "--no-flip"]


@pytest.fixture(scope="module")
def subjects(tmp_path_factory) -> str:
    """Photo patches (2 per subject, 320 images), split by subject."""
    root = tmp_path_factory.mktemp("subjects")
    raw, data = str(root / "raw"), str(root / "data")
    realdata.write_photo_subjects(raw, per_subject=2)
    preprocess.run(["--input", raw, "--output", data, "--split", "0.6,0.2,0.2", "--quiet",
                    "--group-pattern", realdata.SUBJECT_PATTERNS["photo-subjects"]])
    return data


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_two_tune_processes_share_one_sweep_its_parent_run_summary_and_a_child_run_per_trial(
        subjects, tmp_path, mlflow_server):
    """Two ``tune`` processes started at once on one study (parallel workers): one parent run, a
    child run per trial, the trials shared, the summary on the parent, ``select`` finding the best."""
    storage = f"sqlite:///{tmp_path}/study.db"
    command = [sys.executable, "-m", "foodpipe", "tune", "--data", subjects, *SHORT, "--search", "lr=log:3e-4:3e-3",
               "--search", "dropout=0.1:0.5", "--search", "framing=squash,pad", "--trials", "3", "--storage",
               storage, "--experiment", "sweep", "--mlflow-uri", mlflow_server]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=900) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err[-3000:] for _, err in outputs]
    summaries = [last_json(out) for out, _ in outputs]
    study = optuna.load_study(study_name="sweep", storage=storage)
    states = [trial.state.name for trial in study.trials]
    assert 3 <= len(states) <= 4 and set(states) <= {"COMPLETE", "PRUNED"}, states  # each checks before a trial
    client = mlflow.MlflowClient(mlflow_server)
    assert summaries[0]["parent_run_id"] == summaries[1]["parent_run_id"]
    parent = client.get_run(summaries[0]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.lr"] == "log:3e-4:3e-3" and parent.data.params["image_size"] == "32"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {trial.user_attrs["run_id"] for trial in study.trials} == {run.info.run_id for run in children}
    assert study.trials[0].params == {"lr": 1e-3, "dropout": 0.2, "framing": "squash"}  # train's own values first
    best = max((trial for trial in study.trials if trial.state.name == "COMPLETE"), key=lambda trial: trial.value)
    assert parent.data.tags["best_run_id"] == best.user_attrs["run_id"]
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best.value)
    assert best.value == max(run.data.metrics["val_accuracy"] for run in children if run.info.status == "FINISHED")
    for run in children:
        params = run.data.params
        assert 3e-4 <= float(params["lr"]) <= 3e-3 and 0.1 <= float(params["dropout"]) <= 0.5
        assert params["framing"] in ("squash", "pad") and params["epochs"] == "2"
    files = {item.path for item in client.list_artifacts(parent.info.run_id, "summary")}
    assert files == {"summary/trials.csv", "summary/history.png", "summary/best.json"}
    table = client.download_artifacts(parent.info.run_id, "summary/trials.csv", str(tmp_path))
    assert len(open(table).read().strip().splitlines()) == 1 + len(states)  # a header and a row per trial
    selected = foodpipe("select", "--experiment", "sweep", "--mlflow-uri", mlflow_server)
    assert selected.returncode == 0, selected.stderr[-2000:]
    chosen = last_json(selected.stdout)  # the best trial (of equals, the latest): never the parent run
    assert chosen["val_accuracy"] == pytest.approx(best.value) and chosen["run_id"] in {r.info.run_id for r in children}


@pytest.mark.parametrize("search,message", [
    ("lr", "--search 'lr': write NAME=SPACE, e.g."),
    ("learning_rate=0.1:1", "--search 'learning_rate=0.1:1': learning_rate is not a setting train can search"),
    ("lr=fast:slow", "--search 'lr=fast:slow': 'fast:slow' is not log:LOW:HIGH, LOW:HIGH or A,B,... of float values"),
    ("lr=log:0:1", "--search 'lr=log:0:1': LOW must be below HIGH (and above 0 for log)"),
    ("lr=0.1:0.1", "--search 'lr=0.1:0.1': LOW must be below HIGH"),
    ("flip=true,maybe", "--search 'flip=true,maybe': 'true,maybe' is not log:LOW:HIGH, LOW:HIGH or A,B,... of bool"),
    ("data=a,b", "--search 'data=a,b': data is not a setting train can search"),
])
def test_a_bad_search_is_one_line(search, message):
    with pytest.raises(FoodpipeError) as raised:
        tune.parse_dimension(search)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_search_spaces_take_the_settings_types():
    assert tune.parse_dimension("lr=log:1e-4:3e-3") == tune.Dimension("lr", 1e-4, 3e-3, log=True)
    assert tune.parse_dimension("num-blocks=2:4") == tune.Dimension("num_blocks", 2, 4, integer=True)
    assert tune.parse_dimension("dropout=0.2:0.6") == tune.Dimension("dropout", 0.2, 0.6)
    assert tune.parse_dimension("framing=squash,pad").choices == ("squash", "pad")
    assert tune.parse_dimension("flip=true,false").choices == (True, False)
    assert tune.parse_dimension("batch_size=16,32").choices == (16, 32)


def test_bad_input_stops_tune_before_any_study_or_run(subjects, tmp_path):
    storage, tracking = tmp_path / "study.db", tmp_path / "mlflow.db"
    result = foodpipe("tune", "--data", subjects, "--search", "lr=fast", "--storage", f"sqlite:///{storage}",
                      "--mlflow-uri", f"sqlite:///{tracking}")
    assert result.returncode == 2 and result.stderr.strip().startswith(
        "foodpipe: error: --search 'lr=fast'") and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert not storage.exists() and not tracking.exists()
    result = foodpipe("tune", "--data", subjects, "--search", "lr=log:1e-4:1e-3", "--storage",
                      f"sqlite:///{tmp_path}/no/such/folder/study.db", "--mlflow-uri", f"sqlite:///{tracking}")
    said = result.stderr.strip()  # one line: not Optuna's warning that its heartbeat is experimental either
    assert result.returncode == 2 and said.startswith("foodpipe: error: study storage sqlite:///") \
        and "cannot be opened" in said and "\n" not in said, result.stderr[-2000:]
    assert not tracking.exists()


def test_failed_trials_are_recorded_and_the_sweep_goes_on_to_a_clear_end(subjects, tmp_path):
    """Every trial fails (a label smoothing of 1 or 2, which the trainer's config refuses): each is
    recorded FAIL with its reason in the parent run's trials table, the sweep runs them all, and
    ends with one line (exit 3) naming the last reason."""
    tracking, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/study.db"
    result = foodpipe("tune", "--data", subjects, *SHORT, "--search", "label_smoothing=1.0,2.0", "--trials", "2",
                      "--storage", storage, "--experiment", "failing", "--mlflow-uri", tracking)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 3 and last.startswith("foodpipe: error: no trial of study failing finished "
                                                      "({'FAIL': 2}); trial 1: label_smoothing must be in [0, 1)"), last
    study = optuna.load_study(study_name="failing", storage=storage)
    assert [trial.state.name for trial in study.trials] == ["FAIL", "FAIL"]
    client = mlflow.MlflowClient(tracking)
    (parent,) = client.search_runs([client.get_experiment_by_name("failing").experiment_id])  # no trial got a run
    assert parent.info.status == "FAILED"
    table = open(client.download_artifacts(parent.info.run_id, "summary/trials.csv", str(tmp_path))).read()
    assert table.count("FAIL,") == 2 and table.count("label_smoothing must be in [0, 1)") == 2


def start_tune_held(args: list[str], mlflow_server: str, nth: int) -> tuple[subprocess.Popen, TcpProxy]:
    """``foodpipe tune`` through a proxy of the tracking server that holds its ``nth`` run creation
    (the cut point: the proxy's ``cut`` event is set then)."""
    proxy = TcpProxy(urlparse(mlflow_server).port)
    proxy.hold_on(rb"POST /api/2.0/mlflow/runs/create", nth=nth).start()
    proc = subprocess.Popen([sys.executable, "-c", WITH_SIGINT, *args, "--mlflow-uri", proxy.url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)  # Ctrl-C reaches it even if the test runner ignores it
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    assert proxy.cut.wait(timeout=600), "the sweep never reached the cut point"
    return proc, proxy


@pytest.mark.slow
def test_a_sweep_interrupted_then_killed_resumes_to_the_requested_trial_count(subjects, tmp_path, mlflow_server):
    """Ctrl-C while the second trial starts (its run creation held by the tracking server's proxy):
    exit 130, that trial marked failed. The same command again, SIGKILLed at its first trial's start:
    that trial is left running. Once more: the sweep ends with the requested 3 complete trials,
    under the first process's parent run."""
    storage = f"sqlite:///{tmp_path}/study.db"
    args = ["tune", "--data", subjects, *SHORT, "--epochs", "1", "--search", "lr=log:3e-4:3e-3", "--trials", "3",
            "--storage", storage, "--experiment", "stopped-sweep", "--no-prune"]

    def states():
        return [trial.state.name for trial in optuna.load_study(study_name="stopped-sweep", storage=storage).trials]

    proc, proxy = start_tune_held(args, mlflow_server, nth=3)  # the parent, trial 0, trial 1
    try:
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=300) == 130
    finally:
        proxy.stop()
    study = optuna.load_study(study_name="stopped-sweep", storage=storage)
    assert states() == ["COMPLETE", "FAIL"] and study.trials[1].user_attrs["error"] == "interrupted"
    first_parent = study.user_attrs[tune.PARENT_RUN_ATTR]

    proc, proxy = start_tune_held(args, mlflow_server, nth=1)  # trial 2 (the parent run is continued)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proxy.stop()
    assert states() == ["COMPLETE", "FAIL", "RUNNING"]

    again = foodpipe(*args, "--mlflow-uri", mlflow_server)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = last_json(again.stdout)
    assert summary["trials"] == {"COMPLETE": 3, "FAIL": 1, "RUNNING": 1}
    assert summary["parent_run_id"] == first_parent  # the first process's parent run, continued
    assert mlflow.MlflowClient(mlflow_server).get_run(first_parent).info.status == "FINISHED"


def test_a_database_another_process_is_making_is_opened_again_and_a_missing_one_fails_at_once(tmp_path):
    """Two processes starting at once on a new SQLite store (MLflow's or Optuna's) race to make its
    tables; the loser tries again once the file exists. A store that cannot exist fails at once."""
    from trainer import tracking

    path, calls = tmp_path / "store.db", []

    def half_made():
        calls.append(1)
        if len(calls) < 3:
            path.write_text("")  # the other process made the file and is still making the tables
            raise RuntimeError("table studies already exists")
        return "opened"

    assert tracking.retried(half_made, f"sqlite:///{path}", waits=(0, 0, 0)) == "opened" and len(calls) == 3
    calls.clear()
    with pytest.raises(RuntimeError):
        tracking.retried(half_made, f"sqlite:///{tmp_path}/no/such/folder/store.db", waits=(0, 0, 0))
    assert len(calls) == 1
