# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private helpers shared by the VM modules (vm_migrate, vm_state, vm_snapshot, vm_info, host_info).

Not a public API: names may change between releases. No Ansible import here, so the helpers
can be unit tested with a plain libvirt connection.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    libvirt,
)
from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import condition, state_word


def vm_condition(dom) -> str:
    """The state the vm_state module talks about: running, paused, saved, shutoff, crashed, pmsuspended, ...

    ``saved`` is a shut-off domain with a managed save image (it resumes from memory on start);
    ``blocked`` counts as ``running``; ``shutdown`` (a guest shutting down) stays ``shutdown``.
    """
    state, _reason = dom.state()
    word = state_word(state)
    return condition(word, word == "shutoff" and has_managed_save(dom))


def has_managed_save(dom) -> bool:
    try:
        return bool(dom.hasManagedSaveImage(0))
    except libvirt.libvirtError:
        return False


def is_active(dom) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False


def wait_for(predicate, timeout: float, interval: float = 0.25) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def snapshot_list(dom) -> list[dict]:
    """The domain's snapshots, oldest first: name, description, creation_time, state, current, parent."""
    snaps = []
    try:  # parents before children, so that snapshots taken within the same second keep their order
        listed = dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
    except libvirt.libvirtError:
        listed = dom.listAllSnapshots(0)
    for snap in listed:
        root = ET.fromstring(snap.getXMLDesc(0))
        created = root.findtext("creationTime")
        try:
            is_current = bool(snap.isCurrent(0))
        except libvirt.libvirtError:
            is_current = False
        try:
            parent = snap.getParent(0).getName()
        except libvirt.libvirtError:
            parent = None
        memory = root.find("memory")
        snaps.append(dict(
            name=snap.getName(),
            description=root.findtext("description") or "",
            creation_time=int(created) if created and created.isdigit() else None,
            state=root.findtext("state") or "unknown",
            current=is_current,
            parent=parent,
            memory=memory.get("snapshot") if memory is not None else None,
        ))
    snaps.sort(key=lambda s: s["creation_time"] or 0)  # stable: ties stay in topological order
    return snaps


