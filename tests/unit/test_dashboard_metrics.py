# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dashboard's /metrics is valid Prometheus text format and complete: Prometheus' own checker (promtool check metrics,
from Debian's prometheus package, tests/bindep.txt) reads it without a complaint, and every family, host and VM is there.

The cluster is libvirt's test driver (a node XML file) with VM names that need escaping in a label, and an unreachable
hypervisor."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402  pylint: disable=wrong-import-position

from dashboard.app import Config, create_app  # noqa: E402  pylint: disable=wrong-import-position
from dashboard.collector import Collector, load_inventory_file  # noqa: E402  pylint: disable=wrong-import-position

NAMES = ("web01", 'q"uote\\vm', "<img src=x onerror=alert(1)>", "{{ 7 * 191 }}")
TOKEN = "metrics-token"
# Every family /metrics promises (docs/dashboard.md): per host, per VM, cluster totals, the dashboard's own counters.
FAMILIES = {
    "entropy_host_reachable": "gauge", "entropy_host_cpu_cores": "gauge", "entropy_host_cpu_used_cores": "gauge",
    "entropy_host_memory_mib": "gauge", "entropy_host_vm_memory_mib": "gauge", "entropy_host_vms": "gauge",
    "entropy_vm_cpu_demand_cores": "gauge", "entropy_vm_memory_mib": "gauge", "entropy_vm_state": "gauge",
    "entropy_vm_migration_progress_percent": "gauge", "entropy_cluster_hosts_used": "gauge", "entropy_cluster_cpu_free_cores": "gauge",
    "entropy_cluster_memory_free_mib": "gauge", "entropy_dashboard_refresh_seconds": "gauge", "entropy_dashboard_refreshes_total": "counter",
    "entropy_dashboard_libvirt_events_total": "counter", "entropy_dashboard_actions_total": "counter",
    "entropy_dashboard_logins_failed_total": "counter", "entropy_dashboard_logins_refused_total": "counter",
    "entropy_dashboard_csrf_refused_total": "counter", "entropy_dashboard_role_refused_total": "counter",
}


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@pytest.fixture(name="metrics_text")
def fixture_metrics_text(tmp_path):
    """/metrics of a dashboard over two test-driver hypervisors (one unreachable), read with the scrape token."""
    domains = "".join('<domain type="test"><name>%s</name><memory>262144</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>'
                      % _xml(name) for name in NAMES)
    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
                    "<memory>8388608</memory>%s</node>" % domains)
    inventory = tmp_path / "cluster.libvirt_cluster.yml"
    inventory.write_text(json.dumps({"plugin": "entropy.cluster.libvirt_cluster", "sampling_interval": 0.1, "hypervisors": [
        {"name": "hv1", "uri": "test://%s" % node}, {"name": "hv2", "uri": "test+unix:///default?socket=%s" % (tmp_path / "none.sock")}]}))
    collector = Collector(load_inventory_file(str(inventory)), refresh=3600, events=False)
    collector.start()
    try:
        app = create_app(collector, Config(users_file=str(tmp_path / "users.json"), audit_file=str(tmp_path / "audit.log"), metrics_token=TOKEN),
                         runner=lambda _v: {"ok": True, "changed": True, "message": "done"})
        response = TestClient(app).get("/metrics", headers={"Authorization": "Bearer " + TOKEN})
    finally:
        collector.stop()
    assert response.status_code == 200, response.text
    return response.text


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: install Debian's prometheus package (tests/bindep.txt; bash tools/run.sh setup)"
    return path


def test_promtool_accepts_the_metrics(metrics_text):
    """Prometheus' own parser and linter: format, escaping, HELP/TYPE, counter names, units."""
    done = subprocess.run([_promtool(), "check", "metrics"], input=metrics_text, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_promtool_refuses_a_broken_label():
    """The check above can fail: a label value with an unescaped double quote is refused."""
    broken = '# HELP entropy_vm_memory_mib memory\n# TYPE entropy_vm_memory_mib gauge\nentropy_vm_memory_mib{vm="q"uote"} 1\n'
    done = subprocess.run([_promtool(), "check", "metrics"], input=broken, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode != 0, done.stdout + done.stderr


def _label_value(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def test_every_family_host_and_vm_is_there(metrics_text):
    types, samples = {}, {}
    for line in metrics_text.splitlines():
        match = re.fullmatch(r"# TYPE (\S+) (\S+)", line)
        if match:
            types[match.group(1)] = match.group(2)
            continue
        if line.startswith("# HELP "):
            continue
        name, labels, value = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line).groups()
        assert name in types, "sample before its TYPE: %s" % line
        pairs = dict((k, _label_value(v)) for k, v in re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', labels or ""))
        samples.setdefault(name, []).append((pairs, float(value)))
    assert types == FAMILIES
    assert {s[0]["host"]: s[1] for s in samples["entropy_host_reachable"]} == {"hv1": 1.0, "hv2": 0.0}
    for family in ("entropy_vm_memory_mib", "entropy_vm_state"):
        assert sorted(s[0]["vm"] for s in samples[family]) == sorted(NAMES), family
    # the test driver gives no cpu.time: an unknown demand has no sample (never a made-up 0)
    assert "entropy_vm_cpu_demand_cores" not in samples
    assert {s[0]["vm"]: s[1] for s in samples["entropy_vm_memory_mib"]} == dict.fromkeys(NAMES, 256.0)
    assert all(s[0]["state"] == "running" and s[0]["host"] == "hv1" for s in samples["entropy_vm_state"])
    for family in ("entropy_cluster_hosts_used", "entropy_cluster_cpu_free_cores", "entropy_cluster_memory_free_mib",
                   "entropy_dashboard_refreshes_total", "entropy_dashboard_logins_failed_total"):
        assert len(samples[family]) == 1, family
