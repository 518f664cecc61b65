"""One S3 configuration for every client: Beam's S3 filesystem, tensorflow-io, boto3 and minio.

The endpoint comes from ``--s3-endpoint`` or ``AWS_ENDPOINT_URL``; credentials only ever come from
the standard AWS variables (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``) and are never put in
flags, pipeline options, logs or metadata: each client reads them from the environment itself.
"""

import dataclasses
import functools
import os
from urllib.parse import urlparse

from foodpipe.errors import FoodpipeError

DEFAULT_REGION = "us-east-1"
# Credentials of the embedded development server (`foodpipe s3-server`), like MinIO's minioadmin.
EMBEDDED_ACCESS_KEY = "foodpipe"
EMBEDDED_SECRET_KEY = "foodpipe-dev-secret"

# Fail fast on an unreachable endpoint instead of botocore's minute-long default retries.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
MAX_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """Where S3 is. ``endpoint_url=None`` means AWS itself."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    verify_tls: bool = True

    def __post_init__(self):
        if self.endpoint_url is not None:
            parsed = urlparse(self.endpoint_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise FoodpipeError(
                    f"S3 endpoint must look like http://host:port or https://host, got {self.endpoint_url!r}"
                )

    @classmethod
    def from_env(cls, endpoint_flag: str | None = None) -> "S3Settings":
        endpoint = endpoint_flag or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        verify = os.environ.get("FOODPIPE_S3_VERIFY_TLS", "1").lower() not in ("0", "false", "no")
        return cls(endpoint_url=endpoint.rstrip("/") if endpoint else None, region=region, verify_tls=verify)

    def apply_to_environment(self) -> None:
        """Export the settings for clients that only read the environment, including child processes
        (Beam workers, tensorflow-io's S3 plugin which wants ``S3_ENDPOINT`` with its scheme)."""
        os.environ.setdefault("AWS_REGION", self.region)
        os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        if self.endpoint_url:
            os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
            os.environ["S3_ENDPOINT"] = self.endpoint_url
            os.environ["S3_USE_HTTPS"] = "1" if self.endpoint_url.startswith("https") else "0"
        os.environ["S3_VERIFY_SSL"] = "1" if self.verify_tls else "0"

    def beam_flags(self) -> list[str]:
        """Beam S3 options; credentials are left to boto3's environment lookup on each worker."""
        flags = [f"--s3_region_name={self.region}"]
        if self.endpoint_url:
            flags.append(f"--s3_endpoint_url={self.endpoint_url}")
        if not self.verify_tls:
            flags.append("--s3_verify=false")
        return flags

    def boto3_client(self):
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            s3={"addressing_style": "path"},
            max_pool_connections=32,
        )
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, verify=self.verify_tls, config=config
        )

    def minio_client(self):
        from minio import Minio

        endpoint = urlparse(self.endpoint_url or "https://s3.amazonaws.com")
        return Minio(
            endpoint.netloc,
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=self.region,
            secure=endpoint.scheme == "https",
            cert_check=self.verify_tls,
        )


def describe_error(exc: BaseException, settings: S3Settings, what: str) -> FoodpipeError:
    """Turn a boto3/botocore failure into a one-line explanation (never quoting credentials)."""
    from botocore import exceptions as bce

    where = settings.endpoint_url or "AWS S3"
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ConnectionClosedError)):
        return FoodpipeError(f"cannot reach the S3 endpoint {where} while {what}: is the server running?")
    if isinstance(exc, bce.NoCredentialsError):
        return FoodpipeError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, bce.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",) or (code == "404" and "bucket" in what):
            return FoodpipeError(f"S3 bucket does not exist while {what} (endpoint {where})")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken") or status == 403:
            return FoodpipeError(
                f"S3 at {where} rejected the credentials while {what} ({code or status}): "
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        message = exc.response.get("Error", {}).get("Message", "")
        return FoodpipeError(f"S3 error {code or status} while {what} (endpoint {where}): {message}".rstrip(": "))
    if isinstance(exc, bce.BotoCoreError):
        return FoodpipeError(f"S3 client error while {what} (endpoint {where}): {type(exc).__name__}")
    return FoodpipeError(f"{type(exc).__name__} while {what}: {exc}")


def check_bucket(settings: S3Settings, bucket: str, what: str, create: bool = False) -> None:
    """Fail with a one-line error unless ``bucket`` exists (or, with ``create``, could be made) and
    the credentials are accepted."""
    from botocore import exceptions as bce

    client = cached_client(settings)
    try:
        client.head_bucket(Bucket=bucket)
    except bce.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) not in ("404", "NoSuchBucket"):
            raise describe_error(exc, settings, what) from None
        if not create:
            where = settings.endpoint_url or "AWS"
            raise FoodpipeError(f"S3 bucket {bucket!r} does not exist (endpoint {where})") from None
        try:
            client.create_bucket(Bucket=bucket)
        except (bce.ClientError, bce.BotoCoreError, OSError) as create_exc:
            raise describe_error(create_exc, settings, f"creating bucket {bucket!r}") from None
    except (bce.BotoCoreError, OSError) as exc:
        raise describe_error(exc, settings, what) from None


@functools.lru_cache(maxsize=None)
def cached_client(settings: S3Settings):
    """One boto3 client per process and settings (boto3 clients are thread-safe; making one
    is slow, and Beam's S3 filesystem does it on every ``open``)."""
    return settings.boto3_client()
