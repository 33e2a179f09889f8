# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checkpoints of a 4-VM group and the time from a host's death to all 4 VMs running again, on the real lab.

  .venv/bin/python benchmarks/bench_recover.py [--rounds 2] [--checkpoints 3] [--grace 4] [--interval 1]
                                               [--probe-timeout 2] [--connect-timeout 3]

Run as root on a lab that is up (ENTROPY_LAB_DIR, ENTROPY_LAB_SUBNET as for tools/lab.py), 3 hosts, 2 VMs each.
Each round, from a reset lab:
  1. the group vm1 (hv1), vm3 and vm4 (hv2), vm5 (hv3) is checkpointed ``--checkpoints`` times in a row
     (entropy.cluster.vm_checkpoint): the group's pause, the skew and the memory images' sizes;
  2. hv2 dies: its daemon and QEMUs are killed by the PIDs in its pidfiles (tools/lab.py fence hv2);
  3. at once one ansible-playbook run: entropy.cluster.host_probe (detection), the entropy.cluster.fence role with the
     lab's hook (fencing: hook and record), the entropy.cluster.recover role (assessment, placement by the solver,
     restore: vm3 and vm4 on the surviving hosts, vm1 and vm5 rolled back in place);
  4. the lab is repaired (tools/lab.py up, reset).
It prints one line per round and the tables of docs/fault-tolerance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LAB_DIR = os.path.abspath(os.environ.get("ENTROPY_LAB_DIR") or "/var/tmp/entropy-lab")
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
GROUP = {"vm1": "hv1", "vm3": "hv2", "vm4": "hv2", "vm5": "hv3"}

