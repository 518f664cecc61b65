"""Helpers for the two kinds of location foodpipe accepts: local paths and ``s3://bucket/prefix``."""

import os

from foodpipe.errors import FoodpipeError

S3_SCHEME = "s3://"


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; the key has no leading or trailing slash."""
    if not is_s3(uri):
        raise FoodpipeError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise FoodpipeError(f"S3 URI has no bucket: {uri!r}")
    return bucket, key.strip("/")


def normalize(uri: str) -> str:
    """Strip trailing slashes; make local paths absolute so that prefix checks are meaningful."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return f"{S3_SCHEME}{bucket}/{key}" if key else f"{S3_SCHEME}{bucket}"
    return os.path.abspath(os.path.expanduser(uri))


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(uri, *parts)


def is_inside(child: str, parent: str) -> bool:
    """True when ``child`` is ``parent`` or lies below it (both normalized first)."""
    child, parent = normalize(child), normalize(parent)
    return child == parent or child.startswith(parent.rstrip("/") + "/")
