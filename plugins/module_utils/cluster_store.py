# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster store: small typed records kept in the cluster itself, seen by every job.

Each record is one volume of a libvirt storage pool on the cluster's shared storage (a C(dir) pool
defined on every hypervisor over one shared directory, or any pool type whose volumes every
hypervisor sees). The store is reached through whichever hypervisor answers first, so it stays
reachable while any one hypervisor is down, and it is never a domain, so it never enters the model.

Creating a record is one atomic step that fails when the record exists: libvirt creates a raw
volume of a C(dir) pool with C(open(O_CREAT|O_EXCL)). Measured on the lab (libvirt 9.0, three
daemons on one directory, 200 rounds of three simultaneous creates of one name): exactly one
create succeeded each round, the losers failed with "File exists" (or "already exists" when they
saw the file first) and never removed the winner's file. The record's JSON is then uploaded into
the volume; a reader that comes in between sees an empty record (C(pending)) and its file time.

No Ansible import: the modules and the controller plugins share this code.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterable

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    libvirt,
    open_connection,
)

DEFAULT_POOL = "entropy-cluster"
# The options of the modules that keep records in the store; keep in sync with plugins/doc_fragments/connection.py
# (CLUSTER_STORE).
STORE_SPEC = dict(
    pool=dict(type="str", default=DEFAULT_POOL),
    uris=dict(type="list", elements="str", required=True),
)
# The kinds of record the store keeps; a volume name is "entropy.<kind>.<key>".
KINDS = ("lock", "maintenance", "takeover", "queue", "checkpoint", "fence", "job", "definition")
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 65536
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class StoreError(EntropyLibvirtError):
    """The store cannot be reached or used; the message names the pool, the URIs and the fix."""


def volume_name(kind: str, key: str) -> str:
    """The volume that holds record (kind, key). Keys are untrusted (host names): anything outside
    [A-Za-z0-9_.-] is hex-encoded, so a key never becomes a path or collides with another key."""
    if kind not in KINDS:
        raise ValueError("unknown store record kind %r" % kind)
    if _SAFE_KEY.match(key) and not key.startswith("x-"):
        return "entropy.%s.%s" % (kind, key)
    return "entropy.%s.x-%s" % (kind, key.encode("utf-8").hex())


def key_of(name: str) -> tuple[str, str] | None:
    """(kind, key) of a store volume name, None for any other volume of the pool."""
    parts = name.split(".", 2)
    if len(parts) != 3 or parts[0] != "entropy" or parts[1] not in KINDS or not parts[2]:
        return None
    key = parts[2]
    if key.startswith("x-"):
        try:
            key = bytes.fromhex(key[2:]).decode("utf-8")
        except ValueError:
            return None
    return parts[1], key


def encode(kind: str, key: str, data: dict[str, Any]) -> bytes:
    body = json.dumps({"format": RECORD_FORMAT, "kind": kind, "key": key, "data": data}, sort_keys=True).encode("utf-8")
    if len(body) > MAX_RECORD_BYTES:
        raise ValueError("store record %s/%s is larger than %d bytes" % (kind, key, MAX_RECORD_BYTES))
    return body


def decode(kind: str, key: str, raw: bytes) -> dict[str, Any] | None:
    """The record's data; None while it is being written (empty or all zeros). ValueError when it is not ours."""
    raw = raw.rstrip(b"\0")
    if not raw.strip():
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a JSON record (%s)" % exc) from None
    if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("key") != key or not isinstance(doc.get("data"), dict):
        raise ValueError("not an entropy.cluster %s record for %r" % (kind, key))
    return doc["data"]


class Record:
    """One record read from the store: its data (None while being written) and the volume's file times."""

    def __init__(self, kind: str, key: str, data: dict[str, Any] | None, mtime: float | None) -> None:
        self.kind = kind
        self.key = key
        self.data = data
        self.mtime = mtime

    @property
    def pending(self) -> bool:
        return self.data is None


