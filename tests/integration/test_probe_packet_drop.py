# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hypervisor whose packets are dropped (issue 15): declared failed after the grace, never a stall for the TCP timeout.

Every lab daemon also listens on TCP at its loopback address *inside the lab's network namespace* (libvirtd.conf
listen_tcp, tools/lab.py). The test reads that listener from the daemon's own socket (``ss`` inside the namespace, by
the daemon's PID), adds an nftables table *inside the namespace* that drops every packet to hv2's listener, and runs
the probe and the inventory inside the namespace over TCP: hv2's SYNs go unanswered, as for a powered-off host behind
a firewall, while hv1 and hv3 answer. The machine's own network and ruleset are never touched; the table is deleted
after each test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

from conftest import COLLECTIONS, ROOT

TABLE = "entropy_probe_drop"


def netns(lab) -> str:
    return "/run/netns/%s" % lab.state["network"]["netns"]


def in_netns(lab, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "--net=%s" % netns(lab), "--", *argv], capture_output=True, text=True, check=False, **kwargs)


def tcp_uris(lab) -> dict[str, str]:
    """Each lab daemon's TCP listener, read from the socket its PID holds inside the lab's namespace."""
    listening = in_netns(lab, ["ss", "-Htlnp"]).stdout.splitlines()
    with open(os.path.join(lab.dir, "lab.json"), encoding="utf-8") as handle:
        pids = {h["name"]: h["pid"] for h in json.load(handle)["hosts"]}
    uris = {}
    for host, pid in pids.items():
        local = [line.split()[3] for line in listening if "pid=%d," % pid in line]
        assert local, "no TCP listener of %s (pid %d) in the lab's namespace" % (host, pid)
        uris[host] = "qemu+tcp://%s/system" % local[0]
    return uris


@contextlib.contextmanager
def dropped(lab, uri: str):
    """Every packet to ``uri``'s address and port dropped, inside the lab's namespace only."""
    address, port = uri.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    rules = ("table inet %s {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
             "  ip daddr %s tcp dport %d drop\n }\n}\n" % (TABLE, address, int(port)))
    made = in_netns(lab, ["nft", "-f", "-"], input=rules)
    assert made.returncode == 0, made.stderr
    try:
        yield
    finally:
        removed = in_netns(lab, ["nft", "delete", "table", "inet", TABLE])
        assert removed.returncode == 0, removed.stderr


def ansible_env(extra: dict | None = None) -> dict:
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                ANSIBLE_PYTHON_INTERPRETER=sys.executable, **(extra or {}))


def test_a_host_whose_packets_are_dropped_is_declared_failed_after_the_grace_without_a_tcp_stall(lab, tmp_path):
    uris = tcp_uris(lab)
    out_file = tmp_path / "probe.json"
    book = tmp_path / "probe.yml"
    args = {"hypervisors": uris, "probes": 2, "interval": 1, "grace": 4, "probe_timeout": 2}
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - entropy.cluster.host_probe: %s\n      register: probe\n"
                    "    - ansible.builtin.copy: {content: '{{ probe | to_json }}', dest: '%s'}\n" % (json.dumps(args), out_file))
    with dropped(lab, uris["hv2"]):
        assert in_netns(lab, ["timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/%s" % uris["hv2"][11:-7].replace(":", "/")]).returncode == 124
        started = time.monotonic()
        out = in_netns(lab, [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(book)], env=ansible_env(),
                       cwd=ROOT, timeout=300)
        elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out_file.read_text())
    hv2 = result["hosts"]["hv2"]
    assert result["failed_hosts"] == ["hv2"] and result["up_hosts"] == ["hv1", "hv3"], result
    assert "no answer within 2 s" in hv2["last_error"] and hv2["failed_probes"] >= 2, hv2
    assert 4 <= hv2["failed_for_seconds"] <= 4 + 2 + 1 + 1.5, hv2  # after the grace, not the TCP timeout (~2 min)
    assert elapsed < 40, elapsed


def test_the_inventory_reads_the_others_when_a_host_drops_packets(lab, tmp_path):
    uris = tcp_uris(lab)
    inventory = tmp_path / "tcp.libvirt_cluster.yml"
    inventory.write_text("plugin: entropy.cluster.libvirt_cluster\nsampling_interval: 1\nhypervisors:\n"
                         + "".join("  - {name: %s, uri: '%s'}\n" % (name, uri) for name, uri in sorted(uris.items())))
    with dropped(lab, uris["hv2"]):
        started = time.monotonic()
        out = in_netns(lab, [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", str(inventory), "--list"],
                       env=ansible_env({"ENTROPY_LIBVIRT_CONNECT_TIMEOUT": "3"}), cwd=ROOT, timeout=300)
        elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["unreachable"]["hosts"] == ["hv2"] and "no answer within 3 s" in data["_meta"]["hostvars"]["hv2"]["entropy_error"]
    assert data["_meta"]["hostvars"]["hv1"]["entropy_reachable"] and data["_meta"]["hostvars"]["hv3"]["entropy_reachable"]
    assert elapsed < 25, elapsed
