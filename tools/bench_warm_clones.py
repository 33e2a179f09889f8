# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cold boot against warm clones on the lab: time until a job's command has run in all N VMs, and where it goes.

cold: N job VMs (the lab's OS guest, each with its seed from module_utils/_job_seed.py) defined and started; the
clock runs from the first start until every VM's exit file is in the share.
warm: the OS guest booted once without a seed and saved (not timed: a template made ahead, kept for every count); the clock runs from the
call of the module entropy.cluster.warm_clone (run in this process, as a task runs it) until every clone's exit file
is in the share. The module restores each clone from its copy of the image under its own name, UUID and MAC (in
parallel) and hot-plugs its seed; by default each seed holds a static address from the lab's plan (--dhcp: none, the
clone asks the lab's DHCP server). VMs go round robin over the lab's hosts (--hosts 1: all on the first).

Phases (seconds from the start, the slowest VM): image written, restored, seed attached (the module's timings), then
in the guest, seen on each VM's console log (a clone logs to its own copy of the base's log file): seed seen, NIC ready
(probed again, address set or DHCP started), address up, share mounted; and the command's result in the share.
Run on a lab (ENTROPY_LAB_DIR) with the project's venv:
  .venv/bin/python tools/bench_warm_clones.py --counts 1 4 8
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import threading
import time
import xml.etree.ElementTree as ET
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".tmp", "collections"))

import lab  # noqa: E402  pylint: disable=wrong-import-position
from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.module_utils import _job_seed as js  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.modules import warm_clone  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk bench@lab"
COMMAND = "echo ran"
# What the lab's guest writes on its console at each step (tools/lab.py), and the phase it marks.
MARKERS = (("entropy seed watch: seed found", "seen"), ("entropy seed watch: NIC", "nic"), ("entropy job seed: address up", "address"),
           ("entropy job seed: share mounted", "mounted"))
GUEST_PHASES = tuple(phase for _m, phase in MARKERS)


class ConsoleWatch(threading.Thread):
    """Host times (seconds from ``started``) at which each VM's console log first shows each step's marker."""

    def __init__(self, started: float) -> None:
        super().__init__(daemon=True)
        self.started = started
        self.logs: dict = {}
        self.seen: dict = {}
        self.lines: dict = {}  # name -> [(seconds, line)]
        self.stop = threading.Event()

    def watch(self, name: str, path: str) -> None:
        self.logs[name] = path
        self.seen.setdefault(name, {})

    def run(self) -> None:
        while not self.stop.is_set():
            for name, path in list(self.logs.items()):
                try:
                    with open(path, encoding="utf-8", errors="replace") as handle:
                        text = handle.read()
                except OSError:
                    continue
                now = time.monotonic() - self.started
                lines = self.lines.setdefault(name, [])
                for line in text.splitlines()[len(lines):]:
                    lines.append((now, line))
                for marker, phase in MARKERS:
                    if phase not in self.seen[name] and marker in text:
                        self.seen[name][phase] = now
            time.sleep(0.05)


def mac(kind: int, index: int) -> str:
    return "52:54:00:78:%02x:%02x" % (kind, index)


def wait_results(share: str, names: list, started: float, timeout: float) -> dict:
    """Seconds from ``started`` until each VM's exit file appeared."""
    seen: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < len(names):
        for name in names:
            if name not in seen and os.path.exists(os.path.join(share, name + ".exit")):
                seen[name] = time.monotonic() - started
        time.sleep(0.05)
    if len(seen) < len(names):
        raise SystemExit("bench: not every VM ran its command within %d s: %s" % (timeout, sorted(os.listdir(share))))
    return seen


def write_seed(work: str, share: str, state: dict, name: str, address: str = "", mac_address: str = "") -> str:
    seed = js.JobSeed(vm_name=name, ssh_key=KEY, command=COMMAND, nfs_server=lab.nfs_address(state), nfs_path=share, address=address,
                      mac=mac_address)
    path = os.path.join(work, name + ".seed.iso")
    with open(path, "wb") as handle:
        handle.write(js.build_seed_image(seed))
    return path


def guest_xml(name: str, address: str, memory_mib: int, seed: str | None = None, console: str | None = None) -> str:
    root = ET.fromstring(lab.job_guest_xml(name, seed, memory_mib=memory_mib, console_log=console))
    ET.SubElement(root.find("devices/interface"), "mac", address=address)
    return ET.tostring(root, encoding="unicode")


