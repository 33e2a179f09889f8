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
  disk_dir:
    description:
      - With O(copy_storage=all), the directory of the destination where the VM's disks are copied (same file names), for a
        move to a cluster whose storage the source does not see. The module passes libvirt a destination definition
        naming the new paths and starts a C(dir) storage pool over the directory on the destination when none exists
        (transient; the files stay), so that libvirt creates the copies there.
      - Only file disks without a backing file can be moved this way; the others are refused before anything moves.
      - QEMU's disk-copy (NBD) server on the destination listens on the destination's C(migration_address) of C(qemu.conf)
        (set it to the address of the migration network).
    type: path
    version_added: 0.1.0
  remove_source_disks:
    description:
      - With O(copy_storage=all), delete the disk files the VM used on the source once the migration succeeded - the VM
        runs on the destination and the source no longer defines it (O(undefine_source=true)) - through the source's
        libvirt (storage volume delete). Never after a failed migration; a failed removal is a warning naming the files.
    type: bool
    default: false
    version_added: 0.1.0
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

- name: To another cluster, into its storage directory; the old disk removed once web01 runs there
  entropy.cluster.vm_migrate:
    uri: qemu+ssh://root@hv01/system
    destination_uri: qemu+ssh://root@lyon-hv01/system
    name: web01
    copy_storage: all
    disk_dir: /srv/lyon/images
    remove_source_disks: true
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
    postcopy_requests:
      description: Pages the destination requested from the source after the switch to post-copy (0 for a pre-copy migration).
      type: int
      sample: 0
progress:
  description:
    - The last job statistics polled while the migration ran (the same keys as RV(job) where known).
    - After a migration that ended in post-copy, the only figures there are (libvirt keeps no completed statistics
      of it, RV(job) is empty).
  returned: when the migration failed or was aborted, or ended in post-copy
  type: dict
  sample: {elapsed_ms: 2100, memory_transferred_bytes: 319351}
wall_time_s:
  description: Wall-clock seconds the migration call took, as the module measured it.
  returned: when a migration was started
  type: float
  sample: 2.7
disks:
  description:
    - With O(copy_storage) other than V(none) and a running VM, each file disk copied - its path on the source and on the
      destination (in O(disk_dir) when given).
  returned: when copy_storage is not none and the VM was running
  type: list
  elements: dict
  sample: [{"source": "/srv/paris/images/web01.qcow2", "destination": "/srv/lyon/images/web01.qcow2"}]
removed_source_disks:
  description: With O(remove_source_disks=true), the disk files deleted on the source after the migration succeeded.
  returned: when remove_source_disks is true and the migration ran
  type: list
  elements: str
  sample: ["/srv/paris/images/web01.qcow2"]
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
      V(unreachable), V(defined_on_both), V(name_clash), V(no_domain), V(timeout), V(unsupported),
      V(destination_storage) (the destination does not see the VM's disk at the same path), V(aborted) (another client aborted the job),
      V(interrupted) (the destination saw the migration stream cut short - an abort on the source, or a failed connection or source QEMU),
      V(invalid_argument) (a parameter out of range or empty, nothing was done), V(paused_reason) (paused for another reason
      than a user, not moved), V(reactivation) (a paused VM was resumed to re-activate its disks and could not be paused again -
      it runs), V(changed_meanwhile) (the VM changed on a host while the module looked, nothing was done), V(other), ...
  returned: on failure
  type: str
  sample: snapshots
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._migration import Migration


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
            disk_dir=dict(type="path"),
            remove_source_disks=dict(type="bool", default=False),
            persistent=dict(type="bool", default=True),
            undefine_source=dict(type="bool", default=True),
            timeout=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    Migration(module).run()


if __name__ == "__main__":
    main()
