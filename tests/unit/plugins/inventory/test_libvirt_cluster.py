# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.libvirt_cluster through ansible's real InventoryManager, on the libvirt test driver."""

from __future__ import annotations

import glob
import json
import os

import pytest
from ansible.errors import AnsibleError, AnsibleParserError

libvirt = pytest.importorskip("libvirt")

UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"  # connection refused

try:
    from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import load_model
except ImportError:  # the solver is optional for these tests
    load_model = None

HV1_DOMAINS = [
    {"name": "web1", "memory_mib": 64, "max_memory_mib": 128, "vcpus": 2, "uuid": "11111111-1111-1111-1111-111111111111"},
    {"name": "web2", "memory_mib": 96, "state": "paused"},
    {"name": "db1", "memory_mib": 256, "state": "shutoff", "managed_save": True},
]
HV2_DOMAINS = [
    {"name": "app1", "memory_mib": 128},
    {"name": "old1", "memory_mib": 32, "state": "shutoff"},
]


def two_hosts(cluster, **options):
    hv1 = cluster.node("hv1", HV1_DOMAINS)
    hv2 = cluster.node("hv2", HV2_DOMAINS, cpus=8, memory_kib=16 * 1024 * 1024)
    return cluster.config([{"name": "hv1", "uri": hv1, "cpu": 2, "memory_mib": 1024},
                           {"name": "hv2", "uri": hv2, "reserved_memory_mib": 512}], **options)


def names(inv, group):
    return sorted(h.name for h in inv.groups[group].get_hosts()) if group in inv.groups else []


def hvars(inv, host):
    return inv.get_host(host).get_vars()