def _text_int(node, path: str, default: int = 0) -> int:
    value = node.findtext(path)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def domain_facts(dom) -> dict:
    """What vm_info returns for one domain."""
    root = ET.fromstring(dom.XMLDesc(0))
    state, max_kib, cur_kib, vcpus, cpu_time = dom.info()
    try:
        autostart = bool(dom.autostart())
    except libvirt.libvirtError:
        autostart = False
    try:
        snapshots = sorted(dom.snapshotListNames(0))
    except libvirt.libvirtError:
        snapshots = []
    disks = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        src = None
        if source is not None:
            src = source.get("file") or source.get("dev") or source.get("name") or source.get("volume")
            if source.get("pool") and source.get("volume"):
                src = "%s/%s" % (source.get("pool"), source.get("volume"))
        driver = disk.find("driver")
        target = disk.find("target")
        disks.append(dict(
            target=target.get("dev") if target is not None else None,
            bus=target.get("bus") if target is not None else None,
            device=disk.get("device", "disk"),
            type=disk.get("type"),
            source=src,
            format=driver.get("type") if driver is not None else None,
        ))
    interfaces = []
    for iface in root.findall("devices/interface"):
        source = iface.find("source")
        src = None
        if source is not None:
            src = source.get("network") or source.get("bridge") or source.get("dev") or source.get("address")
        mac = iface.find("mac")
        model = iface.find("model")
        target = iface.find("target")
        interfaces.append(dict(
            type=iface.get("type"),
            mac=mac.get("address") if mac is not None else None,
            model=model.get("type") if model is not None else None,
            source=src,
            target=target.get("dev") if target is not None else None,
        ))
    return dict(
        name=dom.name(),
        uuid=dom.UUIDString(),
        id=dom.ID() if dom.ID() >= 0 else None,
        state=state_word(state),
        condition=vm_condition(dom),
        vcpus=vcpus,
        max_vcpus=_text_int(root, "vcpu", vcpus),
        memory_mib=dict(max=max_kib // 1024, current=cur_kib // 1024),
        cpu_time_ns=cpu_time,
        persistent=bool(dom.isPersistent()),
        autostart=autostart,
        has_managed_save=has_managed_save(dom),
        snapshots=snapshots,
        disks=disks,
        interfaces=interfaces,
    )


def host_facts(conn) -> dict:
    """What host_info returns for one hypervisor."""
    from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import host_uuid  # pylint: disable=import-outside-toplevel

    model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
    free = None
    try:
        free = conn.getFreeMemory() // (1024 * 1024)
    except libvirt.libvirtError:
        free = None
    available = available_memory_bytes(conn)
    states: dict[str, int] = {}
    active = 0
    for dom in conn.listAllDomains(0):
        word = vm_condition(dom)
        states[word] = states.get(word, 0) + 1
        if is_active(dom):
            active += 1
    caps = ET.fromstring(conn.getCapabilities())
    try:
        hypervisor_version = conn.getVersion()
    except libvirt.libvirtError:
        hypervisor_version = None
    return dict(
        uri=conn.getURI(),
        hostname=conn.getHostname(),
        host_uuid=host_uuid(conn),
        hypervisor=conn.getType(),
        hypervisor_version=version_string(hypervisor_version),
        libvirt_version=version_string(conn.getLibVersion()),
        arch=model,
        cpu=dict(
            count=cpus,
            model=caps.findtext("host/cpu/model") or model,
            mhz=mhz,
            numa_nodes=nodes,
            sockets=sockets,
            cores=cores,
            threads=threads,
        ),
        memory_mib=memory_mib,
        free_memory_mib=free,
        available_memory_mib=available // (1024 * 1024) if available is not None else None,
        vms=dict(total=sum(states.values()), active=active, by_state=states),
    )


def version_string(number: int | None) -> str | None:
    """libvirt's 1000000*major + 1000*minor + release as ``major.minor.release``."""
    if number is None:
        return None
    return "%d.%d.%d" % (number // 1000000, (number // 1000) % 1000, number % 1000)


def available_memory_bytes(conn) -> int | None:
    """Memory a new VM could get on the host: free + buffers + cached from the node memory stats.

    None where the driver does not report node memory statistics (the test driver)."""
    try:
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
    except libvirt.libvirtError:
        return None
    if "free" not in stats:
        return None
    return (stats.get("free", 0) + stats.get("buffers", 0) + stats.get("cached", 0)) * 1024


# virDomainPausedReason -> word (libvirt 9.0 knows 0..14).
PAUSE_REASONS = {
    0: "unknown", 1: "user", 2: "migration", 3: "save", 4: "dump", 5: "ioerror", 6: "watchdog",
    7: "from_snapshot", 8: "shutting_down", 9: "snapshot", 10: "crashed", 11: "starting_up",
    12: "postcopy", 13: "postcopy_failed", 14: "api_error",
}


def pause_reason(dom) -> str | None:
    """Why the domain is paused (a PAUSE_REASONS word), None when it is not paused."""
    state, reason = dom.state()
    if state != libvirt.VIR_DOMAIN_PAUSED:
        return None
    return PAUSE_REASONS.get(reason, "unknown")


def reactivate_paused_disks(dom, uri: str | None) -> float:
    """Resume a VM paused by a user and pause it again at once; returns the milliseconds between
    the two calls (an upper bound of how long the guest ran).

    Why: under libvirt, QEMU before 10.0 leaves the disks of a VM that arrived paused by live
    migration inactive until it runs (late-block-activate); migrating or saving it again then
    aborts QEMU (bdrv_inactivate_recurse assertion) and the VM is lost. QEMU 7.2 has no command
    that activates them without running the guest (blockdev-set-active came with 10.0); 'cont'
    does. Callers must only pass a VM whose pause reason is "user" (never an I/O error).
    """
    name = dom.name()
    reason = pause_reason(dom)
    if reason != "user":  # re-checked here: the state may have changed since the caller looked
        raise EntropyLibvirtError("VM %r on %s is %s, not paused by a user: its disks were not re-activated (the module "
                                  "only resumes a VM a user paused)." % (name, uri, "paused (%s)" % reason if reason else "not paused"),
                                  kind="paused_reason")
    started = time.monotonic()
    libvirt_call("resuming VM %r to re-activate its disks (it stays paused)" % name, uri, dom.resume)
    try:
        dom.suspend()
    except libvirt.libvirtError:
        try:  # once more: a VM left running here breaks the promise that it stays paused
            dom.suspend()
        except libvirt.libvirtError as exc:
            raise EntropyLibvirtError(
                "VM %r is RUNNING on %s: it was resumed for a moment to re-activate its disks and pausing it again failed "
                "(%s). Pause it (entropy.cluster.vm_state state: paused) or let it run." % (name, uri, str(exc).rstrip(".")),
                kind="reactivation") from None
    return round((time.monotonic() - started) * 1000, 1)


# Ranges libvirt 9.0 / QEMU 7.2 accept (checked on the lab), and ours for timeouts.
MIGRATION_BANDWIDTH_MAX_MIB_S = 8796093022207  # libvirt QEMU_DOMAIN_MIG_BANDWIDTH_MAX: INT64_MAX bytes/s in MiB/s
MIGRATION_DOWNTIME_MAX_MS = 2000000  # QEMU MAX_MIGRATE_DOWNTIME: 2000 s
TIMEOUT_MAX_S = 604800  # one week; larger values overflow float deadlines and are surely typos


def invalid_parameters(params: dict, ranges: dict, texts: dict) -> list:
    """One message per bad parameter, naming it and what is allowed.

    ``ranges``: name -> (low, high) for integer parameters (unset ones are skipped);
    ``texts``: name -> what to give instead, for string parameters that must not be empty when set."""
    problems = []
    for name, (low, high) in ranges.items():
        value = params.get(name)
        if value is not None and not low <= value <= high:
            problems.append("%s=%s is out of range (allowed: %d to %d)" % (name, value, low, high))
    for name, hint in texts.items():
        value = params.get(name)
        if value is not None and not str(value).strip():
            problems.append("%s is empty (give %s)" % (name, hint))
    return problems


def libvirt_call(action: str, uri: str | None, func, *args):
    """Run a libvirt call; failures become EntropyLibvirtError naming ``action`` and ``uri``."""
    try:
        return func(*args)
    except libvirt.libvirtError as exc:
        raise describe_error(exc, action, uri) from None


__all__ = [
    "MIGRATION_BANDWIDTH_MAX_MIB_S",
    "MIGRATION_DOWNTIME_MAX_MS",
    "PAUSE_REASONS",
    "TIMEOUT_MAX_S",
    "EntropyLibvirtError",
    "available_memory_bytes",
    "domain_facts",
    "has_managed_save",
    "host_facts",
    "is_active",
    "invalid_parameters",
    "libvirt_call",
    "pause_reason",
    "reactivate_paused_disks",
    "snapshot_list",
    "version_string",
    "vm_condition",
    "wait_for",
]
