# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Long actions (evacuate a host, compute a plan, apply it) as jobs: one thread each, running one of the collection's
playbooks through ansible-runner; their progress (the tasks as ansible-runner reports them) reaches the page over
server-sent events, their outcome goes to the audit log."""

from __future__ import annotations

import re
import secrets
import threading
import time
import typing as t
from collections import OrderedDict

JOB_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_LINES = 400


class Job:
    """One playbook run: who started it, its progress lines, its outcome."""

    def __init__(self, kind: str, title: str, user: str, role: str, details: dict) -> None:
        self.id = secrets.token_hex(6)
        self.kind, self.title, self.user, self.role = kind, title, user, role
        self.details = details          # what the audit log records besides who and what (vm, host, objective, plan)
        self.started = time.time()
        self.finished: float | None = None
        self.lines: list[dict] = []     # {"text", "status"}: status running, ok, changed, failed
        self.status = "running"         # running, ok, changed, failed
        self.result: dict = {}
        self.version = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def progress(self, text: str, status: str = "running") -> None:
        with self.lock:
            self.lines.append({"text": text, "status": status})
            del self.lines[:-MAX_LINES]
            self.version += 1

    def update_last(self, text: str, status: str | None) -> None:
        """The last line that reads ``text`` ends with ``status`` (None: it is dropped, a task that was skipped)."""
        with self.lock:
            for index in range(len(self.lines) - 1, -1, -1):
                if self.lines[index]["text"] == text and self.lines[index]["status"] == "running":
                    if status is None:
                        del self.lines[index]
                    else:
                        self.lines[index] = {"text": text, "status": status}
                    break
            self.version += 1

    def view(self) -> dict:
        with self.lock:
            return {"id": self.id, "kind": self.kind, "title": self.title, "user": self.user, "status": self.status,
                    "lines": list(self.lines), "result": dict(self.result), "details": dict(self.details),
                    "started": self.started, "finished": self.finished, "version": self.version}


class Jobs:
    """The jobs of this dashboard process (the newest 50 kept)."""

    def __init__(self, audit: t.Any, keep: int = 50) -> None:
        self.audit = audit
        self.keep = keep
        self._jobs: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id or ""):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if kind is None or j.kind == kind]

    def start(self, job: Job, work: t.Callable[[Job], dict], on_done: t.Callable[[Job], None] | None = None) -> Job:
        """Run ``work(job)`` in a thread; it returns {"ok", "changed", "message", ...}. The audit log gets one entry
        when the job starts and one when it ends."""
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self.audit.write(user=job.user, role=job.role, action=job.kind, outcome="started", message=job.title, job=job.id, **job.details)

        def run() -> None:
            try:
                result = work(job)
            except Exception as exc:  # pylint: disable=broad-except
                result = {"ok": False, "changed": False, "message": "the dashboard could not run it: %s" % exc}
            with job.lock:
                job.result = result
                job.status = ("changed" if result.get("changed") else "ok") if result.get("ok") else "failed"
                job.finished = time.time()
                job.version += 1
            if on_done is not None:
                try:
                    on_done(job)
                except Exception:  # pylint: disable=broad-except
                    pass
            self.audit.write(user=job.user, role=job.role, action=job.kind, outcome=job.status, message=result.get("message"), job=job.id,
                             **job.details)
            job.done.set()

        threading.Thread(target=run, name="job-" + job.id, daemon=True).start()
        return job


def runner_progress(job: Job) -> t.Callable[[dict], bool]:
    """An ansible-runner event handler that turns the run's events into the job's progress lines: a line per task
    that runs (skipped tasks leave none), one per loop item, the messages of the debug tasks (the plan's table)."""
    def handler(event: dict) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        task = str(data.get("task") or "").strip()
        if kind == "playbook_on_task_start" and task:
            job.progress(task)
        elif kind == "runner_on_skipped" and task:
            job.update_last(task, None)
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") and task:
            res = data.get("res") or {}
            failed = kind != "runner_on_ok" and not data.get("ignore_errors")
            job.update_last(task, "failed" if failed else ("changed" if res.get("changed") else "ok"))
            if data.get("task_action") in ("debug", "ansible.builtin.debug") and res.get("msg"):
                msg = res["msg"]
                for line in (msg if isinstance(msg, list) else str(msg).splitlines()):
                    job.progress("    " + str(line), "info")
            elif failed and res.get("msg"):
                job.progress("    " + _text(res["msg"]), "failed")
        elif kind in ("runner_item_on_ok", "runner_item_on_failed"):
            res = data.get("res") or {}
            label = res.get("_ansible_item_label", res.get("item", ""))
            status = "failed" if kind == "runner_item_on_failed" else ("changed" if res.get("changed") else "ok")
            job.progress("    " + _text(label), status)
        return True
    return handler


def _text(value: t.Any) -> str:
    if isinstance(value, (list, tuple)):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join("%s: %s" % (k, _text(v)) for k, v in value.items() if v not in (None, [], {}, ""))
    return str(value)
