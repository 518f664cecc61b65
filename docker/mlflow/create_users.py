"""Makes the non-admin MLflow users of the compose stack (its ``mlflow-users`` service runs this once
the server is up): the user training runs sign in as, ``MLFLOW_TRAINER_USERNAME`` with
``MLFLOW_TRAINER_PASSWORD``. Run again, it sets the password from the environment, so ``.env`` stays
the truth. Signs in as the admin (``MLFLOW_ADMIN_USERNAME``, default ``admin``, and
``MLFLOW_ADMIN_PASSWORD``) at ``MLFLOW_TRACKING_URI``. Prints no secret.
"""

import os
import sys
import time

import requests

USERS_API = "/api/2.0/mlflow/users"
WAIT_FOR_SERVER_S = 120


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + WAIT_FOR_SERVER_S
    while True:
        try:
            if requests.get(f"{url}/health", timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"create_users: the MLflow server at {url} did not answer within {WAIT_FOR_SERVER_S} s")
        time.sleep(2)


def ensure_user(url: str, admin: tuple[str, str], username: str, password: str) -> str:
    """Create ``username`` or set its password; returns what was done."""
    found = requests.get(f"{url}{USERS_API}/get", params={"username": username}, auth=admin, timeout=30)
    if found.status_code == 404:
        answer = requests.post(f"{url}{USERS_API}/create", json={"username": username, "password": password},
                               auth=admin, timeout=30)
        done = "created"
    elif found.ok:
        answer = requests.patch(f"{url}{USERS_API}/update-password",
                                json={"username": username, "password": password}, auth=admin, timeout=30)
        done = "password set"
    else:
        answer, done = found, ""
    if not answer.ok:
        sys.exit(f"create_users: the MLflow server refused to make user {username!r}: HTTP {answer.status_code}")
    return done


def main() -> None:
    url = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    admin = (os.environ.get("MLFLOW_ADMIN_USERNAME", "admin"), os.environ["MLFLOW_ADMIN_PASSWORD"])
    wait_until_up(url)
    username = os.environ["MLFLOW_TRAINER_USERNAME"]
    print(f"MLflow user {username!r}: {ensure_user(url, admin, username, os.environ['MLFLOW_TRAINER_PASSWORD'])}")


if __name__ == "__main__":
    main()
