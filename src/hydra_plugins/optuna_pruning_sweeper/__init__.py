"""A Hydra sweeper on current Optuna (ask/tell): the official Optuna sweeper's configs and
results, plus pruning, resumable studies with one budget over many workers, and heartbeats
that fail a dead worker's trial. Generic: it knows nothing of the task it sweeps."""
