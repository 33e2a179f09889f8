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

import datetime
import errno
import fcntl
import getpass
import json
import os
import secrets
import socket
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import DEFAULT_POOL, ClusterStore, StoreError, volume_name
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import PASSWORD_ENV, USERNAME_ENV

LOCK_KIND = "entropy.cluster.run_lock"
FORCED = "it was broken with force=true"


class CorruptLock(Exception):
    """The lock file exists but does not hold a lock record."""


def now() -> float:
    return time.time()


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat(timespec="seconds")


def default_owner(pid: int) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid%d" % os.getuid()
    return "%s@%s pid %d" % (user, socket.gethostname(), pid)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def machine_identity() -> dict[str, str | None]:
    """What makes a pid meaningful: the host name, this boot (pids restart at each boot), the PID namespace."""
    try:
        pid_ns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return {"host": socket.gethostname(), "boot_id": read_text("/proc/sys/kernel/random/boot_id"), "pid_ns": pid_ns}


def process_start(pid: int) -> int | None:
    """Start time of a live process (clock ticks after boot, /proc/<pid>/stat field 22); None when it is gone.

    A zombie (killed, not yet reaped by its parent) counts as gone."""
    stat = read_text("/proc/%d/stat" % pid)
    if stat is None:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    try:
        if fields[0] in ("Z", "X", "x"):
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def owner_process(pid: int | None, fail: t.Callable[[str], t.NoReturn]) -> tuple[int, int | None]:
    """The owner's pid and start time (None: not checkable)."""
    if pid is None:
        return os.getppid(), None
    start = process_start(pid) if pid > 0 else None
    if start is None:
        fail("owner_pid %d is not a running process on %s; leave owner_pid unset (the action plugin sets it to "
             "the ansible-playbook process) or give the pid of the process that owns the run" % (pid, socket.gethostname()))
    return pid, start


def new_record(owner: str, token: str, pid: int, pid_start: int | None) -> dict[str, t.Any]:
    created = now()
    record = {
        "kind": LOCK_KIND,
        "owner": owner,
        "token": token,
        "pid": pid,
        "host": socket.gethostname(),
        "created": created,
        "created_iso": iso(created),
    }
    if pid_start is not None:
        record.update(machine_identity(), pid_start=pid_start)
    return record


def owner_alive(record: dict[str, t.Any]) -> bool | None:
    """Whether the lock's owner process still runs; None when it cannot be told from here."""
    pid, pid_start = record.get("pid"), record.get("pid_start")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(pid_start, int) or isinstance(pid_start, bool):
        return None  # a record without owner process (taken on another host, or by an older version)
    here = machine_identity()
    if None in here.values() or any(record.get(key) != value for key, value in here.items()):
        return None  # another machine, another boot or another PID namespace: this pid means nothing here
    return process_start(pid) == pid_start


def gone_reason(record: dict[str, t.Any]) -> str:
    pid = record["pid"]
    why = "" if process_start(pid) is None else " (pid %d now belongs to a process started later)" % pid
    return "its owner process, pid %d on %s, is gone%s" % (pid, record.get("host"), why)


def acquire(path: str, record: dict[str, t.Any]) -> bool:
    """Create the lock file atomically with the record; False when it already exists.

    O_CREAT|O_EXCL: of any number of processes calling this at once, exactly one creates the file.
    The record is written in one write and fsynced before the file is closed."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        return False
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return True


def read_record(path: str) -> dict[str, t.Any] | None:
    """The lock record in path, None when there is no lock file; CorruptLock when it is not a lock record."""
    try:
        with open(path, "rb") as lock_file:
            raw = lock_file.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CorruptLock("it is a directory") from None
    if not raw.strip():
        raise CorruptLock("it is empty")
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise CorruptLock("it is not JSON: %s" % exc) from None
    if not isinstance(record, dict):
        raise CorruptLock("it holds JSON but not an object")
    for key, kinds in (("token", (str,)), ("created", (int, float)), ("owner", (str,))):
        value = record.get(key)
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise CorruptLock("its %r is missing or not a %s" % (key, kinds[0].__name__))
    return record


def holder(record: dict[str, t.Any] | None, at: float) -> dict[str, t.Any] | None:
    """What the module reports about a lock record: everything but the token, plus its age."""
    if record is None:
        return None
    created = float(record["created"])
    pid = record.get("pid")
    return {
        "owner": record["owner"],
        "host": record.get("host"),
        "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        "created": created,
        "created_iso": iso(created),
        "age": int(at - created),
        "owner_alive": owner_alive(record),
    }


def diff_side(record: dict[str, t.Any] | None) -> dict[str, t.Any]:
    if record is None:
        return {"state": "absent"}
    return {"state": "present", "owner": record["owner"], "since": iso(float(record["created"]))}


class DirectoryMutex:
    """An advisory flock on the lock's directory, for the read-check-modify steps (takeover, release).

    flock is released by the kernel when the process dies, so a crashed run never leaves it held.
    Where the filesystem has no flock, the steps run unserialized (creation stays atomic through O_EXCL)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fd: int | None = None

    def __enter__(self) -> DirectoryMutex:
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return self
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                raise
        return self

    def sync(self) -> None:
        """Make a created or removed lock file durable (fsync of the directory)."""
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            except OSError:
                pass

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


