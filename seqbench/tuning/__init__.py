"""Tuning studies: equal-budget Optuna studies whose trials are stored runs, trained through any executor."""
