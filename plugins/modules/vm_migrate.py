#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_migrate
short_description: Move a libvirt VM to another hypervisor (live or offline migration)
version_added: 0.1.0
description:
  - Migrates the VM O(name) from the hypervisor O(uri) (the source) to O(destination_uri).
  - A running or paused VM is migrated live (O(live=true), it keeps running while its memory is copied)
    or suspended during the copy (O(live=false)). A shut-off persistent VM is migrated offline (only its
    definition moves).
  - Declarative and idempotent; a VM that already runs on the destination and not on the source is
    left alone (C(changed=false)).
  - A VM that already runs on the destination while a shut-off definition with the same UUID is left on the source (what a
    migration leaves when the source daemon dies before its last phase; starting that copy would run the VM twice on the
    same disks) - that definition is removed (RV(source_definition_removed), C(changed=true)), keeping its NVRAM and TPM files,
    when the running copy is persistent, O(undefine_source=true), and the source copy has no managed save image, snapshot or
    checkpoint. Otherwise it is kept, with a warning saying why (RV(source_definition_kept)). A VM of another UUID with the
    same name is never touched (RV(error_kind=name_clash)).
  - The migration runs in a background thread while the module polls the libvirt job; after O(timeout)
    seconds the job is aborted and the VM keeps running on the source.
  - Whatever happens, the result tells where the VM is now (RV(location)), so a migration never loses a VM
    silently.
  - A VM paused by a user moves paused and stays paused. QEMU before 10.0 leaves the disks of a VM that arrives
    paused inactive until it runs, and migrating or saving such a VM again aborts QEMU (the VM is lost). So the module
    resumes and pauses it again at once on the source before the move and on the destination after it, which
    re-activates its disks; the guest runs for a few milliseconds each time (RV(reactivation_ms)).
  - A VM paused for another reason (an I/O error, a watchdog, a crash, a job in progress) is never resumed; the module
    refuses to migrate it (RV(error_kind=paused_reason)) and leaves it where it is.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - entropy.cluster.connection
  - entropy.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode connects to both hypervisors and runs every pre-flight check (VM exists, not the same host,
        no snapshots, memory available on the destination) without moving anything. It says whether a shut-off source
        definition of a VM that already runs on the destination would be removed, without removing it.
  diff_mode:
    support: full
    details:
      - The diff shows the host (hostname and URI) of the VM before and after (and the removed shut-off source definition
        of a VM that already ran on the destination).
