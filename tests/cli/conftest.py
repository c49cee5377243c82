"""CLI fixtures: the inference tests' run folders (untrained and briefly trained checkpoints)."""

from ..inference.conftest import trained_run, two_fold_runs, untrained_run  # noqa: F401