def run_module(args: dict) -> dict:
    """entropy.cluster.warm_clone's main() in this process, as a task runs it; its result."""
    out = io.StringIO()
    with patch_module_args(dict(args, _ansible_check_mode=False, _ansible_diff=False)), redirect_stdout(out):
        try:
            warm_clone.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise SystemExit("bench: warm_clone failed: %s" % result["msg"])
    return result


def cold(state: dict, hosts: list, work: str, share: str, count: int, opts) -> dict:
    names = ["bench-cold-%d" % i for i in range(count)]
    seeds = [write_seed(work, share, state, n, "" if opts.dhcp else lab.static_address(state, i)) for i, n in enumerate(names)]
    conns = [lab.connect(h) for h in hosts]
    try:
        doms = [conns[i % len(conns)].defineXML(guest_xml(n, mac(1, i), opts.memory, s, os.path.join(work, n + ".console")))
                for i, (n, s) in enumerate(zip(names, seeds))]
        started = time.monotonic()
        watch = ConsoleWatch(started)
        for name in names:
            watch.watch(name, os.path.join(work, name + ".console"))
        watch.start()
        for dom in doms:
            dom.create()
        ran = wait_results(share, names, started, opts.timeout)
        watch.stop.set()
    finally:
        for conn in conns:
            conn.close()
    return {"ran": ran, "guest": watch.seen, "module": {}, "console": watch.lines, "cpu": cpu_seconds(hosts, names)}


BASE = "bench-base"


def saved_base(state: dict, hosts: list, opts) -> tuple[str, str]:
    """The base booted once (until its seed watcher runs) and saved on the first host; made on the first warm run and
    kept for the next counts. Returns its image and console log paths."""
    bdir = os.path.join(state["dir"], "bench-base")
    image_path, console = os.path.join(bdir, "base.save"), os.path.join(bdir, "base.console")
    if os.path.exists(image_path):
        return image_path, console
    os.makedirs(bdir, exist_ok=True)
    conn = lab.connect(hosts[0])
    try:
        base = conn.defineXML(guest_xml(BASE, mac(2, 255), opts.memory, console=console))
        base.create()
        deadline = time.monotonic() + opts.timeout
        while time.monotonic() < deadline:  # the base is up: its seed watcher runs
            if os.path.exists(console):
                with open(console, encoding="utf-8", errors="replace") as handle:
                    if "entropy seed watch: watching" in handle.read():
                        break
            time.sleep(0.5)
        else:
            raise SystemExit("bench: the base did not start its seed watcher in %d s" % opts.timeout)
        base.save(image_path)
    finally:
        conn.close()
    return image_path, console


def warm(state: dict, hosts: list, work: str, share: str, count: int, opts) -> dict:
    image_path, console = saved_base(state, hosts, opts)
    names = ["bench-warm-%d" % i for i in range(count)]
    clones = []
    for i, name in enumerate(names):
        seed = write_seed(work, share, state, name, "" if opts.dhcp else lab.static_address(state, i), "" if opts.reprobe else mac(3, i))
        clones.append({"name": name, "uri": hosts[i % len(hosts)]["uri"], "macs": [mac(3, i)], "seed": seed})
    started = time.monotonic()
    watch = ConsoleWatch(started)
    watch.start()
    result = run_module({"uri": hosts[0]["uri"], "base": BASE, "image": image_path, "clones": clones, "parallel": opts.parallel})
    cpu_restored = cpu_seconds(hosts, names)  # QEMU's start and the restore, before the guest's work after it
    for clone in result["clones"]:  # each clone logs to its own copy of the base's console file (the module renames it)
        watch.watch(clone["name"], "%s.%s" % (console, clone["uuid"]))
    ran = wait_results(share, names, started, opts.timeout)
    watch.stop.set()
    return {"ran": ran, "guest": watch.seen, "module": {c["name"]: c.get("timings", {}) for c in result["clones"]}, "console": watch.lines,
            "cpu": cpu_seconds(hosts, names), "cpu_restored": cpu_restored, "image_mib": os.path.getsize(image_path) / 2 ** 20}


