"""Solve a placement model from the command line (see docs/solver.md).

usage: python3 tools/entropy_solve.py MODEL.json [-o PLAN.json] [--objective consolidate|repair|balance]
       [--time-limit S] [--seed N] [--btrplace] [--check PLAN.json]
   or: bash tools/run.sh solve MODEL.json ...   (builds the checkout's venv first if needed)

Run by a Python without ortools (the system python3), it re-runs itself with the venv's Python:
$ENTROPY_VENV, else the checkout's .venv (what `bash tools/run.sh setup` builds).
No shebang and no execute bit: the only Python shebang ansible-test sanity accepts,
`#!/usr/bin/env python`, fails on systems that have python3 only.
"""
from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
REEXEC_MARK = "ENTROPY_SOLVE_REEXEC"


def _reexec_in_venv() -> None:
    """Replace this process by the venv's Python when this one cannot solve (no ortools)."""
    if importlib.util.find_spec("ortools") is not None or os.environ.get(REEXEC_MARK):
        return
    venv = os.environ.get("ENTROPY_VENV") or os.path.join(ROOT, ".venv")
    python = os.path.join(venv, "bin", "python")
    if not os.access(python, os.X_OK):
        return  # nothing better to run: the solver says itself that ortools is missing
    os.environ[REEXEC_MARK] = "1"  # once only, even if that Python lacks ortools too
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])


if __name__ == "__main__":
    _reexec_in_venv()
    sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))
    from placement.cli import main  # pylint: disable=import-outside-toplevel
    sys.exit(main())
