# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for a step's async actions: job files read as async_status reads them, progress lines that read as
progress, failure words only for failures."""

from __future__ import annotations

import json

from ansible_collections.entropy.cluster.plugins.plugin_utils.action_wait import describe, job_state, migration_progress, outcome, timed_out

MIGRATE = {"action": "migrate", "vm": "vm2", "from": "hv1", "to": "hv3"}


def start(tmp_path, content=None, jid="j1.2"):
    path = tmp_path / jid
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return {"ansible_job_id": jid, "results_file": str(path), "started": 1, "finished": 0, "item": MIGRATE}


def test_a_running_job_is_none_and_a_finished_one_is_its_result(tmp_path):
    assert job_state(start(tmp_path, {"started": 1, "finished": 0, "ansible_job_id": "j1.2"})) is None
    assert job_state(start(tmp_path, '{"changed": tr')) is None  # being written: read again
    done = job_state(start(tmp_path, {"changed": True, "msg": "migrated"}))
    assert done == {"changed": True, "msg": "migrated", "ansible_job_id": "j1.2", "finished": 1}
    failed = job_state(start(tmp_path, {"failed": True, "msg": "migrating VM 'vm2' failed: no room"}))
    assert failed["failed"] and failed["finished"] == 1


def test_a_job_without_its_file_fails_with_async_status_words(tmp_path):
    gone = job_state(start(tmp_path))
    assert gone["failed"] and gone["msg"] == "could not find job"
    assert job_state({"ansible_job_id": "j3"})["msg"] == "the start result names no results file"


def test_progress_lines_read_as_progress():
    mib = 1024 * 1024
    assert migration_progress(None) == "starting"
    assert migration_progress({"memory_total_bytes": 0, "memory_remaining_bytes": 0, "elapsed_ms": 2300}) == \
        "setting up (no memory sent yet), 2 s"
    assert migration_progress({"memory_total_bytes": 64 * mib, "memory_remaining_bytes": 16 * mib, "elapsed_ms": 9100}) == \
        "75 % of the memory sent, 16 MiB left, 9 s"
    assert migration_progress({"memory_total_bytes": 64 * mib, "memory_remaining_bytes": 0, "postcopy": True}).startswith("post-copy, 100 %")
    assert migration_progress(None, on_source=False) == "handed over, finishing on the destination"
    for line in (migration_progress(None), migration_progress({"memory_total_bytes": 0}), outcome({"changed": True})):
        assert "FAIL" not in line.upper() and "RETRY" not in line.upper()


def test_failure_words_are_kept_for_failures():
    assert outcome({"failed": True, "msg": "migrating VM 'vm2'\n failed"}) == "FAILED: migrating VM 'vm2' failed"
    assert outcome({"changed": False}) == "done (no change)"
    late = timed_out({"ansible_job_id": "j9"}, 420)
    assert late == {"ansible_job_id": "j9", "finished": 0, "failed": True, "msg": "still running after 420 s, when the wait ended"}


def test_names_are_shown_without_control_characters():
    assert describe(MIGRATE) == "migrate vm2 hv1 -> hv3"
    assert describe({"action": "suspend", "vm": "a\x1b[31mb\nc"}) == "suspend a?[31mb?c"
