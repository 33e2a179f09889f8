# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time from a hypervisor failure to its detection and its fencing, on the real lab.

  .venv/bin/python benchmarks/bench_host_failure.py [--rounds 3] [--failure stop|kill] [--host hv2]
                                                    [--grace 10] [--interval 2] [--probes 3] [--probe-timeout 5]

Run as root on a lab that is up (ENTROPY_LAB_DIR, ENTROPY_LAB_SUBNET as for tools/lab.py). Each round:
  1. the failure: ``stop`` SIGSTOPs the host's libvirtd (found by its pidfile): the host stops answering without
     refusing, the hard case (a powered-off host behind a firewall that drops packets); ``kill`` SIGKILLs it, so
     connections are refused at once;
  2. right away, one ansible-playbook run as the entropy.cluster.fence playbook does it: the lab inventory (its
     connect timeout bounds the wait for the failed host), entropy.cluster.host_probe over every host, then the
     entropy.cluster.fence role with the lab's hook (tools/lab.py fence: the host's daemon and QEMUs killed by the
     PIDs in its pidfiles) and the fence record in the cluster store;
  3. the lab is repaired (tools/lab.py up, reset), which also removes the fence record.
It prints one line per round and a table of the parts: start-up (ansible and the inventory, from the failure to
the play's first task), detection (host_probe), fencing (hook and record) and the total, from the failure to the
fence recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LAB_DIR = os.path.abspath(os.environ.get("ENTROPY_LAB_DIR") or "/var/tmp/entropy-lab")
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")

PLAYBOOK = """\
- name: Detect and fence, timed
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
        probes: "{{ probes }}"
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
      when: probe.failed_hosts | length > 0
    - name: Write the times
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'t_start': t_start, 't_probed': t_probed, 't_end': now().timestamp(), 'probe': probe} | to_json }}"
        mode: "0600"
"""


def lab(*args: str) -> None:
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "lab.py"), *args], check=True, capture_output=True,
                   env=dict(os.environ, ENTROPY_LAB_DIR=LAB_DIR))


def one_round(args, work: str) -> dict:
    with open(os.path.join(LAB_DIR, "lab.json"), encoding="utf-8") as handle:
        host = next(h for h in json.load(handle)["hosts"] if h["name"] == args.host)
    with open(os.path.join(host["dir"], "run", "libvirt", "libvirtd.pid"), encoding="utf-8") as handle:
        pid = int(handle.read().strip())
    book = os.path.join(work, "timed.yml")
    out = os.path.join(work, "times.json")
    with open(book, "w", encoding="utf-8") as handle:
        handle.write(PLAYBOOK)
    if os.path.exists(out):
        os.unlink(out)
    extra = {"probes": args.probes, "interval": args.interval, "grace": args.grace, "probe_timeout": args.probe_timeout, "out": out}
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_LOCALHOST_WARNING="false", ENTROPY_LIBVIRT_CONNECT_TIMEOUT=str(args.connect_timeout))
    failed_at = time.time()
    os.kill(pid, signal.SIGSTOP if args.failure == "stop" else signal.SIGKILL)
    try:
        run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                              os.path.join(LAB_DIR, "lab.libvirt_cluster.yml"), book, "-e", json.dumps(extra)],
                             capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # fenced: killed
    if run.returncode != 0 or not os.path.exists(out):
        raise SystemExit("the timed fence playbook failed:\n%s%s" % (run.stdout[-4000:], run.stderr[-2000:]))
    with open(out, encoding="utf-8") as handle:
        times = json.load(handle)
    start, probed, end = float(times["t_start"]), float(times["t_probed"]), float(times["t_end"])
    with open(os.path.join(LAB_DIR, "store", "entropy.fence.%s" % args.host), "rb") as handle:
        recorded = json.loads(handle.read().rstrip(b"\0"))["data"]["since"]
    return {"failed": times["probe"]["failed_hosts"], "startup": start - failed_at, "detection": probed - start,
            "fencing": recorded - probed, "total": recorded - failed_at, "playbook_end": end - failed_at}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failure", choices=["stop", "kill"], default="stop")
    parser.add_argument("--host", default="hv2")
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2)
    parser.add_argument("--grace", type=float, default=10)
    parser.add_argument("--probe-timeout", type=float, default=5)
    parser.add_argument("--connect-timeout", type=float, default=5, help="the inventory's connect timeout (seconds)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="entropy-bench-failure-") as work:
        lab("up")
        lab("reset")
        for n in range(1, args.rounds + 1):
            row = one_round(args, work)
            lab("up")
            lab("reset")
            if row["failed"] != [args.host]:
                raise SystemExit("round %d: host_probe declared %s failed, not %s" % (n, row["failed"], args.host))
            rows.append(row)
            print("round %d: failure (%s) -> play start %.1f s, detection %.1f s, fencing %.1f s, total %.1f s"
                  % (n, args.failure, row["startup"], row["detection"], row["fencing"], row["total"]), flush=True)
    print()
    print("%s, Python %s, %d CPUs; failure=%s host=%s probes=%d interval=%gs grace=%gs probe_timeout=%gs connect_timeout=%gs"
          % (platform.machine(), platform.python_version(), os.cpu_count() or 0, args.failure, args.host, args.probes,
             args.interval, args.grace, args.probe_timeout, args.connect_timeout))
    print("| part | min (s) | median (s) | max (s) |")
    print("|---|---|---|---|")
    for key, label in (("startup", "start-up: ansible + inventory"), ("detection", "detection: host_probe"),
                       ("fencing", "fencing: hook + record"), ("total", "failure -> fence recorded")):
        values = [r[key] for r in rows]
        print("| %s | %.1f | %.1f | %.1f |" % (label, min(values), statistics.median(values), max(values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
