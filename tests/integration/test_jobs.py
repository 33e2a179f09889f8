# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jobs on the lab's real QEMU daemons: entropy.cluster.submit places a 3-VM job, each VM a linked clone of a base
image, started once on the host the plan chose; entropy.cluster.job_status shows it; entropy.cluster.cancel removes the
VMs and their overlays and records the job cancelled. A job with no room now is queued with the numbers, one larger
than the whole cluster refused with them, a bad job file refused naming the field. Job and owner names with quotes,
spaces and {{ }} stay literal everywhere and are never templated. Each job VM gets its seed (entropy.cluster.job_seed), removed
with its overlay; the OS guest that runs it is in tests/integration/test_job_guest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from conftest import COLLECTIONS, LAB_TOOL, Lab

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import decode, volume_name  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk alice@laptop"
# Templated anywhere, these would run `touch` in the playbook's directory (pipe lookup) or become "42".
NASTY_JOB = "it's \"a\" job {{ lookup('pipe', 'touch templated-job') }}"
NASTY_OWNER = "bob \"{{ 6 * 7 }}\" o'hara"


def base_image(lab: Lab) -> str:
    path = os.path.join(lab.dir, "images", "job-test-base.qcow2")
    if not os.path.exists(path):
        LAB_TOOL.write_boot_disk(path, LAB_TOOL.boot_sector(0.0))
    return path


def write_job(lab: Lab, directory, **fields) -> str:
    data = dict(name="job", owner="alice", vms=3, vcpus=1, memory_mib=64, cpu=0.05, image=base_image(lab),
                command="echo done > result.txt", share="/srv/share/alice", ssh_key=KEY, time_limit_s=600)
    data.update(fields)
    path = os.path.join(str(directory), "job.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    return path


def record(lab: Lab, job: str) -> dict | None:
    """The job's record, read from the store's directory (what the cluster store keeps on the shared storage)."""
    path = os.path.join(lab.dir, "store", volume_name("job", job))
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return decode("job", job, handle.read())


def overlays(lab: Lab) -> list[str]:
    """The job VMs' overlays and seed volumes (entropy.cluster.job_vm, entropy.cluster.job_seed) in the job pool."""
    return sorted(n for n in os.listdir(os.path.join(lab.dir, "images")) if n.startswith("entropy-job-"))


def inventory(lab: Lab) -> dict:
    """ansible-inventory --list of the lab's inventory (the collection of this checkout)."""
    listed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", lab.inventory, "--list"],
                            capture_output=True, text=True, check=True,
                            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false"))
    return json.loads(listed.stdout)


def run(playbook, lab: Lab, name: str, cwd, **extra):
    return playbook("entropy.cluster.%s" % name, inventory=lab.inventory, extra_vars=extra or None, cwd=str(cwd))


def test_submit_status_cancel_with_names_that_would_break_a_template(lab_reset, playbook, tmp_path):
    lab = lab_reset
    job_file = write_job(lab, tmp_path, name=NASTY_JOB, owner=NASTY_OWNER)
    vms = ["%s-%d" % (NASTY_JOB, i) for i in (1, 2, 3)]
    try:
        submitted = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file)
        assert submitted.returncode == 0, submitted.stdout[-6000:]
        placement = lab.placement()
        data = record(lab, NASTY_JOB)
        assert data is not None and data["state"] == "running" and data["owner"] == NASTY_OWNER and data["name"] == NASTY_JOB, data
        planned = {vm["name"]: vm["host"] for vm in data["vms"]}
        assert sorted(planned) == vms
        for vm in vms:  # each runs once, on the host the plan chose, from its own overlay of the base image
            assert placement.get(vm) == [(planned[vm], "running")], (vm, placement.get(vm))
            conn = lab.connect(planned[vm])
            try:
                xml = conn.lookupByName(vm).XMLDesc(0)
            finally:
                conn.close()
            assert vm_metadata.read(xml, vm)["job"] == NASTY_JOB and vm_metadata.read(xml, vm)["owner"] == NASTY_OWNER
        assert len(overlays(lab)) == 6 and len([n for n in overlays(lab) if n.endswith(".seed.iso")]) == 3  # an overlay and a seed each
        lab.assert_each_vm_once(extra=tuple(vms))

        listed = inventory(lab)  # each VM's job and owner as host vars, and a group per job
        group = "job_" + "".join(c if c.isalnum() or c == "_" else "_" for c in NASTY_JOB)
        assert sorted(listed[group]["hosts"]) == vms, sorted(listed)
        for vm in vms:
            hostvars = listed["_meta"]["hostvars"][vm]  # marked unsafe (never templated), the string itself unchanged
            assert hostvars["entropy_job_name"] in (NASTY_JOB, {"__ansible_unsafe": NASTY_JOB}), hostvars["entropy_job_name"]
            assert hostvars["entropy_job_owner"] in (NASTY_OWNER, {"__ansible_unsafe": NASTY_OWNER}), hostvars["entropy_job_owner"]

        again = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file)
        assert again.returncode == 0 and "changed=0" in again.stdout and "is already running" in again.stdout, again.stdout[-3000:]

        status = run(playbook, lab, "job_status", tmp_path)
        assert status.returncode == 0, status.stdout[-3000:]
        for text in [NASTY_JOB, NASTY_OWNER] + vms:
            assert json.dumps(text) in status.stdout, text
        assert '"state": "running"' in status.stdout

        cancelled = run(playbook, lab, "cancel", tmp_path, entropy_job_file=job_file)
        assert cancelled.returncode == 0, cancelled.stdout[-4000:]
        placement = lab.placement()
        assert not [vm for vm in vms if vm in placement], placement
        assert overlays(lab) == []
        assert record(lab, NASTY_JOB)["state"] == "cancelled"
        twice = run(playbook, lab, "cancel", tmp_path, entropy_job_file=job_file)
        assert twice.returncode == 0 and "changed=0" in twice.stdout, twice.stdout[-3000:]
        # nothing was templated: no file made by the pipe lookup, no "42" for the owner
        assert not os.path.exists(tmp_path / "templated-job") and not os.path.exists(os.path.join(os.getcwd(), "templated-job"))
        assert "bob \"42\"" not in status.stdout + submitted.stdout
    finally:
        for vm in vms:
            lab.remove_vm(vm)


