"""Where a run's params, metrics and artifacts go: MLflow (the chief), or nowhere (other workers).

``MlflowWriter`` never lets a tracking-server outage stop training: a call that fails is kept and
retried before the next one, and whatever still could not be logged at the end is named in a
warning. An unreachable server at the *start* is an error, raised before any training.
"""

import logging
import os
import time
from urllib.parse import urlparse

from foodpipe import logs, scratch, storage
from foodpipe.errors import FoodpipeError, first_line

log = logging.getLogger(f"foodpipe.{__name__}")  # under the logger the commands show

# MLflow retries a failed request 7 times with backoff factor 2 (minutes of waiting) and waits
# 120 s for an answer: a training run would stall for that long at every epoch of an outage.
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
MODEL_ARTIFACT = "model"
PARENT_RUN_TAG = "mlflow.parentRunId"  # makes a run the child of another in MLflow's UI (tune's trials)
DEFAULT_LOCAL_STORE = "./mlruns"  # the contract's default when neither flag nor MLFLOW_TRACKING_URI is set


def chosen_uri(flag: str | None = None) -> str:
    """``--mlflow-uri``, else ``MLFLOW_TRACKING_URI``, else the local store."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_LOCAL_STORE


def configure_mlflow_client() -> None:
    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def local_store_uri(path: str) -> str:
    """A local tracking store: SQLite plus an artifact folder, both under ``path``.

    MLflow 3 refuses its old file store by default, and a database also backs the Model Registry.
    """
    storage.make_local_folder(path, "the local MLflow store")
    return f"sqlite:///{os.path.abspath(path)}/mlflow.db"


REMOTE_SCHEMES = ("http", "https", "postgresql", "mysql", "databricks")  # a tracking or database server


def resolve_tracking_uri(uri: str) -> str:
    scheme = urlparse(uri).scheme
    if scheme in REMOTE_SCHEMES or scheme == "sqlite":
        return uri
    return local_store_uri(uri[len("file:"):] if scheme == "file" else uri)


def local_database(uri: str) -> str | None:
    """The SQLite file a tracking ``uri`` names or ``local_store_uri`` would make (a folder, ``file:``,
    ``sqlite:///``); None for a server."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        return uri[len("sqlite:///"):] or None
    if scheme in REMOTE_SCHEMES:
        return None
    return os.path.join(os.path.abspath(uri[len("file:"):] if scheme == "file" else uri), "mlflow.db")


def connect(uri: str, create: bool = True):
    """An ``MlflowClient`` for ``uri`` that has answered once; else a one-line ``FoodpipeError``.
    ``create=False`` (commands that only read runs and models): a local store that is not there is
    that one line, not made empty (a typo in ``--mlflow-uri``, or the command run in another folder)."""
    configure_mlflow_client()
    database = None if create else local_database(uri)
    if database and not os.path.isfile(database):
        raise FoodpipeError(f"no MLflow store at {database}: nothing has been tracked there (name the store or "
                            f"server with --mlflow-uri or MLFLOW_TRACKING_URI)")
    import mlflow

    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)

    def answered():
        client = mlflow.MlflowClient(uri)
        client.search_experiments(max_results=1)
        return client

    try:  # processes starting at once on a new local store race to make its tables: see ``retried``
        return retried(answered, uri)
    except Exception as exc:  # requests, MlflowException, SQLAlchemy: all mean "not usable"
        raise refusal(exc, uri, "connecting") or FoodpipeError(
            f"MLflow tracking server {logs.redact(uri)} is unreachable: {first_line(exc, 200)}") from None


NEW_DATABASE_WAITS = (0.5, 1, 2, 4)  # seconds: a schema migration of MLflow's or Optuna's takes a few


def retried(make, url: str, waits=NEW_DATABASE_WAITS):
    """``make()``, which opens the database at ``url``; for a SQLite file that exists by the time it
    fails, tried again after each of ``waits``. Another process may be making that database at the
    same moment (MLflow's and Optuna's stores migrate their schema on first use, and the process that
    loses the race sees half-made tables); once it is done, a new try finds the tables made. A
    database that cannot be opened at all (no such folder, a server) fails at once."""
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    for wait in waits:
        try:
            return make()
        except Exception:
            if not (path and os.path.exists(path)):
                raise
            time.sleep(wait)
    return make()


