"""Choosing the ``tf.distribute`` strategy, and which worker is the chief.

``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several workers, MirroredStrategy
with several GPUs, else the default (one device) strategy.
"""

import json
import os

import tensorflow as tf

from foodpipe.errors import FoodpipeError


def tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FoodpipeError(f"TF_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise FoodpipeError("TF_CONFIG must be an object with 'cluster' and 'task'")
    return config


def cluster_size() -> int:
    """How many training processes TF_CONFIG describes (chief and workers); 1 without TF_CONFIG."""
    cluster = tf_config().get("cluster", {})
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker")) or 1


def is_chief() -> bool:
    """The chief writes checkpoints and logs to MLflow: task ``chief``, or worker 0 when there is no chief."""
    config = tf_config()
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {})


def split_cpu(replicas: int) -> None:
    """Present the CPU as ``replicas`` logical devices (must run before TensorFlow initializes)."""
    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def build(name: str, cpu_replicas: int = 1) -> tf.distribute.Strategy:
    if name == "auto":
        if cluster_size() > 1:
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1 or cpu_replicas > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multiworker":
        if cluster_size() < 2:
            raise FoodpipeError("strategy 'multiworker' needs TF_CONFIG naming at least two workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    split_cpu(cpu_replicas)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


PUBLIC_NAMES = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
                "_DefaultDistributionStrategy": "DefaultStrategy"}


def describe(strategy: tf.distribute.Strategy) -> str:
    """The strategy's public name (``tf.distribute.X``), e.g. for logs and run tags."""
    name = type(strategy).__name__
    return PUBLIC_NAMES.get(name, name)
