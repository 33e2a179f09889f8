# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault soak on the real lab: plans applied through the playbooks while libvirt daemons die.

  .venv/bin/python benchmarks/soak_faults.py [--min-migrations 50] [--fault-rate 0.5] [--pause-rate 0.3] [--seed 1]

Not a test (it runs for many minutes); run it as root, on its own lab if you like
(ENTROPY_LAB_DIR=/var/tmp/entropy-soak ENTROPY_LAB_SUBNET=127.0.9). Each round:
  1. sometimes pauses a running VM (a paused VM must survive every later move, still paused);
  2. plans with entropy.cluster.plan (consolidate from the unbalanced start, else evacuate a used host,
     or rebalance) into a plan JSON, then applies it with entropy.cluster.apply;
  3. with probability --fault-rate, waits until a migration of the plan is really in flight (its
     libvirt job is visible on the source), waits a random 0-1.5 s more, and SIGKILLs the libvirtd of
     that migration's source or destination (chosen at random);
  4. repairs the lab (tools/lab.py up restarts the killed daemon; its VMs kept running), waits until no
     libvirt job is left, and checks that every lab VM is defined on exactly one host, active there, and
     in the state it had (running or paused).
It prints one line per round and a table: migrations planned and completed, faults injected, VMs lost
(on no host, or shut off), VMs running twice (two copies running or paused, not counting the paused
copy an unfinished incoming migration leaves, which never ran), stale definitions (a shut-off copy
beside the running one) and how many of them the next apply removed, incoming copies left paused, VMs
whose state changed, and how often the lab had to be rebuilt because libvirt could not remove a
leftover. Lost and running twice must be 0. A broken round is printed in full and the lab is reset (or
rebuilt) before the next one - except for stale definitions alone: the next round's apply must remove
them (apply_plan does, with vm_migrate), so the lab is not reset until they are gone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "entropy", "cluster")
LAB_DIR = os.path.abspath(os.environ.get("ENTROPY_LAB_DIR") or "/var/tmp/entropy-lab")
ACTIVE = ("running", "paused")

import libvirt  # noqa: E402  pylint: disable=wrong-import-position

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
STATE_NAMES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff"}


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "lab.py"), *args], capture_output=True, text=True, check=False,
                          env=dict(os.environ, ENTROPY_LAB_DIR=LAB_DIR))


def lab_state() -> dict:
    with open(os.path.join(LAB_DIR, "lab.json"), encoding="utf-8") as handle:
        return json.load(handle)


# Pause reasons of a destination's copy of a migration that never finished: it never ran.
INCOMING_REASONS = (libvirt.VIR_DOMAIN_PAUSED_MIGRATION, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP)


def placement(state: dict) -> dict[str, list[tuple[str, str]]]:
    """vm -> [(host, state)] over every lab host (all of them must answer); a paused copy left by an
    incoming migration that never finished is called "incoming" (it never ran)."""
    seen: dict[str, list[tuple[str, str]]] = {}
    for host in state["hosts"]:
        conn = libvirt.open(host["uri"])
        try:
            for dom in conn.listAllDomains():
                code, reason = dom.state()
                name = STATE_NAMES.get(code, str(code))
                if code == libvirt.VIR_DOMAIN_PAUSED and reason in INCOMING_REASONS and not dom.isPersistent():
                    name = "incoming"
                seen.setdefault(dom.name(), []).append((host["name"], name))
        finally:
            conn.close()
    return seen


def jobs_in_flight(state: dict) -> dict[str, str]:
    """vm -> host, for every domain with an active libvirt job (a migration out, mostly)."""
    found = {}
    for host in state["hosts"]:
        try:
            conn = libvirt.open(host["uri"])
        except libvirt.libvirtError:
            continue
        try:
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                        found[dom.name()] = host["name"]
                except libvirt.libvirtError:
                    pass
        finally:
            conn.close()
    return found


def playbook(name: str, inventory: str, extra: dict) -> subprocess.CompletedProcess:
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), name, "-i", inventory, "-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, env=env, cwd=ROOT)


