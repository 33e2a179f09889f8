"""Exceptions raised by the placement solver."""
from __future__ import annotations


class PlacementError(Exception):
    """Base class: anything the solver reports to its caller."""


class ModelError(PlacementError):
    """The model is malformed; the message names the offending entry."""


class InfeasibleError(PlacementError):
    """No placement satisfies the model; `explanation` says which part cannot be met."""

    def __init__(self, explanation: str, details: list[str] | None = None) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.details = list(details or [])
