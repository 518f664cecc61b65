"""``foodpipe tune``: a sweep over ``train``'s settings on Optuna.

The study lives in an RDB (SQLite by default), so a killed sweep resumes where it stopped and
several ``tune`` processes pointed at one study share its trials. Each trial is one training run
(``trainer.train``), a child MLflow run of the sweep's parent run; a trial whose val accuracy falls
below the median of earlier trials at the same epoch is pruned (Optuna's ``MedianPruner``), its run
marked KILLED. The parent run holds the study's summary: the search space as params, the best
trial (tags, metric, ``summary/best.json``), the trials table and a history plot.

A search dimension is ``NAME=SPACE`` with NAME a setting of ``train`` and SPACE one of:
``log:LOW:HIGH`` (log-uniform), ``LOW:HIGH`` (uniform; integers if both are), ``A,B,...`` (choices).
"""

import csv
import dataclasses
import json
import logging
import os
import time
import warnings

import keras

from foodpipe import config as settings, logs
from foodpipe.errors import FoodpipeError, RunFailed, first_line
from trainer import tracking
from trainer.config import TrainConfig, TuneConfig

log = logging.getLogger(f"foodpipe.{__name__}")

PARENT_RUN_ATTR = "mlflow_parent_run_id"  # the study's user attribute naming its MLflow parent run


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched setting: a range (``log``: log-uniform; ``integer``: whole numbers) or choices."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple = ()

    def holds(self, value) -> bool:
        """Whether ``value`` lies in this dimension's space."""
        if self.choices:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def suggest(self, trial):
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


NOT_SEARCHED = ("data", "mlflow_uri", "experiment", "run_name", "checkpoint_dir")


def parse_dimension(text: str) -> Dimension:
    """``--search``'s ``NAME=SPACE`` (see the module's docstring); a mistake is one line."""
    name, _, space = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {field.name: field for field in settings.settings(TrainConfig)}
    if not space:
        raise FoodpipeError(f"--search {text!r}: write NAME=SPACE, e.g. lr=log:1e-4:3e-3, dropout=0.2:0.6 or "
                            "framing=squash,pad")
    if name not in fields or name in NOT_SEARCHED:
        raise FoodpipeError(f"--search {text!r}: {name} is not a setting train can search")
    kind = settings.value_type(fields[name])
    log_scale = space.startswith("log:")
    bounds = space.split(":")[1:] if log_scale else space.split(":")
    try:
        if "," in space or kind in (str, bool) or len(bounds) == 1:
            return Dimension(name, choices=tuple(parse_value(kind, part) for part in space.split(",")))
        low, high = (float(bound) for bound in bounds)
    except ValueError:
        raise FoodpipeError(f"--search {text!r}: {space!r} is not log:LOW:HIGH, LOW:HIGH or A,B,... of "
                            f"{kind.__name__} values") from None
    if not low < high or (log_scale and low <= 0):
        raise FoodpipeError(f"--search {text!r}: LOW must be below HIGH (and above 0 for log)")
    return Dimension(name, low, high, log=log_scale, integer=kind is int)


def parse_value(kind, text: str):
    """A choice's text as the setting's type (``true``/``false`` for switches)."""
    text = text.strip()
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    return kind(text)


class Pruned(Exception):
    """A trial stopped for falling behind; its run ends KILLED, the study records it PRUNED."""

    run_status = "KILLED"


class ReportToTrial(keras.callbacks.Callback):
    """Each epoch's val accuracy to the Optuna trial; stops the run when the pruner says so."""

    def __init__(self, trial):
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_accuracy"]), epoch)
        if self.trial.should_prune():
            raise Pruned(f"trial {self.trial.number} pruned after epoch {epoch + 1}")


def rdb_storage(url: str):
    """Optuna's storage at ``url``, its tables made if missing (two processes starting on a new
    database race to make them: ``tracking.retried``). The heartbeat (a killed process's trial
    marked failed) is what a resumed sweep relies on; Optuna's warning that it is experimental is
    not shown on every run."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return tracking.retried(lambda: optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180),
                                url)


def open_study(config: TuneConfig):
    """``(study, made)``: the study in its RDB storage, ``made`` by this process or loaded (another
    process's, or an earlier run's); a storage that cannot be opened is one line."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = rdb_storage(config.storage)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=config.train.epochs // 2) \
            if config.prune else optuna.pruners.NopPruner()
        try:
            return optuna.create_study(study_name=config.study_name, storage=storage, direction="maximize",
                                       pruner=pruner), True
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=config.study_name, storage=storage, pruner=pruner), False
    except Exception as exc:
        raise FoodpipeError(f"study storage {logs.redact(config.storage)} cannot be opened: "
                            f"{first_line(exc, 200)}") from None


