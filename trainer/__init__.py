"""The distributed, MLflow-tracked trainer (see the issue tracker)."""