def cpu_seconds(hosts: list, names: list) -> float:
    """CPU seconds the VMs' QEMU processes used in all (their vCPUs and the rest: restore, devices), per VM."""
    total = 0
    for host in hosts:
        conn = lab.connect(host)
        try:
            for dom in conn.listAllDomains():
                if dom.name() in names:
                    total += dom.info()[4]
        finally:
            conn.close()
    return total / 1e9 / len(names)


def phase_row(count: int, kind: str, got: dict, took: float) -> dict:
    """The slowest VM's time at each phase, seconds from the start."""
    row = {"vms": count, "kind": kind}
    for key in ("image_written_s", "restored_s", "seeded_s"):
        values = [t[key] for t in got["module"].values() if key in t]
        row[key[:-2]] = round(max(values), 1) if values else None
    for phase in GUEST_PHASES:  # from the console logs
        values = [g[phase] for g in got["guest"].values() if phase in g]
        row[phase] = round(max(values), 1) if values else None
    row["command_ran"] = round(took, 1)
    row["cpu_per_vm"] = round(got["cpu"], 1)
    row["cpu_restored_per_vm"] = round(got["cpu_restored"], 1) if "cpu_restored" in got else None
    row["image_mib"] = round(got["image_mib"], 1) if "image_mib" in got else None
    return row


def clean(conns: list, work: str, share: str) -> None:
    for conn in conns:
        for dom in conn.listAllDomains():
            if dom.name().startswith("bench-cold-") or dom.name().startswith("bench-warm-"):
                lab.remove_domain(conn, dom.name())
    for directory in (work, share):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    os.chown(share, lab.NFS_ANON_ID, lab.NFS_ANON_ID)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--kinds", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    parser.add_argument("--memory", type=int, default=lab.GUEST_MEMORY_MIB, help="guest memory in MiB (default %(default)s)")
    parser.add_argument("--hosts", type=int, default=0, help="use the first N lab hosts (default: all)")
    parser.add_argument("--parallel", type=int, default=8, help="restores at the same time (the module's parallel)")
    parser.add_argument("--dhcp", action="store_true", help="no static address in the seeds: each VM asks the lab's DHCP server")
    parser.add_argument("--reprobe", action="store_true", help="no MAC in the warm clones' seeds: each probes its NIC again")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--console", action="store_true", help="print the slowest VM's console lines with the time each was seen")
    args = parser.parse_args()
    state = lab.require_state(lab.lab_dir())
    hosts = state["hosts"][:args.hosts] if args.hosts else state["hosts"]
    work, share = os.path.join(state["dir"], "bench-warm"), os.path.join(lab.shares_dir(state), "bench-warm")
    conns = [lab.connect(h) for h in state["hosts"]]
    rows = []
    try:
        for count in args.counts:
            for kind in args.kinds:
                clean(conns, work, share)
                got = (cold if kind == "cold" else warm)(state, hosts, work, share, count, args)
                rows.append(phase_row(count, kind, got, max(got["ran"].values())))
                print(json.dumps(rows[-1]), flush=True)
                if args.console:
                    slowest = max(got["ran"], key=got["ran"].get)
                    for seconds, line in got["console"].get(slowest, []):
                        print("  %s %7.1f s  %s" % (slowest, seconds, line.rstrip()))
    finally:
        clean(conns, work, share)
        for conn in conns:
            for dom in conn.listAllDomains():
                if dom.name() == BASE:
                    lab.remove_domain(conn, BASE)
        shutil.rmtree(os.path.join(state["dir"], "bench-base"), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(share, ignore_errors=True)
        for conn in conns:
            conn.close()
    print("\nseconds from the start until the slowest VM reached each phase; memory %d MiB, %s, %d host(s)"
          % (args.memory, "DHCP" if args.dhcp else "static addresses", len(hosts)))
    print("| VMs | kind | image written | restored | seed attached | seed seen | NIC ready | address up | share mounted | command ran in all "
          "| CPU s per VM (after the restore) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [row["image_written"], row["restored"], row["seeded"], row["seen"], row["nic"], row["address"], row["mounted"],
                 row["command_ran"], "%s (%s)" % (row["cpu_per_vm"], row["cpu_restored_per_vm"])]
        print("| %d | %s | %s |" % (row["vms"], row["kind"], " | ".join("-" if c is None else str(c) for c in cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
