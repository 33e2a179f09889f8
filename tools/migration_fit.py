# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the plan's migration durations against libvirt on the lab: fit, then score on other migrations.

Runs live migrations of the lab's own test VMs between two lab hosts, each capped only with libvirt's migration
bandwidth parameter (VIR_MIGRATE_PARAM_BANDWIDTH, the plan's allotment): no traffic shaping anywhere. The VMs
(tools/lab.py rate_dirtier_boot_sector) use their whole 64 MiB and dirty memory at a known steady rate (0 for
the idle ones). For every migration the planner (placement.solver.plan_for_target on a two-host model with the
VM's memory and dirty_mib_s) gives the allotment and the estimate; libvirt's completed job gives the elapsed
time. The duration model's constants (migration_setup_s, migration_efficiency) are fitted on half of the
migrations (a checkerboard over dirty rate x bandwidth, flipped every repetition, so both halves hold every dirty
rate and every bandwidth) and the table scores the other half with them.

    ENTROPY_LAB_DIR=/var/tmp/entropy-lab python tools/migration_fit.py [--repeat 2] [--json out.json]

Needs a running lab (bash tools/run.sh lab-up); adds VMs named migfit-*, removes them at the end.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "plugins", "plugin_utils"))

from placement.solver import plan_for_target  # noqa: E402  pylint: disable=wrong-import-position

TICKS_PER_S = 1193182 / 65536          # the PC timer: 18.2 ticks per second
PAGES_PER_TICK = (0, 16, 32, 48)        # 0, 1.1, 2.3, 3.4 MiB/s
BANDWIDTHS = (6, 12, 24)                # MiB/s, the single migration's allotment (its links' cap)