def test_check_mode_of_submit_shows_the_plan_and_changes_nothing(lab, playbook, tmp_path):
    job_file = write_job(lab, tmp_path, name="dry", vms=2)
    before = lab.placement()
    dry = playbook("entropy.cluster.submit", inventory=lab.inventory, extra_vars={"entropy_job_file": job_file}, check=True,
                   cwd=str(tmp_path))
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert "would run" in dry.stdout and "start" in dry.stdout, dry.stdout[-3000:]
    assert record(lab, "dry") is None and overlays(lab) == [] and lab.placement() == before


def test_no_room_queues_the_job_with_the_numbers(lab_reset, playbook, tmp_path):
    lab = lab_reset
    # the lab: 3 hosts x 320 MiB, 6 VMs x 64 MiB: 576 MiB free; 5 x 128 MiB fits the empty cluster, not this one
    job_file = write_job(lab, tmp_path, name="waits", vms=5, memory_mib=128)
    queued = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file)
    assert queued.returncode == 0, queued.stdout[-4000:]
    assert "needs 640 MiB" in queued.stdout and "576 MiB free" in queued.stdout, queued.stdout[-3000:]
    data = record(lab, "waits")
    assert data["state"] == "queued" and "needs 640 MiB" in data["message"], data
    assert not [vm for vm in lab.placement() if vm.startswith("waits-")] and overlays(lab) == []
    status = run(playbook, lab, "job_status", tmp_path, entropy_job_name="waits")
    assert '"state": "queued"' in status.stdout, status.stdout[-3000:]
    cancelled = run(playbook, lab, "cancel", tmp_path, entropy_job_name="waits")
    assert cancelled.returncode == 0 and record(lab, "waits")["state"] == "cancelled", cancelled.stdout[-3000:]