def refusal(exc: BaseException, uri: str, what: str) -> FoodpipeError | None:
    """The one-line error for a server that refused who we are (HTTP 401) or what we asked (403);
    None for any other failure. Never quotes the password."""
    status = getattr(exc, "get_http_status_code", lambda: None)()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    where = logs.redact(uri)
    if status == 401 and not user:
        return FoodpipeError(f"MLflow tracking server {where} requires signing in: set MLFLOW_TRACKING_USERNAME "
                             "and MLFLOW_TRACKING_PASSWORD")
    if status == 401:
        return FoodpipeError(f"MLflow tracking server {where} rejected the credentials of user {user!r}: check "
                             "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if status == 403:
        return FoodpipeError(f"MLflow tracking server {where} does not allow user {user!r} {what}")
    return None


def experiment_id(client, name: str, create: bool = True) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        raise FoodpipeError(f"no MLflow experiment named {name!r} at {logs.redact(client.tracking_uri)}")
    artifact_location = None
    if client.tracking_uri.startswith("sqlite:///"):
        store_dir = os.path.dirname(client.tracking_uri[len("sqlite:///"):])
        artifact_location = os.path.join(store_dir, "artifacts")
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception as exc:
        made_meanwhile = client.get_experiment_by_name(name)  # by a process that started at the same time
        if made_meanwhile is not None:
            return made_meanwhile.experiment_id
        raise refusal(exc, client.tracking_uri, f"to create the experiment {name!r}") or exc


DATASET_CONTEXT_TAG = "mlflow.data.context"  # the tag MLflow's UI shows beside a run's dataset
TRAINING_CONTEXT = "training"  # MLflow's own word for a dataset a run trained on


def dataset_input(info, context: str, split: str | None = None):
    """The dataset ``info`` (or one ``split`` of it) as an MLflow dataset input of a run (the UI's
    Datasets column): named by its folder (``food10``, ``food10/test``), its digest the
    ``metadata.json`` file's (the first 32 hex digits; MLflow keeps 36 characters), its source the
    URI, its profile the full digest, the split counts and the classes. MLflow keeps one input per
    name and digest in a run, so a split evaluated is a dataset of its own name."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    name = info.uri.rstrip("/").rsplit("/", 1)[-1] + (f"/{split}" if split else "")
    profile = {"metadata_sha256": info.sha256, "splits": {each: info.count(each) for each in info.splits},
               "num_classes": info.num_classes, "classes": info.classes, **({"split": split} if split else {})}
    dataset = Dataset(name=name, digest=info.sha256[:32], source_type="s3" if info.uri.startswith("s3://") else "local",
                      source=json.dumps({"uri": info.uri}), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, context)])


def logged_model_id(client, model_uri: str, run_id: str | None) -> str | None:
    """The MLflow logged model a model URI names: ``models:/MODEL_ID``, a registry version's model,
    or the logged model ``model`` of the run; None for a model logged before foodpipe made logged
    models (its files are the run's artifacts)."""
    name = model_uri[len("models:/"):] if model_uri.startswith("models:/") else ""
    if name.startswith("m-") and "/" not in name and "@" not in name:
        return name
    if run_id is None:
        return None
    experiment = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment], filter_string=f"name = '{MODEL_ARTIFACT}'")
    return next((model.model_id for model in found if model.source_run_id == run_id), None)


class Scratch:
    """What both writers share: a local folder for files on their way to MLflow (plots, the saved
    model), made on first use and removed by ``finish``, so a file whose upload is being retried
    stays until the run ends and no run leaves its files behind."""

    _scratch: str | None = None

    def scratch_dir(self) -> str:
        if self._scratch is None:
            self._scratch = scratch.make("run")
        return self._scratch

    def remove_scratch(self) -> None:
        if self._scratch is not None:
            scratch.remove(self._scratch)
            self._scratch = None


class NullWriter(Scratch):
    """Logs nothing: the writer of the workers that are not the chief (only the chief logs)."""

    run_id = None

    def start(self, params: dict, tags: dict, run_id: str | None = None) -> None:
        return None

    def log_metrics(self, metrics: dict, step: int) -> None:
        pass

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        pass

    def log_dataset(self, info, context: str) -> None:
        pass

    def log_model(self, model, example_jpeg: bytes, params: dict, metrics: dict, info, step: int) -> None:
        return None

    def finish(self, status: str = "FINISHED") -> list[str]:
        self.remove_scratch()
        return []


