# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM actions through ansible-runner (the executor AWX uses) and dashboard/playbooks/vm_action.yml, and the audit log."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
import typing as t
from collections import deque

from . import HERE, collections_path

PLAYBOOK = os.path.join(HERE, "playbooks", "vm_action.yml")
ACTIONS = ("suspend", "resume", "migrate", "save", "snapshot")
HOST_ACTIONS = ("evacuate",)
# the collection's own playbooks the dashboard runs for host actions and plans
COLLECTION_PLAYBOOKS = os.path.join(os.path.dirname(HERE), "playbooks")


def extravars_yaml(variables: dict) -> str:
    """The runner's env/extravars: every string tagged !unsafe (plan_playbook.yaml_data), so no name is ever templated."""
    from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import yaml_data  # pylint: disable=import-outside-toplevel

    return yaml_data(variables) + "\n"


def _failure_message(runner: t.Any) -> str:
    from .jobs import _text  # pylint: disable=import-outside-toplevel

    for event in reversed(list(runner.events)):
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res") or {}
            return _text(res.get("msg") or "the task failed")
    return "ansible-runner ended with status %s (rc %s)" % (runner.status, runner.rc)


def _changed(runner: t.Any) -> bool:
    return any(e.get("event") == "runner_on_ok" and ((e.get("event_data") or {}).get("res") or {}).get("changed")
               for e in runner.events)


def run_playbook(playbook: str, variables: dict, inventory: str | None = None, event_handler: t.Callable[[dict], bool] | None = None,
                 timeout: int = 600) -> dict:
    """Run one playbook once through ansible-runner with ``variables`` (as !unsafe data) on ``inventory`` (the cluster's
    inventory file; None: localhost only): {"ok": bool, "changed": bool, "message": str}."""
    import ansible_runner  # pylint: disable=import-outside-toplevel

    work = tempfile.mkdtemp(prefix="entropy-dashboard-")
    try:
        os.makedirs(os.path.join(work, "env"))
        with open(os.path.join(work, "env", "extravars"), "w", encoding="utf-8") as handle:
            handle.write(extravars_yaml(variables))
        if inventory is None:
            os.makedirs(os.path.join(work, "inventory"))
            with open(os.path.join(work, "inventory", "hosts"), "w", encoding="utf-8") as handle:
                handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        env = {"ANSIBLE_COLLECTIONS_PATH": collections_path(), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_RETRY_FILES_ENABLED": "false",
               "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
               "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
        kwargs = {"inventory": os.path.abspath(inventory)} if inventory else {}
        runner = ansible_runner.run(private_data_dir=work, playbook=playbook, quiet=True, envvars=env, timeout=timeout,
                                    event_handler=event_handler, **kwargs)
        if runner.status == "successful" and runner.rc == 0:
            return {"ok": True, "changed": _changed(runner), "message": "done" if _changed(runner) else "nothing to do (already so)"}
        return {"ok": False, "changed": _changed(runner), "message": _failure_message(runner)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_action(variables: dict, timeout: int = 600) -> dict:
    """Run vm_action.yml once with ``variables``: {"ok": bool, "changed": bool, "message": str}."""
    return run_playbook(PLAYBOOK, variables, timeout=timeout)


def inventory_options(path: str | None) -> dict:
    """``save_dir`` and ``store_pool`` of a libvirt_cluster inventory file ({} when it has none, or no file)."""
    if not path:
        return {}
    import yaml  # pylint: disable=import-outside-toplevel

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: str(data[key]) for key in ("save_dir", "store_pool") if isinstance(data.get(key), str) and data[key]}


class AuditLog:
    """Who did what, when, and how it ended: one JSON object per line in a file, the last 500 in memory."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.recent: deque = deque(maxlen=500)
        self._lock = threading.Lock()
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        self.recent.append(json.loads(line))
                    except ValueError:
                        continue

    def write(self, **entry: t.Any) -> dict:
        entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **entry}
        with self._lock:
            self.recent.append(entry)
            if self.path:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry
