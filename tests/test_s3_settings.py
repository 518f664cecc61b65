"""TLS verification is on by default for every client foodpipe configures, off only when asked."""

import os

from foodpipe import s3


def test_tls_verification_is_on_by_default_and_reaches_every_client(monkeypatch):
    for name in ("FOODPIPE_S3_VERIFY_TLS", "S3_ENDPOINT", "S3_USE_HTTPS", "S3_VERIFY_SSL", "AWS_REGION",
                 "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)  # restored after the test: apply_to_environment sets them
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.example:9000")
    settings = s3.S3Settings.from_env()
    assert settings.verify_tls
    assert "--s3_verify=false" not in settings.beam_flags()
    settings.apply_to_environment()
    assert os.environ["S3_VERIFY_SSL"] == "1" and os.environ["S3_USE_HTTPS"] == "1"
    client = settings.boto3_client()
    assert client._endpoint.http_session._verify is True


def test_tls_verification_can_be_turned_off_explicitly(monkeypatch):
    monkeypatch.setenv("FOODPIPE_S3_VERIFY_TLS", "0")
    settings = s3.S3Settings.from_env("https://minio.example:9000")
    assert not settings.verify_tls and "--s3_verify=false" in settings.beam_flags()
    assert settings.boto3_client()._endpoint.http_session._verify is False