options:
  name:
    description:
      - Name of the VM (libvirt domain) to migrate.
    type: str
    required: true
  destination_uri:
    description:
      - libvirt URI of the destination hypervisor, as the module host reaches it
        (and, with O(mode=peer2peer), as the source hypervisor reaches it). Must not be empty.
      - The connection uses the same O(auth_username) and O(auth_password) as the source.
    type: str
    required: true
  live:
    description:
      - For a running VM, V(true) migrates it live (it runs during the copy, short pause at the end);
        V(false) suspends it during the whole copy.
      - A shut-off VM is always migrated offline (definition only), whatever this option says.
    type: bool
    default: true
  mode:
    description:
      - V(direct) (managed direct) - the module talks to both libvirt daemons (C(virDomainMigrate3)).
      - V(peer2peer) - the source libvirt daemon connects to O(destination_uri) itself
        (C(virDomainMigrateToURI3) with C(VIR_MIGRATE_PEER2PEER)).
    type: str
    choices: [direct, peer2peer]
    default: direct
  bandwidth_mib_s:
    description:
      - Maximum migration bandwidth in MiB/s, from V(1) to V(8796093022207) (libvirt's limit, 2^63 - 1 bytes/s).
        Unlimited (the hypervisor's default) when not set.
    type: int
  max_downtime_ms:
    description:
      - Maximum tolerable downtime of a live migration in milliseconds (C(virDomainMigrateSetMaxDowntime)),
        from V(1) to V(2000000) (QEMU's limit, 2000 s).
        After a failed or aborted migration the module restores the previous value.
    type: int
  auto_converge:
    description:
      - Throttle the VM's vCPUs when the migration does not converge (C(VIR_MIGRATE_AUTO_CONVERGE)).
    type: bool
    default: false
  postcopy:
    description:
      - Enable post-copy (C(VIR_MIGRATE_POSTCOPY)) and switch to post-copy after the first full pass of
        pre-copy. Needs a hypervisor that supports it (QEMU with userfaultfd on the destination).
      - Once post-copy started the migration can no longer be aborted, and if it fails the VM is lost on both
        sides; use it only on reliable networks.
    type: bool
    default: false
  unsafe:
    description:
      - Migrate even if libvirt considers it unsafe (C(VIR_MIGRATE_UNSAFE)), typically because it cannot tell
        that the disks are on shared storage (for example a directory both hosts mount).
      - Only set it when the disks really are shared; otherwise use O(copy_storage).
    type: bool
    default: false
  copy_storage:
    description:
      - V(none) - the disks are on shared storage and are not copied.
      - V(all) - copy the whole disks to the destination (C(VIR_MIGRATE_NON_SHARED_DISK)); the destination needs
        disk images of the same size at the same paths.
      - V(incremental) - copy only the top image of disks with a shared backing file (C(VIR_MIGRATE_NON_SHARED_INC)).
      - Ignored for an offline migration (only the definition moves).
    type: str
    choices: [none, all, incremental]
    default: none
  persistent:
    description:
      - Define the VM persistently on the destination (C(VIR_MIGRATE_PERSIST_DEST)). With V(false) it runs
        there as a transient VM.
      - An offline migration (shut-off VM) always defines it persistently, whatever this option says.
    type: bool
    default: true
  undefine_source:
    description:
      - Remove the VM's definition from the source after a successful migration (C(VIR_MIGRATE_UNDEFINE_SOURCE)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds after which an unfinished migration is aborted (C(virDomainAbortJob)); the VM then keeps running
        on the source and the module fails with RV(timed_out=true).
      - Counted from the start of the migration call, setup included.
      - V(0) waits for as long as the migration takes; at most V(604800) (one week).
    type: int
    default: 0
notes:
  - libvirt refuses to migrate a VM that has snapshots (the snapshot metadata belongs to the source daemon);
    delete them first, for example with M(entropy.cluster.vm_snapshot) O(entropy.cluster.vm_snapshot#module:state=absent)
    and O(entropy.cluster.vm_snapshot#module:all=true).
  - Source and destination are compared by host UUID (by URI where the driver has no host UUID), not only by URI.
  - The completed job statistics are read from the destination
    (C(virDomainGetJobStats) with C(VIR_DOMAIN_JOB_STATS_COMPLETED)); drivers without job statistics return an empty RV(job).
  - The memory check compares the VM's current memory with free + buffers + cache of the destination
    (C(virNodeGetMemoryStats)); it is skipped where the driver does not report node memory.
seealso:
  - module: entropy.cluster.vm_snapshot
  - module: entropy.cluster.vm_state
  - module: entropy.cluster.host_info
"""

EXAMPLES = r"""
- name: Live-migrate web01 from hv01 to hv02 (disks on shared storage)
  entropy.cluster.vm_migrate:
    uri: qemu+tcp://hv01/system
    destination_uri: qemu+tcp://hv02/system
    name: web01

- name: Peer-to-peer, limited bandwidth, give up after 5 minutes (the VM then stays on hv01)
  entropy.cluster.vm_migrate:
    uri: qemu+tcp://hv01/system
    destination_uri: qemu+tcp://hv02/system
    name: db01
    mode: peer2peer
    bandwidth_mib_s: 200
    max_downtime_ms: 300
    auto_converge: true
    timeout: 300
  register: moved

- name: Show what it cost (a live migration that ran; an idempotent or offline move has no job figures)
  ansible.builtin.debug:
    msg: "{{ moved.job.elapsed_ms }} ms, downtime {{ moved.job.downtime_ms }} ms"
  when: moved.job.elapsed_ms is defined

- name: Disks on a directory both hosts see but libvirt cannot detect as shared
  entropy.cluster.vm_migrate:
    uri: qemu+tcp://hv01/system
    destination_uri: qemu+tcp://hv02/system
    name: web01
    unsafe: true

- name: No shared storage - copy the disks along
  entropy.cluster.vm_migrate:
    uri: qemu+ssh://root@hv01/system
    destination_uri: qemu+ssh://root@hv02/system
    name: web01
    copy_storage: all
"""

RETURN = r"""
vm:
  description: Name of the VM.
  returned: always
  type: str
  sample: web01
source:
  description: URI of the source hypervisor.
  returned: always
  type: str
  sample: qemu+tcp://hv01/system
destination:
  description: URI of the destination hypervisor.
  returned: always
  type: str
  sample: qemu+tcp://hv02/system
source_host:
  description: Hostname of the source hypervisor.
  returned: when the source could be reached
  type: str
  sample: hv01
destination_host:
  description: Hostname of the destination hypervisor.
  returned: when the destination could be reached
  type: str
  sample: hv02
location:
  description:
    - Where the VM is active (running or paused) when the module finished, also after a failure.
    - V(source), V(destination), V(both) (should never happen; investigate at once), V(none) (defined but not running,
      see RV(defined_on)) or V(unknown) (a hypervisor could not be asked).
    - In check mode, where it is now.
  returned: always
  type: str
  sample: destination
defined_on:
  description: Which of the two hypervisors have the VM defined (active or not) when the module finished.
  returned: always
  type: list
  elements: str
  sample: [destination]
source_definition_removed:
  description:
    - True when the VM already ran on the destination and the module removed the shut-off definition with the same UUID
      left on the source (in check mode, when it would remove it). False when such a definition was kept (see
      RV(source_definition_kept)).
  returned: when the VM already ran on the destination and a shut-off definition of it was on the source
  type: bool
  sample: true
source_definition_kept:
  description: Why the shut-off definition left on the source of a VM that already runs on the destination was kept.
  returned: when such a definition was kept
  type: str
  sample: it has a managed save image there (a saved state of the VM, which starting it would resume)
migration:
  description: How the VM was (or, in check mode, would be) migrated.
  returned: when a migration was started or, in check mode, would be
  type: dict
  contains:
    kind:
      description: V(live), V(suspended) (not live, VM paused during the copy) or V(offline) (definition only).
      type: str
      sample: live
    mode:
      description: V(direct) or V(peer2peer).
      type: str
      sample: direct
    flags:
      description: The C(VIR_MIGRATE_*) flags passed to libvirt, without the prefix.
      type: list
      elements: str
      sample: [LIVE, PERSIST_DEST, UNDEFINE_SOURCE, UNSAFE]
    parameters:
      description: The typed migration parameters passed to libvirt.
      type: dict
      sample: {bandwidth: 100}
    paused:
      description: True when the VM was paused by a user and moves paused (its disks are re-activated, see RV(reactivated_disks)).
      type: bool
      sample: false
job:
  description:
    - Statistics of the completed migration job (empty where the driver keeps none, and for offline migrations).
  returned: always
  type: dict
  contains:
    elapsed_ms:
      description: Time the migration job took, in milliseconds.
      type: int
      sample: 725
    downtime_ms:
      description: How long the VM was paused at the switch-over, in milliseconds.
      type: int
      sample: 48
    setup_ms:
      description: Time spent setting up the migration, in milliseconds.
      type: int
      sample: 1
    memory_transferred_bytes:
      description: Guest memory sent over the network, in bytes.
      type: int
      sample: 631928
    memory_total_bytes:
      description: Guest memory size as the job saw it, in bytes.
      type: int
      sample: 67641344
    data_transferred_bytes:
      description: All data sent (memory and disks), in bytes.
      type: int
      sample: 631928
    disk_transferred_bytes:
      description: Disk data sent (O(copy_storage)), in bytes.
      type: int
      sample: 0
    memory_iterations:
      description: Number of pre-copy passes over memory.
      type: int
      sample: 2
    memory_bps:
      description: Memory transfer rate, bytes per second.
      type: int
      sample: 33204866
progress:
  description: The last job statistics polled while the migration ran (the same keys as RV(job) where known).
  returned: when the migration failed or was aborted
  type: dict
  sample: {elapsed_ms: 2100, memory_transferred_bytes: 319351}
wall_time_s:
  description: Wall-clock seconds the migration call took, as the module measured it.
  returned: when a migration was started
  type: float
  sample: 2.7
reactivated_disks:
  description:
    - True when the VM was paused, moved paused, and the module re-activated its disks on the destination (resumed it and
      paused it again at once), so that it can be migrated or saved again. False for a running or shut-off VM, and in check mode.
  returned: always
  type: bool
  sample: true
reactivation_ms:
  description:
    - For a paused VM, the milliseconds between the resume and the pause calls on the V(source) (before the move) and on the
      V(destination) (after it) - an upper bound of how long the guest ran.
  returned: when a paused VM was migrated (or its move was attempted)
  type: dict
  sample: {source: 9.4, destination: 12.8}
timed_out:
  description: True when the migration did not finish within O(timeout) and the module aborted it.
  returned: always
  type: bool
  sample: false
postcopy_started:
  description: True when the module switched the migration to post-copy.
  returned: when O(postcopy=true)
  type: bool
  sample: false
destination_available_memory_mib:
  description: Memory available for the VM on the destination (free + buffers + cache) before the migration,
    null where the driver does not report it.
  returned: when the destination could be reached and the VM is running
  type: int
  sample: 2048
error_kind:
  description:
    - Class of the failure - V(snapshots), V(same_host), V(unsafe), V(destination_full), V(cpu_incompatible),
      V(unreachable), V(defined_on_both), V(name_clash), V(no_domain), V(timeout), V(unsupported), V(aborted),
      V(invalid_argument) (a parameter out of range or empty, nothing was done), V(paused_reason) (paused for another reason
      than a user, not moved), V(reactivation) (a paused VM was resumed to re-activate its disks and could not be paused again -
      it runs), V(changed_meanwhile) (the VM changed on a host while the module looked, nothing was done), V(other), ...
  returned: on failure
  type: str
  sample: snapshots
"""

import threading
import time

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    find_domain,
    host_uuid,
    lookup_domain,
    open_connection,
)
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
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
}


def job_summary(stats: dict | None, completed: bool = True) -> dict:
    if not stats:
        return {}
    out = {ours: stats[theirs] for theirs, ours in JOB_KEYS.items() if theirs in stats}
    if completed:
        out.pop("memory_remaining_bytes", None)
    return out


class Migration:
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
        self.result: dict = dict(changed=False, vm=self.name, source=self.src_uri, destination=self.dst_uri,
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

    def fail(self, message: str, kind: str, **extra) -> None:
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
        self.result.pop("msg", None)
        self.module.fail_json(msg="%s %s" % (message.rstrip(), where), error_kind=kind, **self.result)

    # ------------------------------------------------------------------ steps

    def connect(self, which: str):
        uri = self.src_uri if which == "source" else self.dst_uri
        try:
            conn = open_connection(uri, self.params.get("auth_username"), self.params.get("auth_password"))
        except EntropyLibvirtError as exc:
            self.fail("Cannot migrate VM %r: the %s is unreachable. %s" % (self.name, which, exc.message), exc.kind)
        self.module._connections.append(conn)  # closed with the module's own connections at exit
        return conn

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
        if problems:
            self.module.fail_json(msg="Cannot migrate VM %r: %s. Nothing was done." % (self.name, "; ".join(problems)),
                                  error_kind="invalid_argument", **self.result)

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
        return False

    def run(self) -> None:
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
                return
            try:
                lookup_domain(self.src, self.name)
            except EntropyLibvirtError as exc:
                self.fail("Cannot migrate: %s It is not on the destination %s either." % (exc.message, self.dst_uri), "no_domain")
        src_active = is_active(src_dom)
        if dst_dom is not None:
            self.check_destination_copy(src_dom, dst_dom, src_active)
            if not src_active and is_active(dst_dom):
                self.remove_source_leftover(src_dom, dst_dom)
                return

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
        self.result["changed"] = True
        self.set_diff()
        if self.module.check_mode:
            self.locate()
            self.module.exit_json(**self.result)
        self.migrate(src_dom, flags, src_active, paused)

    def done_already(self) -> None:
        self.locate()
        if self.result["location"] != "destination":
            self.module.warn("VM %r is not on the source %s; it is defined on the destination %s but does not run there "
                             "(start it with entropy.cluster.vm_state if it should)." % (self.name, self.src_uri, self.dst_uri))
        if self.module._diff:
            after = dict(host=self.result.get("destination_host"), uri=self.dst_uri)
            self.result["diff"] = dict(before=after, after=after)
        self.module.exit_json(**self.result)

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

    def remove_source_leftover(self, src_dom, dst_dom) -> None:
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
            return
        self.result["changed"] = True
        if self.module._diff:
            after = dict(host=self.result.get("destination_host"), uri=self.dst_uri)
            before = dict(after, also_defined_shut_off_on=dict(host=self.result.get("source_host"), uri=self.src_uri))
            self.result["diff"] = dict(before=before, after=after)
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
        self.module.exit_json(**self.result)

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
        if self.module._diff:
            self.result["diff"] = dict(before=dict(host=self.result.get("source_host"), uri=self.src_uri),
                                       after=dict(host=self.result.get("destination_host"), uri=self.dst_uri))

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

    def migrate(self, dom, flags: int, active: bool, paused: bool) -> None:
        params = self.parameters()
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

        outcome: dict = {}

        def worker() -> None:
            try:
                if self.params["mode"] == "peer2peer":
                    dom.migrateToURI3(self.dst_uri, params, flags)
                else:
                    dom.migrate3(self.dst, params, flags)
            except libvirt.libvirtError as exc:
                outcome["error"] = exc
            except Exception as exc:  # pylint: disable=broad-except
                outcome["error"] = exc

        started = time.monotonic()
        thread = threading.Thread(target=worker, name="entropy-migrate-%s" % self.name, daemon=True)
        thread.start()
        progress: dict = {}
        aborted = abort_accepted = postcopy_tried = False
        abort_error = None
        timeout = self.params["timeout"]
        while True:
            thread.join(POLL_INTERVAL)
            if not thread.is_alive():
                break
            elapsed = time.monotonic() - started
            if active:
                try:
                    stats = dom.jobStats(0)
                    if stats.get("type", 0):
                        progress = stats
                except libvirt.libvirtError:
                    pass
                if self.params["postcopy"] and not postcopy_tried and progress.get("memory_iteration", 0) >= 2:
                    postcopy_tried = True  # once: after the first full pre-copy pass
                    try:
                        dom.migrateStartPostCopy(0)
                        self.result["postcopy_started"] = True
                    except libvirt.libvirtError as exc:
                        self.module.warn("could not switch the migration of %r to post-copy (it goes on as pre-copy): %s" % (self.name, exc))
            if timeout and elapsed >= timeout and not abort_accepted:
                # ask until libvirt accepts: before the job really started it answers "no job is active"
                aborted = True
                self.result["timed_out"] = True
                if self.result.get("postcopy_started"):
                    abort_error = "the migration is in post-copy and cannot be aborted any more"
                    abort_accepted = True
                else:
                    try:
                        dom.abortJob()
                        abort_accepted = True
                        abort_error = None
                    except libvirt.libvirtError as exc:
                        abort_error = str(exc)
            if aborted and elapsed >= timeout + ABORT_GRACE_S:
                break
        self.result["wall_time_s"] = round(time.monotonic() - started, 3)

        if thread.is_alive():
            self.result["progress"] = job_summary(progress, completed=False)
            self.fail("The migration of VM %r from %s to %s did not finish within timeout=%ss and did not stop %ss after "
                      "it was aborted (%s). Check the job with virsh domjobinfo %s on the source."
                      % (self.name, self.src_uri, self.dst_uri, timeout, ABORT_GRACE_S, abort_error or "abort accepted", self.name), "timeout")

        error = outcome.get("error")
        if error is not None:
            self.result["progress"] = job_summary(progress, completed=False)
            self.restore_downtime(dom)
            if aborted:
                extra = "" if abort_error is None else " (abort: %s)" % abort_error
                self.fail("The migration of VM %r from %s to %s did not finish within timeout=%ss and was aborted%s (libvirt: %s). "
                          "Raise timeout, raise bandwidth_mib_s, or set auto_converge: true for a VM that writes memory quickly."
                          % (self.name, self.src_uri, self.dst_uri, timeout, extra, str(error).rstrip(".")), "timeout")
            message, kind = self.explain(error)
            self.fail(message, kind)

        if aborted:  # it finished although we asked to abort (abort came too late or was refused)
            self.module.warn("the migration of %r finished although the module tried to abort it after timeout=%ss%s"
                             % (self.name, timeout, "" if abort_error is None else " (abort: %s)" % abort_error))
            self.result["timed_out"] = False
        self.result["job"] = self.completed_stats(active)
        self.locate()
        if self.result["location"] != "destination" and active:
            self.fail("libvirt reported the migration of VM %r to %s as successful, but the VM is not running there." % (self.name, self.dst_uri),
                      "other")
        if paused:
            self.reactivate_on_destination()
        self.module.exit_json(**self.result)

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
        """The failure of the migration call as a message naming the cause and the fix."""
        err = describe_error(exc, "migrating VM %r from %s to %s" % (self.name, self.src_uri, self.dst_uri))
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
        if "already exists" in low:
            return text.rstrip() + " A VM with this name or UUID is defined on the destination; undefine the stale copy.", "name_clash"
        if err.kind == "unsupported" or "not supported" in low:
            return (text.rstrip() + " The libvirt driver of %s (%s) cannot migrate this VM this way (the libvirt test driver cannot "
                    "migrate at all); try the other mode or a real hypervisor." % (self.src_uri, self.src.getType()), "unsupported")
        if "memory" in low and ("cannot allocate" in low or "out of memory" in low or "insufficient" in low):
            return text.rstrip() + " The destination has not enough memory for the VM; free memory there or pick another host.", "destination_full"
        return text, err.kind


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            destination_uri=dict(type="str", required=True),
            live=dict(type="bool", default=True),
            mode=dict(type="str", default="direct", choices=["direct", "peer2peer"]),
            bandwidth_mib_s=dict(type="int"),
            max_downtime_ms=dict(type="int"),
            auto_converge=dict(type="bool", default=False),
            postcopy=dict(type="bool", default=False),
            unsafe=dict(type="bool", default=False),
            copy_storage=dict(type="str", default="none", choices=["none", "all", "incremental"]),
            persistent=dict(type="bool", default=True),
            undefine_source=dict(type="bool", default=True),
            timeout=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    migration = Migration(module)
    try:
        migration.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        err = describe_error(exc, "migrating VM %r from %s to %s" % (migration.name, migration.src_uri, migration.dst_uri))
        if err.kind == "reactivation":
            migration.fail(err.message, err.kind, changed=True)
        migration.fail(err.message, err.kind)


if __name__ == "__main__":
    main()
