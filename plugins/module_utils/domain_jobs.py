# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt jobs in flight (migrations, saves, dumps, ...): read once here for the inventory and the lookup.

A run killed with ``kill -9`` leaves its migrations running: the next run must see them before it plans.
On the source, libvirt reports the migration as an active job (``virDomainGetJobStats``: type bounded or
unbounded, operation migration_out). The destination holds a paused copy (reason ``starting up`` during the
migration's setup, then ``migration``; running with reason ``postcopy`` in post-copy) and answers job queries
with VIR_ERR_OPERATION_UNSUPPORTED ("migration statistics are available only on the source host"): an incoming
migration is told by that answer on a paused copy, or by the state reason. No Ansible import here.
"""

from __future__ import annotations

import shlex
import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import is_active_code

try:
    import libvirt
except ImportError:
    libvirt = None

# virDomainJobType and virDomainJobOperation -> words
JOB_TYPES = {1: "bounded", 2: "unbounded"}
JOB_OPERATIONS = {
    0: "unknown",
    1: "start",
    2: "save",
    3: "restore",
    4: "migration_in",
    5: "migration_out",
    6: "snapshot",
    7: "snapshot_revert",
    8: "dump",
    9: "backup",
    10: "snapshot_delete",
}
# (state, reason) of a domain that is the destination side of a migration: paused by an incoming migration
# (VIR_DOMAIN_PAUSED_MIGRATION), paused in post-copy (PAUSED_POSTCOPY), running in post-copy (RUNNING_POSTCOPY)
INCOMING_STATES = {(3, 2): False, (3, 12): True, (1, 10): True}


def domain_job(dom: t.Any, state: int | None = None, reason: int | None = None) -> dict[str, t.Any] | None:
    """The job in flight on one domain, or None.

    ``{"operation": "migration_out", "type": "unbounded", "elapsed_ms": 1083, "memory_total_bytes": ...,
    "memory_remaining_bytes": ..., "postcopy": False}``; the statistics a driver does not give are None.
    ``state``/``reason`` (from getAllDomainStats) save a round trip when the caller has them."""
    if state is None or reason is None:
        state, reason = dom.state()
    if not is_active_code(state):  # a shut-off domain has no job
        return None
    refused_here = False
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError as exc:
        stats = {}  # drivers without job statistics (VIR_ERR_NO_SUPPORT), and the destination of a migration
        refused_here = exc.get_error_code() == libvirt.VIR_ERR_OPERATION_UNSUPPORTED
    job_type = stats.get("type", 0)
    if job_type in JOB_TYPES:
        return {
            "operation": JOB_OPERATIONS.get(stats.get("operation", 0), "unknown"),
            "type": JOB_TYPES[job_type],
            "elapsed_ms": stats.get("time_elapsed"),
            "memory_total_bytes": stats.get("memory_total"),
            "memory_remaining_bytes": stats.get("memory_remaining"),
            "postcopy": (state, reason) in INCOMING_STATES and INCOMING_STATES[(state, reason)],
        }
    if (state, reason) in INCOMING_STATES or (refused_here and state == 3):
        return {"operation": "migration_in", "type": "unbounded", "elapsed_ms": None, "memory_total_bytes": None,
                "memory_remaining_bytes": None, "postcopy": INCOMING_STATES.get((state, reason), False)}
    return None


def host_jobs(conn: t.Any) -> dict[str, dict[str, t.Any]]:
    """VM name -> job in flight, for every domain of one hypervisor that has one."""
    jobs = {}
    for dom in conn.listAllDomains(0):
        job = domain_job(dom)
        if job is not None:
            jobs[dom.name()] = job
    return jobs


def _mib(value: int | None) -> str:
    return "?" if value is None else "%d MiB" % (value // (1024 * 1024))


def in_flight(jobs_by_host: t.Mapping[str, t.Mapping[str, t.Mapping[str, t.Any]]],
              uris: t.Mapping[str, str] | None = None) -> list[dict[str, t.Any]]:
    """Jobs of every hypervisor (host -> VM -> job) -> one entry per VM, the two sides of a migration paired.

    Each entry: vm, operation (``migration`` for a migration, else the job's operation), source and destination
    (hypervisor names, None when not seen), host (where a non-migration job runs), elapsed_ms, memory_total_bytes,
    memory_remaining_bytes, and description: one line for a person (with the command that aborts a migration,
    names shell-quoted, when ``uris`` gives the source's URI)."""
    by_vm: dict[str, list[tuple[str, t.Mapping[str, t.Any]]]] = {}
    for host in sorted(jobs_by_host):
        for vm, job in sorted(jobs_by_host[host].items()):
            by_vm.setdefault(vm, []).append((host, job))
    entries = []
    for vm in sorted(by_vm):
        sides = by_vm[vm]
        outgoing = [(host, job) for host, job in sides if job["operation"] == "migration_out"]
        incoming = [(host, job) for host, job in sides if job["operation"] == "migration_in"]
        others = [(host, job) for host, job in sides if job["operation"] not in ("migration_out", "migration_in")]
        if outgoing or incoming:
            source, job = outgoing[0] if outgoing else (None, incoming[0][1])
            destination = incoming[0][0] if incoming else None
            entry = {"vm": vm, "operation": "migration", "source": source, "destination": destination, "host": source}
            entry.update({key: job.get(key) for key in ("elapsed_ms", "memory_total_bytes", "memory_remaining_bytes", "postcopy")})
            text = "%s: %smigration from %s to %s" % (
                vm, "post-copy " if entry["postcopy"] else "", source or "an unknown source (not among the hypervisors read)",
                destination or "an unknown destination (no hypervisor read holds its incoming copy)")
            if entry["elapsed_ms"] is not None:
                text += ", running for %d s" % (entry["elapsed_ms"] // 1000)
            if entry["memory_remaining_bytes"] is not None:
                text += ", %s of %s memory left to send" % (_mib(entry["memory_remaining_bytes"]), _mib(entry["memory_total_bytes"]))
            if source:
                text += "; to abort it: virsh -c %s domjobabort %s" % (shlex.quote((uris or {}).get(source, "<URI of %s>" % source)), shlex.quote(vm))
            elif destination:
                # No hypervisor read sends it: most often the leftover of a migration whose destination daemon
                # died (libvirt keeps the incoming copy paused when it comes back). It never ran; nothing resumes it.
                text += ("; if %s runs on another hypervisor, this paused copy is the leftover of a failed migration and never "
                         "ran: remove it with virsh -c %s destroy %s" % (
                             vm, shlex.quote((uris or {}).get(destination, "<URI of %s>" % destination)), shlex.quote(vm)))
            entry["description"] = text
            entries.append(entry)
        for host, job in others:
            entry = {"vm": vm, "operation": job["operation"], "source": None, "destination": None, "host": host}
            entry.update({key: job.get(key) for key in ("elapsed_ms", "memory_total_bytes", "memory_remaining_bytes", "postcopy")})
            text = "%s: %s job on %s" % (vm, job["operation"].replace("_", " "), host)
            if entry["elapsed_ms"] is not None:
                text += ", running for %d s" % (entry["elapsed_ms"] // 1000)
            entry["description"] = text
            entries.append(entry)
    return entries