def load_lab_tool():
    spec = importlib.util.spec_from_file_location("entropy_lab_tool", os.path.join(HERE, "lab.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dirty_mib_s(pages_per_tick: int) -> float:
    return pages_per_tick * 4096 * TICKS_PER_S / 1048576


def plan_one(vm: str, src: str, dst: str, dirty: float, cap: int, setup_s: float, efficiency: float) -> dict:
    """The planner's migrate action for one VM between two hosts whose migration links are capped at ``cap``."""
    lab = load_lab_tool()
    model = {"version": 2,
             "hosts": [{"name": h, "cpu": 2, "memory_mib": 1024} for h in (src, dst)],
             "vms": [{"name": vm, "host": src, "cpu": 0.1, "memory_mib": lab.VM_MEMORY_MIB, "dirty_mib_s": dirty}],
             "options": {"bandwidth_mib_s": cap, "migration_setup_s": setup_s, "migration_efficiency": efficiency,
                         "migration_memory_share": 1.0}}
    plan = plan_for_target(model, {vm: dst})
    (action,), = plan["steps"]
    return action


def migrate(libvirt, src_conn, dst_conn, vm: str, bandwidth: int) -> dict:
    """One live migration capped with libvirt's bandwidth parameter; libvirt's completed job statistics."""
    dom = src_conn.lookupByName(vm)
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_UNSAFE)
    wall = time.monotonic()
    dom.migrate3(dst_conn, {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: bandwidth}, flags)
    wall = time.monotonic() - wall
    stats = dst_conn.lookupByName(vm).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return {"elapsed_s": stats["time_elapsed"] / 1000.0, "wall_s": round(wall, 2),
            "downtime_ms": stats.get("downtime"), "transferred_mib": round(stats.get("memory_processed", 0) / 1048576, 1),
            "iterations": stats.get("memory_iteration"), "libvirt_dirty_mib_s":
            round(stats.get("memory_dirty_rate", 0) * stats.get("memory_page_size", 4096) / 1048576, 2)}


def fit(rows: list[dict]) -> tuple[float, float]:
    """setup_s and efficiency minimising the squared relative errors on ``rows`` (grid search)."""
    from placement.migration import DurationModel   # pylint: disable=import-outside-toplevel

    best = None
    for s10 in range(0, 1001, 5):
        for e1000 in range(500, 1001, 5):
            dm = DurationModel(setup_s=s10 / 100, memory_share=1.0, efficiency=e1000 / 1000)
            err = 0.0
            for r in rows:
                est = dm.seconds(r["memory_mib"], r["dirty_mib_s"], r["bandwidth_mib_s"])
                err += 1e6 if est is None else ((est - r["elapsed_s"]) / r["elapsed_s"]) ** 2
            if best is None or err < best[0]:
                best = (err, s10 / 100, e1000 / 1000)
    return best[1], best[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of every (dirty rate, bandwidth) case (default 2)")
    parser.add_argument("--json", help="also write the rows and the fitted constants here")
    parser.add_argument("--quick", action="store_true", help="a short run: 2 dirty rates x 1 bandwidth (a smoke test, few rows)")
    args = parser.parse_args()
    pages, bandwidths = ((0, 32), (24,)) if args.quick else (PAGES_PER_TICK, BANDWIDTHS)
    import libvirt  # pylint: disable=import-outside-toplevel

    lab = load_lab_tool()
    state = lab.load_state(lab.lab_dir())
    if not state:
        print("no lab in %s: start one with bash tools/run.sh lab-up" % lab.lab_dir(), file=sys.stderr)
        return 2
    hosts = state["hosts"][:2]
    conns = {h["name"]: libvirt.open(h["uri"]) for h in hosts}
    names = [h["name"] for h in hosts]
    vms = {k: "migfit-%d" % k for k in pages}
    where = {}
    rows = []
    try:
        for k, vm in vms.items():
            disk = os.path.join(state["dir"], "images", vm + ".qcow2")
            lab.write_boot_disk(disk, lab.rate_dirtier_boot_sector(k))
            conns[names[0]].defineXML(lab.domain_xml({"name": vm, "memory_mib": lab.VM_MEMORY_MIB, "disk": disk})).create()
            where[vm] = names[0]
        time.sleep(5)   # the first pass has written the whole region
        cases = [(r, bi, ki) for r in range(args.repeat) for bi in range(len(bandwidths)) for ki in range(len(pages))]
        for i, (r, bi, ki) in enumerate(cases):
            k, bw = pages[ki], bandwidths[bi]
            vm = vms[k]
            src = where[vm]
            dst = names[1] if src == names[0] else names[0]
            action = plan_one(vm, src, dst, dirty_mib_s(k), bw, 0.0, 1.0)
            got = migrate(libvirt, conns[src], conns[dst], vm, action["bandwidth_mib_s"])
            where[vm] = dst
            rows.append(dict(got, n=i, train=(r + bi + ki) % 2 == 0, vm=vm, memory_mib=lab.VM_MEMORY_MIB, dirty_mib_s=round(dirty_mib_s(k), 2),
                             bandwidth_mib_s=action["bandwidth_mib_s"], src=src, dst=dst))
            print("migration %2d: %s dirty %.2f MiB/s at %d MiB/s: libvirt %.2f s"
                  % (i, vm, dirty_mib_s(k), action["bandwidth_mib_s"], got["elapsed_s"]), flush=True)
            time.sleep(1)
    finally:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)   # "domain not found" on the host it left
        for vm in vms.values():
            for conn in conns.values():
                lab.remove_domain(conn, vm)
            try:
                os.unlink(os.path.join(state["dir"], "images", vm + ".qcow2"))
            except FileNotFoundError:
                pass
        for conn in conns.values():
            conn.close()
    train = [r for r in rows if r["train"]]
    scored = [r for r in rows if not r["train"]]
    setup_s, efficiency = fit(train)
    print("\nfitted on %d migrations: migration_setup_s %.2f, migration_efficiency %.3f"
          % (len(train), setup_s, efficiency))
    print("scored on the %d others (estimate: the plan's estimated_s with those constants)\n" % len(scored))
    print("| # | dirty MiB/s | allotted MiB/s | plan estimate s | libvirt elapsed s | error | passes | sent MiB | downtime ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    errors = []
    for r in scored:
        action = plan_one(r["vm"], r["src"], r["dst"], r["dirty_mib_s"], r["bandwidth_mib_s"], setup_s, efficiency)
        est = action["estimated_s"]
        err = (est - r["elapsed_s"]) / r["elapsed_s"]
        errors.append(abs(err))
        r.update(estimated_s=est, error=round(err, 4))
        print("| %d | %.2f | %d | %.2f | %.2f | %+.1f %% | %s | %s | %s |" % (
            r["n"], r["dirty_mib_s"], r["bandwidth_mib_s"], est, r["elapsed_s"], 100 * err, r["iterations"],
            r["transferred_mib"], r["downtime_ms"]))
    worst, median = max(errors), statistics.median(errors)
    print("\nworst %.1f %% (target 35 %%), median %.1f %% (target 20 %%): %s"
          % (100 * worst, 100 * median, "met" if worst <= 0.35 and median <= 0.20 else "NOT met"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"setup_s": setup_s, "efficiency": efficiency, "rows": rows}, handle, indent=1)
    return 0 if worst <= 0.35 and median <= 0.20 else 1


if __name__ == "__main__":
    sys.exit(main())
