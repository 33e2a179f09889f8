# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job file: what a user submits (a group of identical VMs that runs one command), validated.

Every problem is a JobError whose message is one line naming the field and the fix. Strings (job
name, owner, command, paths) are tenant data: they are kept literally, never templated, never split
or quoted for a shell here; the callers pass them on as data.
"""
from __future__ import annotations

import base64
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

# field -> (required, what it is); the order is the documentation's (docs/jobs.md).
JOB_FIELDS: dict[str, tuple[bool, str]] = {
    "name": (True, "the job's name, unique among the jobs; its VMs are named <name>-1 ... <name>-N"),
    "owner": (True, "who submits it (a user name)"),
    "vms": (True, "how many VMs (integer >= 1)"),
    "vcpus": (True, "virtual CPUs of each VM (integer >= 1)"),
    "memory_mib": (True, "memory of each VM in MiB (integer >= 1)"),
    "cpu": (False, "CPU demand of each VM in cores (number > 0, at most vcpus; default: vcpus)"),
    "image": (True, "absolute path of the base image (qcow2) each VM's disk is a linked clone of"),
    "command": (True, "the command each VM runs (text, run inside the VM)"),
    "priority": (False, "integer, higher runs first and may preempt lower (default 0)"),
    "share": (True, "absolute path of the user's directory shared into each VM"),
    "ssh_key": (True, "the owner's SSH public key (one line: type, key, optional comment)"),
    "time_limit_s": (True, "wall-clock limit of the job in seconds (integer >= 1)"),
    "constraints": (False, "placement of the job's VMs: a list of {type: spread}, {type: gather}, {type: among, groups: [[hosts], ...]}"),
}
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
MAX_NAME = 64
MAX_VMS = 1000
CONSTRAINT_FIELDS = {"spread": {"type", "continuous"}, "gather": {"type", "continuous"}, "among": {"type", "groups", "continuous"}}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class JobError(ValueError):
    """A job file that cannot be accepted; ``field`` names the culprit (None: the file as a whole)."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class JobConstraint:
    """A placement rule over all the job's VMs: spread (distinct hosts), gather (one host) or among (one host group)."""
    type: str
    groups: tuple[tuple[str, ...], ...] = ()
    continuous: bool = False

    def to_model(self, vm_names: list[str]) -> dict[str, Any]:
        """The constraint as an entry of the placement model (docs/model-format.md)."""
        entry: dict[str, Any] = {"type": self.type, "vms": list(vm_names)}
        if self.type == "among":
            entry["groups"] = [list(group) for group in self.groups]
        if self.continuous:
            entry["continuous"] = True
        return entry


@dataclass(frozen=True)
class Job:
    name: str
    owner: str
    vms: int
    vcpus: int
    memory_mib: int
    cpu: float
    image: str
    command: str
    priority: int
    share: str
    ssh_key: str
    time_limit_s: int
    constraints: tuple[JobConstraint, ...] = field(default=())

    def vm_names(self) -> list[str]:
        """The job's VM names, literally ``<name>-1`` ... ``<name>-N``."""
        return ["%s-%d" % (self.name, i) for i in range(1, self.vms + 1)]

    @property
    def memory_total_mib(self) -> int:
        return self.vms * self.memory_mib

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in JOB_FIELDS if name != "constraints"}
        data["constraints"] = [dict({"type": c.type}, **({"groups": [list(g) for g in c.groups]} if c.type == "among" else {}),
                                    **({"continuous": True} if c.continuous else {})) for c in self.constraints]
        return data


def _fail(where: str, field_name: str, message: str) -> JobError:
    return JobError("%s: field '%s' %s" % (where, field_name, message), field_name)


