# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_state against the libvirt test driver: every transition, idempotency, check mode, errors."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI, UNREACHABLE_URI, libvirt  # noqa: E402  pylint: disable=wrong-import-position


def condition(hv, name="test"):
    dom = hv.lookupByName(name)
    state = dom.state()[0]
    if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
        return "saved"
    return {1: "running", 3: "paused", 5: "shutoff"}[state]


def vm_state(run, state, check=False, **extra):
    return run("vm_state", dict(uri=TEST_URI, name="test", state=state, **extra), check=check, diff=True)


# (start, target, expected result)
TRANSITIONS = [
    ("running", "paused", "paused"),
    ("running", "saved", "saved"),
    ("running", "destroyed", "shutoff"),
    ("running", "shutdown", "shutoff"),
    ("paused", "running", "running"),
    ("paused", "saved", "saved"),
    ("paused", "destroyed", "shutoff"),
    ("paused", "shutdown", "shutoff"),
    ("saved", "running", "running"),
    ("saved", "paused", "paused"),
    ("saved", "destroyed", "shutoff"),
    ("shutoff", "running", "running"),
    ("shutoff", "paused", "paused"),
]


def bring(hv, start):
    dom = hv.lookupByName("test")
    if start == "paused":
        dom.suspend()
    elif start == "saved":
        dom.managedSave(0)
    elif start == "shutoff":
        dom.destroy()
    assert condition(hv) == start


@pytest.mark.parametrize("start,target,expected", TRANSITIONS)
def test_transition_check_mode_then_real_then_idempotent(hv, run, start, target, expected):
    bring(hv, start)
    checked = vm_state(run, target, check=True)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert checked["previous_state"] == start and checked["state"] == expected
    assert checked["diff"] == dict(before=dict(state=start), after=dict(state=expected))
    assert condition(hv) == start, "check mode must not touch the VM"

    done = vm_state(run, target)
    assert done["changed"] is True and not done.get("failed"), done
    assert done["previous_state"] == start and done["state"] == expected
    assert condition(hv) == expected

    again = vm_state(run, target)
    assert again["changed"] is False and again["state"] == expected, again
    again_check = vm_state(run, target, check=True)
    assert again_check["changed"] is False


def test_already_running_is_unchanged(hv, run):
    result = vm_state(run, "running")
    assert result["changed"] is False
    assert result["previous_state"] == result["state"] == "running"
    assert result["diff"]["before"] == result["diff"]["after"]


def test_shutdown_reports_not_forced_when_guest_obeys(hv, run):
    result = vm_state(run, "shutdown", shutdown_timeout=5)
    assert result["changed"] is True and result["forced"] is False


def test_saved_vm_shutdown_needs_force(hv, run):
    bring(hv, "saved")
    result = vm_state(run, "shutdown")
    assert result["failed"] and "force: true" in result["msg"] and "saved" in result["msg"]
    assert condition(hv) == "saved"
    forced = vm_state(run, "shutdown", force=True)
    assert forced["changed"] is True and forced["state"] == "shutoff"
    assert condition(hv) == "shutoff"


def test_cannot_save_a_shut_off_vm(hv, run):
    bring(hv, "shutoff")
    result = vm_state(run, "saved")
    assert result["failed"] and "only a running or paused VM can be saved" in result["msg"]
    assert result["previous_state"] == "shutoff"
    assert condition(hv) == "shutoff"


def test_unknown_vm_names_the_vm_and_lists_what_is_there(hv, run):
    result = run("vm_state", dict(uri=TEST_URI, name="nope", state="running"))
    assert result["failed"] and result["error_kind"] == "no_domain"
    assert "'nope'" in result["msg"] and "'test'" in result["msg"]


def test_unreachable_hypervisor(run):
    result = run("vm_state", dict(uri=UNREACHABLE_URI, name="test", state="running"))
    assert result["failed"] and result["error_kind"] == "unreachable"
    assert UNREACHABLE_URI in result["msg"] and "Traceback" not in result["msg"]


def test_bad_state_is_rejected_by_argument_spec(run):
    result = run("vm_state", dict(uri=TEST_URI, name="test", state="sleeping"))
    assert result["failed"] and "state" in result["msg"]


def test_transient_vm_is_undefined_after_destroy(hv, run):
    xml = hv.lookupByName("test").XMLDesc(0).replace("<name>test</name>", "<name>tmpvm</name>")
    xml = xml.replace(hv.lookupByName("test").UUIDString(), "11111111-2222-3333-4444-555555555555")
    hv.createXML(xml, 0)
    result = run("vm_state", dict(uri=TEST_URI, name="tmpvm", state="destroyed"))
    assert result["changed"] is True and result["state"] == "undefined"


def test_vm_saved_while_paused_comes_back_running(hv, run):
    bring(hv, "paused")
    assert vm_state(run, "saved")["state"] == "saved"
    result = vm_state(run, "running")
    assert result["changed"] is True and result["previous_state"] == "saved" and result["state"] == "running"
    assert condition(hv) == "running"


@pytest.mark.parametrize("check", [False, True], ids=["real", "check_mode"])
@pytest.mark.parametrize("bad,message", [
    (dict(state="shutdown", shutdown_timeout=-5), "shutdown_timeout=-5 is out of range (allowed: 0 to 604800)"),
    (dict(state="shutdown", shutdown_timeout=10 ** 400), "is out of range (allowed: 0 to 604800)"),
    (dict(state="destroyed", uri=""), "uri is empty (give the hypervisor's libvirt URI, or leave uri unset"),
    (dict(state="destroyed", name=" "), "name is empty (give the VM's name)"),
], ids=["negative_timeout", "huge_timeout", "empty_uri", "blank_name"])
def test_bad_parameters_are_refused_before_anything_is_done(hv, run, bad, message, check):
    args = dict(uri=TEST_URI, name="test")
    args.update(bad)
    result = run("vm_state", args, check=check)
    assert result["failed"] and result["error_kind"] == "invalid_argument", result
    assert message in result["msg"] and "Nothing was done" in result["msg"], result["msg"]
    assert result["changed"] is False
    assert condition(hv) == "running", "the VM must not be touched"


def test_saving_a_paused_vm_reactivates_its_disks_first(hv, run):
    bring(hv, "paused")
    done = vm_state(run, "saved")
    assert not done.get("failed") and done["state"] == "saved", done
    assert done["reactivated_disks"] is True and done["reactivation_ms"] >= 0
    running = vm_state(run, "running")
    assert running["state"] == "running"
    again = vm_state(run, "saved")
    assert again["reactivated_disks"] is False and "reactivation_ms" not in again


def test_reactivation_only_touches_a_vm_a_user_paused(hv):
    """The helper re-checks the pause reason itself: a VM that is not paused by a user is never resumed."""
    from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import (  # pylint: disable=import-outside-toplevel
        EntropyLibvirtError, reactivate_paused_disks)

    dom = hv.lookupByName("test")
    with pytest.raises(EntropyLibvirtError) as refused:
        reactivate_paused_disks(dom, TEST_URI)
    assert refused.value.kind == "paused_reason" and "not paused" in refused.value.message
    assert condition(hv) == "running"
    dom.suspend()
    assert reactivate_paused_disks(dom, TEST_URI) >= 0
    assert dom.state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]
