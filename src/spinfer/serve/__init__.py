"""The served model (MLflow pyfunc), the registry workflow and prediction."""
