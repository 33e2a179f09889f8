# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The event source extensions/eda/plugins/event_source/cluster_load.py: its hysteresis and cool-down (pure, a
given clock), what one sample judges, its arguments, and main() end to end on libvirt's test driver.

The source is loaded the way ansible-rulebook loads it (runpy.run_path on its file)."""

from __future__ import annotations

import asyncio
import os
import runpy

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# the checkout's own path: under ansible_collections/ Ansible's collection finder (installed by conftest.py) claims it
SOURCE = os.path.join(ROOT, "extensions", "eda", "plugins", "event_source", "cluster_load.py")
SRC = runpy.run_path(SOURCE)
Detector, judge, settings, SettingsError = SRC["Detector"], SRC["judge"], SRC["settings"], SRC["SettingsError"]
KEY = ("host_overloaded", "hv1")


def levels(level: str) -> dict:
    return {KEY: (level, {"host": "hv1"})}


def run(detector, seq, start=0.0, step=2.0):
    """Feed levels one sample every `step` seconds; the events per sample."""
    return [detector.update(start + i * step, levels(level)) for i, level in enumerate(seq)]


def test_an_overload_is_reported_once_after_raise_after_samples_in_a_row():
    out = run(Detector(raise_after=2, clear_after=2, cooldown=600), ["over", "over", "over", "over", "over"])
    assert [len(e) for e in out] == [0, 1, 0, 0, 0]
    assert out[1] == [{"host": "hv1", "type": "host_overloaded"}]


def test_a_flapping_host_raises_nothing_and_a_raised_one_is_not_cleared_by_one_good_sample():
    """Hysteresis: over/under alternating never holds raise_after samples in a row; once raised, a single sample
    under the clear threshold (or any number in the band between the thresholds) does not clear it, so the next
    over-sample is no new event."""
    det = Detector(raise_after=2, clear_after=2, cooldown=600)
    assert sum(len(e) for e in run(det, ["over", "under"] * 5)) == 0
    det = Detector(raise_after=2, clear_after=2, cooldown=600)
    out = run(det, ["over", "over", "under", "over", "band", "band", "band", "over"])
    assert [len(e) for e in out] == [0, 1, 0, 0, 0, 0, 0, 0]


def test_a_cleared_overload_that_comes_back_is_reported_again():
    det = Detector(raise_after=2, clear_after=2, cooldown=600)
    out = run(det, ["over", "over", "under", "under", "over", "over"])
    assert [len(e) for e in out] == [0, 1, 0, 0, 0, 1]


def test_cool_down_an_overload_that_lasts_is_reported_again_only_after_the_cool_down():
    det = Detector(raise_after=1, clear_after=2, cooldown=10)
    out = run(det, ["over"] * 8, step=2.0)   # t = 0, 2, ..., 14
    assert [len(e) for e in out] == [1, 0, 0, 0, 0, 1, 0, 0]
    assert out[5][0].get("repeated") is True


def test_a_host_that_disappears_from_the_samples_is_cleared_and_forgotten():
    det = Detector(raise_after=1, clear_after=1, cooldown=600)
    assert len(det.update(0, levels("over"))) == 1
    assert det.update(1, {}) == [] and det.state == {}
    assert len(det.update(2, levels("over"))) == 1


def model(cpu_hv1=2.0, vms=None, clusters=None):
    hosts = [{"name": "hv1", "cpu": cpu_hv1, "memory_mib": 320}, {"name": "hv2", "cpu": 2, "memory_mib": 320},
             {"name": "hv3", "cpu": 2, "memory_mib": 320}]
    for h in hosts:
        if clusters:
            h["cluster"] = clusters[h["name"]]
    vms = vms or [{"name": "vm1", "host": "hv1", "state": "running", "cpu": 0.2, "memory_mib": 64},
                  {"name": "vm2", "host": "hv2", "state": "running", "cpu": 0.0, "memory_mib": 64},
                  {"name": "vm3", "host": "hv3", "state": "running", "cpu": 0.2, "memory_mib": 64}]
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": [], "options": {}, "warnings": []}


def test_judge_overloaded_band_and_under_from_the_solver_capacity():
    out = judge(model(cpu_hv1=0.1), [], 1.0, 0.95, 1)
    level, payload = out[("host_overloaded", "hv1")]
    assert level == "over" and payload["resource"] == "cpu" and payload["fill"] == 2.0
    assert out[("host_overloaded", "hv2")][0] == "under"
    assert judge(model(cpu_hv1=0.205), [], 1.0, 0.95, 1)[("host_overloaded", "hv1")][0] == "band"
    # an overbook constraint is the solver's capacity too: 0.1 core x 3 holds vm1
    raw = model(cpu_hv1=0.1)
    raw["constraints"] = [{"type": "overbook", "resource": "cpu", "ratio": 3, "hosts": ["hv1"]}]
    assert judge(raw, [], 1.0, 0.95, 1)[("host_overloaded", "hv1")][0] == "under"


def test_judge_underused_per_cluster_and_unreachable_hosts():
    out = judge(model(), ["hv4"], 1.0, 0.95, 1)
    assert out[("host_unreachable", "hv4")] == ("over", {"host": "hv4"})
    # three small VMs on three hosts: one host would do
    assert out[("cluster_underused", "")][0] == "over"
    assert out[("cluster_underused", "")][1] == {"cluster": None, "hosts_used": 3, "hosts_lower_bound": 1}
    assert judge(model(), [], 1.0, 0.95, 3)[("cluster_underused", "")][0] == "under"
    grid = judge(model(clusters={"hv1": "a", "hv2": "a", "hv3": "b"}), [], 1.0, 0.95, 1)
    assert grid[("cluster_underused", "a")][0] == "over" and grid[("cluster_underused", "b")][0] == "under"
    assert not any(str(v[1]).count("vm") for v in grid.values()), "events must carry no VM names"


@pytest.mark.parametrize("args, message", [
    ({}, "'inventory' is required"),
    ({"inventory": "x.yml", "colour": 1}, "unknown argument(s) colour"),
    ({"inventory": "x.yml", "raise_after": 0}, "'raise_after' must be at least 1"),
    ({"inventory": "x.yml", "interval": "soon"}, "'interval' must be a number, got 'soon'"),
    ({"inventory": "x.yml", "clear_threshold": 1.2}, "'clear_threshold' (1.2) must not be above 'overload_threshold' (1)"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    with pytest.raises(SettingsError) as exc:
        settings(args)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_template_strings_from_the_rulebook_are_converted():
    got = settings({"inventory": "x.yml", "interval": "2", "raise_after": "3", "cooldown": "60"})
    assert got["interval"] == 2.0 and got["raise_after"] == 3 and got["cooldown"] == 60.0


def test_a_bad_inventory_file_is_named(tmp_path):
    bad = tmp_path / "bad.libvirt_cluster.yml"
    bad.write_text("plugin: entropy.cluster.libvirt_cluster\nhypervisors: [{name: hv1}]\n")
    with pytest.raises(SettingsError) as exc:
        asyncio.run(SRC["main"](asyncio.Queue(), {"inventory": str(bad)}))
    assert str(bad) in str(exc.value) and "'uri' is required" in str(exc.value)


def test_main_on_the_test_driver_reports_an_overload_then_stays_quiet(tmp_path):
    """The whole source on real libvirt (the test driver's one host, declared 1 MiB so its VM overloads it):
    one event after raise_after samples, then nothing for the next samples (cool-down)."""
    inv = tmp_path / "t.libvirt_cluster.yml"
    inv.write_text("plugin: entropy.cluster.libvirt_cluster\nhypervisors:\n  - {name: hv1, uri: 'test:///default', memory_mib: 1}\n"
                   "sampling_interval: 0\n")
    events: list = []

    class Queue(asyncio.Queue):
        async def put(self, item):
            events.append(item)

    async def go():
        task = asyncio.create_task(SRC["main"](Queue(), {"inventory": str(inv), "interval": 0.05, "raise_after": 2,
                                                         "underused_min_gain": 99}))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert [e["type"] for e in events] == ["host_overloaded"], events
    assert events[0]["host"] == "hv1" and events[0]["resource"] == "memory" and events[0]["memory_capacity_mib"] == 1


def test_the_inventory_file_is_read_again_when_it_changes_and_a_bad_edit_keeps_the_last_good_one(tmp_path, capsys):
    inv = tmp_path / "t.libvirt_cluster.yml"
    inv.write_text("plugin: entropy.cluster.libvirt_cluster\nhypervisors:\n  - {name: hv1, uri: 'test:///default'}\nsampling_interval: 0\n")
    sampler = SRC["Sampler"](settings({"inventory": str(inv)}))
    model, unreachable = sampler.read()
    assert [h["memory_mib"] for h in model["hosts"]] != [1] and unreachable == []
    inv.write_text("plugin: entropy.cluster.libvirt_cluster\nhypervisors:\n  - {name: hv1, uri: 'test:///default', memory_mib: 1}\n"
                   "sampling_interval: 0\n")
    os.utime(inv, ns=(1, 1))   # a new modification time whatever the clock's resolution
    assert [h["memory_mib"] for h in sampler.read()[0]["hosts"]] == [1]
    inv.write_text("plugin: entropy.cluster.libvirt_cluster\nhypervisors: []\n")
    assert [h["memory_mib"] for h in sampler.read()[0]["hosts"]] == [1]
    assert "'hypervisors' must be a non-empty list" in capsys.readouterr().err