def test_groups_and_variables(cluster):
    inv = cluster.inventory(two_hosts(cluster))
    assert names(inv, "hypervisors") == ["hv1", "hv2"]
    assert names(inv, "vms") == ["app1", "db1", "old1", "web1", "web2"]
    assert names(inv, "on_hv1") == ["db1", "web1", "web2"]
    assert names(inv, "on_hv2") == ["app1", "old1"]
    assert names(inv, "state_running") == ["app1", "web1"]
    assert names(inv, "state_paused") == ["web2"]
    assert names(inv, "state_shutoff") == ["db1", "old1"]
    assert names(inv, "unreachable") == [] and names(inv, "duplicates") == []

    hv1, hv2 = hvars(inv, "hv1"), hvars(inv, "hv2")
    assert hv1["entropy_kind"] == "hypervisor" and hv1["entropy_reachable"] is True and hv1["entropy_error"] is None
    assert hv1["entropy_uri"].startswith("test:///")
    assert hv1["entropy_cpu_cores"] == 2 and hv1["entropy_memory_mib"] == 1024  # overrides
    assert hv1["entropy_node_cpu_cores"] == 4 and hv1["entropy_node_memory_mib"] == 8192  # what libvirt reports
    assert hv2["entropy_cpu_cores"] == 8 and hv2["entropy_memory_mib"] == 16384  # no override: libvirt's figures
    assert hv2["entropy_reserved_memory_mib"] == 512 and hv1["entropy_reserved_memory_mib"] == 0
    assert hv1["entropy_vm_count"] == 3 and hv1["entropy_vm_active_count"] == 2
    assert hv1["entropy_vm_memory_mib"] == 64 + 96
    assert hv1["entropy_host_uuid"] is None  # the test driver has no host UUID
    assert isinstance(hv1["entropy_free_memory_mib"], int)
    assert hv1["entropy_cpu_used_cores"] is not None and hv1["entropy_cpu_used_cores"] >= 0  # test driver: constant, 0

    web1 = hvars(inv, "web1")
    assert web1["entropy_kind"] == "vm" and web1["entropy_hypervisor"] == "hv1" and web1["entropy_hypervisor_uri"] == hv1["entropy_uri"]
    assert web1["entropy_uuid"] == "11111111-1111-1111-1111-111111111111"
    assert web1["entropy_state"] == "running" and web1["entropy_vcpus"] == 2
    assert web1["entropy_memory_mib"] == 64 and web1["entropy_memory_max_mib"] == 128
    assert web1["entropy_memory_used_mib"] is None  # no balloon statistics from the test driver
    assert web1["entropy_cpu_demand_cores"] is None  # no cpu.time from the test driver: not measured, not invented
    assert web1["entropy_net_rx_bytes_s"] is None and web1["entropy_net_tx_bytes_s"] is None
    assert web1["entropy_snapshot_count"] == 0 and web1["entropy_has_managed_save"] is False
    db1 = hvars(inv, "db1")
    assert db1["entropy_state"] == "shutoff" and db1["entropy_has_managed_save"] is True and db1["entropy_cpu_demand_cores"] == 0.0
    assert hvars(inv, "old1")["entropy_has_managed_save"] is False
    # connection variables (group variables): these hosts are not SSH targets
    for group in ("vms", "hypervisors"):
        assert inv.groups[group].get_vars()["ansible_connection"] == "local"
        assert inv.groups[group].get_vars()["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert hvars(inv, "entropy_cluster")["ansible_connection"] == "local"
    assert "entropy_duplicate_on" not in web1


def test_connection_vars_can_be_turned_off(cluster):
    inv = cluster.inventory(two_hosts(cluster, connection_vars=False))
    assert "ansible_connection" not in inv.groups["vms"].get_vars()
    assert "ansible_connection" not in inv.groups["hypervisors"].get_vars()
    assert "ansible_connection" not in hvars(inv, "entropy_cluster")


def test_verify_file_naming_rule(cluster):
    from ansible.plugins.loader import inventory_loader  # pylint: disable=import-outside-toplevel

    plugin = inventory_loader.get("entropy.cluster.libvirt_cluster")
    good = two_hosts(cluster)
    other = os.path.join(cluster.path, "cluster.yml")
    with open(good, encoding="utf-8") as src, open(other, "w", encoding="utf-8") as dst:
        dst.write(src.read())
    yaml_name = os.path.join(cluster.path, "x.libvirt_cluster.yaml")
    os.link(good, yaml_name)
    assert plugin.verify_file(good) and plugin.verify_file(yaml_name)
    assert not plugin.verify_file(other)


def test_unreachable_hypervisor_is_reported_and_the_rest_builds(cluster, warnings):
    hv1 = cluster.node("hv1", HV1_DOMAINS)
    path = cluster.config([{"name": "hv1", "uri": hv1}, {"name": "dead", "uri": UNREACHABLE_URI}])
    inv = cluster.inventory(path)
    assert names(inv, "hypervisors") == ["dead", "hv1"]
    assert names(inv, "unreachable") == ["dead"]
    dead = hvars(inv, "dead")
    assert dead["entropy_reachable"] is False
    assert UNREACHABLE_URI in dead["entropy_error"] and "Check that libvirtd runs there" in dead["entropy_error"]
    assert dead["entropy_vm_count"] is None and dead["entropy_cpu_used_cores"] is None
    assert names(inv, "on_hv1") == ["db1", "web1", "web2"]
    assert any("dead" in w and "unreachable" in w for w in warnings)
    model = hvars(inv, "entropy_cluster")["entropy_model"]
    assert [h["name"] for h in model["hosts"]] == ["hv1"]
    assert any("dead" in w and "left out" in w for w in model["warnings"])


def test_strict_makes_an_unreachable_hypervisor_fatal(cluster):
    hv1 = cluster.node("hv1", HV1_DOMAINS)
    path = cluster.config([{"name": "hv1", "uri": hv1}, {"name": "dead", "uri": UNREACHABLE_URI}], strict=True)
    with pytest.raises(AnsibleParserError) as err:
        cluster.parse(path)
    assert "hypervisor dead is unreachable" in str(err.value) and UNREACHABLE_URI in str(err.value)
    assert "Traceback" not in str(err.value)


def test_vm_on_two_hypervisors_is_reported(cluster, warnings):
    # Two names for test:///default: the same in-process hypervisor, so its domain "test" is on both.
    path = cluster.config([{"name": "hv1", "uri": "test:///default"}, {"name": "hv2", "uri": "test:///default"}])
    inv = cluster.inventory(path)
    assert names(inv, "duplicates") == ["test"]
    test = hvars(inv, "test")
    assert test["entropy_duplicate_on"] == ["hv1", "hv2"]
    assert [c["hypervisor"] for c in test["entropy_copies"]] == ["hv1", "hv2"]
    assert test["entropy_hypervisor"] == "hv1"
    assert any("test" in w and "several hypervisors" in w for w in warnings)
    assert any("same URI" in w for w in warnings)
    model = hvars(inv, "entropy_cluster")["entropy_model"]
    assert [v["name"] for v in model["vms"]] == ["test"]  # once in the model, its other copy off hv2's capacity
    assert any("also running on hv2" in w for w in model["warnings"])


def test_snapshot_count(cluster):
    keep = libvirt.open("test:///default")  # holds the shared state while the plugin opens its own connection
    try:
        keep.lookupByName("test").snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
        inv = cluster.inventory(cluster.config([{"name": "hv1", "uri": "test:///default"}]))
        assert hvars(inv, "test")["entropy_snapshot_count"] == 1
    finally:
        keep.close()


@pytest.mark.parametrize(("hypervisors", "options", "expected"), [
    ([], {}, "'hypervisors' must be a non-empty list"),
    (None, {}, "'hypervisors' (one cluster) or 'clusters' (several) is required"),
    ([{"name": "hv1", "uri": "test:///default"}], {"parallelism": "lots"}, "Config 'parallelism'"),
    ([{"name": "hv1", "uri": "test:///default", "reserved_memory_mib": 1.5}], {}, "'reserved_memory_mib' must be a non-negative integer"),
    ("hv1", {}, "hypervisors"),
    ([{"name": "hv1"}], {}, "hypervisors[0] (name hv1): 'uri' is required"),
    ([{"uri": "test:///default"}], {}, "hypervisors[0]: 'name' is required"),
    ([{"name": "hv1", "uri": "test:///default"}, {"name": "hv1", "uri": "test:///default"}], {},
     "hypervisors[1] (name hv1): duplicate name 'hv1', already used by hypervisors[0]"),
    ([{"name": "hv1", "uri": "test:///default", "cpus": 4}], {}, "hypervisors[0] (name hv1): unknown key(s) cpus; allowed keys are"),
    ([{"name": "hv1", "uri": "test:///default", "cpu": "two"}], {}, "'cpu' must be a positive number of cores, got 'two'"),
    ([{"name": "hv1", "uri": "test:///default", "memory_mib": -5}], {}, "'memory_mib' must be a positive integer (MiB)"),
    (["qemu:///system"], {}, "hypervisors[0] must be a dictionary with keys name and uri"),
    ([{"name": "hv1", "uri": "test:///default"}], {"sampling_interval": -1}, "'sampling_interval' must be 0 or more"),
    ([{"name": "hv1", "uri": "test:///default"}], {"parallelism": 0}, "'parallelism' must be at least 1"),
    ([{"name": "hv1", "uri": "test:///default"}], {"sampling_interval": "soon"}, "sampling_interval"),
    ([{"name": "hv1", "uri": "test:///default"}], {"colour": "blue"}, "colour"),
])
def test_bad_configuration_names_the_entry(cluster, hypervisors, options, expected):
    path = cluster.config(hypervisors, **options)
    with pytest.raises(AnsibleParserError) as err:
        cluster.parse(path)
    assert expected in str(err.value)
    assert "Traceback" not in str(err.value)


def test_cache_replays_raw_data_without_libvirt(cluster, tmp_path, monkeypatch):
    cache_dir = str(tmp_path / "cache")
    options = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": cache_dir,
               "auth_password": "s3cret-pw-not-for-cache"}
    path = two_hosts(cluster, **options)
    first = cluster.inventory(path, cache=False)  # refresh: fetch from libvirt and store
    files = glob.glob(os.path.join(cache_dir, "*"))
    assert files, "the jsonfile cache should hold the fetched data"
    with open(files[0], encoding="utf-8") as handle:
        cached_text = handle.read()
    assert "s3cret-pw-not-for-cache" not in cached_text
    from ansible.plugins.loader import cache_loader, inventory_loader  # pylint: disable=import-outside-toplevel

    key = inventory_loader.get("entropy.cluster.libvirt_cluster").get_cache_key(path)
    cached = cache_loader.get("ansible.builtin.jsonfile", _uri=cache_dir, _prefix="ansible_inventory_").get(key)
    assert cached["version"] == 1 and [h["name"] for h in cached["hypervisors"]] == ["hv1", "hv2"]
    assert "samples" in cached["hypervisors"][0]  # raw samples, not the built inventory
    assert "_meta" not in cached and "entropy_state" not in cached_text

    # Second run: libvirt must not be touched. Remove the node files (their URIs now fail) and make fetching fail.
    for xml in glob.glob(os.path.join(cluster.path, "*.xml")):
        os.unlink(xml)
    from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster  # pylint: disable=import-outside-toplevel

    def no_fetch(*_args, **_kwargs):
        raise AssertionError("libvirt was contacted on a cached run")

    monkeypatch.setattr(libvirt_cluster, "fetch", no_fetch)
    second = cluster.inventory(path, cache=True)
    for host in ("hv1", "hv2", "web1", "web2", "db1", "app1", "old1", "entropy_cluster"):
        assert hvars(second, host) == hvars(first, host), host
    assert names(second, "on_hv1") == names(first, "on_hv1")
    assert names(second, "unreachable") == []


