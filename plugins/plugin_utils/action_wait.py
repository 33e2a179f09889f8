# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for the actions of a plan step (async jobs) while saying how far they are: the logic of the
entropy.cluster.wait_actions action plugin, without Ansible imports.

A step starts its actions as async tasks (poll 0); each start result names the job's results file, which
Ansible's async wrapper rewrites once the module has finished. Reading that file is what async_status does;
here it is read directly (on the controller, where every action of a plan runs), so that a wait is one task
that prints progress lines instead of an until-loop that prints "FAILED - RETRYING" while nothing failed.
"""

from __future__ import annotations

import json
import typing as t


def job_state(start: t.Mapping[str, t.Any]) -> dict[str, t.Any] | None:
    """The async job of one start result: None while it runs, else its final result (as async_status gives it,
    with ``finished: 1``). A job whose results file is gone fails with async_status's own words."""
    jid = start.get("ansible_job_id")
    path = start.get("results_file")
    if not isinstance(path, str) or not path:
        return {"ansible_job_id": jid, "finished": 1, "failed": True, "msg": "the start result names no results file"}
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {"ansible_job_id": jid, "finished": 1, "failed": True, "msg": "could not find job", "results_file": path}
    except OSError as exc:
        return {"ansible_job_id": jid, "finished": 1, "failed": True, "msg": "cannot read the job's results file %s: %s" % (path, exc)}
    try:
        data = json.loads(text)
    except ValueError:
        return None  # being written (the wrapper writes a temporary file and renames it; a partial read is retried)
    if not isinstance(data, dict):
        return {"ansible_job_id": jid, "finished": 1, "failed": True, "msg": "the job's results file %s holds no result" % path}
    if "started" in data and not data.get("finished"):
        return None
    data = dict(data)
    data.pop("started", None)
    data.update({"ansible_job_id": jid, "finished": 1})
    return data


def printable(value: t.Any) -> str:
    """A name for a progress line: tenant data, shown as it is but without control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


def describe(action: t.Mapping[str, t.Any]) -> str:
    if action.get("action") == "migrate":
        return "migrate %s %s -> %s" % (printable(action.get("vm")), printable(action.get("from")), printable(action.get("to")))
    return "%s %s" % (printable(action.get("action", "?")), printable(action.get("vm")))


def migration_progress(job: t.Mapping[str, t.Any] | None, on_source: bool = True) -> str:
    """One migration's progress from its libvirt job on the source (domain_jobs.domain_job)."""
    if not on_source:
        return "handed over, finishing on the destination"
    if not job:
        return "starting"
    total, remaining = job.get("memory_total_bytes"), job.get("memory_remaining_bytes")
    text = "post-copy, " if job.get("postcopy") else ""
    if isinstance(total, int) and total > 0 and isinstance(remaining, int):
        percent = max(0, min(100, (total - remaining) * 100 // total))
        text += "%d %% of the memory sent, %d MiB left" % (percent, remaining // (1024 * 1024))
    else:
        text += "setting up (no memory sent yet)"
    if isinstance(job.get("elapsed_ms"), int):
        text += ", %d s" % (job["elapsed_ms"] // 1000)
    return text


def outcome(result: t.Mapping[str, t.Any]) -> str:
    if result.get("failed"):
        return "FAILED: " + " ".join(str(result.get("msg") or "failed without a message").split())
    return "done" + (" (changed)" if result.get("changed") else " (no change)")


def timed_out(start: t.Mapping[str, t.Any], timeout: float) -> dict[str, t.Any]:
    return {"ansible_job_id": start.get("ansible_job_id"), "finished": 0, "failed": True,
            "msg": "still running after %d s, when the wait ended" % timeout}
