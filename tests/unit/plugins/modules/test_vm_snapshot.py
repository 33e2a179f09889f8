# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_snapshot against the libvirt test driver."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI  # noqa: E402  pylint: disable=wrong-import-position


def snap(run, check=False, **args):
    return run("vm_snapshot", dict(uri=TEST_URI, name="test", **args), check=check, diff=True)


def names(hv):
    return sorted(hv.lookupByName("test").snapshotListNames(0))


def test_create_check_mode_then_real_then_idempotent(hv, run):
    checked = snap(run, check=True, snapshot="s1", description="first <one>")
    assert checked["changed"] is True and checked["created"] == "s1"
    assert [s["name"] for s in checked["snapshots"]] == ["s1"] and checked["snapshots"][0]["current"] is True
    assert checked["diff"] == dict(before=dict(snapshots=[], current=None), after=dict(snapshots=["s1"], current="s1"))
    assert names(hv) == []

    created = snap(run, snapshot="s1", description="first <one>")
    assert created["changed"] is True and created["created"] == "s1" and created["deleted"] == []
    (only,) = created["snapshots"]
    assert only["name"] == "s1" and only["description"] == "first <one>" and only["current"] is True
    assert only["state"] == "running" and isinstance(only["creation_time"], int)
    assert names(hv) == ["s1"]

    again = snap(run, snapshot="s1")
    assert again["changed"] is False and again["created"] is None
    assert snap(run, check=True, snapshot="s1")["changed"] is False


def test_retain_keeps_the_newest(hv, run):
    for name in ("a", "b", "c"):
        snap(run, snapshot=name)
    checked = snap(run, check=True, snapshot="d", retain=2)
    assert checked["changed"] and checked["deleted"] == ["a", "b"]
    assert [s["name"] for s in checked["snapshots"]] == ["c", "d"]
    assert names(hv) == ["a", "b", "c"]
    result = snap(run, snapshot="d", retain=2)
    assert result["changed"] and result["created"] == "d" and result["deleted"] == ["a", "b"]
    assert names(hv) == ["c", "d"]
    again = snap(run, snapshot="d", retain=2)
    assert again["changed"] is False and again["deleted"] == []


def test_absent_one_and_all(hv, run):
    for name in ("a", "b", "c"):
        snap(run, snapshot=name)
    one = snap(run, snapshot="b", state="absent")
    assert one["changed"] and one["deleted"] == ["b"] and names(hv) == ["a", "c"]
    assert snap(run, snapshot="b", state="absent")["changed"] is False
    checked = snap(run, check=True, state="absent", all=True)
    assert checked["changed"] and sorted(checked["deleted"]) == ["a", "c"] and checked["snapshots"] == []
    assert names(hv) == ["a", "c"]
    gone = snap(run, state="absent", all=True)
    assert gone["changed"] and gone["snapshots"] == [] and names(hv) == []
    assert snap(run, state="absent", all=True)["changed"] is False


def test_revert_always_reports_changed(hv, run):
    snap(run, snapshot="running-one")
    hv.lookupByName("test").destroy()
    snap(run, snapshot="stopped-one")
    checked = snap(run, check=True, snapshot="running-one", state="reverted")
    assert checked["changed"] and checked["reverted"] == "running-one" and checked["vm_state"] == "running"
    assert hv.lookupByName("test").isActive() == 0
    result = snap(run, snapshot="running-one", state="reverted")
    assert result["changed"] and result["vm_state"] == "running"
    assert hv.lookupByName("test").isActive() == 1
    assert next(s for s in result["snapshots"] if s["current"])["name"] == "running-one"
    assert result["diff"]["before"]["current"] == "stopped-one" and result["diff"]["after"]["current"] == "running-one"
    stopped = snap(run, snapshot="stopped-one", state="reverted")
    assert stopped["changed"] and stopped["vm_state"] == "shutoff"
    paused = snap(run, snapshot="running-one", state="reverted", revert_to="paused")
    assert paused["changed"] and paused["vm_state"] == "paused"


def test_errors_name_the_fix(hv, run):
    missing = snap(run, snapshot="nope", state="reverted")
    assert missing["failed"] and "has no snapshot 'nope'" in missing["msg"]
    assert "snapshot" in snap(run, state="present")["msg"]
    assert "all: true" in snap(run, state="absent")["msg"]
    assert "retain" in snap(run, snapshot="x", retain=0)["msg"]
    unknown = run("vm_snapshot", dict(uri=TEST_URI, name="ghost", snapshot="x"))
    assert unknown["failed"] and unknown["error_kind"] == "no_domain" and "'ghost'" in unknown["msg"]