def test_cache_is_not_used_for_another_hypervisor_list(cluster, tmp_path):
    cache_dir = str(tmp_path / "cache")
    options = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": cache_dir}
    path = two_hosts(cluster, **options)
    cluster.inventory(path, cache=False)
    hv1 = cluster.node("hv1", HV1_DOMAINS)
    cluster.config([{"name": "hv1", "uri": hv1}], **options)  # same file, fewer hypervisors
    inv = cluster.inventory(path, cache=True)
    assert names(inv, "hypervisors") == ["hv1"]


def test_constructed_options(cluster):
    path = two_hosts(cluster, compose={"memory_gib": "(entropy_memory_mib | default(0)) / 1024"},
                     groups={"big_vms": "entropy_kind == 'vm' and entropy_memory_mib >= 128"},
                     keyed_groups=[{"key": "entropy_vcpus | string", "prefix": "vcpus", "default_value": "none"}])
    inv = cluster.inventory(path)
    assert hvars(inv, "app1")["memory_gib"] == 0.125
    assert names(inv, "big_vms") == ["app1", "db1"]
    assert names(inv, "vcpus_2") == ["web1"]
    assert "app1" in names(inv, "vcpus_1")


def test_constructed_strict_reports_bad_expression(cluster):
    path = two_hosts(cluster, compose={"x": "no_such_var + 1"}, strict=True)
    with pytest.raises(AnsibleError, match="Could not set x for host"):
        cluster.parse(path)


