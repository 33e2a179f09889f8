# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.libvirt_cluster against the real lab, through the ansible-inventory command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
sys.path.insert(0, COLLECTIONS)

# pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import model_from_inventory_json, strip_unsafe  # noqa: E402

try:
    from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import load_model
except ImportError:
    load_model = None

UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"


def ansible_inventory(source: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", source, *args]
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=run_env, cwd=ROOT, timeout=120)


def listed(source: str, env: dict | None = None) -> dict:
    result = ansible_inventory(source, "--list", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def group(data: dict, name: str) -> list[str]:
    return sorted(data.get(name, {}).get("hosts", []))


@pytest.fixture(scope="module")
def inventory(lab):
    data = listed(lab.inventory)
    return data, strip_unsafe(data["_meta"]["hostvars"])


def test_list_shows_hypervisors_and_vms_with_measured_load(lab, inventory):
    data, hostvars = inventory
    assert group(data, "hypervisors") == sorted(lab.hosts)
    assert group(data, "vms") == sorted(lab.vms)
    assert group(data, "unreachable") == [] and group(data, "duplicates") == []
    placement = lab.placement()
    for vm, spec in lab.vms.items():
        hvars = hostvars[vm]
        where = [h for h, s in placement[vm] if s in ("running", "paused")]
        assert hvars["entropy_hypervisor"] == where[0], vm
        assert vm in group(data, "on_%s" % where[0])
        assert hvars["entropy_memory_mib"] == spec["memory_mib"] == 64
        assert hvars["entropy_vcpus"] == 1
        assert hvars["entropy_state"] == "running" and vm in group(data, "state_running")
        assert hvars["entropy_uuid"] and hvars["entropy_snapshot_count"] >= 0
        assert hvars["entropy_cpu_demand_cores"] is not None and 0 <= hvars["entropy_cpu_demand_cores"] < 1.5
        if spec["load"] > 0:
            assert hvars["entropy_cpu_demand_cores"] > 0.03, "loaded VM %s should show CPU demand: %s" % (vm, hvars)
        assert hvars["entropy_memory_rss_mib"] is None or hvars["entropy_memory_rss_mib"] > 0
    uuids = set()
    for name, spec in lab.hosts.items():
        hvars = hostvars[name]
        assert hvars["entropy_reachable"] is True and hvars["entropy_error"] is None
        assert hvars["entropy_uri"] == spec["uri"]
        assert hvars["entropy_cpu_cores"] == spec["cpu"] and hvars["entropy_memory_mib"] == spec["memory_mib"]
        assert hvars["entropy_node_cpu_cores"] >= 1 and hvars["entropy_free_memory_mib"] > 0  # node figures vary: no exact values
        assert hvars["entropy_cpu_used_cores"] is not None and hvars["entropy_cpu_used_cores"] >= 0
        assert hvars["entropy_vm_count"] == sum(1 for where in placement.values() if any(h == name for h, _s in where))
        assert hvars["entropy_host_uuid"] == lab.host_uuid(name)
        uuids.add(hvars["entropy_host_uuid"])
    assert len(uuids) == len(lab.hosts)
    assert hostvars[sorted(lab.vms)[0]]["entropy_migrate_unsafe"] is True  # the lab's group_vars next to the config apply


def test_exported_model_matches_the_inventory(lab, inventory):
    data, hostvars = inventory
    model = hostvars["entropy_cluster"]["entropy_model"]
    assert model == model_from_inventory_json(data)  # the lookup's path and the inventory's agree
    assert sorted(h["name"] for h in model["hosts"]) == sorted(lab.hosts)
    assert sorted(v["name"] for v in model["vms"]) == sorted(lab.vms)
    assert all(h["cpu"] == 2.0 and h["memory_mib"] == 320 for h in model["hosts"])
    if load_model is not None:
        load_model(model)


def test_graph(lab):
    result = ansible_inventory(lab.inventory, "--graph")
    assert result.returncode == 0, result.stderr
    for name in ("@hypervisors:", "@vms:", "@state_running:") + tuple("@on_%s:" % h for h in lab.hosts):
        assert name in result.stdout
    for name in list(lab.hosts) + list(lab.vms):
        assert "--%s\n" % name in result.stdout


def _with_dead_entry(lab, tmp_path, **options) -> str:
    with open(lab.inventory, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    config["hypervisors"].append({"name": "dead", "uri": UNREACHABLE_URI})
    config["sampling_interval"] = 0.5
    config.update(options)
    path = str(tmp_path / "dead.libvirt_cluster.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    return path


def test_unreachable_hypervisor_entry(lab, tmp_path):
    data = listed(_with_dead_entry(lab, tmp_path))
    hostvars = strip_unsafe(data["_meta"]["hostvars"])
    assert group(data, "unreachable") == ["dead"]
    assert group(data, "hypervisors") == sorted(list(lab.hosts) + ["dead"])
    assert group(data, "vms") == sorted(lab.vms)
    assert hostvars["dead"]["entropy_reachable"] is False and UNREACHABLE_URI in hostvars["dead"]["entropy_error"]
    model = hostvars["entropy_cluster"]["entropy_model"]
    assert "dead" not in [h["name"] for h in model["hosts"]] and any("dead" in w for w in model["warnings"])


def test_unreachable_hypervisor_with_strict_fails(lab, tmp_path):
    result = ansible_inventory(_with_dead_entry(lab, tmp_path, strict=True), "--list", env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert result.returncode != 0
    assert "hypervisor dead is unreachable" in result.stderr and "Traceback" not in result.stderr


def test_stopped_daemon_lands_in_unreachable():
    """A real libvirtd of our own 1-host lab, stopped: the inventory reports it unreachable."""
    # not under tmp_path: a unix socket path holds at most 107 bytes, and pytest-xdist's tmp paths are long
    lab_dir = tempfile.mkdtemp(prefix="entropy-lab-", dir="/var/tmp")
    env = dict(os.environ, ENTROPY_LAB_DIR=lab_dir)
    lab_py = [sys.executable, os.path.join(ROOT, "tools", "lab.py")]
    up = subprocess.run(lab_py + ["up", "--hosts", "1", "--vms-per-host", "0", "--subnet", "127.0.29"],
                        capture_output=True, text=True, check=False, env=env, timeout=120)
    try:
        assert up.returncode == 0, "a private 1-host lab did not come up: %s%s" % (up.stdout, up.stderr)
        with open(os.path.join(lab_dir, "lab.json"), encoding="utf-8") as handle:
            state = json.load(handle)
        source = os.path.join(lab_dir, "lab.libvirt_cluster.yml")
        assert group(listed(source), "unreachable") == []
        os.kill(state["hosts"][0]["pid"], signal.SIGTERM)
        for _attempt in range(50):
            try:
                os.kill(state["hosts"][0]["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        data = listed(source)
        assert group(data, "unreachable") == ["hv1"]
        # the lab's URI is the daemon's unix socket: gone with the daemon, or refusing
        error = strip_unsafe(data["_meta"]["hostvars"])["hv1"]["entropy_error"]
        assert "No such file or directory" in error or "Connection refused" in error, error
    finally:
        subprocess.run(lab_py + ["down"], capture_output=True, text=True, check=False, env=env, timeout=60)
        shutil.rmtree(lab_dir, ignore_errors=True)


def test_tasks_on_inventory_hosts_run_on_the_controller_python(lab):
    """connection_vars: a task on a VM host runs locally with the Python that runs Ansible (it has libvirt-python)."""
    vm = sorted(lab.vms)[0]
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible"), "-i", lab.inventory, vm, "-m", "ansible.builtin.setup",
           "-a", "filter=ansible_python"]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"executable": "%s"' % os.path.join(os.path.dirname(sys.executable), "python") in result.stdout \
        or '"executable": "%s"' % sys.executable in result.stdout


def test_cache_replays_the_same_measurements_and_model_file(lab, tmp_path):
    with open(lab.inventory, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    model_file = str(tmp_path / "model.json")
    config.update({"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache"),
                   "cache_timeout": 600, "model_file": model_file, "sampling_interval": 0.5})
    source = str(tmp_path / "cached.libvirt_cluster.yml")
    with open(source, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    first = listed(source)
    with open(model_file, encoding="utf-8") as handle:
        assert json.load(handle) == strip_unsafe(first["_meta"]["hostvars"])["entropy_cluster"]["entropy_model"]
    os.unlink(model_file)
    second = listed(source)
    # Live VMs never give the same CPU figures twice: equal output means the cached samples were replayed.
    assert second == first
    assert os.path.exists(model_file)  # written again from the cache
    refreshed = ansible_inventory(source, "--list", "--flush-cache")
    assert refreshed.returncode == 0, refreshed.stderr
    demand = [strip_unsafe(json.loads(refreshed.stdout)["_meta"]["hostvars"])[vm]["entropy_cpu_demand_cores"] for vm in sorted(lab.vms)]
    assert demand != [strip_unsafe(first["_meta"]["hostvars"])[vm]["entropy_cpu_demand_cores"] for vm in sorted(lab.vms)]


def test_network_rates_and_guest_memory_from_a_guest_with_an_os(lab, tmp_path):
    """The firmware VMs send nothing and have no balloon driver; the lab's OS guest (a Debian
    cloud kernel + busybox, pinging link-local all-nodes on a tap) gives both for real."""
    host = sorted(lab.hosts)[0]
    lab_py = [sys.executable, os.path.join(ROOT, "tools", "lab.py")]
    env = dict(os.environ, ENTROPY_LAB_DIR=lab.dir)
    started = subprocess.run([*lab_py, "guest", "--host", host], capture_output=True, text=True, check=False, env=env, timeout=600)
    assert started.returncode == 0, started.stderr
    try:
        conn = lab.connect(host)
        try:
            dom = conn.lookupByName("osvm")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # boots in ~6 s under TCG, then pings every 0.2 s
                stats = conn.domainListGetStats([dom], 0)[0][1]
                if stats.get("net.0.tx.bytes") and stats.get("balloon.unused") is not None:
                    break
                time.sleep(1)
            else:
                pytest.fail("the OS guest sent no traffic within 90 s: %s" % stats)
        finally:
            conn.close()
        with open(lab.inventory, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        config["sampling_interval"] = 2
        path = str(tmp_path / "os.libvirt_cluster.yml")
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        osvm = strip_unsafe(listed(path)["_meta"]["hostvars"])["osvm"]
        assert osvm["entropy_hypervisor"] == host
        # ~1 KiB pings five times a second, answered by the host: some kB/s each way
        assert osvm["entropy_net_tx_bytes_s"] > 1000, osvm
        assert osvm["entropy_net_rx_bytes_s"] > 1000, osvm
        assert 0 < osvm["entropy_memory_used_mib"] < osvm["entropy_memory_mib"] <= 128, osvm
        assert osvm["entropy_cpu_demand_cores"] is not None
    finally:
        removed = subprocess.run([*lab_py, "guest", "--remove"], capture_output=True, text=True, check=False, env=env)
        assert removed.returncode == 0, removed.stderr


def test_lab_vms_without_agent_or_network_get_no_address_and_the_export_is_plain(lab, inventory):
    """Real QEMU: the lab's VMs run no guest agent and sit on no libvirt network, so libvirt knows no address
    (the AGENT source refuses, LEASE is empty): no ansible_host, and the inventory builds as before. Their names
    hold no template code, so ansible-inventory prints every value plain (what AWX imports)."""
    import libvirt  # pylint: disable=import-outside-toplevel

    data, hostvars = inventory
    vm = sorted(lab.vms)[0]
    conn = lab.connect(hostvars[vm]["entropy_hypervisor"])
    try:
        dom = conn.lookupByName(vm)
        with pytest.raises(libvirt.libvirtError):
            dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        assert not dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
    finally:
        conn.close()
    assert not [name for name in lab.vms if "ansible_host" in hostvars[name]]
    assert "__ansible_unsafe" not in json.dumps(data["_meta"]["hostvars"])


def test_dirty_rate_measured_for_each_running_vm(lab, tmp_path):
    """dirty_rate: libvirt's dirty-rate calculation (page sampling) between the two samples. A VM writing 256 new pages
    per timer tick (about 18 MiB/s) measures well above the lab's idle VMs, which write nothing."""
    from conftest import LAB_TOOL  # pylint: disable=import-outside-toplevel

    vm, host = "dirty-rate-vm", sorted(lab.hosts)[0]
    lab.add_vm(vm, host, LAB_TOOL.rate_dirtier_boot_sector(256))
    try:
        with open(lab.inventory, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        config.update({"dirty_rate": True, "sampling_interval": 2, "guest_addresses": False})
        source = str(tmp_path / "dirty.libvirt_cluster.yml")
        with open(source, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        time.sleep(1)   # past the VM's first pass over its region (that pass writes every page once)
        data = listed(source)
        hostvars = strip_unsafe(data["_meta"]["hostvars"])
        measured = hostvars[vm]["entropy_dirty_mib_s"]
        # 256 pages x 4 KiB x 18.2 ticks/s = 18.2 MiB/s; page sampling reads 32 pages of a 64 MiB VM, so it is noisy
        assert measured is not None and 6 <= measured <= 40, measured
        idle = [name for name in lab.vms if lab.vms[name].get("load", 0) == 0]
        assert idle and all(hostvars[name]["entropy_dirty_mib_s"] is not None and hostvars[name]["entropy_dirty_mib_s"] < 3
                            for name in idle), {name: hostvars[name]["entropy_dirty_mib_s"] for name in idle}
        model = model_from_inventory_json(data, network=True)
        assert next(v for v in model["vms"] if v["name"] == vm)["dirty_mib_s"] == measured
    finally:
        lab.remove_vm(vm)
