# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of entropy.cluster.run_lock: names the process that owns the lock.

The module itself runs under ``/bin/sh`` in a child of an Ansible worker, so neither its own pid nor its parent's
lives as long as the run. This plugin runs in the worker, whose parent is the ``ansible-playbook`` (or ``ansible``)
process that runs the play: that process is the lock's owner. It is passed as ``owner_pid`` only when the module
runs on the controller, where that pid means something.
"""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

LOCAL_TRANSPORTS = ("local", "ansible.builtin.local")


class ActionModule(ActionBase):

    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        module_args = dict(self._task.args)
        if (module_args.get("owner_pid") is None and module_args.get("state", "present") == "present"
                and getattr(self._connection, "transport", None) in LOCAL_TRANSPORTS and os.getppid() > 1):
            module_args["owner_pid"] = os.getppid()
        result.update(self._execute_module(module_name="entropy.cluster.run_lock", module_args=module_args, task_vars=task_vars))
        return result
