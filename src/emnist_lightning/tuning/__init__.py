"""Optuna tuning: search spaces from Hydra sweep syntax, storages, trials in tasks, results."""
