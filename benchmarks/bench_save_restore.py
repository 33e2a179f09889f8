#!/usr/bin/env python
"""What a save to shared storage and a restore on another host cost on the lab: the figures behind the planner's
SAVE_* / RESTORE_* constants (plugins/plugin_utils/placement/planner.py, docs/benchmarks.md#save-and-restore-costs).

    ENTROPY_LAB_DIR=/var/tmp/entropy-lab .venv/bin/python benchmarks/bench_save_restore.py [--sizes 64,256,512] [--rounds 3]

For each memory size, one transient VM of its own (bench-sr-<MiB>) whose guest writes to every page of its memory
(tools/lab.py dirtier_boot_sector, so the image holds all of it) is saved with virDomainSaveFlags to the lab's shared
save directory and restored with virDomainRestoreFlags on the next lab host, ``--rounds`` times, the same calls
entropy.cluster.vm_image makes. Then a least-squares fit of ``seconds = fixed + MiB / rate`` for saves and for
restores. The VMs and images are removed at the end (also after a failure). Needs a running lab (tools/run.sh lab-up).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_solver import machine  # noqa: E402  pylint: disable=wrong-import-position


def lab_tool():
    spec = importlib.util.spec_from_file_location("entropy_lab_tool", os.path.join(HERE, os.pardir, "tools", "lab.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit(points: list[tuple[float, float]]) -> tuple[float, float | None]:
    """Least squares of seconds = fixed + mib / rate over (mib, seconds): (fixed, rate), rate None when flat."""
    n = len(points)
    mx = sum(m for m, _s in points) / n
    my = sum(s for _m, s in points) / n
    sxx = sum((m - mx) ** 2 for m, _s in points)
    slope = sum((m - mx) * (s - my) for m, s in points) / sxx if sxx else 0.0
    return my - slope * mx, (1 / slope if slope > 0 else None)


def measure(lab, libvirt, state: dict, conns: list, size: int, rounds: int) -> list[dict]:
    name = "bench-sr-%d" % size
    disk = os.path.join(state["dir"], "images", name + ".qcow2")
    image = os.path.join(lab.saves_dir(state), name + ".save")
    lab.write_boot_disk(disk, lab.dirtier_boot_sector(size - 2))
    rows = []
    try:
        dom = conns[0].createXML(lab.domain_xml({"name": name, "memory_mib": size, "disk": disk}), 0)
        time.sleep(3 + size / 32)   # the guest has written every page (a pass over 256 MiB takes a few seconds)
        here = 0
        for _unused in range(rounds):
            there = (here + 1) % len(conns)
            started = time.monotonic()
            dom.saveFlags(image, None, 0)
            save_s = time.monotonic() - started
            image_mib = os.path.getsize(image) / 2 ** 20
            started = time.monotonic()
            dom = conns[there].restoreFlags(image, None, 0)
            restore_s = time.monotonic() - started
            os.unlink(image)
            dom = conns[there].lookupByName(name)
            rows.append({"memory_mib": size, "image_mib": round(image_mib, 1), "save_s": round(save_s, 2),
                         "restore_s": round(restore_s, 2)})
            print(json.dumps(rows[-1]), flush=True)
            here = there
            time.sleep(1)
    finally:
        for conn in conns:
            try:
                conn.lookupByName(name).destroy()
            except libvirt.libvirtError:
                pass
        for path in (image, disk):
            if os.path.exists(path):
                os.unlink(path)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", default="64,256,512", help="VM memory sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="save + restore rounds per size")
    args = parser.parse_args()
    import libvirt  # pylint: disable=import-outside-toplevel

    lab = lab_tool()
    state = lab.load_state(lab.lab_dir())
    if state is None:
        sys.exit("no lab in %s: start one with bash tools/run.sh lab-up" % lab.lab_dir())
    conns = [lab.connect(host) for host in state["hosts"][:2]]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure(lab, libvirt, state, conns, size, args.rounds)
    print("\nmachine: %s" % machine())
    print("| VM memory MiB | image MiB | save s (min-max) | restore s (min-max) |")
    print("|---|---|---|---|")
    for size in sorted({r["memory_mib"] for r in rows}):
        mine = [r for r in rows if r["memory_mib"] == size]
        saves = [r["save_s"] for r in mine]
        restores = [r["restore_s"] for r in mine]
        print("| %d | %.1f | %.2f-%.2f | %.2f-%.2f |"
              % (size, max(r["image_mib"] for r in mine), min(saves), max(saves), min(restores), max(restores)))
    for kind in ("save", "restore"):
        fixed, rate = fit([(r["memory_mib"], r[kind + "_s"]) for r in rows])
        print("%s: fixed %.2f s, rate %s" % (kind, fixed, "%.0f MiB/s" % rate if rate else "not measurable (flat)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
