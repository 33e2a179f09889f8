#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: run_lock
short_description: Make sure two entropy.cluster runs never overlap (a lock file)
version_added: 0.1.0
description:
  - Takes (O(state=present)) or releases (O(state=absent)) a lock file, so that two runs of the consolidate,
    evacuate or rebalance playbooks started by AWX, cron or by hand never work on the same cluster at the same time.
  - "The lock lives on the host the module runs on; run it on the controller (C(delegate_to: localhost), C(run_once: true))
    so that every run of every playbook for a cluster sees the same file."
  - The lock file is created atomically (C(O_CREAT|O_EXCL)) and holds a JSON record naming the run that holds it
    (owner, token, host, pid, creation time). Taking over a stale lock and releasing a lock are serialized with an
    advisory C(flock) on the lock's directory, so two runs cannot both take over the same stale lock.
  - The record names the process that owns the lock (O(owner_pid)); under C(ansible-playbook) or C(ansible), the
    controller process that runs the play (the action plugin of this module passes it when the module runs on the
    controller), with its start time, the machine's boot id, its PID namespace and its host name, so that a later run
    on the same controller can tell whether that process is still alive.
  - When the lock is already held by another run and is not stale, the module fails with a message naming the holder
    and since when it holds the lock.
  - A lock is stale, and is taken over at once, when its owner process is gone on the same controller (same host name,
    boot id and PID namespace; the pid no longer exists, is a zombie, or now belongs to a process started later, after
    pid reuse), for example after C(kill -9) of C(ansible-playbook). A lock whose owner still runs is never stale.
    A lock whose owner cannot be checked (taken on another host, or without O(owner_pid)) is stale when it is older
    than O(ttl) seconds. After a takeover the module reports RV(stale_taken_over=true), why in RV(stale_reason)
    (also as a warning), and the record of the previous holder in RV(previous_holder).
  - With O(backend=cluster) the lock lives in the cluster itself, where every job sees it whatever machine or
    container it runs in (AWX runs each job in its own container, whose C(/tmp) no other job sees). It is a record of
    the cluster store, a volume of the libvirt storage pool O(pool) on the cluster's shared storage, reached through
    the first of O(uris) that answers, so it holds while any one hypervisor is down. It is taken by one exclusive
    volume create (libvirt opens the file with C(O_CREAT|O_EXCL)); of two runs taking it at once through two
    hypervisors, exactly one succeeds. The record also holds its expiry (creation time + O(ttl) of the run that took
    it); a lock whose owner cannot be checked from here is stale after its expiry.
  - O(force=true) breaks a lock held by another run, alive or not (with a warning naming it).
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entropy.cluster.connection.module_connect_timeout
attributes:
  check_mode:
    support: full
    details:
      - In check mode nothing is created or removed; the module reports whether the lock would be taken or released,
        and fails when it is held by another run, as it would without check mode.
  diff_mode:
    support: full
    details:
      - The diff shows who holds the lock before and after.
  platform:
    support: full
    platforms: posix
