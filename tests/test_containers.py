"""What can be checked of the containers without Docker: hadolint, the compose file's wiring, and
that the image installs exactly as the README says."""

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

DOCKERFILES = ["Dockerfile", "docker/mlflow.Dockerfile"]


def read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile):
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    result = subprocess.run([hadolint, dockerfile], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user_and_hold_no_credentials(dockerfile):
    text = read(dockerfile)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and all(user.isdigit() and user != "0" for user in users)
    assert not re.search(r"AWS_SECRET_ACCESS_KEY\s*=|ENV\s+AWS_|PASSWORD\s*=", text)


def compose():
    return yaml.safe_load(read("docker-compose.yml"))


def test_compose_wires_minio_mlflow_the_job_and_a_gpu_trainer():
    services = compose()["services"]
    assert set(services) == {"minio", "buckets", "postgres", "mlflow", "preprocess", "train"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert "mc mb" in " ".join(services["buckets"]["entrypoint"])
    mlflow_flags = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_flags and "--artifacts-destination=s3://" in mlflow_flags
    devices = services["train"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", read("Dockerfile"), re.M))
    assert services["train"]["build"]["target"] in targets and services["preprocess"]["build"]["target"] in targets
    assert os.path.exists(os.path.join(REPO, services["mlflow"]["build"]["dockerfile"]))
    for name in ("preprocess", "train"):
        assert services[name]["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"


def test_compose_takes_every_secret_from_the_environment():
    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                yield from walk(v, key)
        else:
            yield key, str(value)

    secret_keys = re.compile(r"(PASSWORD|SECRET|ACCESS_KEY|ROOT_USER)")
    for key, value in walk(compose()):
        if secret_keys.search(key):
            assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{key} is not taken from the environment"
    assert re.search(r"^\.env$", read(".gitignore"), re.M)


def test_image_installs_exactly_as_the_readme_says():
    readme = read("README.md")
    installs = re.findall(r"^RUN (pip install [^\\\n]+?)\s*(?:\\|$)", read("Dockerfile"), re.M)
    assert len(installs) == 2
    for install in installs:
        assert install in readme, install
    assert "-c constraints.txt" in read("Makefile")  # make install pins with the same file