PARENT_WAIT_SECONDS = 60  # how long a second process waits for the first to name the parent run


def parent_run(study, made: bool, client, experiment_id: str, config: TuneConfig) -> str:
    """The sweep's MLflow run: made by the process that made the study, continued by the others
    (which wait for the study to name it; if it never does, its maker died first, and they make it)."""
    waited_until = time.monotonic() + (0 if made else PARENT_WAIT_SECONDS)
    while not (run_id := study.user_attrs.get(PARENT_RUN_ATTR)) and time.monotonic() < waited_until:
        time.sleep(0.5)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    return make_parent_run(study, client, experiment_id, config)


def make_parent_run(study, client, experiment_id: str, config: TuneConfig) -> str:
    """The parent run, with the search space and the shared settings as params, named in the study."""
    from mlflow.entities import Param

    run = client.create_run(experiment_id, run_name=f"tune-{study.study_name}",
                            tags={"foodpipe.sweep": "parent", "optuna.study": study.study_name})
    fixed = config.train.params()
    client.log_batch(run.info.run_id, params=[Param(f"search.{text.split('=')[0]}", text.split("=", 1)[1])
                                              for text in config.search] +
                     [Param(name, str(value)) for name, value in fixed.items()] +
                     [Param("trials", str(config.trials)), Param("storage", logs.redact(config.storage))])
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    return run.info.run_id


def counts(study) -> dict:
    """How many trials the study has in each state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``)."""
    found: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        found[trial.state.name] = found.get(trial.state.name, 0) + 1
    return found


def enqueue_defaults(study, base: TrainConfig, dimensions: list[Dimension]) -> None:
    """A new study's first trial: ``base``'s own values of the searched settings (Optuna's
    ``enqueue_trial``), those the space holds; the others are sampled."""
    values = settings.flatten(base)
    defaults = {d.name: values[d.name] for d in dimensions if d.holds(values[d.name])}
    if defaults:
        study.enqueue_trial(defaults, user_attrs={"start": "defaults"})
        log.info("trial 0 runs train's values of the searched settings: %s", defaults)


def trial_config(base: TrainConfig, values: dict, name: str) -> TrainConfig:
    """``base`` with the trial's values (a combination the config refuses fails the trial alone)."""
    return settings.from_flat(TrainConfig, {**settings.flatten(base), **values, "run_name": name})


def make_objective(config: TuneConfig, dimensions: list[Dimension], parent_run_id: str, progress: bool):
    from trainer import train

    def objective(trial) -> float:
        name = f"{trial.study.study_name}-trial-{trial.number}"
        keras.backend.clear_session()  # one model per trial, not all of them in one graph
        writer = None
        try:
            run = trial_config(config.train, {d.name: d.suggest(trial) for d in dimensions}, name)
            log.info("trial %d: %s", trial.number, trial.params)
            writer = tracking.MlflowWriter(tracking.chosen_uri(run.mlflow_uri), run.experiment, name, tags={
                tracking.PARENT_RUN_TAG: parent_run_id, "optuna.trial": trial.number})
            result = train.train_and_evaluate(run, writer=writer, progress=progress, callbacks=[ReportToTrial(trial)])
        except Pruned as exc:
            import optuna

            log.info("%s", exc)
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:  # the study records the trial as failed and goes on
            trial.set_user_attr("error", first_line(exc, 200))
            log.warning("trial %d failed: %s", trial.number, first_line(exc, 200))
            raise
        except KeyboardInterrupt:  # the study records it as failed; the sweep stops
            trial.set_user_attr("error", "interrupted")
            raise
        finally:
            if writer is not None and writer.run_id:
                trial.set_user_attr("run_id", writer.run_id)
        return result["val_accuracy"]

    return objective


