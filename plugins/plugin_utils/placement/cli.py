"""Command line: solve a model file, write the plan, print a summary (or check a plan)."""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from typing import Any, TextIO

from .btrplace import import_btrplace
from .checker import check_plan
from .errors import InfeasibleError, PlacementError
from .model import OBJECTIVES
from .solver import solve

EXIT_BAD_INPUT = 2
EXIT_INFEASIBLE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="entropy_solve.py", description="Compute a VM placement and a migration plan.")
    p.add_argument("model", help="model JSON file (or a BtrPlace .json/.json.gz with --btrplace); '-' = stdin")
    p.add_argument("-o", "--output", help="write the plan JSON here (default: stdout)")
    p.add_argument("--objective", choices=OBJECTIVES)
    p.add_argument("--time-limit", type=float, metavar="S", help="seconds (default: the model's, else 30)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, choices=(1, 2))
    p.add_argument("--btrplace", action="store_true", help="the input is a BtrPlace instance")
    p.add_argument("--check", metavar="PLAN", help="do not solve: check this plan against the model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")
    return p


def _load(path: str, btrplace: bool, objective: str | None) -> Any:
    if btrplace:
        return import_btrplace(path, objective=objective)
    if path == "-":
        return json.load(sys.stdin)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


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
    if plan["hosts_freed"]:
        freed = plan["hosts_freed"]
        out.write(f"hosts freed ({len(freed)}): {', '.join(freed[:10])}{' ...' if len(freed) > 10 else ''}\n")
    for w in plan.get("warnings", []):
        out.write(f"warning: {w}\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = sys.stderr
    try:
        model = _load(args.model, args.btrplace, args.objective)
    except (OSError, ValueError, EOFError) as exc:
        err.write(f"error: cannot read model {args.model!r}: {exc}\n")
        return EXIT_BAD_INPUT
    except PlacementError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    if args.check:
        try:
            with open(args.check, encoding="utf-8") as handle:
                plan = json.load(handle)
        except (OSError, ValueError) as exc:
            err.write(f"error: cannot read plan {args.check!r}: {exc}\n")
            return EXIT_BAD_INPUT
        problems = check_plan(model, plan)
        for line in problems:
            err.write(f"violation: {line}\n")
        if not args.quiet:
            err.write("plan is valid\n" if not problems else f"{len(problems)} violation(s)\n")
        return 1 if problems else 0
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
        plan = solve(model, progress=progress, **overrides)
    except InfeasibleError as exc:
        err.write(f"{nl}infeasible: {exc.explanation}\n")
        for extra in exc.details[1:]:
            err.write(f"  also: {extra}\n")
        return EXIT_INFEASIBLE
    except PlacementError as exc:
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
