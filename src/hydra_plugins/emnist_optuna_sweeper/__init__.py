"""A Hydra sweeper on current Optuna with ask/tell, pruning and resumable, shared studies."""