def test_model_export(cluster):
    model_file = os.path.join(cluster.path, "model.json")
    inv = cluster.inventory(two_hosts(cluster, model_file=model_file, model_options={"objective": "consolidate"},
                                      model_constraints=[{"type": "ban", "vms": ["web1"], "hosts": ["hv2"]}]))
    model = hvars(inv, "entropy_cluster")["entropy_model"]
    with open(model_file, encoding="utf-8") as handle:
        assert json.load(handle) == json.loads(json.dumps(model))
    assert model["version"] == 1
    assert model["hosts"] == [{"name": "hv1", "cpu": 2.0, "memory_mib": 1024, "state": "online"},
                              {"name": "hv2", "cpu": 8.0, "memory_mib": 16384 - 512, "state": "online"}]
    vms = {v["name"]: v for v in model["vms"]}
    assert vms["web1"] == {"name": "web1", "host": "hv1", "state": "running", "memory_mib": 64, "vcpus": 2}  # cpu unmeasured
    assert vms["web2"]["state"] == "paused" and vms["web2"]["cpu"] == 0.0
    assert vms["db1"]["state"] == "saved" and vms["old1"]["state"] == "stopped"
    assert model["options"] == {"objective": "consolidate"} and model["constraints"][0]["type"] == "ban"
    assert any("web1" in w and "not measured" in w for w in model["warnings"])
    assert "entropy_cluster" in [h.name for h in inv.groups["all"].get_hosts()]
    if load_model is not None:
        parsed = load_model(json.loads(json.dumps(model)))
        assert len(parsed.constraints) == 1
        assert {h.name for h in parsed.hosts} == {"hv1", "hv2"}
        assert parsed.vm("web1").cpu == 2.0  # the solver's rule: unmeasured -> every vCPU busy