def trials_table(study) -> list[dict]:
    """One row per trial: number, state, val accuracy (the last reported for a pruned one), run, params."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        reported = list(trial.intermediate_values.values())
        value = trial.value if trial.value is not None else (reported[-1] if reported else None)
        rows.append({"trial": trial.number, "state": trial.state.name, "val_accuracy": value,
                     "epochs": len(reported), "run_id": trial.user_attrs.get("run_id", ""),
                     "error": trial.user_attrs.get("error", ""), **trial.params})
    return rows


def plot_history(rows: list[dict], path: str) -> None:
    """Each trial's val accuracy by trial number (pruned ones as crosses) and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        shown = [row for row in rows if row["state"] == state and row["val_accuracy"] is not None]
        axes.scatter([row["trial"] for row in shown], [row["val_accuracy"] for row in shown], marker=marker,
                     label=state.lower())
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    best, line = -1.0, []
    for row in complete:
        best = max(best, row["val_accuracy"])
        line.append(best)
    axes.step([row["trial"] for row in complete], line, where="post", label="best so far")
    axes.set(xlabel="trial", ylabel="val accuracy", title="foodpipe tune")
    axes.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)


def log_summary(client, parent_run_id: str, study, scratch: str) -> dict:
    """The study so far on the parent run: the trials table, the history plot, the best trial."""
    from mlflow.entities import Metric

    rows = trials_table(study)
    folder = os.path.join(scratch, "summary")
    os.makedirs(folder, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(os.path.join(folder, "trials.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    plot_history(rows, os.path.join(folder, "history.png"))
    best = best_trial(study)
    if best is not None:
        with open(os.path.join(folder, "best.json"), "w") as handle:
            json.dump(best, handle, indent=2)
        client.set_tag(parent_run_id, "best_run_id", best["run_id"])
        client.set_tag(parent_run_id, "best_trial", str(best["trial"]))
        client.log_batch(parent_run_id, metrics=[Metric("best_val_accuracy", best["val_accuracy"], 0, len(rows))])
    client.log_artifacts(parent_run_id, folder, "summary")
    return best


def best_trial(study) -> dict | None:
    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state.name == "COMPLETE"]
    if not complete:
        return None
    best = max(complete, key=lambda trial: (trial.value, -trial.number))
    return {"trial": best.number, "val_accuracy": best.value, "run_id": best.user_attrs.get("run_id", ""),
            "params": best.params}


def end_parent(client, run_id: str, status: str) -> None:
    """The parent run's end status, if the tracking server answers (a sweep stopping on an outage
    or Ctrl-C must still stop with its own error)."""
    try:
        client.set_terminated(run_id, status)
    except Exception as exc:
        log.warning("could not mark the sweep's run %s %s: %s", run_id, status, first_line(exc, 200))


def to_run(study, trials: int) -> bool:
    """Whether the study needs another trial: fewer than ``trials`` finished (complete or pruned),
    and fewer than ``trials`` failed (so a sweep whose every trial fails ends)."""
    found = counts(study)
    return found.get("COMPLETE", 0) + found.get("PRUNED", 0) < trials and found.get("FAIL", 0) < trials


def run(config: TuneConfig, progress: bool = True) -> dict:
    """Run trials until the study has ``config.trials`` finished ones (see ``to_run``). Interrupted
    (Ctrl-C): the running trial is marked failed, the parent run KILLED, and a rerun resumes; a
    trial left running by a killed process is not counted (Optuna marks it failed once its
    heartbeat is older than the grace period)."""
    from foodpipe import datasets, scratch

    dimensions = [parse_dimension(text) for text in config.search]
    datasets.load(config.train.data)  # a missing dataset is one line now, not a failure per trial
    study, made = open_study(config)
    if made and config.start_from_defaults:  # before the parent run is named: other processes wait for that
        enqueue_defaults(study, config.train, dimensions)
    writer = tracking.MlflowWriter(tracking.chosen_uri(config.train.mlflow_uri), config.train.experiment)
    client = writer.client
    parent = parent_run(study, made, client, writer.experiment_id, config)
    objective = make_objective(config, dimensions, parent, progress)
    folder = scratch.make("tune")
    try:
        while to_run(study, config.trials):
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True,
                           callbacks=[lambda study, _: log_summary(client, parent, study, folder)])
    except BaseException:
        end_parent(client, parent, "KILLED")
        raise
    finally:
        scratch.remove(folder)
    best = best_trial(study)  # the summary itself was logged after each trial, the last one included
    if best is None:
        client.set_terminated(parent, "FAILED")
        failed = [trial for trial in study.get_trials(deepcopy=False) if trial.state.name == "FAIL"]
        reason = f"; trial {failed[-1].number}: {failed[-1].user_attrs.get('error', '?')}" if failed else ""
        raise RunFailed(f"no trial of study {study.study_name} finished ({counts(study)}){reason}")
    client.set_terminated(parent, "FINISHED")
    return {"study": study.study_name, "storage": logs.redact(config.storage), "parent_run_id": parent,
            "trials": counts(study), "best": best}