def _text(where: str, data: dict, name: str, example: str, *, max_len: int | None = None, path: bool = False,
          one_line: bool = True) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise _fail(where, name, "must be a string, got %s %r: quote it in the YAML, e.g. %s: %s" % (
            type(value).__name__, value, name, example))
    if not value.strip():
        raise _fail(where, name, "is empty: give it a value, e.g. %s: %s" % (name, example))
    if one_line and _CONTROL.search(value):
        raise _fail(where, name, "contains a line break or a control character (%r): write it on one line" % value)
    if "\x00" in value:
        raise _fail(where, name, "contains a NUL character: remove it")
    if max_len is not None and len(value) > max_len:
        raise _fail(where, name, "is %d characters long: at most %d" % (len(value), max_len))
    if path and not value.startswith("/"):
        raise _fail(where, name, "must be an absolute path, got %r: write it from /, e.g. %s: %s" % (value, name, example))
    return value


def _integer(where: str, data: dict, name: str, low: int | None, example: str, high: int | None = None) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, name, "must be an integer, got %s %r: write e.g. %s: %s" % (type(value).__name__, value, name, example))
    if low is not None and value < low:
        raise _fail(where, name, "must be at least %d, got %d: write e.g. %s: %s" % (low, value, name, example))
    if high is not None and value > high:
        raise _fail(where, name, "must be at most %d, got %d" % (high, value))
    return value


def _constraints(where: str, value: Any) -> tuple[JobConstraint, ...]:
    name = "constraints"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(where, name, "must be a list, e.g. constraints: [{type: spread}]")
    parsed = []
    for i, entry in enumerate(value):
        label = "%s[%d]" % (name, i)
        if not isinstance(entry, dict) or "type" not in entry:
            raise _fail(where, label, "must be a mapping with a type (spread, gather or among), e.g. {type: spread}")
        kind = entry["type"]
        if kind not in CONSTRAINT_FIELDS:
            raise _fail(where, label, "has type %r: use spread, gather or among" % (kind,))
        unknown = sorted(str(k) for k in set(entry) - CONSTRAINT_FIELDS[kind])
        if unknown:
            raise _fail(where, label, "(%s) has unknown key(s) %s: allowed are %s" % (
                kind, ", ".join(repr(k) for k in unknown), ", ".join(sorted(CONSTRAINT_FIELDS[kind]))))
        continuous = entry.get("continuous", False)
        if not isinstance(continuous, bool):
            raise _fail(where, label + ".continuous", "must be true or false, got %r" % (continuous,))
        groups: tuple[tuple[str, ...], ...] = ()
        if kind == "among":
            raw = entry.get("groups")
            if (not isinstance(raw, list) or not raw
                    or not all(isinstance(g, list) and g and all(isinstance(h, str) and h for h in g) for g in raw)):
                raise _fail(where, label + ".groups", "must be a non-empty list of non-empty lists of host names, e.g. "
                                                      "groups: [[hv01, hv02], [hv03]]")
            seen: dict[str, int] = {}
            for gi, group in enumerate(raw):
                for host in group:
                    if host in seen:
                        raise _fail(where, label + ".groups", "names host %r in groups %d and %d: the groups must be disjoint"
                                    % (host, seen[host], gi))
                    seen[host] = gi
            groups = tuple(tuple(g) for g in raw)
        parsed.append(JobConstraint(type=kind, groups=groups, continuous=continuous))
    kinds = [c.type for c in parsed]
    if "spread" in kinds and "gather" in kinds:
        raise _fail(where, name, "asks for both spread and gather: keep one")
    return tuple(parsed)


def _ssh_key(where: str, data: dict) -> str:
    value = _text(where, data, "ssh_key", "'ssh-ed25519 AAAA... user@laptop'")
    parts = value.split()
    if parts[0] not in SSH_KEY_TYPES or len(parts) < 2:
        raise _fail(where, "ssh_key", "is not an SSH public key (it must start with one of %s, then the key): paste the "
                    "content of your ~/.ssh/id_*.pub" % ", ".join(SSH_KEY_TYPES[:3]))
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise _fail(where, "ssh_key", "has a key part that is not base64: paste the whole line of your ~/.ssh/id_*.pub") from None
    if len(blob) < 4 or int.from_bytes(blob[:4], "big") != len(parts[0]) or blob[4:4 + len(parts[0])] != parts[0].encode():
        raise _fail(where, "ssh_key", "has a key part that does not match its type %s: paste the whole line of your ~/.ssh/id_*.pub"
                    % parts[0])
    return value