class MlflowWriter(Scratch):
    def __init__(self, tracking_uri: str, experiment: str, run_name: str | None = None, tags: dict | None = None):
        """``tags``: set on the run besides the trainer's (e.g. ``PARENT_RUN_TAG``)."""
        self.client = connect(tracking_uri)
        self.tracking_uri = self.client.tracking_uri
        self.experiment_id = experiment_id(self.client, experiment)
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.model_id = None  # of the run's logged model, once made
        self.run_id = None
        self._pending: list[tuple[str, callable]] = []
        self._warned = False

    def start(self, params: dict, tags: dict, run_id: str | None = None) -> str:
        """A new run, or the run ``run_id`` continued (resume). Errors here are fatal, in one line."""
        try:
            return self._start(params, tags, run_id)
        except Exception as exc:
            raise refusal(exc, self.tracking_uri, "to write runs in this experiment") or FoodpipeError(
                f"MLflow tracking server {logs.redact(self.tracking_uri)} could not start the run: "
                f"{first_line(exc, 200)}") from None

    def _start(self, params: dict, tags: dict, run_id: str | None) -> str:
        from mlflow.entities import Param, RunTag

        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=self.run_name)
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                              tags=[RunTag(k, str(v)) for k, v in {**tags, **self.tags}.items()])
        return self.run_id

    def _attempt(self, what: str, action) -> None:
        """Run ``action`` after anything still pending; on failure keep it for later and warn once."""
        self._pending.append((what, action))
        while self._pending:
            what, action = self._pending[0]
            try:
                action()
            except Exception as exc:
                if not self._warned:
                    reason = first_line(exc, 200)
                    log.warning("MLflow at %s failed (%s): training goes on; %s and later records will be "
                                "retried", logs.redact(self.tracking_uri), reason, what)
                    self._warned = True
                return
            self._pending.pop(0)
            if self._warned:
                log.warning("MLflow at %s is back: logging %d delayed record(s) from %s on",
                            logs.redact(self.tracking_uri),
                            len(self._pending) + 1, what)
                self._warned = False

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._attempt(f"metrics of step {step}", lambda: self.client.log_batch(self.run_id, metrics=batch))

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        name = os.path.join(artifact_path or "", os.path.basename(local_path))
        if os.path.isdir(local_path):
            self._attempt(f"artifact {name}", lambda: self.client.log_artifacts(self.run_id, local_path, name))
        else:
            self._attempt(f"artifact {name}", lambda: self.client.log_artifact(self.run_id, local_path, artifact_path))

    def log_dataset(self, info, context: str) -> None:
        """The dataset the run read, as an MLflow dataset input (see ``dataset_input``)."""
        inputs = [dataset_input(info, context)]
        self._attempt("the dataset input", lambda: self.client.log_inputs(self.run_id, datasets=inputs))

    def log_model(self, model, example_jpeg: bytes, params: dict, metrics: dict, info, step: int) -> str:
        """The serving model (see ``packaging.save_model``) as an MLflow logged model named
        ``model``, of this run (so ``runs:/RUN/model`` names it too, and ``models:/MODEL_ID``), with
        the run's ``params`` and the kept epoch's ``metrics`` on the dataset ``info``, logged at
        ``step`` (where the run's history already holds them)."""
        from trainer import packaging

        path = packaging.save_model(model, example_jpeg, self.scratch_dir())
        self._attempt("the model", lambda: self._log_model(path, params, metrics, info, step))
        return f"runs:/{self.run_id}/{MODEL_ARTIFACT}"

    def _log_model(self, path: str, params: dict, metrics: dict, info, step: int) -> None:
        """Made once (a retry after an outage continues the same model), uploaded, then READY."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric

        if self.model_id is None:
            self.model_id = self.client.create_logged_model(
                self.experiment_id, name=MODEL_ARTIFACT, source_run_id=self.run_id, model_type="keras",
                params={key: str(value) for key, value in params.items()}).model_id
        self.client.log_model_artifacts(self.model_id, path)
        self.client.finalize_logged_model(self.model_id, LoggedModelStatus.READY)
        self.client.log_outputs(self.run_id, [LoggedModelOutput(self.model_id, step=step)])
        dataset, now = dataset_input(info, TRAINING_CONTEXT).dataset, int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key, value, now, step, model_id=self.model_id, dataset_name=dataset.name,
                   dataset_digest=dataset.digest, run_id=self.run_id) for key, value in metrics.items()])

    def finish(self, status: str = "FINISHED") -> list[str]:
        """End the run; returns what could not be logged (and says so in a warning)."""
        self._attempt("the run's end status", lambda: self.client.set_terminated(self.run_id, status))
        lost = [what for what, _ in self._pending]
        if lost:
            log.warning("MLflow at %s stayed unreachable; not logged to run %s: %s", logs.redact(self.tracking_uri),
                        self.run_id, "; ".join(lost))
        self.remove_scratch()
        return lost
