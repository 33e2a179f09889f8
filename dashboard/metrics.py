# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""/metrics in Prometheus' text exposition format (version 0.0.4): the dashboard's figures for a Prometheus server."""

from __future__ import annotations

import typing as t


def _label(value: t.Any) -> str:
    """A label value escaped as the format asks (backslash, double quote, newline)."""
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(**labels: t.Any) -> str:
    return "{" + ",".join('%s="%s"' % (k, _label(v)) for k, v in labels.items()) + "}" if labels else ""


def render_metrics(collector: t.Any, counters: dict) -> str:
    view = collector.snapshot()
    out: list[str] = []

    def family(name: str, kind: str, text: str, samples: list) -> None:
        out.append("# HELP %s %s" % (name, text))
        out.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            if value is None:
                continue
            out.append("%s%s %s" % (name, _labels(**labels), repr(float(value)) if isinstance(value, float) else int(value)))

    hosts, vms = view["hosts"], list(view["vms"].values())
    family("entropy_host_reachable", "gauge", "1 when the hypervisor answered the last read",
           [({"host": h["name"]}, int(bool(h.get("entropy_reachable")))) for h in hosts])
    family("entropy_host_cpu_cores", "gauge", "CPU capacity in cores", [({"host": h["name"]}, h.get("entropy_cpu_cores")) for h in hosts])
    family("entropy_host_cpu_used_cores", "gauge", "CPU cores busy on the hypervisor (measured)",
           [({"host": h["name"]}, h.get("entropy_cpu_used_cores")) for h in hosts])
    family("entropy_host_memory_mib", "gauge", "memory capacity in MiB", [({"host": h["name"]}, h.get("entropy_memory_mib")) for h in hosts])
    family("entropy_host_vm_memory_mib", "gauge", "memory of the active VMs in MiB", [({"host": h["name"]}, h.get("entropy_vm_memory_mib")) for h in hosts])
    family("entropy_host_vms", "gauge", "VMs defined on the hypervisor", [({"host": h["name"]}, h.get("entropy_vm_count")) for h in hosts])
    family("entropy_vm_cpu_demand_cores", "gauge", "CPU cores the VM uses (measured)",
           [({"vm": v["name"], "host": v["host"]}, v.get("entropy_cpu_demand_cores")) for v in vms])
    family("entropy_vm_memory_mib", "gauge", "memory of the VM in MiB", [({"vm": v["name"], "host": v["host"]}, v.get("entropy_memory_mib")) for v in vms])
    family("entropy_vm_state", "gauge", "1 for the VM's current state (running, paused, shutoff, migrating, ...)",
           [({"vm": v["name"], "host": v["host"], "state": v["badge"]}, 1) for v in vms])
    family("entropy_vm_migration_progress_percent", "gauge", "memory sent by a migration in flight, percent",
           [({"vm": v["name"], "host": v["host"]}, v.get("progress")) for v in vms])
    totals = view["totals"]
    family("entropy_cluster_hosts_used", "gauge", "hypervisors with at least one active VM", [({}, totals["hosts_used"])])
    family("entropy_cluster_cpu_free_cores", "gauge", "CPU cores not demanded by VMs", [({}, totals["cpu_free_cores"])])
    family("entropy_cluster_memory_free_mib", "gauge", "memory not given to active VMs, MiB", [({}, totals["memory_free_mib"])])
    family("entropy_dashboard_refresh_seconds", "gauge", "duration of the last inventory read", [({}, float(collector.refresh_duration))])
    family("entropy_dashboard_refreshes_total", "counter", "inventory reads", [({}, collector.refresh_count)])
    family("entropy_dashboard_libvirt_events_total", "counter", "libvirt domain events received", [({}, collector.event_count)])
    family("entropy_dashboard_actions_total", "counter", "actions run, by outcome",
           [({"action": a, "outcome": o}, n) for (a, o), n in sorted(counters["actions"].items())])
    family("entropy_dashboard_logins_failed_total", "counter", "failed logins", [({}, counters["logins_failed"])])
    family("entropy_dashboard_logins_refused_total", "counter", "logins refused by the rate limit", [({}, counters["logins_refused"])])
    family("entropy_dashboard_csrf_refused_total", "counter", "POSTs refused for a missing or wrong CSRF token", [({}, counters["csrf_refused"])])
    family("entropy_dashboard_role_refused_total", "counter", "requests refused for want of the operator role", [({}, counters["role_refused"])])
    return "\n".join(out) + "\n"
