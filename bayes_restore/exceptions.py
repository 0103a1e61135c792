"""Warnings of the package."""

__all__ = ["ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at its iteration cap before its tolerance was met."""