def test_model_host_can_be_disabled(cluster):
    inv = cluster.inventory(two_hosts(cluster, model_host=""))
    assert inv.get_host("entropy_cluster") is None


def test_vm_named_like_a_hypervisor_is_left_out_with_a_warning(cluster, warnings):
    hv1 = cluster.node("hv1", [{"name": "hv2"}, {"name": "ok"}])
    hv2 = cluster.node("hv2", [])
    inv = cluster.inventory(cluster.config([{"name": "hv1", "uri": hv1}, {"name": "hv2", "uri": hv2}]))
    assert names(inv, "vms") == ["ok"]
    assert hvars(inv, "hv2")["entropy_kind"] == "hypervisor"
    assert any("VM hv2 on hv1" in w for w in warnings)


def test_single_sample_when_interval_is_zero(cluster):
    inv = cluster.inventory(two_hosts(cluster, sampling_interval=0))
    assert hvars(inv, "hv1")["entropy_cpu_used_cores"] is None
    assert hvars(inv, "hv1")["entropy_vm_cpu_demand_cores"] is None
    assert hvars(inv, "web1")["entropy_cpu_demand_cores"] is None


def test_hypervisor_lost_between_samples(cluster, monkeypatch):
    from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster  # pylint: disable=import-outside-toplevel

    original = libvirt_cluster._sample  # pylint: disable=protected-access
    calls = {}

    def flaky(conn):
        uri = conn.getURI()
        calls[uri] = calls.get(uri, 0) + 1
        if uri.endswith("hv2.xml") and calls[uri] == 2:
            raise libvirt.libvirtError("connection reset by peer")
        return original(conn)

    monkeypatch.setattr(libvirt_cluster, "_sample", flaky)
    inv = cluster.inventory(two_hosts(cluster))
    assert names(inv, "unreachable") == ["hv2"]
    assert "second load sample of hypervisor hv2" in hvars(inv, "hv2")["entropy_error"]
    assert names(inv, "vms") == ["db1", "web1", "web2"]  # what ran on hv2 is unknown now
    assert hvars(inv, "hv1")["entropy_reachable"] is True


def test_model_from_hostvars_matches_the_exported_model(cluster):
    """What a lookup plugin sees (hostvars through ansible's VariableManager) gives the inventory's model."""
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.vars.hostvars import HostVars  # pylint: disable=import-outside-toplevel
    from ansible.vars.manager import VariableManager  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model  # pylint: disable=import-outside-toplevel

    inv = cluster.inventory(two_hosts(cluster))
    loader = DataLoader()
    hostvars = HostVars(inventory=inv, variable_manager=VariableManager(loader=loader, inventory=inv), loader=loader)
    exported = hostvars["entropy_cluster"]["entropy_model"]
    assert build_model(hostvars) == json.loads(json.dumps(exported))


def test_one_sampling_wait_in_total_not_per_hypervisor(cluster, monkeypatch):
    """Six hypervisors read one at a time (parallelism 1): one wait of the interval, not six."""
    import time  # pylint: disable=import-outside-toplevel
    import types  # pylint: disable=import-outside-toplevel

    from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster  # pylint: disable=import-outside-toplevel

    waits = []

    def sleep(seconds):
        waits.append(seconds)
        time.sleep(seconds)

    # The plugin's own `time` module, with a sleep that counts: real waits, counted exactly.
    monkeypatch.setattr(libvirt_cluster, "time", types.SimpleNamespace(sleep=sleep, time=time.time, monotonic=time.monotonic))
    interval = 0.5
    specs = [{"name": "hv%d" % i, "uri": cluster.node("hv%d" % i, HV2_DOMAINS)} for i in range(6)]
    start = time.monotonic()
    raw = libvirt_cluster.fetch(specs, interval, 1)
    elapsed = time.monotonic() - start
    assert len(waits) == 1, "six hypervisors: one sampling wait expected, got %r" % waits
    # A wait per hypervisor would take 6 x 0.5 s: half of that leaves 1 s for reading six test-driver nodes.
    assert interval <= elapsed < 3 * interval, "six hypervisors, interval %.1f s: one wait expected, took %.2f s" % (interval, elapsed)
    assert all(len(h["samples"]) == 2 and h["samples"][1]["t"] - h["samples"][0]["t"] >= interval for h in raw["hypervisors"])


