"""Scoring a model: evaluate on the test split, the report, the handwriting-font set."""
