# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.host_fence (private: names may change between releases): a hypervisor's fence
record in the cluster store, after the user's fencing hook stopped it.

Before the record is written the module checks what it can: when the fenced hypervisor still answers, none of its
VMs may be active (else the hook did not stop them, and a copy started elsewhere would run twice)."""

from __future__ import annotations

import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError, close_quietly, open_connection
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._host_record import HostRecord


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


class HostFence(HostRecord):
    """Record (state=present) or clear (state=absent) the fence of one hypervisor; check mode reads only."""

    KIND = "fence"
    OPTIONS = ("reason", "method")
    SHOWN = ("reason", "method", "host_answered")

    def __init__(self, module: EntropyModule) -> None:
        super().__init__(module)
        module.result["host_answered"] = None

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

    def before_writing(self) -> dict[str, t.Any]:
        answered = self.verify_stopped()
        self.module.result["host_answered"] = answered
        return {"host_answered": answered}
