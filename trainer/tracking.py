"""Where a run's params, metrics and artifacts go: MLflow (the chief), or nowhere (other workers).

``MlflowWriter`` never lets a tracking-server outage stop training: a call that fails is kept and
retried before the next one, and whatever still could not be logged at the end is named in a
warning. An unreachable server at the *start* is an error, raised before any training.
"""

import logging
import os
import shutil
import tempfile
import time
from urllib.parse import urlparse

from foodpipe import logs
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
    os.makedirs(path, exist_ok=True)
    return f"sqlite:///{os.path.abspath(path)}/mlflow.db"


def resolve_tracking_uri(uri: str) -> str:
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https", "sqlite", "postgresql", "mysql", "databricks"):
        return uri
    return local_store_uri(uri[len("file:"):] if scheme == "file" else uri)


def connect(uri: str):
    """An ``MlflowClient`` for ``uri`` that has answered once; else a one-line ``FoodpipeError``."""
    configure_mlflow_client()
    import mlflow

    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # requests, MlflowException, SQLAlchemy: all mean "not usable"
        raise refusal(exc, uri, "connecting") or FoodpipeError(
            f"MLflow tracking server {logs.redact(uri)} is unreachable: {first_line(exc, 200)}") from None
    return client


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
        raise refusal(exc, client.tracking_uri, f"to create the experiment {name!r}") or exc


class Scratch:
    """What both writers share: a local folder for files on their way to MLflow (plots, the saved
    model), made on first use and removed by ``finish``, so a file whose upload is being retried
    stays until the run ends and no run leaves its files behind."""

    _scratch: str | None = None

    def scratch_dir(self) -> str:
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="foodpipe-run-")
        return self._scratch

    def remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
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

    def log_model(self, model, example_jpeg: bytes) -> None:
        return None

    def finish(self, status: str = "FINISHED") -> list[str]:
        self.remove_scratch()
        return []


class MlflowWriter(Scratch):
    def __init__(self, tracking_uri: str, experiment: str, run_name: str | None = None):
        self.client = connect(tracking_uri)
        self.tracking_uri = self.client.tracking_uri
        self.experiment_id = experiment_id(self.client, experiment)
        self.run_name = run_name
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
                              tags=[RunTag(k, str(v)) for k, v in tags.items()])
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

    def log_model(self, model, example_jpeg: bytes) -> str:
        """The serving model as the run's ``model`` (see ``packaging.save_model``)."""
        from trainer import packaging

        path = packaging.save_model(model, example_jpeg, self.scratch_dir())
        self._attempt("the model", lambda: self.client.log_artifacts(self.run_id, path, MODEL_ARTIFACT))
        return f"runs:/{self.run_id}/{MODEL_ARTIFACT}"

    def finish(self, status: str = "FINISHED") -> list[str]:
        """End the run; returns what could not be logged (and says so in a warning)."""
        self._attempt("the run's end status", lambda: self.client.set_terminated(self.run_id, status))
        lost = [what for what, _ in self._pending]
        if lost:
            log.warning("MLflow at %s stayed unreachable; not logged to run %s: %s", logs.redact(self.tracking_uri),
                        self.run_id, "; ".join(lost))
        self.remove_scratch()
        return lost
