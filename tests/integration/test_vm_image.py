# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_image and vm_priority on the real lab: a VM saved on one host to the lab's shared save directory
and restored on another keeps its memory (the guest's 32-bit tick counter goes on, it did not boot again) and is
defined on exactly one host; the refusals (runs elsewhere, no image, an image the destination cannot see, a priority
that is no integer) name the VM and the fix; a plan that suspends on one host and resumes on another, applied by
entropy.cluster.apply, keeps every VM on at most one host; and the figures of one real context switch of 4 VMs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from conftest import COLLECTIONS, LAB_TOOL, ROOT, OneCopyWatch

from test_apply_faults import lab_initial

sys.path.insert(0, COLLECTIONS)
from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import planner  # noqa: E402  pylint: disable=wrong-import-position

# Where a measured context switch is written (docs/benchmarks.md quotes it), when the test runs with this set.
FIGURES_ENV = "ENTROPY_CONTEXT_SWITCH_FIGURES"


def saves(lab) -> str:
    return os.path.join(lab.dir, "saves")


def run(playbook, lab, tmp_path, runs, check=False):
    """vm_image / vm_priority runs (each: module, name, host, state, others, save_dir, priority) -> their results."""
    for entry in runs:
        entry["uri"] = lab.uri(entry.pop("host"))
        if "others" in entry:
            entry["uris"] = [lab.uri(h) for h in entry.pop("others")]
        entry.setdefault("save_dir", saves(lab))
    result_file = tmp_path / "result.json"
    proc = playbook("vm_image_once.yml", extra_vars=dict(runs=runs, result_file=str(result_file)), check=check)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return json.loads(result_file.read_text())


def counter(lab, host, vm) -> int:
    conn = lab.connect(host)
    try:
        return LAB_TOOL.read_tick_counter(conn.lookupByName(vm))
    finally:
        conn.close()


def definition(lab, host, vm):
    """(persistent, state word) of ``vm`` on ``host``, None when it is not defined there."""
    conn = lab.connect(host)
    try:
        names = {dom.name(): dom for dom in conn.listAllDomains()}
        if vm not in names:
            return None
        dom = names[vm]
        return bool(dom.isPersistent()), {1: "running", 3: "paused", 5: "shutoff"}.get(dom.state()[0])
    finally:
        conn.close()


def test_saved_on_one_host_restored_on_another_keeps_its_memory(lab_reset, playbook, tmp_path):
    lab = lab_reset
    vm = "vm1"
    source = lab.running_on(vm)[0]
    destination = next(h for h in sorted(lab.hosts) if h != source)
    others = [h for h in sorted(lab.hosts) if h != destination]
    image = os.path.join(saves(lab), vm + ".save")
    time.sleep(2)  # the counter is well above what a fresh boot shows within a second
    before = counter(lab, source, vm)
    assert before > 30, before

    # check mode first: nothing happens
    dry = run(playbook, lab, tmp_path, [{"name": vm, "host": source, "state": "saved"}], check=True)[0]
    assert dry["changed"] and not dry.get("failed"), dry
    assert dry["diff"] == {"before": {"state": "running", "image": None}, "after": {"state": "saved", "image": image}}
    assert lab.running_on(vm) == [source] and not os.path.exists(image)

    saved = run(playbook, lab, tmp_path, [{"name": vm, "host": source, "state": "saved"},
                                          {"name": vm, "host": source, "state": "saved"}])
    assert saved[0]["changed"] and saved[0]["state"] == "saved" and saved[0]["image_path"] == image, saved[0]
    assert not saved[1]["changed"] and not saved[1].get("failed"), saved[1]  # idempotent
    assert os.path.getsize(image) > 0
    assert lab.placement()[vm] == [(source, "shutoff")]  # the definition stays, shut off, on the saving host only

    time.sleep(2)  # a restore that booted the VM again would show a counter near zero; a kept one goes on from `before`
    restored = run(playbook, lab, tmp_path, [{"name": vm, "host": destination, "others": others, "state": "restored"},
                                             {"name": vm, "host": destination, "others": others, "state": "restored"}])
    first, again = restored
    assert first["changed"] and first["definition_moved"] and first["image_removed"], first
    assert first["source_uri"] == lab.uri(source) and first["state"] == "running"
    assert not again["changed"] and not again.get("failed"), again
    after = counter(lab, destination, vm)
    assert after >= before, (before, after)  # not reset: the guest kept its memory across save and restore
    time.sleep(1)
    assert counter(lab, destination, vm) > after  # and it runs on
    assert lab.placement()[vm] == [(destination, "running")]
    assert definition(lab, destination, vm) == (True, "running")  # persistent there, gone from the source
    assert definition(lab, source, vm) is None
    assert not os.path.exists(image)
    lab.assert_each_vm_once()


def test_refusals_name_the_vm_and_the_fix(lab_reset, playbook, tmp_path):
    lab = lab_reset
    hosts = sorted(lab.hosts)
    vm = "vm3"
    home = lab.running_on(vm)[0]
    away = next(h for h in hosts if h != home)
    third = next(h for h in hosts if h not in (home, away))
    image = os.path.join(saves(lab), vm + ".save")

    # No image at all.
    missing = run(playbook, lab, tmp_path, [{"name": "vm5", "host": away, "others": hosts, "state": "restored"}])[0]
    assert missing.get("failed") and missing["error_kind"] == "no_image", missing
    assert "No saved image of VM 'vm5'" in missing["msg"] and "Save it first (state=saved)" in missing["msg"]

    # Saved: vm_state refuses to boot the definition left on the saving host.
    run(playbook, lab, tmp_path, [{"name": vm, "host": home, "state": "saved"}])
    result_file = tmp_path / "state.json"
    proc = playbook("modules_state_once.yml",
                    extra_vars=dict(vm=vm, uri=lab.uri(home), states=["running", "paused"], result_file=str(result_file)))
    assert proc.returncode == 0, proc.stdout[-3000:]
    for refused in json.loads(result_file.read_text()):
        assert refused.get("failed") and refused["error_kind"] == "saved_elsewhere", refused
        assert "VM 'vm3'" in refused["msg"] and "state=restored" in refused["msg"] and "state=absent" in refused["msg"]
    assert lab.placement()[vm] == [(home, "shutoff")]

    # The VM runs elsewhere while an (old) image exists: restoring it would start a second copy.
    spare = str(tmp_path / "old.save")
    shutil.copyfile(image, spare)
    run(playbook, lab, tmp_path, [{"name": vm, "host": away, "others": hosts, "state": "restored"}])
    shutil.copyfile(spare, image)
    twice = run(playbook, lab, tmp_path, [{"name": vm, "host": third, "others": hosts, "state": "restored"}])[0]
    assert twice.get("failed") and twice["error_kind"] == "vm_running", twice
    assert "VM 'vm3' runs on %s" % lab.uri(away) in twice["msg"] and "second copy" in twice["msg"] and "state=absent" in twice["msg"]
    assert lab.running_on(vm) == [away] and os.path.exists(image)  # nothing done, the image kept
    removed = run(playbook, lab, tmp_path, [{"name": vm, "host": away, "others": hosts, "state": "absent"},
                                            {"name": vm, "host": away, "others": hosts, "state": "absent"}])
    assert removed[0]["changed"] and not removed[1]["changed"], removed
    assert not os.path.exists(image)

    # A save directory only one host sees (inside its own /var/lib/libvirt): another host is told it cannot see the file.
    private = "/var/lib/libvirt/entropy-private-saves"
    vm = "vm5"
    owner = lab.running_on(vm)[0]
    elsewhere = next(h for h in hosts if h != owner)
    os.makedirs(lab.host_path(owner, private + "/"), exist_ok=True)
    run(playbook, lab, tmp_path, [{"name": vm, "host": owner, "state": "saved", "save_dir": private}])
    blind = run(playbook, lab, tmp_path, [{"name": vm, "host": elsewhere, "others": hosts, "state": "restored", "save_dir": private}])[0]
    assert blind.get("failed") and blind["error_kind"] == "image_not_visible", blind
    assert ("Host %s cannot see the image file %s/vm5.save of VM 'vm5', which %s sees" % (lab.uri(elsewhere), private, lab.uri(owner))
            in blind["msg"]), blind["msg"]
    assert "not on storage both hosts share" in blind["msg"] and "the image is kept" in blind["msg"]
    back = run(playbook, lab, tmp_path, [{"name": vm, "host": owner, "others": hosts, "state": "restored", "save_dir": private}])[0]
    assert back["changed"] and not back["definition_moved"], back
    assert lab.placement()[vm] == [(owner, "running")]

    # A priority that is no integer.
    bad = run(playbook, lab, tmp_path, [{"module": "vm_priority", "name": "vm2", "host": lab.running_on("vm2")[0], "priority": "high"}])[0]
    assert bad.get("failed") and bad["error_kind"] == "invalid_argument", bad
    assert "VM 'vm2': priority 'high' is not an integer; give a whole number" in bad["msg"]
    lab.assert_each_vm_once()


def test_priority_kept_with_the_vm_and_read_by_the_inventory(lab_reset, playbook, tmp_path):
    lab = lab_reset
    hosts = sorted(lab.hosts)
    high, saved_vm = "vm2", "vm4"
    set_live_metadata(lab, "vm1", None)  # what an earlier, interrupted run may have left
    results = run(playbook, lab, tmp_path, [
        {"module": "vm_priority", "name": high, "host": lab.running_on(high)[0], "priority": None},  # whatever an earlier run left
        {"module": "vm_priority", "name": high, "host": lab.running_on(high)[0], "priority": 10},
        {"module": "vm_priority", "name": high, "host": lab.running_on(high)[0], "priority": "10"},
        {"module": "vm_priority", "name": saved_vm, "host": lab.running_on(saved_vm)[0], "priority": -3},
    ])
    run(playbook, lab, tmp_path, [{"name": saved_vm, "host": lab.running_on(saved_vm)[0], "state": "saved"}])  # the image keeps it
    results = results[1:]
    assert results[0]["changed"] and results[0]["priority"] == 10 and not results[1]["changed"], results
    inventory = inventory_list(lab)
    hostvars = inventory["_meta"]["hostvars"]
    assert hostvars[high]["entropy_priority"] == 10 and hostvars["vm1"]["entropy_priority"] is None
    saved = hostvars[saved_vm]
    assert saved["entropy_state"] == "saved" and saved["entropy_hypervisor"] is None and saved["entropy_priority"] == -3
    assert saved["entropy_save_image"] == os.path.join(saves(lab), saved_vm + ".save") and saved["entropy_defined_on"] in hosts
    model = {vm["name"]: vm for vm in hostvars["entropy_cluster"]["entropy_model"]["vms"]}
    assert model[high]["priority"] == 10 and "priority" not in model["vm1"]
    assert model[saved_vm] == {"name": saved_vm, "host": None, "state": "saved", "memory_mib": 64, "vcpus": 1, "cpu": 0.0, "priority": -3}

    # A priority written by hand that is no integer: the inventory names the VM and the fix.
    set_live_metadata(lab, "vm1", "<vm><priority>urgent</priority></vm>")
    try:
        proc = inventory_list(lab, check=False)
    finally:
        set_live_metadata(lab, "vm1", None)
    assert proc.returncode != 0
    assert "VM 'vm1': priority 'urgent' is not an integer; give a whole number such as 0 or 10" in proc.stderr
    assert "entropy.cluster.vm_priority" in proc.stderr and "Traceback" not in proc.stderr

    # back to the start: restore the saved VM where it was saved
    back = run(playbook, lab, tmp_path, [{"name": saved_vm, "host": saved["entropy_defined_on"], "others": hosts, "state": "restored"}])[0]
    assert back["changed"], back
    lab.assert_each_vm_once()


def set_live_metadata(lab, vm, element):
    conn = lab.connect(lab.running_on(vm)[0])
    try:
        conn.lookupByName(vm).setMetadata(2, element, "entropy" if element else None, "urn:x-entropy-cluster:vm:1", 1)  # ELEMENT, LIVE
    finally:
        conn.close()


def inventory_list(lab, check=True):
    from conftest import COLLECTIONS  # pylint: disable=import-outside-toplevel

    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", lab.inventory, "--list"],
                          capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def estimate_s(steps, memory_mib=64, bandwidth_mib_s=1000.0):
    """The planner's estimate of a plan of suspends and resumes (placement.planner.step_seconds: per step, the slowest
    host's saves and restores; docs/plan-format.md#estimated-duration), for VMs of ``memory_mib``."""
    total = 0.0
    for step in steps:
        saved, restored = {}, {}
        for action in step:
            (saved if action["action"] == "suspend" else restored).setdefault(action.get("host") or action["to"], []).append(memory_mib)
        total += planner.step_seconds({}, saved, restored, bandwidth_mib_s)
    return round(total, 1)


def switch_s(watch, vms, source, targets):
    """From the first VM leaving ``source`` to the last one running on its target, as the watch saw it."""
    left = [watch.first_seen(vm, lambda where: (source, "running") not in where) for vm in vms]
    arrived = [watch.first_seen(vm, lambda where, vm=vm: (targets[vm], "running") in where) for vm in vms]
    return None if None in left + arrived else round(max(arrived) - min(left), 1)


def saves_s(watch, vms, source):
    """From the first VM leaving to the last one left (the suspend step, to the poller's resolution)."""
    left = [watch.first_seen(vm, lambda where: (source, "running") not in where) for vm in vms]
    return None if None in left else round(max(left) - min(left), 1)


def test_a_plan_suspends_on_one_host_and_resumes_on_another(lab_reset, playbook, tmp_path):
    """The context switch of 4 VMs: 2 saved on one host, then 2 resumed elsewhere, by entropy.cluster.apply."""
    lab = lab_reset
    hosts = sorted(lab.hosts)
    initial = lab_initial(lab)
    source = hosts[0]
    moving = sorted(vm for vm, where in initial.items() if where["host"] == source)[:2]
    targets = {moving[0]: hosts[1], moving[1]: hosts[2]}
    steps = [[{"action": "suspend", "vm": vm, "host": source} for vm in moving],
             [{"action": "resume", "vm": vm, "to": targets[vm]} for vm in moving]]
    target = {vm: targets.get(vm, where["host"]) for vm, where in initial.items()}
    plan = {"version": 1, "objective": "consolidate", "status": "feasible", "initial": initial, "target": target, "steps": steps,
            "stats": {"migrations": 0, "suspends": 2, "estimated_duration_s": estimate_s(steps)}}
    plan_file = tmp_path / "switch.json"
    plan_file.write_text(json.dumps(plan))
    counters = {vm: counter(lab, source, vm) for vm in moving}
    with OneCopyWatch(lab, lab.vms, saves(lab)) as watch:   # every VM runs on at most one host at every moment
        started = time.monotonic()
        proc = playbook("entropy.cluster.apply", inventory=lab.static_inventory,
                        extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(tmp_path / "lock"),
                                    "entropy_migrate_unsafe": True, "entropy_save_dir": saves(lab)})
        wall = time.monotonic() - started
    watch.check()
    assert proc.returncode == 0, proc.stdout[-5000:]
    placement = lab.placement()
    for vm in moving:
        assert placement[vm] == [(targets[vm], "running")], placement[vm]
        assert counter(lab, targets[vm], vm) >= counters[vm]
        assert not os.path.exists(os.path.join(saves(lab), vm + ".save"))
    lab.assert_each_vm_once()
    switched = switch_s(watch, moving, source, targets)
    assert switched is not None, watch.samples[-1]
    figures = {"vms": 4, "saved": moving, "source": source, "resumed_on": targets, "playbook_wall_s": round(wall, 1),
               "switch_s": switched, "saves_s": saves_s(watch, moving, source), "plan_estimated_duration_s": plan["stats"]["estimated_duration_s"]}
    if os.environ.get(FIGURES_ENV):
        with open(os.environ[FIGURES_ENV], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(figures) + "\n")


