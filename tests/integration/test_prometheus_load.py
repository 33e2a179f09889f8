# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""load_source: prometheus on the lab: `lab.py monitoring up` starts one prometheus-libvirt-exporter per lab host and a
Prometheus scraping them; the lab VMs' CPU demand read from Prometheus roughly agrees with libvirt sampling over the
same seconds, and both tell a busy VM from the idle lab VMs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import COLLECTIONS, LAB_TOOL, ROOT, lab_cmd  # noqa: E402  pylint: disable=wrong-import-position

BUSY = "prom-busy"


def _listed(source: str) -> dict:
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", source, "--list"], capture_output=True,
                          text=True, check=False, cwd=ROOT, timeout=120,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                                   ANSIBLE_INVENTORY_UNPARSED_FAILED="true"))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["_meta"]["hostvars"]


@pytest.fixture(scope="module", name="monitoring")
def fixture_monitoring(lab):
    result = lab_cmd("monitoring", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        status = json.loads(lab_cmd("monitoring", "status", "--json").stdout)
        assert status["prometheus_pid"] and all(e["pid"] for e in status["exporters"].values()), status
        with open(os.path.join(lab.dir, "lab.json"), encoding="utf-8") as handle:
            yield json.load(handle)["monitoring"]
    finally:
        result = lab_cmd("monitoring", "down")
    assert result.returncode == 0 and "stopped prometheus" in result.stdout, result.stdout + result.stderr


def _series_cover_the_window(monitoring: dict, domain: str) -> bool:
    """rate() divides by the window: wait until the VM's series has samples over all of it."""
    query = 'libvirt_domain_info_cpu_time_seconds_total{domain="%s"} offset %s' % (domain, monitoring["window"])
    try:
        with urllib.request.urlopen("%s/api/v1/query?%s" % (monitoring["prometheus_url"], urllib.parse.urlencode({"query": query})),
                                    timeout=5) as response:
            return bool(json.loads(response.read().decode())["data"]["result"])
    except OSError:
        return False


def test_prometheus_cpu_agrees_with_libvirt_sampling(lab, monitoring):
    idle = sorted(name for name, vm in lab.vms.items() if not vm.get("load"))
    sampled = os.path.join(lab.dir, "test-sampled.libvirt_cluster.yml")
    lab.add_vm(BUSY, "hv1", LAB_TOOL.boot_sector(1.0))  # spins all the time: as much CPU as the machine gives it
    try:
        deadline = time.monotonic() + 60
        while not _series_cover_the_window(monitoring, BUSY):
            assert time.monotonic() < deadline, "Prometheus has no %s of the VM %s after 60 s" % (monitoring["window"], BUSY)
            time.sleep(0.5)
        # libvirt sampling over 5 s, then Prometheus at once: its window (10 s) holds those seconds
        with open(lab.inventory, encoding="utf-8") as handle:
            text = handle.read().replace("sampling_interval: 1\n", "sampling_interval: 5\n")
        with open(sampled, "w", encoding="utf-8") as handle:  # beside the lab's group_vars, as the lab's own files
            handle.write(text)
        by_libvirt = _listed(sampled)
        by_prometheus = _listed(os.path.join(lab.dir, "lab-prometheus.libvirt_cluster.yml"))
    finally:
        lab.remove_vm(BUSY)
        if os.path.exists(sampled):
            os.unlink(sampled)

    assert {h: sorted(v) for h, v in by_prometheus.items()} == {h: sorted(v) for h, v in by_libvirt.items()}, "the same variables"
    models = [{vm["name"]: sorted(vm) for vm in hostvars["entropy_cluster"]["entropy_model"]["vms"]} for hostvars in (by_libvirt, by_prometheus)]
    assert models[0] == models[1], "the same model fields"
    demand = {source: {name: hostvars[name]["entropy_cpu_demand_cores"] for name in [BUSY, *lab.vms]}
              for source, hostvars in (("libvirt", by_libvirt), ("prometheus", by_prometheus))}
    print(json.dumps(demand, indent=1, sort_keys=True))
    for source, figures in demand.items():
        assert all(value is not None for value in figures.values()), (source, figures)
    # A VM that runs all the time: both count the same CPU time (on a machine this busy, a few hundredths of a core).
    busy = demand["libvirt"][BUSY], demand["prometheus"][BUSY]
    assert abs(busy[0] - busy[1]) <= max(0.03, 0.5 * max(busy)), "the busy VM's CPU: libvirt %s, Prometheus %s" % busy
    # The exporter's CPU time (virDomainGetInfo: the kernel's tick-sampled process times) misses most of an idle VM's short
    # wake-ups, which libvirt sampling (cpu.time: exact accounting) counts: idle VMs show less there, never more than busy ones.
    figures = demand["prometheus"]
    assert figures[BUSY] > 2 * max(figures[name] for name in idle), "Prometheus does not tell the busy VM from the idle ones: %s" % figures
    hv1 = by_prometheus["hv1"]
    assert hv1["entropy_cpu_used_cores"] == hv1["entropy_vm_cpu_demand_cores"] >= demand["prometheus"][BUSY]