options:
  backend:
    description:
      - Where the lock lives.
      - V(file) is a lock file at O(path) on the host the module runs on; every run for a cluster must run it on the same
        host.
      - V(cluster) is a record of the cluster store in the storage pool O(pool), reached through O(uris); every run that
        reaches one hypervisor sees it.
    type: str
    choices: [file, cluster]
    default: file
    version_added: 0.1.0
  path:
    description:
      - Path of the lock file, one per cluster, for example C(/var/lock/entropy-cluster/<cluster>.lock).
      - Missing parent directories are created (O(state=present)).
      - Required with O(backend=file), ignored with O(backend=cluster).
    type: path
  name:
    description:
      - With O(backend=cluster), the name of the lock in the store (one lock per name).
    type: str
    default: run
    version_added: 0.1.0
  pool:
    description:
      - With O(backend=cluster), the libvirt storage pool of the cluster store; it must be defined and active on the
        hypervisors over one shared directory (see the collection's docs/playbooks.md, "The cluster store").
    type: str
    default: entropy-cluster
    version_added: 0.1.0
  uris:
    description:
      - With O(backend=cluster), libvirt URIs of the hypervisors through which the store is reached, tried in this order
        until one answers. Required with O(backend=cluster).
    type: list
    elements: str
    version_added: 0.1.0
  auth_username:
    description:
      - With O(backend=cluster), user name for libvirt authentication (SASL).
      - If not set, the value of the E(ENTROPY_LIBVIRT_USERNAME) environment variable is used.
    type: str
    version_added: 0.1.0
  auth_password:
    description:
      - With O(backend=cluster), password for libvirt authentication (SASL).
      - If not set, the value of the E(ENTROPY_LIBVIRT_PASSWORD) environment variable is used.
    type: str
    version_added: 0.1.0
  force:
    description:
      - With O(state=present), take the lock even when another run holds it and is not stale. Use it only when that
        run is known to be dead, or its work is known to be over.
    type: bool
    default: false
    version_added: 0.1.0
  state:
    description:
      - V(present) takes the lock; V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Free text identifying the run that takes the lock, shown to whoever finds it held,
        for example C(awx job {{ awx_job_id }}) or C(cron on ctl01).
      - Defaults to C(<user>@<hostname> pid <owner pid>).
      - Only used with O(state=present).
    type: str
  ttl:
    description:
      - Age in seconds after which a lock whose owner process cannot be checked (see O(owner_pid)) is stale, that is,
        its run is assumed dead, and may be taken over. A lock whose owner process is known to be alive or gone does
        not depend on its age.
      - Choose it longer than the longest run of the playbook.
      - Only used with O(state=present).
    type: int
    default: 7200
  token:
    description:
      - With O(state=present), the token to write into the lock; a random token is made when it is not given.
        A lock already held with this token is left alone (C(changed=false)), so taking the same lock twice in one
        run is idempotent. Without O(token), a lock that exists and is not stale is always held by another run.
      - With O(state=absent), release the lock only if it holds this token, and fail otherwise (another run took it
        over). Without O(token), the lock is removed whoever holds it.
      - Pass the RV(token) returned by O(state=present) to O(state=absent).
    type: str
  owner_pid:
    description:
      - Process id, on the host the module runs on, of the process that owns the lock; when that process is gone, the
        lock is stale whatever its age.
      - "When the module runs on the controller (C(delegate_to: localhost) or a local connection), its action plugin sets
        it to the C(ansible-playbook) (or C(ansible)) process that runs the play; set it only when another long-lived
        process owns the run."
      - Without it (the module run on another host), the pid of the module's parent is recorded for information only
        and staleness is decided by age (O(ttl)).
      - Only used with O(state=present).
    type: int
notes:
  - The lock is only as good as the place it lives in; all runs for one cluster must use the same O(path) on the same
    host (the controller, or the AWX execution node shared by the job templates).
  - Liveness is read from C(/proc) (Linux); elsewhere, or for a lock taken on another host, only O(ttl) applies.
  - A run killed with C(kill -9) releases nothing and its migrations may still be running (see the "Runs that die"
    section of the collection's docs/playbooks.md). The next run takes over its lock at once, and the plan role
    of this collection refuses to plan while libvirt still shows a migration in flight.
  - The ages are computed from the wall clock of the host the module runs on; with O(backend=cluster), keep the clocks
    of the controllers or execution nodes in sync (NTP), as the expiry written by one is read by another.
seealso:
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Take the cluster lock (fails when another run holds it)
  entropy.cluster.run_lock:
    path: /var/lock/entropy-cluster/prod.lock
    owner: "awx job {{ awx_job_id | default('manual') }} by {{ lookup('ansible.builtin.env', 'USER') }}"
    ttl: 14400
  delegate_to: localhost
  run_once: true
  register: cluster_lock

- name: Consolidate while holding the lock, release it whatever happens
  block:
    - name: Plan and migrate
      ansible.builtin.debug:
        msg: the real work runs here
  always:
    - name: Release the cluster lock (only if this run still holds it)
      entropy.cluster.run_lock:
        path: /var/lock/entropy-cluster/prod.lock
        state: absent
        token: "{{ cluster_lock.token }}"
      delegate_to: localhost
      run_once: true

- name: Choose the token, so that a retried job or a second play of the same AWX job takes the lock idempotently
  entropy.cluster.run_lock:
    path: /var/lock/entropy-cluster/prod.lock
    token: "awx-job-{{ awx_job_id | default('manual') }}"
    owner: "awx job {{ awx_job_id | default('manual') }}"
  delegate_to: localhost
  run_once: true

- name: Take the lock kept in the cluster itself, seen by every AWX job whatever container it runs in
  entropy.cluster.run_lock:
    backend: cluster
    pool: entropy-cluster
    # every hypervisor, for example from the libvirt_cluster inventory:
    # "{{ groups['hypervisors'] | map('extract', hostvars, 'entropy_uri') | list }}"
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv02/system"]
    owner: "awx job {{ awx_job_id | default('manual') }}"
    ttl: 14400
  delegate_to: localhost
  run_once: true
  register: cluster_lock

- name: Break the cluster lock of a job known to be dead, and take it
  entropy.cluster.run_lock:
    backend: cluster
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv02/system"]
    owner: operator on ctl01
    force: true
  delegate_to: localhost
  run_once: true

- name: Remove the cluster lock, whoever holds it
  entropy.cluster.run_lock:
    backend: cluster
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv02/system"]
    state: absent
  delegate_to: localhost
  run_once: true

- name: Remove a lock left behind by a run that is known to be dead (whoever holds it)
  entropy.cluster.run_lock:
    path: /var/lock/entropy-cluster/prod.lock
    state: absent
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: Path of the lock file; null with O(backend=cluster).
  returned: always
  type: str
  sample: /var/lock/entropy-cluster/prod.lock
store:
  description: With O(backend=cluster), where the lock lives.
  returned: when O(backend=cluster)
  type: dict
  version_added: 0.1.0
  sample:
    pool: entropy-cluster
    volume: entropy.lock.run
    via: qemu+tcp://hv01/system
  contains:
    pool:
      description: The storage pool of the store.
      type: str
    volume:
      description: The volume that holds the lock.
      type: str
    via:
      description: The hypervisor URI through which the store was reached; null when none answered.
      type: str
expires_iso:
  description: With O(backend=cluster), when the lock taken by this run expires (creation + O(ttl)), ISO 8601 in UTC.
  returned: when O(backend=cluster), O(state=present) and the lock was taken or would be taken
  type: str
  version_added: 0.1.0
  sample: "2026-11-26T17:33:12+00:00"
token:
  description:
    - Token of the lock held by this run; pass it to O(state=absent).
    - In check mode, the token the lock would be taken with.
  returned: when O(state=present) and the lock is held or would be taken
  type: str
  sample: 3f2a9c0e5b7d4e1f8a6b2c9d0e4f7a1b
owner:
  description: Owner of the lock held by this run.
  returned: when O(state=present) and the lock is held or would be taken
  type: str
  sample: awx job 42 (awx)
created:
  description: When the lock held by this run was taken, in seconds since the epoch.
  returned: when O(state=present) and the lock is held or would be taken
  type: float
  sample: 1764171192.53
created_iso:
  description: When the lock held by this run was taken, ISO 8601 in UTC.
  returned: when O(state=present) and the lock is held or would be taken
  type: str
  sample: "2026-11-26T15:33:12+00:00"
stale_taken_over:
  description: True when the lock was held by another run but was stale (its owner process is gone, or it is older
    than O(ttl)) and was taken over.
  returned: when O(state=present) and the lock is held or would be taken
  type: bool
  sample: false
stale_reason:
  description: Why the lock of the previous holder was stale; null when it was not taken over.
  returned: when O(state=present) and the lock is held or would be taken
  type: str
  sample: "its owner process, pid 81234 on ctl01, is gone"
previous_holder:
  description:
    - The lock record replaced by a stale takeover (O(state=present)) or released (O(state=absent)); null when there
      was none.
    - The token of the record is not returned.
  returned: success
  type: dict
  sample:
    owner: cron on ctl01
    host: ctl01
    pid: 81234
    created: 1764160000.0
    created_iso: "2026-11-26T12:26:40+00:00"
    age: 11192
    owner_alive: false
  contains:
    owner:
      description: Owner of the lock.
      type: str
    host:
      description: Host name of the machine the holder ran on.
      type: str
    pid:
      description: Process id of the lock's owner (O(owner_pid)), or of the module's parent when it had none.
      type: int
    owner_alive:
      description: Whether the owner process still runs; null when it cannot be checked from here (another host, a
        lock taken without O(owner_pid)).
      type: bool
    created:
      description: When the lock was taken, in seconds since the epoch.
      type: float
    created_iso:
      description: When the lock was taken, ISO 8601 in UTC.
      type: str
    age:
      description: Age of the lock in whole seconds when the module ran.
      type: int
held_by:
  description:
    - The lock record of the run that holds the lock, when the module failed because another run holds it
      (O(state=present)) or because the lock holds another token (O(state=absent)). Same keys as RV(previous_holder).
  returned: failure because the lock is held by another run
  type: dict
  sample:
    owner: awx job 41
    host: awx-ee-1
    pid: 4711
    created: 1764170000.0
    created_iso: "2026-11-26T15:13:20+00:00"
    age: 1192
    owner_alive: true
"""

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import DEFAULT_POOL
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC
from ansible_collections.entropy.cluster.plugins.module_utils._run_lock import ClusterRunLock, LockModule, RunLock


def main() -> None:
    module = LockModule(
        argument_spec=dict(
            path=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            owner=dict(type="str"),
            ttl=dict(type="int", default=7200),
            token=dict(type="str", no_log=False),
            owner_pid=dict(type="int"),
            force=dict(type="bool", default=False),
            backend=dict(type="str", choices=["file", "cluster"], default="file"),
            name=dict(type="str", default="run"),
            pool=dict(type="str", default=DEFAULT_POOL),
            uris=dict(type="list", elements="str"),
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        required_if=[("backend", "file", ["path"]), ("backend", "cluster", ["uris"])],
        supports_check_mode=True,
    )
    lock = RunLock(module) if module.params["backend"] == "file" else ClusterRunLock(module)
    if module.params["state"] == "present":
        lock.present()
    lock.absent()


if __name__ == "__main__":
    main()
