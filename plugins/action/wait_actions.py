# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of entropy.cluster.wait_actions: wait for a plan step's async actions, printing progress.

Runs in the worker on the controller: reads each job's results file (as async_status does) and, for every
migration still running, its libvirt job on the source (memory sent and left), and prints one line per change.
"""

from __future__ import annotations

import time

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.entropy.cluster.plugins.module_utils.domain_jobs import domain_job
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT, close_quietly, find_domain, open_connection
from ansible_collections.entropy.cluster.plugins.module_utils._wait_actions import ARGUMENT_SPEC
from ansible_collections.entropy.cluster.plugins.plugin_utils.action_wait import describe, job_state, migration_progress, outcome, timed_out

display = Display()
LOCAL_TRANSPORTS = ("local", "ansible.builtin.local")


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if getattr(self._connection, "transport", None) not in LOCAL_TRANSPORTS:
            result.update(failed=True, msg="wait_actions reads the async jobs on the controller: run it with delegate_to: localhost")
            return result
        # Only started jobs can be waited for; a start that failed has no job (the caller reports it).
        starts = [job for job in args["jobs"] if job.get("ansible_job_id")]
        label = (to_text(args["label"]) + ": ") if args["label"] else ""
        results: list = [None] * len(starts)
        shown: dict[int, tuple[str, float]] = {}
        deadline = time.monotonic() + args["timeout"]
        display.display("%swaiting for %d action(s)" % (label, len(starts)))
        while True:
            for index, start in enumerate(starts):
                if results[index] is None:
                    state = job_state(start)
                    if state is not None:
                        state["item"] = start
                        results[index] = state
                        done = sum(1 for r in results if r is not None)
                        display.display("%s%s: %s (%d of %d finished)" % (label, describe(start.get("item") or {}), outcome(state), done, len(starts)))
            pending = [index for index, r in enumerate(results) if r is None]
            if not pending:
                break
            if time.monotonic() >= deadline:
                for index in pending:
                    results[index] = dict(timed_out(starts[index], args["timeout"]), item=starts[index])
                break
            self._show_progress(label, [starts[index] for index in pending], args["uris"], shown, args["progress_interval"])
            time.sleep(args["poll_interval"])
        failed = [r for r in results if r.get("failed")]
        result.update(results=results, changed=False, failed=bool(failed),
                      msg="%s%d of %d action(s) failed" % (label, len(failed), len(starts)) if failed
                      else "%s%d action(s) finished" % (label, len(starts)))
        return result

    @staticmethod
    def _show_progress(label: str, starts: list, uris: dict, shown: dict, interval: float) -> None:
        """One line per running migration, every ``interval`` seconds (read then, on the migration's source)."""
        now = time.monotonic()
        for start in starts:
            action = start.get("item") or {}
            key = id(start)
            if action.get("action") != "migrate" or now - shown.get(key, ("", -1e9))[1] < interval:
                continue
            text = "running"
            uri = uris.get(action.get("from"))
            if HAS_LIBVIRT and uri:
                conn = None
                try:
                    conn = open_connection(uri, readonly=True)
                    dom = find_domain(conn, str(action.get("vm")))
                    text = migration_progress(domain_job(dom) if dom is not None else None, on_source=dom is not None)
                except Exception:  # pylint: disable=broad-except
                    text = "running (its progress could not be read)"  # progress is a courtesy; the result decides
                finally:
                    close_quietly(conn)
            display.display("%s%s: %s" % (label, describe(action), text))
            shown[key] = (text, now)
