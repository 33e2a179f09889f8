# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_migrate (private: names may change between releases).

Pre-flight checks on both hypervisors, then the migration in three steps: ``start`` (the libvirt
call in a thread), ``poll`` (progress, post-copy switch, abort at the timeout) and ``conclude``
(where the VM is now, the job's figures, or a failure that names the cause and the fix).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    find_domain,
    host_uuid,
    lookup_domain,
)
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._disk_copy import DiskCopyError, dir_pool, disk_paths, remove_files, retarget_disks
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import (
    MIGRATION_BANDWIDTH_MAX_MIB_S,
    MIGRATION_DOWNTIME_MAX_MS,
    TIMEOUT_MAX_S,
    available_memory_bytes,
    has_managed_save,
    invalid_parameters,
    is_active,
    libvirt,
    pause_reason,
    reactivate_paused_disks,
)

POLL_INTERVAL = 0.3
# Flags to undefine a stale copy without the files it may share with the running one, tried in turn (daemons older
# than libvirt 8.9 know no TPM flag; the test driver neither).
UNDEFINE_KEEP_FILES = ((libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_KEEP_TPM", 0)),
                       libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM, 0) if libvirt else (0,)
ABORT_GRACE_S = 300  # how long to wait for libvirt to wind an aborted job down before giving up on it

# libvirt job stats key -> our key
JOB_KEYS = {
    "time_elapsed": "elapsed_ms",
    "downtime": "downtime_ms",
    "setup_time": "setup_ms",
    "memory_processed": "memory_transferred_bytes",
    "memory_total": "memory_total_bytes",
    "memory_remaining": "memory_remaining_bytes",
    "data_processed": "data_transferred_bytes",
    "disk_processed": "disk_transferred_bytes",
    "memory_iteration": "memory_iterations",
    "memory_bps": "memory_bps",
    "memory_postcopy_requests": "postcopy_requests",
}


def job_summary(stats: dict | None, completed: bool = True) -> dict:
    """libvirt's job statistics under our names (RV(job)); a completed job has nothing remaining."""
    if not stats:
        return {}
    out = {ours: stats[theirs] for theirs, ours in JOB_KEYS.items() if theirs in stats}
    if completed:
        out.pop("memory_remaining_bytes", None)
    return out


@dataclass
class MigrationJob:
    """A migration call running in its thread, and what the polling loop learnt about it."""

    dom: Any
    active: bool
    paused: bool
    thread: threading.Thread
    started: float
    outcome: dict = field(default_factory=dict)  # "error": what the migration call raised
    progress: dict = field(default_factory=dict)  # the last job statistics polled
    aborted: bool = False  # the module asked libvirt to abort (timeout)
    abort_accepted: bool = False
    abort_error: str | None = None
    postcopy_tried: bool = False


class Migration:
    """entropy.cluster.vm_migrate: pre-flight checks, then start, poll and conclude the libvirt migration.

    Every exit goes through ``module.exit`` / ``fail``; a failure always says where the VM is now."""

    def __init__(self, module: LibvirtModule) -> None:
        self.module = module
        self.params = module.params
        self.name: str = module.params["name"]
        self.src_uri = module.uri
        self.dst_uri: str = module.params["destination_uri"]
        self.src = None
        self.dst = None
        self.same = False  # source and destination are one host
        self.previous_downtime: int | None = None
        self.dest_xml: str | None = None   # disk_dir: the destination XML naming the disks' new paths
        self.result: dict = module.result
        self.result.update(vm=self.name, source=self.src_uri, destination=self.dst_uri,
                           location="unknown", defined_on=[], job={}, timed_out=False, reactivated_disks=False)
        if self.params["postcopy"]:
            self.result["postcopy_started"] = False

    # ------------------------------------------------------------------ reporting

    def locate(self) -> None:
        """Fill location / defined_on from fresh lookups on both hypervisors."""
        active, defined, unknown = [], [], False
        hosts = (("source", self.src),) if self.same else (("source", self.src), ("destination", self.dst))
        for label, conn in hosts:
            if conn is None:
                unknown = True
                continue
            try:
                dom = find_domain(conn, self.name)
            except EntropyLibvirtError:
                unknown = True
                continue
            if dom is None:
                continue
            defined.append(label)
            if is_active(dom):
                active.append(label)
        self.result["defined_on"] = defined
        if len(active) == 2:
            self.result["location"] = "both"
        elif active:
            self.result["location"] = active[0]
        else:
            self.result["location"] = "unknown" if unknown else "none"

    def fail(self, message: str, kind: str, **extra) -> NoReturn:
        """Fail saying where the VM is now (fresh lookups on both hosts)."""
        self.locate()
        if self.result["location"] == "source" and self.result["defined_on"] == ["source"]:
            self.result["changed"] = False  # nothing moved (a VM left running by a failed re-activation passes changed)
        self.result.update(extra)
        where = {
            "source": "The VM runs on the source %s." % self.src_uri,
            "destination": "The VM runs on the destination %s." % self.dst_uri,
            "both": "WARNING: the VM is active on BOTH hosts; stop one of them before it damages its disks.",
            "none": "The VM is not running on either host (defined on: %s)." % (", ".join(self.result["defined_on"]) or "neither"),
            "unknown": "Where the VM runs now could not be checked.",
        }[self.result["location"]]
        self.module.fail("%s %s" % (message.rstrip(), where), kind)

    def fail_libvirt(self, exc: Exception) -> NoReturn:
        """A libvirt error outside the migration call itself (a look-up, a connection lost)."""
        err = describe_error(exc, "migrating VM %r from %s to %s" % (self.name, self.src_uri, self.dst_uri))
        # a VM left running by a failed re-activation has changed where it runs
        self.fail(err.message, err.kind, **(dict(changed=True) if err.kind == "reactivation" else {}))

    # ------------------------------------------------------------------ steps

    def connect(self, which: str):
        uri = self.src_uri if which == "source" else self.dst_uri
        try:
            return self.module.open_connection(uri)
        except EntropyLibvirtError as exc:
            self.fail("Cannot migrate VM %r: the %s is unreachable. %s" % (self.name, which, exc.message), exc.kind)

    def same_host(self) -> str | None:
        """A description of why source and destination are the same host, or None."""
        src_uuid, dst_uuid = host_uuid(self.src), host_uuid(self.dst)
        if src_uuid and dst_uuid:
            return "host UUID %s" % src_uuid if src_uuid == dst_uuid else None
        if self.src.getURI() == self.dst.getURI():
            return "URI %s (the driver reports no host UUID)" % self.src.getURI()
        return None

    def flags(self, active: bool) -> tuple[int, list[str], str]:
        names = []
        if active:
            kind = "live" if self.params["live"] else "suspended"
            if self.params["live"]:
                names.append("LIVE")
        else:
            kind = "offline"
            names.append("OFFLINE")
        if self.params["persistent"] or not active:
            names.append("PERSIST_DEST")
        if self.params["undefine_source"]:
            names.append("UNDEFINE_SOURCE")
        if self.params["mode"] == "peer2peer":
            names.append("PEER2PEER")
        if self.params["unsafe"]:
            names.append("UNSAFE")
        if self.params["auto_converge"] and active:
            names.append("AUTO_CONVERGE")
        if self.params["postcopy"] and active:
            names.append("POSTCOPY")
        if active:
            names += {"none": [], "all": ["NON_SHARED_DISK"], "incremental": ["NON_SHARED_INC"]}[self.params["copy_storage"]]
        value = 0
        for flag in names:
            value |= getattr(libvirt, "VIR_MIGRATE_" + flag)
        return value, names, kind

    def parameters(self) -> dict:
        params = {}
        if self.params["bandwidth_mib_s"] is not None:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = self.params["bandwidth_mib_s"]
        return params

    def check_parameters(self) -> None:
        """Refuse out-of-range numbers and empty strings before connecting (check mode too)."""
        problems = invalid_parameters(
            self.params,
            ranges=dict(bandwidth_mib_s=(1, MIGRATION_BANDWIDTH_MAX_MIB_S), max_downtime_ms=(1, MIGRATION_DOWNTIME_MAX_MS),
                        timeout=(0, TIMEOUT_MAX_S)),
            texts=dict(name="the VM's name", destination_uri="the destination's libvirt URI, e.g. qemu+tcp://hv02/system",
                       uri="the source's libvirt URI, or leave uri unset for $LIBVIRT_DEFAULT_URI or qemu:///system"))
        disk_dir = self.params.get("disk_dir")
        if disk_dir is not None and not os.path.isabs(disk_dir):
            problems.append("disk_dir must be an absolute path on the destination, got %r" % disk_dir)
        for option in ("disk_dir", "remove_source_disks"):
            if self.params.get(option) and self.params["copy_storage"] == "none":
                problems.append("%s needs copy_storage: all (the disks are copied to the destination)" % option)
        if problems:
            self.module.fail("Cannot migrate VM %r: %s. Nothing was done." % (self.name, "; ".join(problems)), "invalid_argument")

    def check_paused(self, dom) -> bool:
        """True for a VM paused by a user (moved with its disks re-activated); refuses other pause reasons."""
        reason = pause_reason(dom)
        if reason is None or reason == "user":
            return reason == "user"
        if reason == "ioerror":
            self.fail("Cannot migrate VM %r: it is paused on %s after a disk I/O error (pause reason: ioerror). Moving a paused VM "
                      "needs a brief resume to re-activate its disks, and the module never resumes a VM paused by an I/O error. "
                      "Fix the storage error, then resume the VM (entropy.cluster.vm_state state: running) or destroy it, and "
                      "migrate it again." % (self.name, self.src_uri), "paused_reason")
        self.fail("Cannot migrate VM %r: it is paused on %s for another reason than a user (pause reason: %s). Moving a paused VM "
                  "needs a brief resume to re-activate its disks, which the module only does for a VM a user paused. Wait until "
                  "whatever paused it is over, or resume it (entropy.cluster.vm_state state: running), and migrate it again."
                  % (self.name, self.src_uri, reason), "paused_reason")

    def run(self) -> NoReturn:
        try:
            self.preflight_and_migrate()
        except (EntropyLibvirtError, libvirt.libvirtError) as exc:
            self.fail_libvirt(exc)

    def preflight_and_migrate(self) -> NoReturn:
        self.check_parameters()
        self.src = self.connect("source")
        self.dst = self.connect("destination")
        self.result["source_host"] = self.src.getHostname()
        self.result["destination_host"] = self.dst.getHostname()

        same = self.same_host()
        if same:
            self.same = True
            self.fail("Cannot migrate VM %r: source %s and destination %s are the same host (%s). "
                      "Pick another destination_uri." % (self.name, self.src_uri, self.dst_uri, same), "same_host")

        src_dom = find_domain(self.src, self.name)
        dst_dom = find_domain(self.dst, self.name)
        if src_dom is None:
            if dst_dom is not None:
                self.done_already()
            try:
                lookup_domain(self.src, self.name)
            except EntropyLibvirtError as exc:
                self.fail("Cannot migrate: %s It is not on the destination %s either." % (exc.message, self.dst_uri), "no_domain")
        src_active = is_active(src_dom)
        if dst_dom is not None:
            self.check_destination_copy(src_dom, dst_dom, src_active)
            if not src_active and is_active(dst_dom):
                self.remove_source_leftover(src_dom, dst_dom)

        nsnap = src_dom.snapshotNum(0)
        if nsnap:
            self.fail("Cannot migrate VM %r: it has %d snapshot(s) on %s and libvirt refuses to migrate a VM with snapshots "
                      "(their metadata belongs to the source daemon). Delete them first: entropy.cluster.vm_snapshot with "
                      "state: absent and all: true (or keep them and leave the VM where it is)." % (self.name, nsnap, self.src_uri),
                      "snapshots")
        if src_active:
            self.check_memory(src_dom)
        paused = src_active and self.check_paused(src_dom)

        flags, names, kind = self.flags(src_active)
        self.result["migration"] = dict(kind=kind, mode=self.params["mode"], flags=names, parameters=self.parameters(), paused=paused)
        if self.params["copy_storage"] != "none" and src_active:
            self.prepare_disk_copy(src_dom)
        self.result["changed"] = True
        self.set_diff()
        if self.module.check_mode:
            self.locate()
            self.module.exit()
        self.conclude(self.poll(self.start(src_dom, flags, src_active, paused)))

    def prepare_disk_copy(self, dom) -> None:
        """The disks' paths on the destination (disk_dir) and, outside check mode, the storage pool there that lets
        libvirt create the copies."""
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        disk_dir = self.params.get("disk_dir")
        try:
            new_xml, moves = retarget_disks(xml, disk_dir) if disk_dir else (xml, [])
        except DiskCopyError as exc:
            self.fail("Cannot migrate VM %r with its disks: %s." % (self.name, exc), "invalid_argument")
        if disk_dir:
            self.dest_xml = new_xml
            self.result["disks"] = moves
        else:
            self.result["disks"] = [{"source": p, "destination": p} for p in disk_paths(xml)]
        if self.module.check_mode or not disk_dir:
            return   # without disk_dir the copies go to the same paths, as before: made by the user or an existing pool
        try:
            dir_pool(self.dst, disk_dir)
        except libvirt.libvirtError as exc:
            self.fail("Cannot migrate VM %r with its disks: no storage pool over disk_dir %s on %s could be started (%s). Create "
                      "the directory on the destination or define a dir pool over it." % (self.name, disk_dir, self.dst_uri, exc), "other")

    def remove_source_disks(self) -> None:
        """After a move with storage copy: the disk files the VM used on the source, deleted through the source's
        libvirt, only when the VM runs on the destination and the source no longer defines it."""
        paths = [m["source"] for m in self.result.get("disks") or []]
        self.result["removed_source_disks"] = []
        if not paths:
            return
        if self.result["location"] != "destination" or self.result["defined_on"] != ["destination"]:
            self.module.warn("VM %r: its disks on the source were kept (%s): it %s" % (
                self.name, ", ".join(paths), "is still defined on the source" if "source" in self.result["defined_on"]
                else "is not running on the destination"))
            return
        removed, problems = remove_files(self.src, paths)
        self.result["removed_source_disks"] = removed
        if problems:
            self.module.warn("VM %r runs on %s with its disks copied; removing the old disks on the source failed, remove "
                             "them by hand: %s" % (self.name, self.dst_uri, "; ".join(problems)))

    def done_already(self) -> NoReturn:
        self.locate()
        if self.result["location"] != "destination":
            self.module.warn("VM %r is not on the source %s; it is defined on the destination %s but does not run there "
                             "(start it with entropy.cluster.vm_state if it should)." % (self.name, self.src_uri, self.dst_uri))
        after = dict(host=self.result.get("destination_host"), uri=self.dst_uri)
        self.module.set_diff(after, after)
        self.module.exit()

    def leftover_kept_because(self, src_dom, dst_dom) -> str | None:
        """Why the shut-off source copy of a VM that runs on the destination must stay, or None when removing it loses nothing."""
        if not self.params["undefine_source"]:
            return "undefine_source=false asks to keep the source's definition"
        if not dst_dom.isPersistent():
            return "the copy running on the destination is transient, so the source holds its only persistent definition"
        if src_dom.state()[0] != libvirt.VIR_DOMAIN_SHUTOFF:
            return "it is not shut off there"
        if has_managed_save(src_dom):
            return "it has a managed save image there (a saved state of the VM, which starting it would resume)"
        nsnap = src_dom.snapshotNum(0)
        if nsnap:
            return "it has %d snapshot(s) there, whose metadata goes with that definition" % nsnap
        try:
            checkpoints = len(src_dom.listAllCheckpoints(0))
        except (AttributeError, libvirt.libvirtError):
            checkpoints = 0  # a libvirt without checkpoints
        if checkpoints:
            return "it has %d checkpoint(s) there, whose metadata goes with that definition" % checkpoints
        return None

    def remove_source_leftover(self, src_dom, dst_dom) -> NoReturn:
        """The VM runs on the destination and a shut-off definition with its UUID is left on the source: what a migration
        leaves when the source daemon dies before its last phase. Starting that copy would run the VM twice on the same
        disks, so it is undefined - only when the running copy is persistent and the source copy holds nothing else
        (managed save, snapshots, checkpoints). Different UUIDs never get here (check_destination_copy: name_clash)."""
        kept = self.leftover_kept_because(src_dom, dst_dom)
        self.result["source_definition_removed"] = False
        if kept:
            self.result["source_definition_kept"] = kept
            self.module.warn("VM %r already runs on %s, and a shut-off definition with the same UUID is left on the source %s; "
                             "it was kept because %s. Starting it there would run the VM twice: check it, then remove it there "
                             "(virsh undefine) or keep it on purpose." % (self.name, self.dst_uri, self.src_uri, kept))
            self.done_already()
        self.result["changed"] = True
        after = dict(host=self.result.get("destination_host"), uri=self.dst_uri)
        self.module.set_diff(dict(after, also_defined_shut_off_on=dict(host=self.result.get("source_host"), uri=self.src_uri)), after)
        if not self.module.check_mode:
            # Checked again right before: the copy on the destination (same UUID) still runs and is persistent.
            try:
                running = self.dst.lookupByUUIDString(src_dom.UUIDString())
            except libvirt.libvirtError:
                running = None
            if running is None or not is_active(running) or not running.isPersistent():
                self.fail("VM %r: the copy on the destination %s stopped or went away while the module looked; the shut-off "
                          "definition on the source %s was kept. Run again." % (self.name, self.dst_uri, self.src_uri), "changed_meanwhile")
            self.undefine_keeping_files(src_dom)
        self.result["source_definition_removed"] = True
        self.locate()
        self.module.exit()

    @staticmethod
    def undefine_keeping_files(dom) -> None:
        """Undefine, keeping the NVRAM and TPM state files (on shared storage they may be the running copy's own).
        A driver that knows neither flag refuses to undefine a VM that has NVRAM rather than delete it."""
        for flags in UNDEFINE_KEEP_FILES:
            try:
                dom.undefineFlags(flags)
                return
            except libvirt.libvirtError as exc:
                if flags == 0 or exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise

    def set_diff(self) -> None:
        self.module.set_diff(dict(host=self.result.get("source_host"), uri=self.src_uri),
                             dict(host=self.result.get("destination_host"), uri=self.dst_uri))

    def check_destination_copy(self, src_dom, dst_dom, src_active: bool) -> None:
        if src_dom.UUIDString() != dst_dom.UUIDString():
            self.fail("Cannot migrate VM %r: a different VM with the same name (UUID %s, the source's is %s) is defined on the "
                      "destination %s. Rename or undefine one of them." % (self.name, dst_dom.UUIDString(), src_dom.UUIDString(), self.dst_uri),
                      "name_clash")
        if src_active and is_active(dst_dom):
            self.fail("VM %r is active on both the source %s and the destination %s." % (self.name, self.src_uri, self.dst_uri), "defined_on_both")
        if not src_active and not is_active(dst_dom):
            self.fail("VM %r is defined on both %s and %s and runs on neither: it is unclear which definition is current. "
                      "Undefine the stale one (or start the VM where it belongs) and run again." % (self.name, self.src_uri, self.dst_uri),
                      "defined_on_both")
        # src active, dst has an inactive definition with the same UUID: libvirt migrates onto it

    def check_memory(self, src_dom) -> None:
        need = src_dom.info()[2] * 1024
        available = available_memory_bytes(self.dst)
        self.result["destination_available_memory_mib"] = available // (1024 * 1024) if available is not None else None
        if available is not None and available < need:
            self.fail("Cannot migrate VM %r: it uses %d MiB but the destination %s has only %d MiB available (free + cache). "
                      "Free memory there or pick another destination." % (self.name, need // 2 ** 20, self.dst_uri, available // 2 ** 20),
                      "destination_full")

    # ------------------------------------------------------------------ the migration itself

    def start(self, dom, flags: int, active: bool, paused: bool) -> MigrationJob:
        """Prepare the VM (disks of a paused VM, max downtime) and start the migration call in a thread."""
        if paused:
            # its disks may be inactive here (it may have arrived paused, moved by another tool):
            # migrating it as it is could abort QEMU and lose it
            self.result["reactivation_ms"] = dict(source=reactivate_paused_disks(dom, self.src_uri))
        self.previous_downtime = None
        if active and self.params["max_downtime_ms"] is not None:
            try:
                self.previous_downtime = dom.migrateGetMaxDowntime(0)
            except libvirt.libvirtError:
                self.previous_downtime = None
            try:
                dom.migrateSetMaxDowntime(self.params["max_downtime_ms"], 0)
            except libvirt.libvirtError as exc:
                self.fail(describe_error(exc, "setting max_downtime_ms of VM %r" % self.name, self.src_uri).message, "other")

        params = self.parameters()
        if self.dest_xml is not None:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = self.dest_xml
        outcome: dict = {}

        def worker() -> None:
            try:
                if self.params["mode"] == "peer2peer":
                    dom.migrateToURI3(self.dst_uri, params, flags)
                else:
                    dom.migrate3(self.dst, params, flags)
            except Exception as exc:  # pylint: disable=broad-except
                outcome["error"] = exc  # reported by conclude(), never lost in the thread

        thread = threading.Thread(target=worker, name="entropy-migrate-%s" % self.name, daemon=True)
        job = MigrationJob(dom=dom, active=active, paused=paused, thread=thread, started=time.monotonic(), outcome=outcome)
        thread.start()
        return job

    def poll(self, job: MigrationJob) -> MigrationJob:
        """Wait for the migration call: record progress, switch to post-copy, abort at the timeout."""
        timeout = self.params["timeout"]
        while True:
            job.thread.join(POLL_INTERVAL)
            if not job.thread.is_alive():
                break
            elapsed = time.monotonic() - job.started
            if job.active:
                self.poll_progress(job)
            if timeout and elapsed >= timeout and not job.abort_accepted:
                self.abort(job)
            if job.aborted and elapsed >= timeout + ABORT_GRACE_S:
                break
        self.result["wall_time_s"] = round(time.monotonic() - job.started, 3)
        return job

    def poll_progress(self, job: MigrationJob) -> None:
        try:
            stats = job.dom.jobStats(0)
            if stats.get("type", 0):
                job.progress = stats
        except libvirt.libvirtError:
            pass
        if self.params["postcopy"] and not job.postcopy_tried and job.progress.get("memory_iteration", 0) >= 2:
            job.postcopy_tried = True  # once: after the first full pre-copy pass
            try:
                job.dom.migrateStartPostCopy(0)
                self.result["postcopy_started"] = True
            except libvirt.libvirtError as exc:
                self.module.warn("could not switch the migration of %r to post-copy (it goes on as pre-copy): %s" % (self.name, exc))

    def abort(self, job: MigrationJob) -> None:
        """Ask libvirt to abort; asked again at every poll until it accepts (before the job really
        started it answers "no job is active")."""
        job.aborted = True
        self.result["timed_out"] = True
        if self.result.get("postcopy_started"):
            job.abort_error = "the migration is in post-copy and cannot be aborted any more"
            job.abort_accepted = True
            return
        try:
            job.dom.abortJob()
            job.abort_accepted = True
            job.abort_error = None
        except libvirt.libvirtError as exc:
            job.abort_error = str(exc)

    def conclude(self, job: MigrationJob) -> NoReturn:
        """Report the outcome: where the VM is, the job's figures, or why it did not move."""
        timeout = self.params["timeout"]
        if job.thread.is_alive():
            self.result["progress"] = job_summary(job.progress, completed=False)
            self.fail("The migration of VM %r from %s to %s did not finish within timeout=%ss and did not stop %ss after "
                      "it was aborted (%s). Check the job with virsh domjobinfo %s on the source."
                      % (self.name, self.src_uri, self.dst_uri, timeout, ABORT_GRACE_S, job.abort_error or "abort accepted", self.name),
                      "timeout")

        error = job.outcome.get("error")
        if error is not None:
            self.result["progress"] = job_summary(job.progress, completed=False)
            self.restore_downtime(job.dom)
            if job.aborted:
                extra = "" if job.abort_error is None else " (abort: %s)" % job.abort_error
                self.fail("The migration of VM %r from %s to %s did not finish within timeout=%ss and was aborted%s (libvirt: %s). "
                          "Raise timeout, raise bandwidth_mib_s, or set auto_converge: true for a VM that writes memory quickly."
                          % (self.name, self.src_uri, self.dst_uri, timeout, extra, str(error).rstrip(".")), "timeout")
            message, kind = self.explain(error)
            self.fail(message, kind)

        if job.aborted:  # it finished although we asked to abort (abort came too late or was refused)
            self.module.warn("the migration of %r finished although the module tried to abort it after timeout=%ss%s"
                             % (self.name, timeout, "" if job.abort_error is None else " (abort: %s)" % job.abort_error))
            self.result["timed_out"] = False
        self.result["job"] = self.completed_stats(job.active)
        if not self.result["job"] and self.result.get("postcopy_started") and job.progress:
            # libvirt keeps no completed statistics of a migration that ended in post-copy: the last polled ones
            self.result["progress"] = job_summary(job.progress, completed=False)
        self.locate()
        if self.result["location"] != "destination" and job.active:
            self.fail("libvirt reported the migration of VM %r to %s as successful, but the VM is not running there." % (self.name, self.dst_uri),
                      "other")
        if job.paused:
            self.reactivate_on_destination()
        if self.params.get("remove_source_disks") and job.active:
            self.remove_source_disks()
        self.module.exit()

    def reactivate_on_destination(self) -> None:
        """The VM arrived paused with inactive disks: re-activate them, so that it survives its next move or save."""
        dom = find_domain(self.dst, self.name)
        reason = pause_reason(dom) if dom is not None else None
        if reason != "user":
            self.module.warn("VM %r arrived on %s %s; its disks were not re-activated." % (
                self.name, self.dst_uri, "paused (%s)" % reason if reason else "not paused"))
            return
        try:
            self.result["reactivation_ms"]["destination"] = reactivate_paused_disks(dom, self.dst_uri)
        except EntropyLibvirtError as exc:
            if exc.kind == "reactivation":  # resumed, not paused again: it runs there now
                self.fail("VM %r moved to %s. %s" % (self.name, self.dst_uri, exc.message), exc.kind, changed=True)
            self.fail("VM %r moved to %s, paused, but re-activating its disks there failed: %s Until it has run once there, "
                      "another tool that migrates or saves it (virsh migrate, virsh save) would abort it; entropy.cluster.vm_migrate "
                      "and vm_state re-activate its disks first." % (self.name, self.dst_uri, exc.message), exc.kind, changed=True)
        self.result["reactivated_disks"] = True

    def restore_downtime(self, dom) -> None:
        """After a failed migration the VM still runs in the same QEMU: give it back its old max downtime."""
        if self.previous_downtime is None:
            return
        try:
            if is_active(dom):
                dom.migrateSetMaxDowntime(self.previous_downtime, 0)
        except libvirt.libvirtError as exc:
            self.module.warn("could not restore the max downtime (%s ms) of VM %r: %s" % (self.previous_downtime, self.name, exc))

    def completed_stats(self, active: bool) -> dict:
        if not active:
            return {}
        flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
        for conn in (self.dst, self.src):
            dom = find_domain(conn, self.name)
            if dom is None:
                continue
            try:
                stats = dom.jobStats(flags)
            except libvirt.libvirtError:
                continue
            if stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_COMPLETED:
                return job_summary(stats)
        return {}

    def explain(self, exc: Exception) -> tuple[str, str]:
        return explain_migration_error(exc, "migrating VM %r from %s to %s" % (self.name, self.src_uri, self.dst_uri),
                                       self.src_uri, self.src.getType())


def explain_migration_error(exc: Exception, action: str, source_uri: str, source_driver: str) -> tuple[str, str]:
    """The failure of a migration call as (message naming the cause and the fix, error_kind)."""
    err = describe_error(exc, action)
    code = err.libvirt_code
    text = err.message
    low = text.lower()
    if code == libvirt.VIR_ERR_MIGRATE_UNSAFE or "unsafe migration" in low:
        return (text.rstrip() + " libvirt cannot tell that the VM's disks are on shared storage. If they really are shared "
                "(NFS, Ceph, a cluster file system, a directory every host sees), set unsafe: true; otherwise copy them with "
                "copy_storage: all.", "unsafe")
    if "snapshot" in low:
        return (text.rstrip() + " Delete the VM's snapshots first (entropy.cluster.vm_snapshot state: absent, all: true).", "snapshots")
    if "same host" in low:
        return text.rstrip() + " Source and destination are the same host; pick another destination_uri.", "same_host"
    if code == libvirt.VIR_ERR_CPU_INCOMPATIBLE or ("cpu" in low and "incompatible" in low):
        return (text.rstrip() + " The destination CPU lacks features of the VM's CPU model: give the VM a CPU model both hosts "
                "support (virsh hypervisor-cpu-baseline) or migrate it to a compatible host.", "cpu_incompatible")
    if "already exists" in low or "already defined" in low:
        return text.rstrip() + " A VM with this name or UUID is defined on the destination; undefine the stale copy.", "name_clash"
    if "not accessible" in low or "no such file" in low:
        return (text.rstrip() + " The destination does not see this file at the same path: put the VM's disks on storage every "
                "host sees (with unsafe: true when libvirt cannot tell it is shared), or copy them with copy_storage: all "
                "after creating images of the same size at the same paths there.", "destination_storage")
    if err.kind == "aborted":
        return (text.rstrip() + " The VM stays on the source; run the migration again when it should move.", "aborted")
    if "load of migration failed" in low:
        # the destination's view of a stream cut short; libvirt reports it instead of "operation aborted"
        # for some client aborts (a race inside libvirt: 2 of 9 on the lab)
        return (text.rstrip() + " The migration stream was cut before it completed: the job was aborted on the source "
                "(virsh domjobabort, another tool's timeout), or the connection between the hosts or the source's QEMU "
                "failed; the destination dropped its incoming copy. Check the source's libvirtd log if nobody aborted it, "
                "then run the migration again.", "interrupted")
    if err.kind == "unsupported" or "not supported" in low:
        return (text.rstrip() + " The libvirt driver of %s (%s) cannot migrate this VM this way (the libvirt test driver cannot "
                "migrate at all); try the other mode or a real hypervisor." % (source_uri, source_driver), "unsupported")
    if "memory" in low and ("cannot allocate" in low or "out of memory" in low or "insufficient" in low):
        return text.rstrip() + " The destination has not enough memory for the VM; free memory there or pick another host.", "destination_full"
    return text, err.kind