def test_the_save_restore_benchmark_in_one_round(lab):
    """benchmarks/bench_save_restore.py (docs/benchmarks.md#save-and-restore-costs) on the lab, one round of two sizes:
    it prints its table and fit, and leaves neither its VMs nor their images behind."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_save_restore.py"), "--sizes", "64,128", "--rounds", "1"],
                          capture_output=True, text=True, check=False, timeout=300, cwd=ROOT, env=dict(os.environ, ENTROPY_LAB_DIR=lab.dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| 64 | " in proc.stdout and "| 128 | " in proc.stdout, proc.stdout
    assert "save: fixed " in proc.stdout and "restore: fixed " in proc.stdout, proc.stdout
    assert not [vm for vm in lab.placement() if vm.startswith("bench-sr-")], lab.placement()
    assert not [name for name in os.listdir(saves(lab)) if name.startswith("bench-sr-")]


def test_a_failed_restore_keeps_the_image_and_says_how_to_retry(lab_reset, playbook, tmp_path):
    """A restore that QEMU cannot finish (the image's memory stream cut in half, as a full disk or an interrupted copy
    leaves it): the module fails with restore_failed, keeps the image and the definition where they were, and says to run
    the same task again; with the whole image back, that same task restores the VM."""
    lab = lab_reset
    hosts = sorted(lab.hosts)
    vm = "vm4"
    home = lab.running_on(vm)[0]
    away = next(h for h in hosts if h != home)
    image = os.path.join(saves(lab), vm + ".save")
    run(playbook, lab, tmp_path, [{"name": vm, "host": home, "state": "saved"}])
    whole = str(tmp_path / "whole.save")
    shutil.copyfile(image, whole)
    with open(image, "r+b") as handle:
        handle.truncate(os.path.getsize(whole) // 2)
    failed = run(playbook, lab, tmp_path, [{"name": vm, "host": away, "others": hosts, "state": "restored"}])[0]
    assert failed.get("failed") and failed["error_kind"] == "restore_failed", failed
    assert "VM 'vm4'" in failed["msg"] and "the image is kept at %s" % image in failed["msg"], failed["msg"]
    assert "run the same task again to retry" in failed["msg"], failed["msg"]
    assert os.path.exists(image) and lab.placement()[vm] == [(home, "shutoff")], lab.placement().get(vm)
    shutil.copyfile(whole, image)
    retried = run(playbook, lab, tmp_path, [{"name": vm, "host": away, "others": hosts, "state": "restored"}])[0]
    assert retried["changed"] and not retried.get("failed"), retried
    assert lab.placement()[vm] == [(away, "running")] and not os.path.exists(image)
    lab.assert_each_vm_once()
