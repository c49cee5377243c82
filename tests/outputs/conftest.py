"""Outputs fixtures: the inference tests' run folders."""

from ..inference.conftest import untrained_run  # noqa: F401
