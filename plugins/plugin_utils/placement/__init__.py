"""Placement solver for entropy.cluster: VM packing and reconfiguration plans on OR-Tools CP-SAT.

Pure Python, no Ansible import; importable as a collection plugin_utils package or standalone
(`import placement` with plugins/plugin_utils on sys.path). ortools is only needed to solve.
"""
from __future__ import annotations

from .btrplace import import_btrplace
from .checker import check_plan
from .errors import InfeasibleError, ModelError, PlacementError
from .model import MODEL_VERSION, load_model
from .solver import PLAN_VERSION, solve

__all__ = ["load_model", "solve", "check_plan", "import_btrplace", "PlacementError", "ModelError",
           "InfeasibleError", "MODEL_VERSION", "PLAN_VERSION"]
