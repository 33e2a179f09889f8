# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_probe, host_fence and vm_checkpoint against the libvirt test driver and a refused port: settings, bad input,
check mode. Their lab behaviour (a stopped daemon, fencing, a group checkpoint) is in tests/integration/test_fault_tolerance.py."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI, UNREACHABLE_URI  # noqa: E402  pylint: disable=wrong-import-position


def test_host_probe_up_at_once_and_failed_only_after_the_grace(run):
    result = run("host_probe", dict(hypervisors={"good": TEST_URI, "dead": UNREACHABLE_URI}, probes=2, interval=0.2, grace=1,
                                    probe_timeout=2), check=True)
    assert result["changed"] is False and result["up_hosts"] == ["good"] and result["failed_hosts"] == ["dead"]
    assert result["hosts"]["good"]["probes"] == 1 and result["hosts"]["good"]["came_back"] is False
    dead = result["hosts"]["dead"]
    assert dead["failed_for_seconds"] >= 1 and dead["failed_probes"] >= 2 and "127.0.0.1:1" in dead["last_error"]


@pytest.mark.parametrize(("args", "message"), [
    (dict(probes=0), "probes must be at least 1, got 0"),
    (dict(interval=0), "interval must be more than 0 seconds"),
    (dict(grace=-1), "grace must be 0 or more seconds"),
    (dict(probe_timeout=0), "probe_timeout must be more than 0 seconds"),
    (dict(hypervisors={"hv1": ""}), "give each hypervisor its libvirt URI as a string (none for hv1)"),
])
def test_host_probe_bad_settings_are_one_line(run, args, message):
    result = run("host_probe", dict(dict(hypervisors={"hv1": TEST_URI}), **args))
    assert result["failed"] and message in result["msg"] and result["error_kind"] == "config" and "Traceback" not in result["msg"]


def test_host_fence_needs_a_host_name(run):
    result = run("host_fence", dict(host=" ", uris=[TEST_URI]))
    assert result["failed"] and result["msg"] == "host must name a hypervisor, got an empty string"


@pytest.mark.parametrize(("args", "message"), [
    (dict(checkpoint="../x"), "checkpoint '../x': use letters, digits"),
    (dict(vms={"test": ""}), "vms: give each VM of the group the libvirt URI of its hypervisor"),
    (dict(directory="/nonexistent/entropy"), "directory /nonexistent/entropy does not exist"),
])
def test_vm_checkpoint_bad_input_is_one_line(run, tmp_path, args, message):
    result = run("vm_checkpoint", dict(dict(vms={"test": TEST_URI}, checkpoint="ck1", directory=str(tmp_path)), **args))
    assert result["failed"] and message in result["msg"] and result["error_kind"] == "config"


def test_vm_checkpoint_check_mode_looks_up_the_group_and_writes_nothing(hv, run, tmp_path):
    result = run("vm_checkpoint", dict(vms={"test": TEST_URI}, checkpoint="ck1", directory=str(tmp_path)), check=True)
    assert result["changed"] is True and result["pause_ms"] is None and list(tmp_path.iterdir()) == []
    missing = run("vm_checkpoint", dict(vms={"ghost": TEST_URI}, checkpoint="ck1", directory=str(tmp_path)), check=True)
    assert missing["failed"] and "'ghost'" in missing["msg"] and missing["error_kind"] == "no_domain"


def test_vm_definitions_bad_input_and_an_unreachable_store_are_one_line(run):
    result = run("vm_definitions", dict(hypervisors={"hv1": ""}))
    assert result["failed"] and result["msg"] == "hypervisors: give the hypervisors as name: libvirt URI" and result["error_kind"] == "config"
    result = run("vm_definitions", dict(hypervisors={"dead": UNREACHABLE_URI}, connect_timeout=2), check=True)
    assert result["failed"] and "the cluster store (storage pool 'entropy-cluster' on the shared storage) is not reachable" in result["msg"]
    assert result["error_kind"] == "unreachable" and "Traceback" not in result["msg"]
