"""Models, training (single process or DDP), evaluation and the MLflow model wrapper."""
