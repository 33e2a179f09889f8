# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""load_source: prometheus against real parts: Debian's prometheus-libvirt-exporter reads a libvirt test-driver node
(whose domains' CPU time is the wall clock: one busy core each), a real Prometheus (basic authentication on) scrapes it
twice a second, and the inventory plugin reads the same node through libvirt and the load through Prometheus' API.

The lab test (tests/integration/test_prometheus_load.py) compares real QEMU VMs' figures with libvirt sampling."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from ansible.errors import AnsibleParserError

PASSWORD = "prometheus test password"
# bcrypt (cost 4) of PASSWORD, for Prometheus' web configuration: test data, not a secret
PASSWORD_HASH = "$2b$04$AHdZawIxo7dvfgIUfTDGxu0VLP21OjlxlHMF4DfEDAXdtvEJdGaBu"
HOSTILE = "q\"uote {{ lookup('pipe','id') }}"
BUSY = ("web01", HOSTILE)
WINDOW = "2s"  # four scrapes


def _node(path, domains) -> str:
    """A test-driver node file of (name, uuid, libvirt state code) domains; returns its URI."""
    body = "".join("<domain type='test'><name>%s</name><uuid>%s</uuid><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                   "<test:runstate>%d</test:runstate></domain>" % (name.replace("&", "&amp;").replace("<", "&lt;"), uuid, state)
                   for name, uuid, state in domains)
    path.write_text("<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets>"
                    "<cores>4</cores><threads>1</threads></cpu><memory>8388608</memory>%s</node>" % body)
    return "test://%s" % path


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _program(name: str) -> str:
    path = shutil.which(name)
    assert path, "%s is missing: install Debian's prometheus and prometheus-libvirt-exporter (tests/bindep.txt; bash tools/run.sh setup)" % name
    return path


def _ready(url: str, series: int) -> bool:
    """Every series has samples over the whole rate window: rate() divides by the window, so a series younger than the
    window shows less than its real rate (Prometheus' extrapolation stops half an interval before its first sample)."""
    request = urllib.request.Request(url + "/api/v1/query?query=libvirt_domain_info_cpu_time_seconds_total%20offset%20" + WINDOW)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"prom:" + PASSWORD.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return len(json.loads(response.read().decode())["data"]["result"]) >= series
    except OSError:
        return False


@pytest.fixture(scope="module", name="prom")
def fixture_prom(tmp_path_factory):
    """hv1: a test-driver node with two running VMs and a paused one, scraped through the exporter by Prometheus;
    hv2: a node nobody scrapes. Yields (Prometheus URL, hypervisor entries)."""
    base = tmp_path_factory.mktemp("prom")
    hv1 = _node(base / "hv1.xml", [("web01", "6a1c1f3e-0000-4000-8000-000000000001", 1), (HOSTILE, "6a1c1f3e-0000-4000-8000-000000000002", 1),
                                   ("idle", "6a1c1f3e-0000-4000-8000-000000000003", 3)])
    hv2 = _node(base / "hv2.xml", [("lonely", "6a1c1f3e-0000-4000-8000-000000000004", 1)])
    exporter_port, prometheus_port = _port(), _port()
    (base / "web.yml").write_text(json.dumps({"basic_auth_users": {"prom": PASSWORD_HASH}}))
    (base / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "500ms", "scrape_timeout": "500ms"},
        "scrape_configs": [{"job_name": "libvirt", "static_configs": [
            {"targets": ["127.0.0.1:%d" % exporter_port], "labels": {"hypervisor": "hv1"}}]}]}))
    log = open(base / "processes.log", "ab")  # pylint: disable=consider-using-with
    exporter = [_program("prometheus-libvirt-exporter"), "--web.listen-address=127.0.0.1:%d" % exporter_port, "--libvirt.uri=" + hv1]
    procs = [subprocess.Popen(exporter, stdout=log, stderr=log),  # pylint: disable=consider-using-with
             subprocess.Popen([_program("prometheus"), "--config.file=%s" % (base / "prometheus.yml"),  # pylint: disable=consider-using-with
                               "--web.config.file=%s" % (base / "web.yml"), "--storage.tsdb.path=%s" % (base / "data"),
                               "--web.listen-address=127.0.0.1:%d" % prometheus_port, "--log.level=warn"], stdout=log, stderr=log)]
    url = "http://127.0.0.1:%d" % prometheus_port
    try:
        deadline = time.monotonic() + 60
        while not _ready(url, 3):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (base / "processes.log").read_text()
            time.sleep(0.2)
        yield url, [{"name": "hv1", "uri": hv1}, {"name": "hv2", "uri": hv2}]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()


@pytest.fixture(name="prom_env")
def fixture_prom_env(monkeypatch):
    monkeypatch.setenv("ENTROPY_PROMETHEUS_USERNAME", "prom")
    monkeypatch.setenv("ENTROPY_PROMETHEUS_PASSWORD", PASSWORD)


def _hostvars(data) -> dict:
    if hasattr(data, "get_hosts"):  # an InventoryManager
        return {host.name: host.get_vars() for host in data.get_hosts()}
    return {name: host.get_vars() for name, host in data.hosts.items()}


