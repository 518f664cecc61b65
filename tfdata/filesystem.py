"""tensorflow-io's S3 filesystem, configured once per process from foodpipe's S3 settings."""

import functools

from foodpipe import s3, uri


@functools.lru_cache(maxsize=None)
def _enable(settings: s3.S3Settings) -> None:
    settings.apply_to_environment()  # S3_ENDPOINT, S3_USE_HTTPS, ... are read when the plugin loads
    import tensorflow_io  # noqa: F401  (registers the s3:// scheme with tf.io.gfile and tf.data)


def ensure_readable(location: str, settings: s3.S3Settings | None = None) -> None:
    """Make ``location`` readable by TensorFlow: a no-op for local paths.

    Note: once tensorflow-io's S3 plugin is loaded the process aborts at interpreter exit
    (tensorflow/io#2039); foodpipe's commands exit through ``foodpipe.process.exit_now``.
    """
    if uri.is_s3(location):
        _enable(settings or s3.S3Settings.from_env())
