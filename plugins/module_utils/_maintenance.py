# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.host_maintenance (private: names may change between releases): a hypervisor's
maintenance mark in the cluster store."""

from __future__ import annotations

import time
import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore, StoreError, volume_name
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._run_lock import iso, user_at_host


def shown(data: dict[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The mark as returned; a mark still being written shows as such."""
    if data is None:
        return None
    return {"since": data.get("since"), "since_iso": data.get("since_iso"), "by": data.get("by", "(being written)"),
            "reason": data.get("reason")}


class HostMaintenance:
    """Set (state=present) or clear (state=absent) the mark of one hypervisor; check mode reads only."""

    def __init__(self, module: EntropyModule) -> None:
        self.module = module
        params = module.params
        self.host: str = params["host"]
        if not self.host.strip():
            module.fail("host must name a hypervisor, got an empty string")
        module.result.update(host=self.host, store={"pool": params["pool"], "volume": volume_name("maintenance", self.host), "via": None})
        self.store = ClusterStore(params["uris"], params["pool"], params["auth_username"], params["auth_password"],
                                  connect_timeout=params.get("connect_timeout"))

    def run(self) -> t.NoReturn:
        module, params, host, result = self.module, self.module.params, self.host, self.module.result
        try:
            self.store.open()
            result["store"]["via"] = self.store.via
            record = self.store.read("maintenance", host)
            before = None if record is None else (record.data or {})
            after = before
            if params["state"] == "present" and before is None:
                since = time.time()
                after = {"host": host, "since": since, "since_iso": iso(since), "by": params["by"] or user_at_host(),
                         "reason": params["reason"]}
                result["changed"] = True
                if not module.check_mode and not self.store.create("maintenance", host, after):
                    # marked by another job meanwhile: keep its mark
                    again = self.store.read("maintenance", host)
                    after = None if again is None else (again.data or {})
                    result["changed"] = False
            elif params["state"] == "absent" and before is not None:
                after = None
                result["changed"] = True
                if not module.check_mode:
                    self.store.delete("maintenance", host)
        except StoreError as exc:
            self.store.close()
            module.fail("%s (hypervisor %s)" % (exc.message, host), exc.kind)
        self.store.close()
        result.update(maintenance=shown(after), previous=shown(before))
        module.set_diff({"maintenance": shown(before)}, {"maintenance": shown(after)})
        module.exit()
