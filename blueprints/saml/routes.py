"""Filled in by its own issue."""
from . import bp  # noqa: F401
