#!/usr/bin/env python
"""Solve a placement model from the command line (see docs/solver.md).

usage: tools/entropy_solve.py MODEL.json [-o PLAN.json] [--objective consolidate|repair|balance]
       [--time-limit S] [--seed N] [--btrplace] [--check PLAN.json]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "plugins", "plugin_utils"))

from placement.cli import main  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(main())
