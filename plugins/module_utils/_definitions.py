# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_definitions (private: names may change between releases): every VM's definition kept in the
cluster store (record kind ``definition``, one per VM: its hypervisor, that hypervisor's URI and its inactive domain XML), so
that entropy.cluster.vm_recover can cold-boot a VM that never had a checkpoint once its hypervisor is dead and cannot be asked.

No Ansible import: the module and entropy.cluster.vm_recover share it.
"""

from __future__ import annotations

import time
import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    libvirt,
    open_connection,
)
from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore

KIND = "definition"


def read_hypervisor(uri: str, username: str | None, password: str | None, timeout: float | None) -> dict[str, tuple[bool, str]]:
    """VM name -> (active, inactive domain XML) of every VM one hypervisor defines or runs."""
    conn = open_connection(uri, username, password, readonly=True, connect_timeout=timeout)
    try:
        found = {}
        for dom in conn.listAllDomains():
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
            found[dom.name()] = (bool(dom.isActive()), dom.XMLDesc(flags))
        return found
    except libvirt.libvirtError as exc:
        raise describe_error(exc, "listing the VMs and their definitions", uri) from None
    finally:
        close_quietly(conn)


def choose(seen: t.Mapping[str, t.Mapping[str, tuple[bool, str]]], hypervisors: t.Mapping[str, str],
           recorded: t.Mapping[str, t.Mapping[str, t.Any]]) -> dict[str, dict[str, t.Any]]:
    """The record each VM should have: where it runs (a VM active on one hypervisor), else where it is defined - the
    hypervisor its record already names when that one still defines it (a stale shut-off copy elsewhere does not win)."""
    places: dict[str, list[tuple[str, bool, str]]] = {}
    for host, vms in sorted(seen.items()):
        for vm, (active, xml) in vms.items():
            places.setdefault(vm, []).append((host, active, xml))
    wanted = {}
    for vm, where in sorted(places.items()):
        active = [p for p in where if p[1]]
        previous = (recorded.get(vm) or {}).get("host")
        pick = active[0] if active else next((p for p in where if p[0] == previous), where[0])
        wanted[vm] = {"host": pick[0], "uri": hypervisors[pick[0]], "definition": pick[2]}
    return wanted


def same(record: t.Mapping[str, t.Any] | None, wanted: t.Mapping[str, t.Any]) -> bool:
    return bool(record) and all(record.get(k) == wanted[k] for k in ("host", "uri", "definition"))


class Definitions:
    """Bring the store's definition records in line with what the hypervisors define."""

    def __init__(self, hypervisors: t.Mapping[str, str], pool: str, username: str | None = None, password: str | None = None,
                 connect_timeout: float | None = None) -> None:
        self.hypervisors = dict(hypervisors)
        self.pool = pool
        self.auth = (username, password)
        self.timeout = connect_timeout

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        seen: dict[str, dict[str, tuple[bool, str]]] = {}
        unreachable: dict[str, str] = {}
        for host, uri in sorted(self.hypervisors.items()):
            try:
                seen[host] = read_hypervisor(uri, *self.auth, self.timeout)
            except EntropyLibvirtError as exc:
                unreachable[host] = exc.message
        uris = [self.hypervisors[h] for h in sorted(seen)] or list(self.hypervisors.values())
        written, removed = [], []
        with ClusterStore(uris, self.pool, *self.auth, connect_timeout=self.timeout) as store:
            recorded = {key: (record.data or {}) for key, record in store.read_all(KIND).items()}
            wanted = choose(seen, self.hypervisors, recorded)
            for vm, record in sorted(wanted.items()):
                if same(recorded.get(vm), record):
                    continue
                written.append(vm)
                if not check_mode:
                    data = dict(record, recorded=round(time.time(), 3))
                    if not store.replace(KIND, vm, data):
                        store.create(KIND, vm, data)
            # a VM no answering hypervisor defines any more, whose record names one of them, was removed: drop its record.
            # A record naming a hypervisor that did not answer (or is not given, a fenced one) stays: recovery needs it.
            for vm, record in sorted(recorded.items()):
                if vm not in wanted and record.get("host") in seen:
                    removed.append(vm)
                    if not check_mode:
                        store.delete(KIND, vm)
        return {"written": written, "removed": removed, "unchanged": len(wanted) - len(written), "unreachable": unreachable}


def read_records(store: ClusterStore) -> dict[str, dict[str, t.Any]]:
    """VM name -> its definition record (host, uri, definition, recorded)."""
    return {key: record.data for key, record in store.read_all(KIND).items() if record.data}
