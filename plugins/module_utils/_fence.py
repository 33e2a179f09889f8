# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.host_fence (private: names may change between releases): a hypervisor's fence
record in the cluster store, after the user's fencing hook stopped it.

Before the record is written the module checks what it can: when the fenced hypervisor still answers, none of its
VMs may be active (else the hook did not stop them, and a copy started elsewhere would run twice)."""

from __future__ import annotations

import time
import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore, StoreError, volume_name
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError, close_quietly, open_connection
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._run_lock import iso, user_at_host

KIND = "fence"


def shown(data: dict[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The fence record as returned; one still being written shows as such."""
    if data is None:
        return None
    return {"since": data.get("since"), "since_iso": data.get("since_iso"), "by": data.get("by", "(being written)"),
            "reason": data.get("reason"), "method": data.get("method"), "host_answered": data.get("host_answered")}


def active_vms(uri: str, username: str | None, password: str | None, timeout: float | None) -> list[str] | None:
    """The active VMs of the hypervisor at ``uri``; None when it does not answer (what fencing should achieve)."""
    conn = None
    try:
        conn = open_connection(uri, username, password, readonly=True, connect_timeout=timeout)
        return sorted(dom.name() for dom in conn.listAllDomains() if dom.isActive())
    except EntropyLibvirtError:
        return None
    except Exception:  # pylint: disable=broad-except
        return None  # it stopped answering meanwhile (keepalive): the same as not answering
    finally:
        close_quietly(conn)


class HostFence:
    """Record (state=present) or clear (state=absent) the fence of one hypervisor; check mode reads only."""

    def __init__(self, module: EntropyModule) -> None:
        self.module = module
        params = module.params
        self.host: str = params["host"]
        if not self.host.strip():
            module.fail("host must name a hypervisor, got an empty string", "config")
        module.result.update(host=self.host, store={"pool": params["pool"], "volume": volume_name(KIND, self.host), "via": None})
        self.store = ClusterStore(params["uris"], params["pool"], params["auth_username"], params["auth_password"],
                                  connect_timeout=params.get("connect_timeout"))

    def verify_stopped(self) -> bool | None:
        """None when no check was asked; False when the host does not answer; True when it answers with no VM
        active. Fails the module when it answers with VMs still active."""
        params = self.module.params
        if not params["uri"]:
            return None
        running = active_vms(params["uri"], params["auth_username"], params["auth_password"], params.get("connect_timeout"))
        if running:
            self.module.fail("hypervisor %s is not fenced: it still answers on %s and runs %s. The fencing hook did not stop it; "
                             "power it off (or kill its VMs) and run again; no fence is recorded until then"
                             % (self.host, params["uri"], ", ".join(running)), "not_fenced", active_vms=running)
        return running is not None

    def run(self) -> t.NoReturn:
        module, params, host, result = self.module, self.module.params, self.host, self.module.result
        answered = self.verify_stopped() if params["state"] == "present" else None
        result["host_answered"] = answered
        try:
            self.store.open()
            result["store"]["via"] = self.store.via
            record = self.store.read(KIND, host)
            before = None if record is None else (record.data or {})
            after = before
            if params["state"] == "present" and before is None:
                since = time.time()
                after = {"host": host, "since": since, "since_iso": iso(since), "by": params["by"] or user_at_host(),
                         "reason": params["reason"], "method": params["method"], "host_answered": answered}
                result["changed"] = True
                if not module.check_mode and not self.store.create(KIND, host, after):
                    again = self.store.read(KIND, host)  # fenced by another job meanwhile: keep its record
                    after = None if again is None else (again.data or {})
                    result["changed"] = False
            elif params["state"] == "absent" and before is not None:
                after = None
                result["changed"] = True
                if not module.check_mode:
                    self.store.delete(KIND, host)
        except StoreError as exc:
            self.store.close()
            module.fail("%s (hypervisor %s)" % (exc.message, host), exc.kind)
        self.store.close()
        result.update(fence=shown(after), previous=shown(before))
        module.set_diff({"fence": shown(before)}, {"fence": shown(after)})
        module.exit()
