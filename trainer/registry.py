"""``select``: the best finished run of an experiment by a metric, optionally registered in the
MLflow model registry with an alias moved to it."""

from foodpipe.errors import FoodpipeError
from trainer import tracking

LOWER_IS_BETTER = ("loss", "ece")


DEFAULT_ALIAS = "champion"


def select(experiment: str, tracking_uri: str | None = None, register: str | None = None,
           metric: str = "val_accuracy", alias: str | None = None) -> tuple[dict, list[dict]]:
    """The finished run with the best ``metric`` (the highest; the lowest for names ending in loss or
    ece), optionally registered as ``register`` with the registry alias ``alias`` moved to it (so
    ``models:/NAME@ALIAS`` names it; default ``DEFAULT_ALIAS``); and the runs it was compared with,
    best first."""
    client = tracking.connect(tracking.chosen_uri(tracking_uri), create=False)
    experiment_id = tracking.experiment_id(client, experiment, create=False)
    order = "ASC" if metric.endswith(LOWER_IS_BETTER) else "DESC"
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=[f"metrics.`{metric}` {order}", "attributes.start_time DESC"], max_results=50)
    runs = [run for run in runs if metric in run.data.metrics]
    if not runs:
        raise FoodpipeError(f"experiment {experiment!r} has no finished run with a {metric}")
    compared = [{"run_id": run.info.run_id, "run_name": run.info.run_name, "model": run.data.params.get("model"),
                 metric: run.data.metrics[metric], "val_accuracy": run.data.metrics.get("val_accuracy")}
                for run in runs]
    result = {**compared[0], "metric": metric, "model_uri": f"runs:/{runs[0].info.run_id}/{tracking.MODEL_ARTIFACT}"}
    if register:
        import mlflow

        alias = alias or DEFAULT_ALIAS
        model_id = tracking.logged_model_id(client, result["model_uri"], result["run_id"])
        version = mlflow.register_model(f"models:/{model_id}" if model_id else result["model_uri"], register)
        client.set_registered_model_alias(register, alias, version.version)
        result["registered"] = {"name": register, "version": int(version.version), "alias": alias,
                                "model_uri": f"models:/{register}/{version.version}",
                                "alias_uri": f"models:/{register}@{alias}"}
    return result, compared
