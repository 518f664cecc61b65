"""What can be checked of the containers without Docker: hadolint, the compose file's wiring, and
that the image installs exactly as docs/TRAINING.md says."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

DOCKERFILES = ["Dockerfile", "docker/mlflow/Dockerfile"]


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
    assert set(services) == {"minio", "buckets", "postgres", "mlflow", "mlflow-users", "preprocess", "train",
                             "input-dispatcher", "input-worker"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["buckets"]["entrypoint"][-1] == "/policies/setup.sh" and "mc mb" in read(SETUP)
    mlflow_flags = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_flags and "--artifacts-destination=s3://" in mlflow_flags
    devices = services["train"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", read("Dockerfile"), re.M))
    assert services["train"]["build"]["target"] in targets and services["preprocess"]["build"]["target"] in targets
    assert os.path.exists(os.path.join(REPO, services["mlflow"]["build"]["dockerfile"]))
    for name in ("preprocess", "train", "input-worker"):
        assert services[name]["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    # The tf.data service: workers run foodpipe's (the augmentation) and find the dispatcher's port.
    dispatcher = services["input-dispatcher"]["command"]
    dispatcher_port = dispatcher[dispatcher.index("--port") + 1]
    assert services["input-worker"]["build"]["target"] == services["input-dispatcher"]["build"]["target"] == "trainer"
    assert f"foodpipe input-service worker --dispatcher input-dispatcher:{dispatcher_port}" in \
        " ".join(services["input-worker"]["entrypoint"])


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


def test_image_installs_exactly_as_the_guide_says():
    readme = read("docs/TRAINING.md")  # the containers guide
    installs = re.findall(r"^RUN (pip install [^\\\n]+?)\s*(?:\\|$)", read("Dockerfile"), re.M)
    assert len(installs) == 2
    for install in installs:
        assert install in readme, install
    assert "-c constraints.txt" in read("Makefile")  # make install pins with the same file


SETUP = "docker/minio/setup.sh"
# The MinIO user each service signs in as: its policy is docker/minio/ROLE.json.
ROLES = {"preprocess": "preprocess", "train": "trainer", "mlflow": "mlflow", "input-worker": "trainer"}
WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}


def interpolate(value: str, env: dict) -> str:
    """Compose's ``${VAR:-default}``, ``${VAR:?message}`` and ``${VAR}`` with the variables ``env``."""
    def one(match):
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ":-":
            return rest
        raise KeyError(f"{name} is required: {rest}")
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def example_env() -> dict:
    pairs = [line.split("=", 1) for line in read("compose.env.example").splitlines() if re.match(r"^\w+=", line)]
    return dict(pairs)


def test_every_variable_compose_needs_is_in_the_example_env():
    needed = set(re.findall(r"\$\{(\w+):\?", read("docker-compose.yml")))
    assert needed and needed <= set(example_env())
    for service in compose()["services"].values():  # and with it, every value resolves
        for value in (service.get("environment") or {}).values():
            interpolate(str(value), example_env())


@pytest.mark.parametrize("opened", [None, "0.0.0.0"])
def test_published_ports_listen_on_loopback_unless_opened(opened):
    env = {**example_env(), "FOODPIPE_BIND_ADDRESS": opened or ""}
    published = [(name, interpolate(port, env)) for name, service in compose()["services"].items()
                 for port in service.get("ports", [])]
    assert {name for name, _ in published} == {"minio", "mlflow"} and len(published) == 3
    for name, port in published:
        host, host_port, container_port = port.split(":")
        assert host == (opened or "127.0.0.1"), f"{name} publishes {port}"


def test_only_minio_and_buckets_receive_the_root_credentials():
    for name, service in compose()["services"].items():
        environment = " ".join(f"{key}={value}" for key, value in (service.get("environment") or {}).items())
        holds_root = "MINIO_ROOT_" in environment
        assert holds_root == (name in ("minio", "buckets")), name


def policy(role: str) -> dict[str, set[str]]:
    """``{bucket: actions}`` a role's policy allows, from its JSON."""
    with open(os.path.join(REPO, "docker", "minio", f"{role}.json")) as f:
        document = json.load(f)
    allowed: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            assert resource.startswith("arn:aws:s3:::") and "*" not in resource.split("/")[0], resource
            bucket = resource[len("arn:aws:s3:::"):].split("/")[0]
            allowed.setdefault(bucket, set()).update(statement["Action"])
    return allowed


@pytest.mark.parametrize("role,reads,writes", [
    ("preprocess", {"raw", "datasets"}, {"datasets"}),
    ("trainer", {"datasets", "checkpoints"}, {"checkpoints"}),
    ("mlflow", {"mlflow"}, {"mlflow"}),
])
def test_each_minio_policy_names_only_its_buckets(role, reads, writes):
    allowed = policy(role)
    assert set(allowed) == reads
    assert {bucket for bucket, actions in allowed.items() if actions & WRITES} == writes
    for actions in allowed.values():
        assert "s3:*" not in actions and not any(action.startswith("admin:") for action in actions)


def test_each_service_signs_in_as_the_minio_user_of_its_policy():
    attached = {role: (key, secret) for role, key, secret in
                re.findall(r'^user (\w+) "\$(\w+)" "\$(\w+)"$', read(SETUP), re.M)}
    assert set(attached) == set(ROLES.values())
    services = compose()["services"]
    for service, role in ROLES.items():
        environment = services[service]["environment"]
        key, secret = attached[role]
        assert environment["AWS_ACCESS_KEY_ID"].startswith(f"${{{key}:?")
        assert environment["AWS_SECRET_ACCESS_KEY"].startswith(f"${{{secret}:?")
        assert key in services["buckets"]["environment"] and secret in services["buckets"]["environment"]


def test_mlflow_requires_signing_in_and_the_trainer_signs_in_as_a_non_admin_user():
    services = compose()["services"]
    assert "--app-name=basic-auth" in services["mlflow"]["command"]
    assert services["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    train = services["train"]["environment"]
    assert train["MLFLOW_TRACKING_USERNAME"] == services["mlflow-users"]["environment"]["MLFLOW_TRAINER_USERNAME"]
    assert train["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_TRAINER_PASSWORD:?")
    assert interpolate(train["MLFLOW_TRACKING_USERNAME"], {}) != "admin"
    settings = read("docker/mlflow/basic_auth.ini")
    assert not re.search(r"^admin_password", settings, re.M)  # the admin's password comes from .env only