def test_a_queued_job_starts_when_submitted_again_after_room_frees_up(lab_reset, playbook, tmp_path):
    lab = lab_reset
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = write_job(lab, first_dir, name="first", vms=3, memory_mib=128)   # 384 of the 576 MiB free
    second = write_job(lab, second_dir, name="second", vms=2, memory_mib=128)  # 256 > the 192 MiB left
    names = ["first-1", "first-2", "first-3", "second-1", "second-2"]
    try:
        assert run(playbook, lab, "submit", first_dir, entropy_job_file=first).returncode == 0
        queued = run(playbook, lab, "submit", second_dir, entropy_job_file=second)
        assert queued.returncode == 0 and record(lab, "second")["state"] == "queued", queued.stdout[-3000:]
        assert "needs 256 MiB" in record(lab, "second")["message"] and "192 MiB free" in record(lab, "second")["message"]
        assert run(playbook, lab, "cancel", first_dir, entropy_job_file=first).returncode == 0
        started = run(playbook, lab, "submit", second_dir, entropy_job_file=second)
        assert started.returncode == 0, started.stdout[-4000:]
        data = record(lab, "second")
        assert data["state"] == "running" and [h["state"] for h in data["history"]] == ["queued", "running"], data
        placement = lab.placement()
        assert all(len(placement.get(vm, [])) == 1 and placement[vm][0][1] == "running" for vm in ("second-1", "second-2")), placement
        assert run(playbook, lab, "cancel", second_dir, entropy_job_file=second).returncode == 0
        assert overlays(lab) == []
    finally:
        for vm in names:
            lab.remove_vm(vm)


def test_a_job_larger_than_the_cluster_is_refused_with_the_numbers(lab, playbook, tmp_path):
    job_file = write_job(lab, tmp_path, name="too-big", vms=16, memory_mib=64)
    refused = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file)
    assert refused.returncode != 0
    assert "refused: job 'too-big' is larger than the cluster: needs 1024 MiB (16 VMs x 64 MiB)" in refused.stdout, refused.stdout[-3000:]
    assert "960 MiB free on 3 online hosts" in refused.stdout
    assert record(lab, "too-big") is None and overlays(lab) == []


def test_a_bad_job_file_is_refused_naming_the_field(lab, playbook, tmp_path):
    job_file = write_job(lab, tmp_path, name="bad", memory_mib="512M")
    refused = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file)
    assert refused.returncode != 0
    assert "field 'memory_mib' must be an integer, got str '512M'" in refused.stdout, refused.stdout[-3000:]
    assert "Traceback" not in refused.stdout and record(lab, "bad") is None


def test_a_failed_start_removes_the_jobs_vms_and_records_the_failure(lab, playbook, tmp_path):
    job_file = write_job(lab, tmp_path, name="fails", vms=2)
    failed = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file, entropy_job_pool="no-such-pool")
    assert failed.returncode != 0 and "no-such-pool" in failed.stdout, failed.stdout[-4000:]
    data = record(lab, "fails")
    assert data["state"] == "failed" and "no-such-pool" in data["message"], data
    assert not [vm for vm in lab.placement() if vm.startswith("fails-")] and overlays(lab) == []
    again = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file)
    assert again.returncode != 0 and "is already failed: submit it under another name" in again.stdout, again.stdout[-3000:]


def test_the_submit_names_what_it_needs(lab, playbook, tmp_path):
    job_file = write_job(lab, tmp_path, name="no-pool")
    refused = run(playbook, lab, "submit", tmp_path, entropy_job_file=job_file, entropy_job_pool="")
    assert refused.returncode != 0 and "entropy_job_pool" in refused.stdout, refused.stdout[-3000:]
