"""Fault injection and bad input against the real platform, with a scoreboard.

``run_scenarios`` builds a scratch project on the tiny profile (real Zarr stores, Dask
LocalCluster, MLflow SQLite store and registry, ``mlflow models serve``, Optuna storage)
and runs each scenario: it injects a fault or sends bad input, then checks what the
platform promises: nothing lost, every failure a clear one-line message. Every scenario
returns an ``Outcome``; ``spinfer doctor faults`` prints them as a scoreboard whose last
line is ``tried=N passed=M lost_data=K``. tests/faults runs the same scenarios.

Traffic goes to 127.0.0.1 only, request counts and timeouts are bounded, and every process
a scenario starts is killed at its end. Every scenario runs in under about a minute.
"""

from spinfer.faults.lab import Lab, Outcome
from spinfer.faults.scenarios import SCENARIOS, run_scenarios, scoreboard

__all__ = ["SCENARIOS", "Lab", "Outcome", "run_scenarios", "scoreboard"]