class Injector(threading.Thread):
    """Kills the source or destination daemon of a migration of ``plan`` once it is really in flight."""

    def __init__(self, state: dict, plan: dict, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.state, self.rng, self.stop = state, rng, threading.Event()
        self.moves = {a["vm"]: (a["from"], a["to"]) for step in plan["steps"] for a in step if a.get("action") == "migrate"}
        self.killed: str | None = None
        self.during: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            moving = [vm for vm in jobs_in_flight(self.state) if vm in self.moves]
            if moving:
                vm = self.rng.choice(moving)
                time.sleep(self.rng.uniform(0, 1.5))
                side = self.rng.choice(("source", "destination"))
                victim = self.moves[vm][0 if side == "source" else 1]
                pid = next(h["pid"] for h in self.state["hosts"] if h["name"] == victim)
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed, self.during = victim, "%s of %s" % (side, vm)
                except ProcessLookupError:
                    pass
                return
            time.sleep(0.05)


def stale_copies(where: dict, vms) -> set[tuple[str, str]]:
    """(vm, host) of every shut-off copy of a VM of ``vms`` that is active on exactly one other host: what a
    migration leaves on its source when the source daemon dies before its last phase."""
    found = set()
    for vm in vms:
        entries = where.get(vm, [])
        active = [h for h, s in entries if s in ACTIVE]
        shut_off = [h for h, s in entries if s == "shutoff"]
        if len(active) == 1 and shut_off and len(shut_off) == len(entries) - 1:
            found |= {(vm, host) for host in shut_off}
    return found


def check(state: dict, expected_states: dict[str, str]) -> dict[str, list[str]]:
    where = placement(state)
    found: dict[str, list[str]] = {"lost": [], "running_twice": [], "defined_twice": [], "incoming_left": [], "state_changed": []}
    for vm, want in sorted(expected_states.items()):
        entries = where.get(vm, [])
        active = [(h, s) for h, s in entries if s in ACTIVE]
        if not active:
            found["lost"].append("%s: %s" % (vm, entries or "on no host"))
        elif len(active) > 1:
            found["running_twice"].append("%s: %s" % (vm, entries))
        elif active[0][1] != want:
            found["state_changed"].append("%s: was %s, now %s on %s" % (vm, want, active[0][1], active[0][0]))
        if any(s == "incoming" for _h, s in entries):
            found["incoming_left"].append("%s: %s" % (vm, entries))
        elif len(entries) > 1:
            found["defined_twice"].append("%s: %s" % (vm, entries))
    return found


def pause_one(state: dict, rng: random.Random) -> str | None:
    where = placement(state)
    running = sorted(vm for vm, entries in where.items() if vm in {v["name"] for v in state["vms"]} and [s for _h, s in entries] == ["running"])
    if not running:
        return None
    vm = rng.choice(running)
    host = next(h for h in state["hosts"] if h["name"] == where[vm][0][0])
    conn = libvirt.open(host["uri"])
    try:
        conn.lookupByName(vm).suspend()
    finally:
        conn.close()
    return vm


def repair(state: dict) -> bool:
    """Every lab VM fresh on its home host again. True if `lab.py reset` did it; else (a copy libvirt
    cannot remove, such as an incoming copy whose daemon died in the middle of the migration and that
    waits forever on its state change lock) the lab is rebuilt from scratch and False is returned."""
    reset = lab("reset")
    if reset.returncode == 0:
        where = placement(lab_state())
        if all([s for _h, s in where.get(v["name"], [])] == ["running"] for v in state["vms"]):
            return True
    print("  lab reset could not repair the lab (%s): rebuilding it" % (reset.stderr.strip() or "a VM is not back home"), flush=True)
    lab("down")
    rebuilt = lab("up", "--hosts", str(len(state["hosts"])), "--vms-per-host", str(len(state["vms"]) // len(state["hosts"])))
    if rebuilt.returncode != 0:
        raise SystemExit("the lab could not be rebuilt: %s" % (rebuilt.stdout + rebuilt.stderr))
    return False


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--min-migrations", type=int, default=50, help="stop once this many migrations completed (default 50)")
    parser.add_argument("--max-rounds", type=int, default=120)
    parser.add_argument("--fault-rate", type=float, default=0.5, help="share of rounds with a daemon killed mid-migration")
    parser.add_argument("--pause-rate", type=float, default=0.3, help="share of rounds that first pause a running VM")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not os.path.exists(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        os.symlink(ROOT, LINK)
    rng = random.Random(args.seed)
    up = lab("up")
    if up.returncode != 0:
        print(up.stdout + up.stderr, file=sys.stderr)
        return 2
    lab("reset")
    work = tempfile.mkdtemp(prefix="entropy-soak-")
    totals = {"rounds": 0, "planned": 0, "completed": 0, "faults": 0, "failed_runs": 0, "lost": 0, "running_twice": 0,
              "defined_twice": 0, "stale_removed": 0, "incoming_left": 0, "state_changed": 0, "rebuilt": 0}
    pending: set[tuple[str, str]] = set()  # stale definitions the collection has not removed yet
    started = time.monotonic()
    fresh = True
    while totals["completed"] < args.min_migrations and totals["rounds"] < args.max_rounds:
        totals["rounds"] += 1
        state = lab_state()
        inventory = os.path.join(LAB_DIR, "lab.libvirt_cluster.yml")
        paused = pause_one(state, rng) if rng.random() < args.pause_rate else None
        before = placement(state)
        expected = {v["name"]: next((s for _h, s in before.get(v["name"], []) if s in ACTIVE), "running") for v in state["vms"]}
        used = sorted({entries[0][0] for entries in before.values() if entries and entries[0][1] in ACTIVE})
        if fresh:
            objective, extra = "consolidate", {"entropy_objective": "consolidate", "entropy_min_gain_hosts": 0}
        elif len(used) > 1 and rng.random() < 0.7:
            victim = rng.choice(used)
            objective, extra = "evacuate " + victim, {"entropy_objective": "repair", "entropy_evacuate_hosts": [victim]}
        else:
            objective, extra = "rebalance", {"entropy_objective": "balance"}
        plan_file = os.path.join(work, "plan-%d.json" % totals["rounds"])
        planned = playbook("entropy.cluster.plan", inventory, dict(extra, entropy_plan_file=plan_file, entropy_time_limit_s=5))
        if planned.returncode != 0 or not os.path.exists(plan_file):
            print("round %d: planning failed:\n%s" % (totals["rounds"], planned.stdout[-3000:]))
            fresh = True
            if pending:
                print("  reset removes stale definitions the collection did not: %s" % sorted(pending), flush=True)
                pending = set()
            if not repair(state):
                totals["rebuilt"] += 1
            continue
        with open(plan_file, encoding="utf-8") as handle:
            plan = json.load(handle)
        moves = [a for step in plan["steps"] for a in step if a.get("action") == "migrate"]
        totals["planned"] += len(moves)
        injector = Injector(state, plan, rng) if moves and rng.random() < args.fault_rate else None
        if injector:
            injector.start()
        applied = playbook("entropy.cluster.apply", inventory,
                           {"entropy_plan_file": plan_file, "entropy_lock_file": os.path.join(work, "lock")})
        if injector:
            injector.stop.set()
            injector.join()
        fault = "killed %s (%s)" % (injector.killed, injector.during) if injector and injector.killed else "no fault"
        totals["faults"] += bool(injector and injector.killed)
        totals["failed_runs"] += applied.returncode != 0
        repaired = lab("up")
        if repaired.returncode != 0:
            print("round %d: the lab did not come back: %s" % (totals["rounds"], repaired.stdout + repaired.stderr))
            return 2
        deadline = time.monotonic() + 120
        while jobs_in_flight(state := lab_state()) and time.monotonic() < deadline:
            time.sleep(0.5)
        after = placement(state)
        completed = sum(1 for a in moves if [h for h, s in after.get(a["vm"], []) if s in ACTIVE] == [a["to"]])
        totals["completed"] += completed
        found = check(state, expected)
        stale = stale_copies(after, expected)
        removed = pending - stale
        totals["stale_removed"] += len(removed)
        new_stale = stale - pending
        pending = stale
        found["defined_twice"] = [item for item in found["defined_twice"] if item.split(":")[0] not in {vm for vm, _h in stale}]
        for key, items in found.items():
            totals[key] += len(items)
        totals["defined_twice"] += len(new_stale)
        print("round %2d: %-16s %d planned, %d completed, rc %d, %s%s%s%s%s" % (
            totals["rounds"], objective, len(moves), completed, applied.returncode, fault,
            (", paused %s first" % paused) if paused else "",
            "".join(", %s: %s" % (k, v) for k, v in found.items() if v),
            ", stale definition left: %s" % sorted(new_stale) if new_stale else "",
            ", stale definition removed by this apply: %s" % sorted(removed) if removed else ""), flush=True)
        if any(found.values()) or new_stale:
            print(applied.stdout[-4000:])
        fresh = False
        # Stale definitions alone are the next apply's to remove: no reset while one is pending.
        if any(found[k] for k in ("lost", "running_twice", "defined_twice", "incoming_left")) or (totals["rounds"] % 4 == 0 and not pending):
            fresh = True
            if pending:
                print("  reset removes stale definitions the collection did not: %s" % sorted(pending), flush=True)
                pending = set()
            if not repair(state):
                totals["rebuilt"] += 1
    elapsed = time.monotonic() - started
    print()
    print("machine: %s, %d cores, Python %s, libvirt %s" % (
        cpu_model(), os.cpu_count() or 0, platform.python_version(), libvirt.getVersion()))
    print("| rounds | migrations planned | migrations completed | daemons killed mid-migration | failed runs | "
          "VMs lost | VMs running twice | stale definitions (removed by the next apply) | incoming copies left | state changed | "
          "lab rebuilt | time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("| %(rounds)d | %(planned)d | %(completed)d | %(faults)d | %(failed_runs)d | %(lost)d | %(running_twice)d | "
          "%(defined_twice)d (%(stale_removed)d) | %(incoming_left)d | %(state_changed)d | %(rebuilt)d |" % totals + " %.0f s |" % elapsed)
    if pending:
        print("stale definitions still there at the end (no apply ran after them): %s" % sorted(pending))
    lab("reset")
    return 1 if totals["lost"] or totals["running_twice"] else 0


if __name__ == "__main__":
    sys.exit(main())
