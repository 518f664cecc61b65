"""MLflow's built-in authentication, as the compose stack runs it: a real ``mlflow server --app-name
basic-auth`` on loopback with the stack's ``basic_auth.ini`` and its user maker
(``docker/mlflow/create_users.py``). The trainer signs in with MLflow's standard variables."""

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import REPO, foodpipe, start_mlflow_server, stop_process
from tests.test_trainer import TINY, last_json

ADMIN_PASSWORD = "admin-pw-5b1e07"
TRAINER, TRAINER_PASSWORD = "trainer", "trainer-pw-93c4aa"
CREATE_USERS = os.path.join(REPO, "docker", "mlflow", "create_users.py")


def create_users(uri: str, admin_password: str = ADMIN_PASSWORD) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ADMIN_PASSWORD": admin_password,
           "MLFLOW_TRAINER_USERNAME": TRAINER, "MLFLOW_TRAINER_PASSWORD": TRAINER_PASSWORD}
    return subprocess.run([sys.executable, CREATE_USERS], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The server with the stack's auth settings (its user store moved into the test's folder) and
    the stack's trainer user, made by the stack's own script."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    with open(os.path.join(REPO, "docker", "mlflow", "basic_auth.ini")) as f:
        settings = f.read()
    assert "database_uri = sqlite:////home/mlflow/auth/basic_auth.db" in settings
    ini = root / "basic_auth.ini"
    ini.write_text(settings.replace("/home/mlflow/auth", str(root)))
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-session-key"}
    proc, uri = start_mlflow_server(str(root), extra_args=["--app-name", "basic-auth"], env=env)
    made = create_users(uri)
    assert made.returncode == 0 and f"MLflow user '{TRAINER}': created" in made.stdout, made.stdout + made.stderr
    yield uri
    stop_process(proc)


def signed_in(user: str | None, password: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    if user:
        env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    return env


def test_the_server_refuses_whoever_has_not_signed_in(auth_server):
    search = f"{auth_server}/api/2.0/mlflow/experiments/search"
    assert requests.get(search, params={"max_results": 1}, timeout=30).status_code == 401
    assert requests.get(search, params={"max_results": 1}, auth=(TRAINER, "wrong"), timeout=30).status_code == 401
    assert requests.get(search, params={"max_results": 1}, auth=(TRAINER, TRAINER_PASSWORD), timeout=30).ok
    made = requests.post(f"{auth_server}/api/2.0/mlflow/users/create", json={"username": "x", "password": "y"},
                         auth=(TRAINER, TRAINER_PASSWORD), timeout=30)
    assert made.status_code == 403  # making users is the admin's alone
    assert requests.get(f"{auth_server}/health", timeout=30).ok  # the compose healthcheck needs no sign-in


def test_the_user_maker_runs_again_and_refuses_a_wrong_admin_password(auth_server):
    again = create_users(auth_server)
    assert again.returncode == 0 and f"MLflow user '{TRAINER}': password set" in again.stdout
    wrong = create_users(auth_server, admin_password="not-the-admin-pw")
    assert wrong.returncode != 0 and "HTTP 401" in wrong.stderr
    assert "not-the-admin-pw" not in wrong.stdout + wrong.stderr and TRAINER_PASSWORD not in wrong.stderr


@pytest.mark.parametrize("user,password,message", [
    (None, None, "requires signing in: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    (TRAINER, "wrong-pw-7f3d21", f"rejected the credentials of user '{TRAINER}'"),
], ids=["none", "wrong"])
def test_train_without_the_right_credentials_stops_before_training(auth_server, trainer_dataset, tmp_path, user,
                                                                   password, message):
    result = foodpipe("train", "--data", trainer_dataset, *TINY, "--epochs", "1", "--mlflow-uri", auth_server,
                      env=signed_in(user, password))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("foodpipe: error: MLflow tracking server") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and "Epoch 1/" not in result.stdout
    assert password is None or password not in result.stdout + result.stderr


@pytest.mark.slow
def test_train_with_the_trainer_credentials_logs_its_run_and_never_the_password(auth_server, trainer_dataset):
    import mlflow

    result = foodpipe("train", "--data", trainer_dataset, *TINY, "--epochs", "1", "--mlflow-uri", auth_server,
                      "--experiment", "auth", env=signed_in(TRAINER, TRAINER_PASSWORD))
    assert result.returncode == 0, result.stderr[-3000:]
    assert TRAINER_PASSWORD not in result.stdout + result.stderr
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    try:
        run = mlflow.MlflowClient(auth_server).get_run(last_json(result.stdout)["run_id"])
    finally:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name)
    assert run.info.status == "FINISHED"
    permission = requests.get(f"{auth_server}/api/3.0/mlflow/users/permissions/get", timeout=30,
                              params={"username": TRAINER, "resource_type": "experiment",
                                      "resource_id": run.info.experiment_id}, auth=("admin", ADMIN_PASSWORD))
    assert permission.ok and "MANAGE" in permission.text, permission.text  # the trainer user made the experiment
    assert "val_accuracy" in run.data.metrics
    logged = list(run.data.params.values()) + list(run.data.tags.values())
    assert not any(TRAINER_PASSWORD in value for value in logged)