class LockModule(AnsibleModule):
    """AnsibleModule without the file facts for RV(path).

    AnsibleModule adds uid, gid, owner, group, mode and state of any returned C(path) that exists; here C(owner)
    is the run holding the lock and must not be replaced by the Unix owner of the file."""

    def add_path_info(self, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
        return kwargs


class RunLock:
    """backend=file: a lock file on the host the module runs on."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path: str = os.path.abspath(module.params["path"])
        self.directory = os.path.dirname(self.path)
        self.check = module.check_mode
        self.result: dict[str, t.Any] = {"changed": False, "path": self.path}

    def fail(self, msg: str, **extra: t.Any) -> t.NoReturn:
        self.result.update(extra)
        self.module.fail_json(msg=msg, **self.result)

    def read(self) -> dict[str, t.Any] | None:
        try:
            return read_record(self.path)
        except CorruptLock as exc:
            self.fail(
                "the lock file %s is not an entropy.cluster run lock (%s); if no entropy.cluster run is going on, "
                "remove it (rm %s, or this module with state=absent and no token) and run again"
                % (self.path, exc, self.path)
            )
        except OSError as exc:
            self.fail("cannot read the lock file %s: %s" % (self.path, exc.strerror or exc))

    def finish(self, before: dict[str, t.Any] | None, after: dict[str, t.Any] | None) -> t.NoReturn:
        if self.module._diff:
            self.result["diff"] = {"before": diff_side(before), "after": diff_side(after)}
        self.module.exit_json(**self.result)

    def held_message(self, record: dict[str, t.Any], at: float, ttl: int) -> str:
        info = holder(record, at) or {}
        where = ""
        if info.get("host") or info.get("pid") is not None:
            where = " on %s pid %s" % (info.get("host") or "?", info.get("pid") if info.get("pid") is not None else "?")
        if info.get("owner_alive"):
            where += ", still running"
        return (
            "another entropy.cluster run holds %s since %s (%d s ago, owner %r%s); wait for it to finish, or, if that run "
            "is dead, remove the file (rm %s, or this module with state=absent and no token). The lock becomes stale "
            "and is taken over when its owner process is gone (checked on the same controller only), else after ttl=%d s."
            % (self.path, info["created_iso"], info["age"], info["owner"], where, self.path, ttl)
        )

    def present(self) -> t.NoReturn:
        params = self.module.params
        ttl: int = params["ttl"]
        if ttl < 1:
            self.fail("ttl must be at least 1 second, got %d" % ttl)
        pid, pid_start = owner_process(params["owner_pid"], self.fail)
        owner: str = params["owner"] or default_owner(pid)
        token: str = params["token"] or secrets.token_hex(16)
        self.result["stale_taken_over"] = False
        self.result["stale_reason"] = None
        self.result["previous_holder"] = None

        if not self.check:
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                self.fail("cannot create the directory %s of the lock file: %s" % (self.directory, exc.strerror or exc))

        with DirectoryMutex(self.directory) as mutex:
            at = now()
            current = self.read()
            if current is not None:
                if params["token"] is not None and current["token"] == params["token"]:
                    self.result.update(
                        token=current["token"],
                        owner=current["owner"],
                        created=float(current["created"]),
                        created_iso=iso(float(current["created"])),
                    )
                    self.finish(current, current)
                alive = owner_alive(current)
                age = at - float(current["created"])
                if (alive or (alive is None and age <= ttl)) and not params["force"]:
                    self.fail(self.held_message(current, at, ttl), held_by=holder(current, at))
                reason = (gone_reason(current) if alive is False else "it is %d s old, older than ttl=%d s" % (age, ttl)
                          if alive is None and age > ttl else FORCED)
                self.result.update(stale_taken_over=True, stale_reason=reason, previous_holder=holder(current, at))
                self.module.warn("%s the lock %s of %r: %s" % ("would take over" if self.check else "took over", self.path, current["owner"], reason))

            record = new_record(owner, token, pid, pid_start)
            self.result.update(changed=True, token=token, owner=owner, created=record["created"], created_iso=record["created_iso"])
            if self.check:
                self.finish(current, record)
            try:
                if current is not None:
                    # stale: under the directory mutex nobody else takes it over or releases it meanwhile
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                if not acquire(self.path, record):
                    # a run that does not take the directory mutex (no flock on this filesystem) was faster
                    theirs = self.read()
                    if theirs is None:
                        self.fail("the lock file %s appeared and vanished while taking it; run again" % self.path)
                    self.result.update(changed=False, stale_taken_over=False, stale_reason=None)
                    self.fail(self.held_message(theirs, now(), ttl), held_by=holder(theirs, now()))
            except OSError as exc:
                self.fail("cannot create the lock file %s: %s" % (self.path, exc.strerror or exc))
            mutex.sync()
        self.finish(current, record)

    def absent(self) -> t.NoReturn:
        token: str | None = self.module.params["token"]
        self.result["previous_holder"] = None
        with DirectoryMutex(self.directory) as mutex:
            at = now()
            if token is None and not os.path.isdir(self.path):
                # removing whatever is there, a corrupt file included
                try:
                    current = read_record(self.path)
                except CorruptLock:
                    current = {"owner": "?", "token": "", "created": os.path.getmtime(self.path)}
                except OSError as exc:
                    self.fail("cannot read the lock file %s: %s" % (self.path, exc.strerror or exc))
            else:
                current = self.read()
            if current is None:
                self.finish(None, None)
            if token is not None and current["token"] != token:
                info = holder(current, at) or {}
                self.fail(
                    "the lock %s is not held by this run (another token): it was taken by %r at %s, probably as a "
                    "stale lock, so this run ran longer than its ttl; nothing was removed. Make sure both runs did "
                    "not change the cluster at the same time, and raise ttl."
                    % (self.path, info["owner"], info["created_iso"]),
                    held_by=info,
                )
            self.result.update(changed=True, previous_holder=holder(current, at))
            if not self.check:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self.fail("cannot remove the lock file %s: %s" % (self.path, exc.strerror or exc))
                mutex.sync()
        self.finish(current, None)


class ClusterRunLock:
    """backend=cluster: the lock is a record of the cluster store (a volume of a storage pool on the shared storage),
    so every job that reaches any one hypervisor sees it. Taking it is one exclusive create; breaking a stale lock
    first creates a takeover record named after the stale lock's token, exclusively, so that of several runs
    that find the same stale lock only one removes it."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        self.name: str = params["name"]
        self.store = ClusterStore(params["uris"], params["pool"], params["auth_username"], params["auth_password"])
        self.check = module.check_mode
        self.where = "the cluster lock %r (volume %s of storage pool %r)" % (self.name, volume_name("lock", self.name), params["pool"])
        self.result: dict[str, t.Any] = {"changed": False, "path": None,
                                         "store": {"pool": params["pool"], "volume": volume_name("lock", self.name), "via": None}}

    def fail(self, msg: str, **extra: t.Any) -> t.NoReturn:
        self.store.close()
        self.result.update(extra)
        self.module.fail_json(msg=msg, **self.result)

    def finish(self, before: dict[str, t.Any] | None, after: dict[str, t.Any] | None) -> t.NoReturn:
        self.store.close()
        if self.module._diff:
            self.result["diff"] = {"before": diff_side(before), "after": diff_side(after)}
        self.module.exit_json(**self.result)

    def read(self) -> dict[str, t.Any] | None:
        """The lock record; a record still being written (pending) is given the volume's time and no token."""
        record = self.store.read("lock", self.name)
        if record is None:
            return None
        if record.pending:
            created = record.mtime or now()
            return {"owner": "(a run taking the lock at this moment)", "token": "", "created": created,
                    "expires": created + self.module.params["ttl"]}
        data = dict(record.data)
        for key, kinds in (("token", (str,)), ("created", (int, float)), ("owner", (str,))):
            if not isinstance(data.get(key), kinds) or isinstance(data.get(key), bool):
                self.fail("%s holds a record without a valid %r; if no entropy.cluster run is going on, remove it "
                          "(this module with state=absent and no token)" % (self.where, key))
        return data

    def held_message(self, record: dict[str, t.Any], at: float) -> str:
        info = holder(record, at) or {}
        where = ""
        if info.get("host") or info.get("pid") is not None:
            where = " on %s pid %s" % (info.get("host") or "?", info.get("pid") if info.get("pid") is not None else "?")
        if info.get("owner_alive"):
            where += ", still running"
        expires = record.get("expires")
        expiry = " It expires at %s (taken as stale after that)." % iso(float(expires)) if isinstance(expires, (int, float)) else ""
        return ("another entropy.cluster run holds %s since %s (%d s ago, owner %r%s); wait for it to finish, or, if that "
                "run is dead, break the lock with force=true (or state=absent and no token).%s"
                % (self.where, info["created_iso"], info["age"], info["owner"], where, expiry))

    def stale_reason(self, record: dict[str, t.Any], at: float) -> str | None:
        alive = owner_alive(record)
        if alive:
            return None
        if alive is False:
            return gone_reason(record)
        expires = record.get("expires")
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            expires = float(record["created"]) + self.module.params["ttl"]
        if at > expires:
            return "it expired at %s (%d s ago)" % (iso(float(expires)), at - expires)
        return None

    def present(self) -> t.NoReturn:
        params = self.module.params
        ttl: int = params["ttl"]
        if ttl < 1:
            self.fail("ttl must be at least 1 second, got %d" % ttl)
        pid, pid_start = owner_process(params["owner_pid"], self.fail)
        owner: str = params["owner"] or default_owner(pid)
        token: str = params["token"] or secrets.token_hex(16)
        self.result.update(stale_taken_over=False, stale_reason=None, previous_holder=None)
        try:
            self.store.open()
            self.result["store"]["via"] = self.store.via
            current = self.read()
            at = now()
            if current is not None:
                if params["token"] is not None and current["token"] == params["token"]:
                    self.result.update(token=current["token"], owner=current["owner"], created=float(current["created"]),
                                       created_iso=iso(float(current["created"])))
                    self.finish(current, current)
                reason = self.stale_reason(current, at)
                if reason is None and params["force"]:
                    reason = FORCED
                if reason is None:
                    self.fail(self.held_message(current, at), held_by=holder(current, at))
                self.result.update(stale_taken_over=True, stale_reason=reason, previous_holder=holder(current, at))
                self.module.warn("%s %s of %r: %s" % ("would take over" if self.check else "took over", self.where, current["owner"], reason))
            record = new_record(owner, token, pid, pid_start)
            record["expires"] = record["created"] + ttl
            record["expires_iso"] = iso(record["expires"])
            self.result.update(changed=True, token=token, owner=owner, created=record["created"], created_iso=record["created_iso"],
                               expires_iso=record["expires_iso"])
            if self.check:
                self.finish(current, record)
            if current is not None:
                self.break_lock(current)
            if not self.store.create("lock", self.name, record):
                theirs = self.read()
                self.result.update(changed=False, stale_taken_over=False, stale_reason=None, token=None)
                if theirs is None:
                    self.fail("%s appeared and vanished while taking it; run again" % self.where)
                self.fail(self.held_message(theirs, now()), held_by=holder(theirs, now()))
        except StoreError as exc:
            self.fail(exc.message, error_kind=exc.kind)
        self.finish(current, record)

    def break_lock(self, stale: dict[str, t.Any]) -> None:
        """Remove the stale lock ``stale``, unless another run is breaking it or it changed meanwhile."""
        marker = "%s.%s" % (self.name, stale["token"] or "pending-%d" % int(float(stale["created"])))
        if not self.store.create("takeover", marker, {"by": self.result["owner"], "created": now()}):
            self.result.update(changed=False, token=None)
            self.fail("another run is taking over %s from %r at this moment; run again later" % (self.where, stale["owner"]))
        try:
            again = self.read()
            if again is not None and again["token"] == stale["token"]:
                self.store.delete("lock", self.name)
        finally:
            self.store.delete("takeover", marker)

    def absent(self) -> t.NoReturn:
        token: str | None = self.module.params["token"]
        self.result["previous_holder"] = None
        try:
            self.store.open()
            self.result["store"]["via"] = self.store.via
            at = now()
            current = self.read()
            if current is None:
                self.finish(None, None)
            if token is not None and current["token"] != token:
                info = holder(current, at) or {}
                self.fail("%s is not held by this run (another token): it was taken by %r at %s, probably as a stale lock, "
                          "so this run ran longer than its ttl; nothing was removed. Make sure both runs did not change the "
                          "cluster at the same time, and raise ttl." % (self.where, info["owner"], info["created_iso"]), held_by=info)
            self.result.update(changed=True, previous_holder=holder(current, at))
            if not self.check:
                self.store.delete("lock", self.name)
        except StoreError as exc:
            self.fail(exc.message, error_kind=exc.kind)
        self.finish(current, None)


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
            auth_username=dict(type="str", fallback=(env_fallback, [USERNAME_ENV])),
            auth_password=dict(type="str", no_log=True, fallback=(env_fallback, [PASSWORD_ENV])),
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