class ClusterStore:
    """Records in one storage pool, reached through the first of ``uris`` that answers.

    ``connect`` opens a connection (default: libvirt_common.open_connection with the given credentials).
    Use as a context manager so that the connection is closed.
    """

    def __init__(self, uris: Iterable[str], pool: str = DEFAULT_POOL, username: str | None = None,
                 password: str | None = None, connect: Callable | None = None, connect_timeout: float | None = None) -> None:
        self.uris = [u for u in uris if u]
        self.pool_name = pool
        self._connect = connect or (lambda uri: open_connection(uri, username, password, connect_timeout=connect_timeout))
        self.conn = None
        self.pool = None
        self.via: str | None = None
        self.unreachable: list[str] = []

    # ------------------------------------------------------------------ connection

    def __enter__(self) -> "ClusterStore":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        if not self.uris:
            raise StoreError("the cluster store (pool %r) needs at least one hypervisor URI" % self.pool_name, kind="config")
        if libvirt is None:
            raise StoreError("the Python module 'libvirt' (libvirt-python) is not installed: pip install libvirt-python",
                             kind="missing_library")
        problems = []
        for uri in self.uris:
            try:
                conn = self._connect(uri)
            except EntropyLibvirtError as exc:
                problems.append(exc.message)
                self.unreachable.append(uri)
                continue
            try:
                pool = conn.storagePoolLookupByName(self.pool_name)
                if not pool.isActive():
                    raise StoreError("the storage pool %r is defined on %s but not active (virsh pool-start %s)"
                                     % (self.pool_name, uri, self.pool_name), kind="config")
                pool.refresh(0)  # volumes created or removed through other hypervisors
            except (libvirt.libvirtError, StoreError) as exc:
                close_quietly(conn)
                problems.append(exc.message if isinstance(exc, StoreError) else describe_error(exc, "opening storage pool %r" % self.pool_name, uri).message)
                continue
            self.conn, self.pool, self.via = conn, pool, uri
            return
        raise StoreError(
            "the cluster store (storage pool %r on the shared storage) is not reachable through any hypervisor: %s. "
            "Define the pool on every hypervisor over the same shared directory (see docs/playbooks.md, \"The cluster store\")"
            % (self.pool_name, "; ".join(problems)), kind="unreachable")

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = self.pool = None

    def _fail(self, exc: Exception, action: str) -> StoreError:
        err = describe_error(exc, action, self.via)
        return StoreError(err.message, kind=err.kind, libvirt_code=err.libvirt_code)

    # ------------------------------------------------------------------ records

    def create(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        """Create record (kind, key) atomically; False (nothing written) when it already exists."""
        name = volume_name(kind, key)
        body = encode(kind, key, data)
        xml = ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='raw'/>"
               "<permissions><mode>0600</mode></permissions></target></volume>" % (name, len(body)))
        try:
            vol = self.pool.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            if self._exists_error(exc):
                return False
            raise self._fail(exc, "creating store record %s in pool %r" % (name, self.pool_name)) from None
        try:
            stream = self.conn.newStream(0)
            vol.upload(stream, 0, len(body), 0)
            stream.send(body)
            stream.finish()
        except libvirt.libvirtError as exc:
            try:
                vol.delete(0)  # ours: created a moment ago, never filled
            except libvirt.libvirtError:
                pass
            raise self._fail(exc, "writing store record %s in pool %r" % (name, self.pool_name)) from None
        return True

    @staticmethod
    def _exists_error(exc: Exception) -> bool:
        # Another job created it first: caught by libvirt's own check ("already exists") or by O_EXCL ("File exists").
        text = (exc.get_error_message() if hasattr(exc, "get_error_message") else str(exc)) or ""
        return exc.get_error_code() == libvirt.VIR_ERR_STORAGE_VOL_EXIST or "already exists" in text or "File exists" in text

    def _lookup(self, name: str):
        # A daemon lists only the volumes it saw at its last refresh: one created through another hypervisor
        # since then (the record that made our create fail, say) needs a refresh to be found.
        for attempt in (1, 2):
            try:
                return self.pool.storageVolLookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise self._fail(exc, "looking up store record %s in pool %r" % (name, self.pool_name)) from None
            if attempt == 1:
                try:
                    self.pool.refresh(0)
                except libvirt.libvirtError as exc:
                    raise self._fail(exc, "refreshing storage pool %r" % self.pool_name) from None
        return None

    def read(self, kind: str, key: str) -> Record | None:
        """Record (kind, key), None when there is none. StoreError when the volume holds something else."""
        name = volume_name(kind, key)
        vol = self._lookup(name)
        if vol is None:
            return None
        try:
            xml = vol.XMLDesc(0)
            stream = self.conn.newStream(0)
            vol.download(stream, 0, MAX_RECORD_BYTES, 0)
            chunks = []
            while True:
                chunk = stream.recv(MAX_RECORD_BYTES)
                if not chunk or not isinstance(chunk, bytes):
                    break
                chunks.append(chunk)
            stream.finish()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL or "No such file" in (exc.get_error_message() or ""):
                return None  # removed meanwhile
            raise self._fail(exc, "reading store record %s in pool %r" % (name, self.pool_name)) from None
        try:
            data = decode(kind, key, b"".join(chunks))
        except ValueError as exc:
            raise StoreError("the volume %s in pool %r is not an entropy.cluster store record (%s); remove it "
                             "(virsh vol-delete --pool %s %s) if no entropy.cluster job uses it"
                             % (name, self.pool_name, exc, self.pool_name, name), kind="corrupt") from None
        return Record(kind, key, data, _mtime(xml))

    def replace(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        """Write new data into the existing record (kind, key), in place (the volume grows when it must; a shorter
        body is padded with NULs, which the reader strips); False (nothing written) when there is no such record.
        Writers must be serialised by the caller (a job record changes only under its job's own steps)."""
        name = volume_name(kind, key)
        body = encode(kind, key, data)
        vol = self._lookup(name)
        if vol is None:
            return False
        try:
            capacity = vol.info()[1]
            if capacity < len(body):  # whole blocks: libvirt refuses a size below the file's allocation
                capacity = -(-len(body) // 4096) * 4096
                vol.resize(capacity, 0)
            padded = body + b"\0" * (capacity - len(body))
            stream = self.conn.newStream(0)
            vol.upload(stream, 0, len(padded), 0)
            stream.send(padded)
            stream.finish()
        except libvirt.libvirtError as exc:
            raise self._fail(exc, "rewriting store record %s in pool %r" % (name, self.pool_name)) from None
        return True

    def delete(self, kind: str, key: str) -> bool:
        """Remove record (kind, key); False when there was none."""
        name = volume_name(kind, key)
        vol = self._lookup(name)
        if vol is None:
            return False
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL or "No such file" in (exc.get_error_message() or ""):
                return False
            raise self._fail(exc, "removing store record %s in pool %r" % (name, self.pool_name)) from None
        return True

    def keys(self, kind: str) -> list[str]:
        """Keys of the records of one kind."""
        try:
            self.pool.refresh(0)
            names = self.pool.listVolumes()
        except libvirt.libvirtError as exc:
            raise self._fail(exc, "listing storage pool %r" % self.pool_name) from None
        found = [key_of(n) for n in names]
        return sorted(k[1] for k in found if k is not None and k[0] == kind)

    def read_all(self, kind: str) -> dict[str, Record]:
        records = {}
        for key in self.keys(kind):
            record = self.read(kind, key)
            if record is not None:
                records[key] = record
        return records


def _mtime(xml: str) -> float | None:
    try:
        text = ET.fromstring(xml).findtext("target/timestamps/mtime")
        return float(text) if text else None
    except (ET.ParseError, ValueError):
        return None


def now() -> float:
    return time.time()
