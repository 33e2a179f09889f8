# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.run_lock (private: names may change between releases): the lock file
(backend=file) and the cluster store's lock record (backend=cluster)."""

from __future__ import annotations

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

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore, StoreError, volume_name
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import EntropyModule

LOCK_KIND = "entropy.cluster.run_lock"
FORCED = "it was broken with force=true"


class CorruptLock(Exception):
    """The lock file exists but does not hold a lock record."""


def now() -> float:
    return time.time()


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat(timespec="seconds")


def user_at_host() -> str:
    """Who runs this, as user@host (uid<N> when the user has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid%d" % os.getuid()
    return "%s@%s" % (user, socket.gethostname())


def default_owner(pid: int) -> str:
    return "%s pid %d" % (user_at_host(), pid)


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


def holder_whereabouts(info: dict[str, t.Any]) -> str:
    """' on HOST pid PID[, still running]' for a held-lock message; empty when the record names neither."""
    where = ""
    if info.get("host") or info.get("pid") is not None:
        where = " on %s pid %s" % (info.get("host") or "?", info.get("pid") if info.get("pid") is not None else "?")
    if info.get("owner_alive"):
        where += ", still running"
    return where


def diff_side(record: dict[str, t.Any] | None) -> dict[str, t.Any]:
    if record is None:
        return {"state": "absent"}
    return {"state": "present", "owner": record["owner"], "since": iso(float(record["created"]))}


def lock_request(params: dict[str, t.Any], fail: t.Callable[[str], t.NoReturn]) -> tuple[int, int, int | None, str, str]:
    """What state=present asks for, on either backend: (ttl, owner pid, its start time, owner, token)."""
    ttl: int = params["ttl"]
    if ttl < 1:
        fail("ttl must be at least 1 second, got %d" % ttl)
    pid, pid_start = owner_process(params["owner_pid"], fail)
    owner: str = params["owner"] or default_owner(pid)
    token: str = params["token"] or secrets.token_hex(16)
    return ttl, pid, pid_start, owner, token


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


class LockModule(EntropyModule):
    """EntropyModule without the file facts for RV(path).

    AnsibleModule adds uid, gid, owner, group, mode and state of any returned C(path) that exists; here C(owner)
    is the run holding the lock and must not be replaced by the Unix owner of the file."""

    def add_path_info(self, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
        return kwargs


class RunLock:
    """backend=file: a lock file on the host the module runs on."""

    def __init__(self, module: LockModule) -> None:
        self.module = module
        self.path: str = os.path.abspath(module.params["path"])
        self.directory = os.path.dirname(self.path)
        self.check = module.check_mode
        self.result = module.result
        self.result["path"] = self.path

    def fail(self, msg: str, **extra: t.Any) -> t.NoReturn:
        self.module.fail(msg, **extra)

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
        self.module.set_diff(diff_side(before), diff_side(after))
        self.module.exit()

    def held_message(self, record: dict[str, t.Any], at: float, ttl: int) -> str:
        info = holder(record, at) or {}
        where = holder_whereabouts(info)
        return (
            "another entropy.cluster run holds %s since %s (%d s ago, owner %r%s); wait for it to finish, or, if that run "
            "is dead, remove the file (rm %s, or this module with state=absent and no token). The lock becomes stale "
            "and is taken over when its owner process is gone (checked on the same controller only), else after ttl=%d s."
            % (self.path, info["created_iso"], info["age"], info["owner"], where, self.path, ttl)
        )

    def present(self) -> t.NoReturn:
        params = self.module.params
        ttl, pid, pid_start, owner, token = lock_request(params, self.fail)
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

    def __init__(self, module: LockModule) -> None:
        self.module = module
        params = module.params
        self.name: str = params["name"]
        self.store = ClusterStore(params["uris"], params["pool"], params["auth_username"], params["auth_password"],
                                  connect_timeout=params.get("connect_timeout"))
        self.check = module.check_mode
        self.where = "the cluster lock %r (volume %s of storage pool %r)" % (self.name, volume_name("lock", self.name), params["pool"])
        self.result = module.result
        self.result.update(path=None, store={"pool": params["pool"], "volume": volume_name("lock", self.name), "via": None})

    def fail(self, msg: str, **extra: t.Any) -> t.NoReturn:
        self.store.close()
        self.module.fail(msg, **extra)

    def finish(self, before: dict[str, t.Any] | None, after: dict[str, t.Any] | None) -> t.NoReturn:
        self.store.close()
        self.module.set_diff(diff_side(before), diff_side(after))
        self.module.exit()

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
        where = holder_whereabouts(info)
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
        ttl, pid, pid_start, owner, token = lock_request(params, self.fail)
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