def test_load_from_prometheus_replaces_the_libvirt_samples(prom, prom_env, cluster, tmp_path):
    url, entries = prom
    cache = tmp_path / "cache"
    path = cluster.config(entries[:1], name="p.libvirt_cluster.yml", load_source="prometheus", prometheus_url=url, prometheus_window=WINDOW,
                          sampling_interval=5, cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(cache))
    started = time.monotonic()
    hostvars = _hostvars(cluster.inventory(path, cache=False))  # ansible's InventoryManager: it writes the cache
    assert time.monotonic() - started < 5, "one libvirt sample: no sampling_interval wait"
    for name in BUSY:  # the test driver's CPU time is the wall clock: one core each
        assert 0.8 <= hostvars[name]["entropy_cpu_demand_cores"] <= 1.2, (name, hostvars[name]["entropy_cpu_demand_cores"])
        assert hostvars[name]["entropy_net_rx_bytes_s"] is None  # no interface, no series: null as with libvirt
    assert hostvars["idle"]["entropy_cpu_demand_cores"] == 0.0  # paused: no CPU, whatever the window shows
    hv1 = hostvars["hv1"]
    assert hv1["entropy_cpu_used_cores"] == hv1["entropy_vm_cpu_demand_cores"] == pytest.approx(
        sum(hostvars[n]["entropy_cpu_demand_cores"] for n in BUSY), abs=1e-3)
    model = hostvars["entropy_cluster"]["entropy_model"]
    assert {vm["name"]: round(vm["cpu"]) for vm in model["vms"]} == {"web01": 1, HOSTILE: 1, "idle": 0}

    # the same variables as libvirt sampling of the same node
    plain = _hostvars(cluster.parse(cluster.config(entries[:1], name="l.libvirt_cluster.yml")))
    assert {h: sorted(v) for h, v in plain.items()} == {h: sorted(v) for h, v in hostvars.items()}
    assert plain["web01"]["entropy_cpu_demand_cores"] is None  # the test driver gives libvirt sampling no cpu.time

    # the cache keeps the load and no credential; a cached run replays it without asking Prometheus
    cached = "".join(p.read_text() for p in cache.iterdir())
    raw = json.loads(json.loads(cached)["__payload__"])
    assert raw["prometheus"]["vms"]["hv1"]["web01"]["cpu"] == pytest.approx(hostvars["web01"]["entropy_cpu_demand_cores"], abs=1e-3)
    assert raw["prometheus"]["url"] == url and PASSWORD not in cached and "prom:" not in cached
    offline = cluster.config(entries[:1], name="p.libvirt_cluster.yml", load_source="prometheus", prometheus_url="http://127.0.0.1:1",
                             prometheus_window=WINDOW, sampling_interval=5, cache=True, cache_plugin="ansible.builtin.jsonfile",
                             cache_connection=str(cache))
    replay = _hostvars(cluster.inventory(offline, cache=True))
    assert replay["web01"]["entropy_cpu_demand_cores"] == hostvars["web01"]["entropy_cpu_demand_cores"]


def test_a_running_vm_without_series_is_an_error(prom, prom_env, cluster):
    url, entries = prom
    path = cluster.config(entries, load_source="prometheus", prometheus_url=url, prometheus_window=WINDOW)
    with pytest.raises(AnsibleParserError) as caught:
        cluster.parse(path)
    message = str(caught.value)
    assert "no CPU series for the running VM lonely on hypervisor hv2" in message, message
    assert "label hypervisor: hv2" in message and "\n" not in message


def test_wrong_credentials_are_refused_without_showing_them(prom, cluster, monkeypatch):
    url, entries = prom
    monkeypatch.setenv("ENTROPY_PROMETHEUS_USERNAME", "prom")
    monkeypatch.setenv("ENTROPY_PROMETHEUS_PASSWORD", "not the password")
    with pytest.raises(AnsibleParserError) as caught:
        cluster.parse(cluster.config(entries[:1], load_source="prometheus", prometheus_url=url, prometheus_window=WINDOW))
    message = str(caught.value)
    assert "refused the query (HTTP 401)" in message and "prometheus_username" in message, message
    assert "not the password" not in message


def test_unreachable_server_is_an_error_without_the_urls_credentials(prom, cluster):
    _url, entries = prom
    closed = _port()
    path = cluster.config(entries[:1], load_source="prometheus", prometheus_url="http://prom:s3cret@127.0.0.1:%d" % closed)
    with pytest.raises(AnsibleParserError) as caught:
        cluster.parse(path)
    message = str(caught.value)
    assert "cannot reach Prometheus at http://127.0.0.1:%d" % closed in message and "load_source: libvirt" in message, message
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize("options, expected", [
    ({"load_source": "prometheus"}, "load_source: prometheus needs prometheus_url (or env ENTROPY_PROMETHEUS_URL)"),
    ({"load_source": "prometheus", "prometheus_url": "prometheus:9090"}, "'prometheus_url' must be the http(s) URL of a Prometheus server"),
    ({"load_source": "prometheus", "prometheus_url": "http://p:9090", "prometheus_window": "2 minutes"},
     "'prometheus_window' must be a Prometheus duration such as 30s or 2m"),
    ({"load_source": "prometheus", "prometheus_url": "http://p:9090", "prometheus_host_label": "host-name"},
     "'prometheus_host_label' must be a Prometheus label name"),
    ({"load_source": "collectd"}, "load_source"),
])
def test_bad_prometheus_options_are_named(cluster, monkeypatch, options, expected):
    monkeypatch.delenv("ENTROPY_PROMETHEUS_URL", raising=False)
    path = cluster.config([{"name": "hv1", "uri": cluster.node("hv1", [])}], **options)
    with pytest.raises(AnsibleParserError) as caught:
        cluster.parse(path)
    assert expected in str(caught.value) and os.path.basename(path) in str(caught.value), str(caught.value)