def parse_job(data: Any, source: str = "job file") -> Job:
    """Validate a job (the mapping read from a job file) and return it; JobError names the first problem."""
    where = source
    if not isinstance(data, dict):
        raise JobError("%s: must be a YAML mapping of the job's fields (%s), got %s" % (
            where, ", ".join(JOB_FIELDS), type(data).__name__ if data is not None else "an empty file"))
    unknown = [k for k in data if k not in JOB_FIELDS]
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, list(JOB_FIELDS), n=1)
        hint = "did you mean %r?" % close[0] if close else "the fields are %s" % ", ".join(JOB_FIELDS)
        raise JobError("%s: unknown field %r: %s" % (where, key, hint), key)
    missing = [k for k, (required, _what) in JOB_FIELDS.items() if required and k not in data]
    if missing:
        raise JobError("%s: field '%s' is missing: add it (%s)" % (where, missing[0], JOB_FIELDS[missing[0]][1]), missing[0])
    name = _text(where, data, "name", "'analysis 1'", max_len=MAX_NAME)
    if "/" in name:
        raise _fail(where, "name", "contains '/', which no VM name may hold: use another character")
    if name != name.strip():
        raise _fail(where, "name", "starts or ends with spaces (%r): remove them" % name)
    where = "%s (job %r)" % (source, name)
    owner = _text(where, data, "owner", "alice", max_len=MAX_NAME)
    vms = _integer(where, data, "vms", 1, "3", MAX_VMS)
    vcpus = _integer(where, data, "vcpus", 1, "1")
    memory_mib = _integer(where, data, "memory_mib", 1, "512")
    cpu_value = data.get("cpu", vcpus)
    if isinstance(cpu_value, bool) or not isinstance(cpu_value, (int, float)) or not math.isfinite(cpu_value):
        raise _fail(where, "cpu", "must be a number of cores, got %r: write e.g. cpu: 0.5" % (cpu_value,))
    if not 0 < cpu_value <= vcpus:
        raise _fail(where, "cpu", "is %s: it must be more than 0 and at most vcpus (%d)" % (cpu_value, vcpus))
    image = _text(where, data, "image", "/var/lib/libvirt/images/base.qcow2", path=True)
    command = _text(where, data, "command", "'./run.sh > result.txt'", one_line=False)
    priority = _integer(where, data, "priority", None, "0") if "priority" in data else 0
    share = _text(where, data, "share", "/home/alice/job1", path=True)
    ssh_key = _ssh_key(where, data)
    time_limit_s = _integer(where, data, "time_limit_s", 1, "3600")
    constraints = _constraints(where, data.get("constraints"))
    if vms < 2 and any(c.type == "spread" for c in constraints):
        raise _fail(where, "constraints", "asks to spread a job of 1 VM: remove it or raise vms")
    return Job(name=name, owner=owner, vms=vms, vcpus=vcpus, memory_mib=memory_mib, cpu=float(cpu_value), image=image,
               command=command, priority=priority, share=share, ssh_key=ssh_key, time_limit_s=time_limit_s,
               constraints=constraints)


def load_job_file(path: str) -> Job:
    """Read and validate a YAML job file (safe loader: no tags, every scalar stays data)."""
    import yaml  # pylint: disable=import-outside-toplevel

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise JobError("job file %s: cannot be read (%s): check the path given in entropy_job_file" % (path, exc.strerror)) from None
    except UnicodeDecodeError:
        raise JobError("job file %s: is not UTF-8 text: save it as UTF-8" % path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise JobError("job file %s: is not valid YAML%s (%s): fix the syntax there" % (path, at, problem)) from None
    return parse_job(data, "job file %s" % path)
