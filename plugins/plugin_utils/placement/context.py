"""What every phase of one solve needs, handed down once (model, options, deadline, progress)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from .model import Model, Options
from .problem import Problem
from .state import State


@dataclass
class SolveContext:
    model: Model
    prob: Problem
    st: State                       # the placement being improved, shared by every phase
    t0: float                       # time.monotonic() when the solve started
    progress: Callable[[str], None] | None = None
    deadline: float = 0.0           # default: t0 + the time limit

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = self.t0 + self.opts.time_limit_s

    @property
    def opts(self) -> Options:
        return self.model.options

    def at(self, share: float) -> float:
        """The moment when `share` of the time limit has passed."""
        return self.t0 + self.opts.time_limit_s * share

    @cached_property
    def usable(self) -> list[int]:
        return [h for h in range(self.prob.n_hosts) if self.prob.usable[h]]

    @property
    def budgeted(self) -> bool:
        """True when a migration budget (count or memory) is set."""
        return self.opts.max_migrations is not None or self.opts.max_memory_moved_mib is not None