def test_every_libvirt_state_through_the_inventory_and_the_model(cluster, warnings):
    """One VM per libvirt state code on a test-driver hypervisor: the word shown, the active count, the model state.
    crashed holds its memory (libvirt keeps its process) and stays where it is; only shutoff frees the host."""
    words = ["nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended"]
    hv1 = cluster.node("hv1", [{"name": "vm_%s" % word, "memory_mib": 64, "state": word} for word in words])
    inv = cluster.inventory(cluster.config([{"name": "hv1", "uri": hv1}], sampling_interval=0))
    assert {word: hvars(inv, "vm_%s" % word)["entropy_state"] for word in words} == {word: word for word in words}
    assert all(names(inv, "state_%s" % word) == ["vm_%s" % word] for word in words)
    assert hvars(inv, "hv1")["entropy_vm_active_count"] == 7 and hvars(inv, "hv1")["entropy_vm_memory_mib"] == 7 * 64
    model = hvars(inv, "entropy_cluster")["entropy_model"]
    assert {vm["name"]: vm["state"] for vm in model["vms"]} == {
        "vm_nostate": "running", "vm_running": "running", "vm_blocked": "running", "vm_shutdown": "running",
        "vm_paused": "paused", "vm_pmsuspended": "paused", "vm_crashed": "paused", "vm_shutoff": "stopped"}
    assert model["constraints"] == [{"type": "root", "vms": ["vm_crashed"]}]
    assert any("vm_crashed is crashed on hv1" in w and "destroy it" in w for w in model["warnings"])
    if load_model is not None:
        assert load_model(json.loads(json.dumps(model))).vm("vm_crashed").memory_demand == 64


def test_the_files_model_constraints_and_options_reach_every_route(cluster):
    """model_constraints / model_options travel on the hypervisors: build_model on hostvars (what the lookup does),
    on ansible-inventory --list output, and the inventory's own export give one model, constraints included."""
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.vars.hostvars import HostVars  # pylint: disable=import-outside-toplevel
    from ansible.vars.manager import VariableManager  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model  # pylint: disable=import-outside-toplevel

    ban = {"type": "ban", "vms": ["web1"], "hosts": ["hv2"]}
    inv = cluster.inventory(two_hosts(cluster, model_constraints=[ban], model_options={"max_migrations": 3}))
    assert hvars(inv, "hv1")["entropy_model_constraints"] == [ban] and hvars(inv, "hv2")["entropy_model_options"] == {"max_migrations": 3}
    loader = DataLoader()
    hostvars = HostVars(inventory=inv, variable_manager=VariableManager(loader=loader, inventory=inv), loader=loader)
    exported = json.loads(json.dumps(hostvars["entropy_cluster"]["entropy_model"]))
    assert exported["constraints"] == [ban] and exported["options"] == {"max_migrations": 3}
    assert build_model(hostvars) == exported
    # a constraint given besides (the role's) is added once, after the file's
    spread = {"type": "spread", "vms": ["web1", "app1"]}
    assert build_model(hostvars, [ban, spread])["constraints"] == [ban, spread]
    # without model_constraints the hypervisors carry nothing
    inv = cluster.inventory(two_hosts(cluster))
    assert "entropy_model_constraints" not in hvars(inv, "hv1") and "entropy_model_options" not in hvars(inv, "hv1")


