"""Solve a placement model from the command line (see docs/solver.md).

usage: python3 tools/entropy_solve.py MODEL.json [-o PLAN.json] [--objective consolidate|repair|balance|schedule]
       [--time-limit S] [--seed N] [--btrplace] [--network] [--check PLAN.json]
   or: bash tools/run.sh solve MODEL.json ...   (builds the checkout's venv first if needed)
MODEL.json may also be the output of `ansible-inventory -i <cluster>.libvirt_cluster.yml --list`: the model is
then built from it by the inventory's own function (cluster_model.build_model), constraints included.

Run by a Python without ortools (the system python3), it re-runs itself with the venv's Python:
$ENTROPY_VENV, else the checkout's .venv (what `bash tools/run.sh setup` builds).
No shebang and no execute bit: the only Python shebang ansible-test sanity accepts,
`#!/usr/bin/env python`, fails on systems that have python3 only.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import sys
import time
from typing import Any, TextIO

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
REEXEC_MARK = "ENTROPY_SOLVE_REEXEC"
EXIT_BAD_INPUT = 2
EXIT_INFEASIBLE = 3


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


def _parser(objectives: tuple[str, ...]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="entropy_solve.py", description="Compute a VM placement and a migration plan.")
    p.add_argument("model", help="model JSON file, or the output of ansible-inventory --list of a libvirt_cluster inventory "
                                 "(or a BtrPlace .json/.json.gz with --btrplace); '-' = stdin")
    p.add_argument("-o", "--output", help="write the plan JSON here (default: stdout)")
    p.add_argument("--objective", choices=objectives)
    p.add_argument("--time-limit", type=float, metavar="S", help="seconds (default: the model's, else 30)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, choices=(1, 2))
    p.add_argument("--btrplace", action="store_true", help="the input is a BtrPlace instance")
    p.add_argument("--network", action="store_true", help="with ansible-inventory output: build the network model "
                                                          "(version 2, VM net_mbps from the measured rx+tx rates)")
    p.add_argument("--grid", action="store_true", help="hosts carry 'cluster': solve each cluster on its own in parallel "
                   "processes after a grid level that moves VMs between clusters (docs/solver.md, Grids of clusters)")
    p.add_argument("--grid-workers", type=int, default=2, metavar="N", help="with --grid: worker processes (default 2)")
    p.add_argument("--check", metavar="PLAN", help="do not solve: check this plan against the model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")
    return p


def _load(path: str, btrplace: bool, objective: str | None, placement: Any, network: bool = False) -> Any:
    if btrplace:
        return placement.import_btrplace(path, objective=objective)
    if path == "-":
        data = json.load(sys.stdin)
    else:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
    if isinstance(data, dict) and "_meta" in data:  # ansible-inventory --list: the model as the inventory builds it
        return _cluster_model().model_from_inventory_json(data, network=network)
    return data


def _cluster_model() -> Any:
    """plugins/plugin_utils/cluster_model.py, imported as part of this collection (it uses the collection's
    module_utils): from the ansible_collections tree this checkout is installed in, or the link `run.sh setup` makes."""
    here = os.path.realpath(ROOT)
    for top in (os.path.join(ROOT, os.pardir, os.pardir, os.pardir), os.path.join(ROOT, ".tmp", "collections")):
        if os.path.realpath(os.path.join(top, "ansible_collections", "entropy", "cluster")) == here:
            if top not in sys.path:
                sys.path.insert(0, top)
            from ansible_collections.entropy.cluster.plugins.plugin_utils import cluster_model  # pylint: disable=import-outside-toplevel
            return cluster_model
    raise ValueError("reading ansible-inventory output needs this collection under an ansible_collections/entropy/cluster "
                     "directory: run bash tools/run.sh setup, or install the collection")


def _summary(plan: dict, out: TextIO, units: bool = True) -> None:
    """`units=False` for inputs whose amounts have no unit (BtrPlace): no GiB, no run time in seconds."""
    s = plan["stats"]
    if units:
        moved = (f"{s['memory_moved_mib'] / 1024:.1f} GiB moved, {s['steps']} steps, {s['pivots']} pivots, "
                 f"~{s['estimated_duration_s']:.0f} s to run")
    else:
        moved = f"{s['memory_moved_mib']:g} memory units moved, {s['steps']} steps, {s['pivots']} pivots"
    out.write(f"status {plan['status']} ({plan['objective']}): hosts used {s['hosts_used_before']} -> "
              f"{s['hosts_used_after']} (lower bound {s['hosts_lower_bound']}), {s['migrations']} migrations, "
              f"{moved}; solved in {s['solve_seconds']:.1f} s\n")
    if "saved" in plan:   # objective schedule
        out.write(f"vms saved {s['vms_saved_before']} -> {s['vms_saved_after']} ({s['suspends']} suspends, "
                  f"{s['resumes']} resumes)\n")
    if s.get("cross_rack_mbps") is not None:
        out.write(f"network: cross-rack traffic {s['cross_rack_mbps_before']:.0f} -> {s['cross_rack_mbps']:.0f} Mbit/s\n")
    if "grid" in plan:
        out.write(f"grid: {s['clusters']} clusters, {s['migrations_between_clusters']} migrations between clusters "
                  f"({s['disk_copied_mib'] / 1024:.1f} GiB of disk copied)\n")
    if plan["hosts_freed"]:
        freed = plan["hosts_freed"]
        out.write(f"hosts freed ({len(freed)}): {', '.join(freed[:10])}{' ...' if len(freed) > 10 else ''}\n")
    for w in plan.get("warnings", []):
        out.write(f"warning: {w}\n")


def main(argv: list[str] | None = None) -> int:
    # the solver package is imported only now: after the re-exec, from this checkout
    sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))
    import placement  # pylint: disable=import-outside-toplevel
    from placement.model import OBJECTIVES  # pylint: disable=import-outside-toplevel
    args = _parser(OBJECTIVES).parse_args(argv)
    err = sys.stderr
    try:
        model = _load(args.model, args.btrplace, args.objective, placement, args.network)
    except (OSError, ValueError, EOFError) as exc:
        err.write(f"error: cannot read model {args.model!r}: {exc}\n")
        return EXIT_BAD_INPUT
    except placement.PlacementError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    if args.check:
        return _check(args, model, placement)
    return _solve(args, model, placement)


def _check(args: argparse.Namespace, model: Any, placement: Any) -> int:
    err = sys.stderr
    try:
        with open(args.check, encoding="utf-8") as handle:
            plan = json.load(handle)
    except (OSError, ValueError) as exc:
        err.write(f"error: cannot read plan {args.check!r}: {exc}\n")
        return EXIT_BAD_INPUT
    problems = placement.check_plan(model, plan)
    for line in problems:
        err.write(f"violation: {line}\n")
    if not args.quiet:
        err.write("plan is valid\n" if not problems else f"{len(problems)} violation(s)\n")
    return 1 if problems else 0


def _solve(args: argparse.Namespace, model: Any, placement: Any) -> int:
    err = sys.stderr
    overrides = {"objective": args.objective, "time_limit_s": args.time_limit, "seed": args.seed,
                 "workers": args.workers}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    start = time.monotonic()

    def progress(line: str) -> None:
        if not args.quiet and err.isatty():
            err.write(f"\r[{time.monotonic() - start:6.1f}s] {line}\033[K")
            err.flush()
        elif not args.quiet:
            err.write(f"[{time.monotonic() - start:6.1f}s] {line}\n")

    nl = "\n" if not args.quiet and err.isatty() else ""
    try:
        if args.grid:
            from placement.grid import solve_grid  # pylint: disable=import-outside-toplevel
            overrides.pop("workers", None)
            plan = solve_grid(model, workers=args.grid_workers, progress=progress, **overrides)
        else:
            plan = placement.solve(model, progress=progress, **overrides)
    except placement.InfeasibleError as exc:
        err.write(f"{nl}infeasible: {exc.explanation}\n")
        for extra in exc.details[1:]:
            err.write(f"  also: {extra}\n")
        return EXIT_INFEASIBLE
    except placement.PlacementError as exc:
        err.write(f"{nl}error: {exc}\n")
        return EXIT_BAD_INPUT
    err.write(nl)
    text = json.dumps(plan, indent=1, ensure_ascii=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    if not args.quiet:
        _summary(plan, err, units=not args.btrplace)
    return 0


if __name__ == "__main__":
    _reexec_in_venv()
    sys.exit(main())
