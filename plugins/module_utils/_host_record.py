# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One hypervisor's record in the cluster store (private: names may change between releases): what
entropy.cluster.host_maintenance (kind maintenance) and entropy.cluster.host_fence (kind fence) set and clear."""

from __future__ import annotations

import time
import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore, StoreError, volume_name
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._run_lock import iso, user_at_host


class HostRecord:
    """Write (state=present) or clear (state=absent) one hypervisor's record of ``KIND``; check mode reads only.

    A record is written by one exclusive create: when another job wrote one meanwhile, its record is kept."""

    KIND = ""
    # module options kept in the record, besides host, since and by
    OPTIONS: tuple[str, ...] = ("reason",)
    # record fields returned (and diffed), besides since, since_iso and by
    SHOWN: tuple[str, ...] = ("reason",)

    def __init__(self, module: EntropyModule) -> None:
        self.module = module
        params = module.params
        self.host: str = params["host"]
        if not self.host.strip():
            module.fail("host must name a hypervisor, got an empty string", "config")
        module.result.update(host=self.host, store={"pool": params["pool"], "volume": volume_name(self.KIND, self.host), "via": None})
        self.store = ClusterStore(params["uris"], params["pool"], params["auth_username"], params["auth_password"],
                                  connect_timeout=params.get("connect_timeout"))

    def shown(self, data: dict[str, t.Any] | None) -> dict[str, t.Any] | None:
        """The record as returned; one still being written shows as such."""
        if data is None:
            return None
        shown = {"since": data.get("since"), "since_iso": data.get("since_iso"), "by": data.get("by", "(being written)")}
        shown.update((field, data.get(field)) for field in self.SHOWN)
        return shown

    def before_writing(self) -> dict[str, t.Any]:
        """Checks made before a record is written (state=present); returns what else the record keeps."""
        return {}

    def run(self) -> t.NoReturn:
        module, params, host, result = self.module, self.module.params, self.host, self.module.result
        extra = self.before_writing() if params["state"] == "present" else {}
        try:
            self.store.open()
            result["store"]["via"] = self.store.via
            record = self.store.read(self.KIND, host)
            before = None if record is None else (record.data or {})
            after = before
            if params["state"] == "present" and before is None:
                since = time.time()
                after = {"host": host, "since": since, "since_iso": iso(since), "by": params["by"] or user_at_host()}
                after.update((option, params[option]) for option in self.OPTIONS)
                after.update(extra)
                result["changed"] = True
                if not module.check_mode and not self.store.create(self.KIND, host, after):
                    again = self.store.read(self.KIND, host)  # written by another job meanwhile: keep its record
                    after = None if again is None else (again.data or {})
                    result["changed"] = False
            elif params["state"] == "absent" and before is not None:
                after = None
                result["changed"] = True
                if not module.check_mode:
                    self.store.delete(self.KIND, host)
        except StoreError as exc:
            self.store.close()
            module.fail("%s (hypervisor %s)" % (exc.message, host), exc.kind)
        self.store.close()
        result.update({self.KIND: self.shown(after), "previous": self.shown(before)})
        module.set_diff({self.KIND: self.shown(before)}, {self.KIND: self.shown(after)})
        module.exit()