@pytest.mark.parametrize(("entry", "expected"), [
    ({"name": "hv1", "uri": "test:///default", "cpu": True}, "hypervisors[0] (name hv1): 'cpu' must be a positive number of cores, got True"),
    ({"name": "hv1", "uri": "test:///default", "cpu": "inf"}, "'cpu' must be a positive number of cores, got 'inf'"),
    ({"name": "hv1", "uri": "test:///default", "cpu": 0}, "'cpu' must be a positive number of cores, got 0"),
    ({"name": "hv1", "uri": "test:///default", "memory_mib": "lots"}, "'memory_mib' must be a positive integer (MiB), got 'lots'"),
    ({"name": "hv1", "uri": "test:///default", "memory_mib": False}, "'memory_mib' must be a positive integer (MiB), got False"),
    ({"name": 1, "uri": "test:///default"}, "hypervisors[0]: 'name' is required and must be a non-empty string"),
    ({"name": "hv1", "uri": ["test:///default"]}, "hypervisors[0] (name hv1): 'uri' is required and must be a libvirt URI string"),
    ({"name": "hv1", "uri": "test:///default", "URI": "x", "mem": 1},
     "hypervisors[0] (name hv1): unknown key(s) URI, mem; allowed keys are name, uri, cpu, memory_mib, reserved_memory_mib"),
])
def test_hypervisor_entries_refused_with_the_fix(cluster, entry, expected):
    with pytest.raises(AnsibleParserError) as err:
        cluster.parse(cluster.config([entry]))
    assert expected in str(err.value) and "Traceback" not in str(err.value)


def test_hypervisor_numbers_given_as_strings_are_converted_as_ansible_does(cluster):
    hv1 = cluster.node("hv1", [])
    inv = cluster.inventory(cluster.config([{"name": "hv1", "uri": hv1, "cpu": "2.5", "memory_mib": "2048", "reserved_memory_mib": "256"}]))
    hv = hvars(inv, "hv1")
    assert (hv["entropy_cpu_cores"], hv["entropy_memory_mib"], hv["entropy_reserved_memory_mib"]) == (2.5, 2048, 256)


def test_group_names_are_sanitized_as_ansible_core_does(cluster):
    hv = cluster.node("hv-1.example", [{"name": "web1"}])
    inv = cluster.inventory(cluster.config([{"name": "hv-1.example", "uri": hv}]))
    assert names(inv, "on_hv_1_example") == ["web1"] and names(inv, "state_running") == ["web1"]


def test_a_vm_marked_saved_whose_image_is_missing_is_named_with_the_fix(cluster, warnings, tmp_path):
    """Bad input for a context switch: the definition a save left on hv1 (shut off, marked saved) but no image in save_dir
    (deleted, or save_dir names another directory): one warning naming the VM, where it was saved and the two fixes."""
    save_dir = tmp_path / "saves"
    save_dir.mkdir()
    uri = cluster.node("hv1", [{"name": "lost1", "state": "shutoff"}, {"name": "web1"}])
    path = uri[len("test://"):]
    mark = ("<metadata><entropy:vm xmlns:entropy='urn:x-entropy-cluster:vm:1'><entropy:saved path='%s/lost1.save'/></entropy:vm>"
            "</metadata>" % save_dir)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace("<name>lost1</name>", "<name>lost1</name>" + mark, 1))
    inv = cluster.inventory(cluster.config([{"name": "hv1", "uri": uri}], save_dir=str(save_dir)))
    assert hvars(inv, "lost1")["entropy_state"] == "shutoff"
    lost = [w for w in warnings if "lost1" in w]
    assert len(lost) == 1, warnings
    assert ("VM lost1 on hv1 was saved to %s/lost1.save, but save_dir %s has no image of it: no schedule can resume it" % (save_dir, save_dir)
            in lost[0]), lost
    assert "Put the image back" in lost[0] and "entropy.cluster.vm_image state=absent" in lost[0]
    assert not [w for w in warnings if "web1" in w]


def test_dirty_rate_is_null_where_the_driver_cannot_measure_it_and_the_rest_builds(cluster):
    """The test driver has no dirty-rate calculation: the VMs get entropy_dirty_mib_s null, nothing fails
    (the measurement itself is checked on the lab, tests/integration/test_inventory.py)."""
    inv = cluster.inventory(two_hosts(cluster, dirty_rate=True, sampling_interval=1))
    assert names(inv, "unreachable") == []
    assert hvars(inv, "web1")["entropy_dirty_mib_s"] is None
    assert "entropy_dirty_mib_s" not in cluster.inventory(two_hosts(cluster)).get_host("web1").get_vars()


def test_dirty_rate_with_a_sampling_interval_under_a_second_is_refused_with_the_fix(cluster):
    with pytest.raises(AnsibleParserError, match=r"'dirty_rate' measures over whole seconds.*set 'sampling_interval' to 1 or more"):
        cluster.parse(two_hosts(cluster, dirty_rate=True, sampling_interval=0.5))