PLAYBOOK = """\
- name: Detect, fence, recover, timed
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Start
      ansible.builtin.set_fact:
        t_start: "{{ now().timestamp() }}"
    - name: Probe
      entropy.cluster.host_probe:
        hypervisors: "{{ dict(groups['hypervisors'] | zip(groups['hypervisors'] | map('extract', hostvars, 'entropy_uri'))) }}"
        probes: 2
        interval: "{{ interval }}"
        grace: "{{ grace }}"
        probe_timeout: "{{ probe_timeout }}"
      register: probe
    - name: Detected
      ansible.builtin.set_fact:
        t_probed: "{{ now().timestamp() }}"
    - name: Fence
      ansible.builtin.include_role:
        name: entropy.cluster.fence
      vars:
        entropy_fence_hosts: "{{ probe.failed_hosts }}"
    - name: Fenced
      ansible.builtin.set_fact:
        t_fenced: "{{ now().timestamp() }}"
    - name: Recover
      ansible.builtin.include_role:
        name: entropy.cluster.recover
      vars:
        entropy_recover_host: "{{ probe.failed_hosts[0] }}"
        entropy_checkpoint_dir: "{{ checkpoint_dir }}"
    - name: Times
      ansible.builtin.copy:
        content: "{{ {'start': t_start, 'probed': t_probed, 'fenced': t_fenced, 'probe': probe,
                      'assessed': entropy_recover_assessed, 'recovered': entropy_recover_result} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def lab(*args: str) -> str:
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "lab.py"), *args], capture_output=True, text=True, check=False,
                         env=dict(os.environ, ENTROPY_LAB_DIR=LAB_DIR))
    if out.returncode:
        raise SystemExit("lab.py %s failed: %s%s" % (" ".join(args), out.stdout, out.stderr))
    return out.stdout


def one_round(args, work: str, number: int) -> dict:
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.entropy.cluster.plugins.module_utils._checkpoint import GroupCheckpoint  # pylint: disable=import-outside-toplevel

    lab("up")
    lab("reset")
    with open(os.path.join(LAB_DIR, "lab.json"), encoding="utf-8") as handle:
        uris = {h["name"]: h["uri"] for h in json.load(handle)["hosts"]}
    directory = os.path.join(LAB_DIR, "checkpoints-bench")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    pauses, skews, sizes = [], [], []
    for i in range(args.checkpoints):
        group = GroupCheckpoint({vm: uris[host] for vm, host in GROUP.items()}, "b%d-%04d" % (number, i + 1), directory, 3000,
                                connect_timeout=args.connect_timeout)
        group.connect()
        try:
            taken = group.run()
        finally:
            group.close()
        pauses.append(taken["pause_ms"])
        skews.append(taken["skew_ms"])
        sizes += [entry["memory_bytes"] for entry in taken["vms"].values()]
        time.sleep(1)
    out = os.path.join(work, "times.json")
    book = os.path.join(work, "recover.yml")
    with open(book, "w", encoding="utf-8") as handle:
        handle.write(PLAYBOOK)
    extra = {"grace": args.grace, "interval": args.interval, "probe_timeout": args.probe_timeout, "out": out,
             "checkpoint_dir": directory, "entropy_fence_connect_timeout": args.connect_timeout,
             "entropy_recover_connect_timeout": args.connect_timeout}
    killed_at = time.time()
    lab("fence", "hv2")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                          os.path.join(LAB_DIR, "lab.libvirt_cluster.yml"), book, "-e", json.dumps(extra)],
                         capture_output=True, text=True, check=False, cwd=ROOT,
                         env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                                  ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                                  ENTROPY_LIBVIRT_CONNECT_TIMEOUT=str(args.connect_timeout), ANSIBLE_PYTHON_INTERPRETER=sys.executable))
    if run.returncode:
        lab("up")
        lab("reset")
        raise SystemExit("the recovery playbook failed:\n%s%s" % (run.stdout[-4000:], run.stderr[-2000:]))
    with open(out, encoding="utf-8") as handle:
        times = json.load(handle)
    vms = times["recovered"]["vms"]
    assert sorted(vms) == sorted(GROUP) and all(v["done"] for v in vms.values()), vms
    running = max(v["restored_at"] for v in vms.values())
    parts = {
        "start-up: ansible + inventory": float(times["start"]) - killed_at,
        "detection: host_probe": float(times["probed"]) - float(times["start"]),
        "fencing: hook + record": float(times["fenced"]) - float(times["probed"]),
        "assessment (fence record, live VMs, checkpoints)": times["assessed"]["finished_at"] - float(times["fenced"]),
        "placement: solver (+ task start)": times["recovered"]["started_at"] - times["assessed"]["finished_at"],
        "restore call: its own assessment (under the lock)": times["recovered"]["assessed_at"] - times["recovered"]["started_at"],
        "restore: 4 VMs from the checkpoint": running - times["recovered"]["assessed_at"],
        "kill -> all 4 VMs running": running - killed_at,
    }
    print("round %d: kill -> all 4 VMs running %.1f s; %s; group pause %s ms" % (
        number, parts["kill -> all 4 VMs running"],
        ", ".join("%s on %s (stop %.1f s, restore %.1f s)" % (vm, v["host"], v["seconds"]["stop"], v["seconds"]["restore"])
                  for vm, v in sorted(vms.items())),
        ", ".join("%.0f" % p for p in pauses)), flush=True)
    lab("up")
    lab("reset")
    shutil.rmtree(directory, ignore_errors=True)
    return {"parts": parts, "pauses": pauses, "skews": skews, "sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--grace", type=float, default=4)
    parser.add_argument("--interval", type=float, default=1)
    parser.add_argument("--probe-timeout", type=float, default=2)
    parser.add_argument("--connect-timeout", type=float, default=3)
    args = parser.parse_args(argv)
    rounds = []
    with tempfile.TemporaryDirectory() as work:
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(args, work, number))
    print("\n%s, %d CPUs, %d rounds, probes 2 x %.0f s, %.0f s apart, grace %.0f s\n"
          % (platform.node(), os.cpu_count() or 0, len(rounds), args.probe_timeout, args.interval, args.grace))
    print("| part | min (s) | median (s) | max (s) |\n|---|---|---|---|")
    for part in rounds[0]["parts"]:
        values = [r["parts"][part] for r in rounds]
        print("| %s | %.1f | %.1f | %.1f |" % (part, min(values), statistics.median(values), max(values)))
    pauses = [p for r in rounds for p in r["pauses"]]
    skews = [s for r in rounds for s in r["skews"]]
    sizes = [s / 1e6 for r in rounds for s in r["sizes"]]
    print("\n| checkpoint of the 4-VM group | min | median | max |\n|---|---|---|---|")
    for label, values in (("group pause (ms)", pauses), ("skew (ms)", skews), ("memory image per VM (MB)", sizes)):
        print("| %s | %.1f | %.1f | %.1f |" % (label, min(values), statistics.median(values), max(values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
