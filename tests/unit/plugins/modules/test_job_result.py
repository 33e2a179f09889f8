# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.job_result on real files: a job has ended only when every VM wrote its exit status into the share
(what the guest of a job VM writes, tests/integration/test_job_guest.py); it is done when all are 0, failed naming the
others; an exit file that holds no status counts as not ended; names with quotes, spaces and braces are file names."""

from __future__ import annotations

import os

from ansible_collections.entropy.cluster.plugins.module_utils._job import job_outcome, read_exit_status

JOB = "it's {{ a }} $(job)"
VMS = [JOB + "-1", JOB + "-2", JOB + "-3"]


def result(run, share, vms=None, check=False):
    return run("job_result", dict(job=JOB, share=str(share), vms=VMS if vms is None else vms), check=check)


def write(share, vm, text):
    (share / (vm + ".exit")).write_text(text)


def test_a_job_ends_when_every_vm_wrote_its_exit_status(run, tmp_path):
    got = result(run, tmp_path)
    assert got["ended"] is False and got["state"] == "running" and got["exit_statuses"] == dict.fromkeys(VMS)
    assert "still runs in 3 of its 3 VM(s)" in got["detail"] and got["changed"] is False
    write(tmp_path, VMS[0], "0\n")
    write(tmp_path, VMS[1], "0\n")
    got = result(run, tmp_path, check=True)
    assert got["ended"] is False and got["exit_statuses"][VMS[0]] == 0 and got["exit_statuses"][VMS[2]] is None
    assert repr(VMS[2]) in got["detail"]
    write(tmp_path, VMS[2], "0\n")
    got = result(run, tmp_path)
    assert got["ended"] is True and got["state"] == "done" and set(got["exit_statuses"].values()) == {0}
    assert got["outputs"][VMS[0]] == os.path.join(str(tmp_path), VMS[0] + ".out")


def test_a_non_zero_exit_status_fails_the_job_naming_the_vm(run, tmp_path):
    for vm, status in zip(VMS, ("0\n", "3\n", "0\n")):
        write(tmp_path, vm, status)
    got = result(run, tmp_path)
    assert got["ended"] is True and got["state"] == "failed"
    assert got["detail"] == "the command failed in 1 of 3 VM(s): %r exit status 3" % VMS[1]


def test_an_exit_file_without_a_status_is_not_an_end(run, tmp_path):
    write(tmp_path, VMS[0], "0\n")
    write(tmp_path, VMS[1], "garbage")
    write(tmp_path, VMS[2], "")
    got = result(run, tmp_path)
    assert got["ended"] is False and got["exit_statuses"][VMS[1]] is None and len(got["problems"]) == 2
    assert "not an exit status" in got["problems"][0]


def test_a_missing_share_is_one_line_naming_where_to_run(run, tmp_path):
    got = result(run, tmp_path / "nowhere")
    assert got["failed"] and got["error_kind"] == "no_share" and "entropy_job_share_host" in got["msg"] and "\n" not in got["msg"]


def test_the_decision_alone():
    assert job_outcome("j", [], {})["ended"] is False  # a job without VMs never counts as ended
    assert job_outcome("j", ["a"], {"a": None})["state"] == "running"
    assert job_outcome("j", ["a", "b"], {"a": 0, "b": 0})["state"] == "done"
    assert job_outcome("j", ["a", "b"], {"a": 1, "b": 2})["detail"] == "the command failed in 2 of 2 VM(s): 'a' exit status 1, 'b' exit status 2"
    assert read_exit_status("/", "../etc/x")[1] is not None  # a name with '/' never reaches outside the share


def test_the_queue_order_is_priority_then_submit_time():
    from ansible_collections.entropy.cluster.plugins.module_utils._job import queue_order  # pylint: disable=import-outside-toplevel

    jobs = [{"name": "late-high", "state": "queued", "priority": 5, "submitted": 30.0, "job": {}},
            {"name": "early-low", "state": "queued", "priority": 0, "submitted": 10.0, "job": {"x": 1}},
            {"name": "early-high", "state": "queued", "priority": 5, "submitted": 20.0, "job": {"x": 1}},
            {"name": "running", "state": "running", "priority": 9, "submitted": 1.0, "job": {"x": 1}},
            {"name": "later-low", "state": "queued", "priority": 0, "submitted": 40.0, "job": {"x": 1}}]
    jobs[0]["job"] = {"x": 1}
    assert [e["name"] for e in queue_order(jobs)] == ["early-high", "late-high", "early-low", "later-low"]
