# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_checkpoint (private: names may change between releases): a consistent
checkpoint of a group of VMs across hypervisors.

1. every VM of the group is paused, all at once (one thread per VM), and the spread between the first pause and
   the last (the skew) must stay under a bound, else all are resumed and nothing is captured;
2. only then is each VM captured: an external snapshot without libvirt metadata - its memory into a file, each
   disk frozen where it is, with a new qcow2 overlay on top that the VM writes from then on - all in the
   checkpoint directory, which every hypervisor must see;
3. only when every capture is done are the VMs resumed (those that were running).
So no VM of the group runs while another is being captured: messages in flight between them cannot be lost
between two VMs' states. A manifest (JSON) in the directory lists, per VM, its memory image and its frozen disks.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    libvirt,
    open_connection,
)

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def file_part(name: str) -> str:
    """A VM name as part of a file name: untrusted (tenant data), so anything unusual is hex-encoded."""
    return name if _SAFE.match(name) and not name.startswith("x-") else "x-" + name.encode("utf-8").hex()


def manifest_path(directory: str, checkpoint: str) -> str:
    return os.path.join(directory, "%s.checkpoint.json" % checkpoint)


def _parallel(items: list, work: t.Callable[[t.Any], t.Any]) -> list:
    """work(item) for every item at once, one thread each; returns [(result, exception)] in order."""
    out: list = [None] * len(items)

    def run(i: int, item: t.Any) -> None:
        try:
            out[i] = (work(item), None)
        except Exception as exc:  # pylint: disable=broad-except
            out[i] = (None, exc)

    threads = [threading.Thread(target=run, args=(i, item), daemon=True) for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


class Member:
    """One VM of the group during a checkpoint."""

    def __init__(self, name: str, uri: str) -> None:
        self.name = name
        self.uri = uri
        self.conn = None
        self.dom = None
        self.was_running = False
        self.paused_at: tuple[float, float] | None = None
        self.captured: tuple[float, float] | None = None
        self.resumed_at: float | None = None
        self.memory_file = ""
        self.disks: list[dict[str, str]] = []
        self.definition = ""  # the VM's persistent definition when captured: what a recovery restores or cold-boots

    def snapshot_xml(self, directory: str, checkpoint: str) -> str:
        """The external snapshot: memory to a file, each file disk frozen under a new overlay; other disks refused."""
        base = os.path.join(directory, "%s.%s" % (file_part(self.name), checkpoint))
        self.memory_file = base + ".mem"
        root = ET.Element("domainsnapshot")
        ET.SubElement(root, "name").text = checkpoint
        ET.SubElement(root, "memory", snapshot="external", file=self.memory_file)
        disks = ET.SubElement(root, "disks")
        for disk in ET.fromstring(self.dom.XMLDesc(0)).findall("devices/disk"):
            target = disk.find("target").get("dev")
            if disk.get("device") in ("cdrom", "floppy"):
                ET.SubElement(disks, "disk", name=target, snapshot="no")
                continue
            source = disk.find("source")
            if disk.get("type") != "file" or source is None or not source.get("file"):
                raise EntropyLibvirtError("VM %r: disk %s is not a file disk; vm_checkpoint captures file disks only (qcow2 or raw "
                                          "files on storage every hypervisor sees)" % (self.name, target), kind="unsupported")
            overlay = "%s.%s.qcow2" % (base, target)
            entry = ET.SubElement(disks, "disk", name=target, snapshot="external")
            ET.SubElement(entry, "driver", type="qcow2")
            ET.SubElement(entry, "source", file=overlay)
            self.disks.append({"target": target, "frozen": source.get("file"), "overlay": overlay})
        return ET.tostring(root, encoding="unicode")


class GroupCheckpoint:
    """A consistent checkpoint of ``vms`` (name -> hypervisor URI) into ``directory``."""

    def __init__(self, vms: t.Mapping[str, str], checkpoint: str, directory: str, max_skew_ms: float,
                 username: str | None = None, password: str | None = None, connect_timeout: float | None = None) -> None:
        self.members = [Member(name, uri) for name, uri in sorted(vms.items())]
        self.checkpoint = checkpoint
        self.directory = directory
        self.max_skew = max_skew_ms / 1000.0
        self.username = username
        self.password = password
        self.connect_timeout = connect_timeout

    def connect(self) -> None:
        for member in self.members:
            member.conn = open_connection(member.uri, self.username, self.password, connect_timeout=self.connect_timeout)
            try:
                member.dom = member.conn.lookupByName(member.name)
                state = member.dom.state()[0]
            except libvirt.libvirtError as exc:
                raise describe_error(exc, "looking up VM %r" % member.name, member.uri) from None
            if state not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED):
                raise EntropyLibvirtError("VM %r on %s is not running or paused; a checkpoint captures active VMs only (start it, or "
                                          "leave it out of the group)" % (member.name, member.uri), kind="operation_invalid")
            member.was_running = state == libvirt.VIR_DOMAIN_RUNNING
            member.definition = member.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    def close(self) -> None:
        for member in self.members:
            close_quietly(member.conn)

    def _resume(self, members: list[Member]) -> list[str]:
        def resume(member: Member) -> None:
            member.dom.resume()
            member.resumed_at = time.time()

        failures = []
        for member, (_res, exc) in zip(members, _parallel(members, resume)):
            if exc is not None:
                failures.append(describe_error(exc, "resuming VM %r" % member.name, member.uri).message)
        return failures

    def run(self) -> dict[str, t.Any]:
        """Pause all, capture all, resume all. Raises EntropyLibvirtError with the VMs resumed when a step fails."""
        running = [m for m in self.members if m.was_running]

        def pause(member: Member) -> None:
            started = time.time()
            member.dom.suspend()
            member.paused_at = (started, time.time())

        started = time.time()
        problems = [describe_error(exc, "pausing VM %r" % m.name, m.uri).message
                    for m, (_r, exc) in zip(running, _parallel(running, pause)) if exc is not None]
        paused = [m for m in running if m.paused_at is not None]
        all_paused = time.time()
        skew = (max(m.paused_at[1] for m in paused) - min(m.paused_at[0] for m in paused)) if paused else 0.0
        if not problems and skew > self.max_skew:
            problems.append("the group's VMs were paused over %.0f ms, more than max_skew_ms (%.0f)" % (skew * 1000, self.max_skew * 1000))
        if problems:
            problems += self._resume(paused)
            raise EntropyLibvirtError("checkpoint %r not taken, every VM of the group runs as before: %s"
                                      % (self.checkpoint, "; ".join(problems)), kind="checkpoint")

        def capture(member: Member) -> None:
            xml = member.snapshot_xml(self.directory, self.checkpoint)
            begun = time.time()
            member.dom.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
            member.captured = (begun, time.time())

        outcomes = _parallel(self.members, capture)
        problems = [describe_error(exc, "capturing VM %r" % m.name, m.uri).message
                    for m, (_r, exc) in zip(self.members, outcomes) if exc is not None]
        captured = time.time()
        problems += self._resume(running)
        if problems:
            raise EntropyLibvirtError("checkpoint %r failed (the VMs were resumed; the files of the VMs captured stay in %s): %s"
                                      % (self.checkpoint, self.directory, "; ".join(problems)), kind="checkpoint")
        resumed = time.time()
        vms = {}
        for member in self.members:
            sizes = {"memory_bytes": os.path.getsize(member.memory_file) if os.path.exists(member.memory_file) else None}
            vms[member.name] = {"uri": member.uri, "was_running": member.was_running, "memory_file": member.memory_file,
                                "disks": member.disks, "definition": member.definition, **sizes}
        manifest = {"format": 1, "checkpoint": self.checkpoint, "created": started, "vms": vms,
                    "pause_ms": round((resumed - started) * 1000, 1), "skew_ms": round(skew * 1000, 1)}
        with open(manifest_path(self.directory, self.checkpoint) + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
        os.replace(manifest_path(self.directory, self.checkpoint) + ".tmp", manifest_path(self.directory, self.checkpoint))
        manifest["timeline"] = {
            "paused_by": all_paused, "captures_from": min(m.captured[0] for m in self.members),
            "captured_by": captured, "resumes_from": min((m.resumed_at for m in running if m.resumed_at), default=None)}
        return manifest


# --------------------------------------------------------------------------- retention

def read_group_manifests(directory: str, vms: t.Iterable[str]) -> list[dict[str, t.Any]]:
    """The manifests of ``directory`` whose group is exactly ``vms``, oldest first (each with its path in "manifest")."""
    group = sorted(vms)
    found = []
    for name in os.listdir(directory):
        if not name.endswith(".checkpoint.json"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and sorted(data.get("vms") or {}) == group and isinstance(data.get("created"), (int, float)):
            data["manifest"] = path
            found.append(data)
    return sorted(found, key=lambda m: m["created"])


def _write_manifest(path: str, data: dict[str, t.Any]) -> None:
    data = {k: v for k, v in data.items() if k != "manifest"}
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _chain(dom, target: str) -> list[str]:
    """The files of one disk's chain in the running domain, the active layer first."""
    for disk in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk"):
        if disk.find("target") is None or disk.find("target").get("dev") != target:
            continue
        files, node = [], disk
        while node is not None:
            source = node.find("source")
            if source is None or not source.get("file"):
                break
            files.append(source.get("file"))
            node = node.find("backingStore")
        return files
    return []


class Retention:
    """Keep the newest ``keep`` checkpoints of a group; delete the others, oldest first, merging each deleted checkpoint's
    overlay back into the disk below it (libvirt block commit in the running VM), so the newer checkpoints stay whole."""

    def __init__(self, vms: t.Mapping[str, str], directory: str, keep: int, username: str | None = None,
                 password: str | None = None, connect_timeout: float | None = None) -> None:
        self.vms = dict(vms)
        self.directory = directory
        self.keep = keep
        self.auth = (username, password)
        self.timeout = connect_timeout

    def doomed(self) -> list[dict[str, t.Any]]:
        manifests = read_group_manifests(self.directory, self.vms)
        return manifests[:max(0, len(manifests) - self.keep)]

    def _check(self, doms: dict, manifest: dict[str, t.Any]) -> str | None:
        """Why this checkpoint's overlays cannot be merged back now (None when they can)."""
        for vm, entry in manifest["vms"].items():
            for disk in entry.get("disks", []):
                chain = _chain(doms[vm], disk["target"])
                if disk["overlay"] not in chain:
                    return "VM %r does not run on that checkpoint's overlay %s any more (restored from a checkpoint?)" % (vm, disk["overlay"])
                index = chain.index(disk["overlay"])
                if index == 0:
                    return "VM %r writes that checkpoint's overlay %s (no newer checkpoint)" % (vm, disk["overlay"])
                if index + 1 >= len(chain) or chain[index + 1] != disk["frozen"]:
                    return "VM %r: the disk under %s is not %s" % (vm, disk["overlay"], disk["frozen"])
        return None

    def delete(self, conns: dict, manifest: dict[str, t.Any]) -> None:
        """Merge each overlay of the checkpoint into its frozen disk (block commit), point newer manifests at the merged
        file, then remove the memory images, the overlays and the manifest."""
        for vm, entry in sorted(manifest["vms"].items()):
            dom = conns[vm].lookupByName(vm)
            for disk in entry.get("disks", []):
                dom.blockCommit(disk["target"], disk["frozen"], disk["overlay"], 0, 0)
                deadline = time.monotonic() + 600
                while dom.blockJobInfo(disk["target"], 0) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if disk["overlay"] in _chain(dom, disk["target"]):
                    raise EntropyLibvirtError("VM %r: merging %s into %s did not finish; the checkpoint %r is kept"
                                              % (vm, disk["overlay"], disk["frozen"], manifest["checkpoint"]), kind="checkpoint")
                for newer in read_group_manifests(self.directory, self.vms):
                    changed = False
                    for other in newer["vms"].get(vm, {}).get("disks", []):
                        if other["frozen"] == disk["overlay"]:
                            other["frozen"], changed = disk["frozen"], True
                    if changed:
                        _write_manifest(newer["manifest"], newer)
                os.unlink(disk["overlay"])
            if entry.get("memory_file") and os.path.exists(entry["memory_file"]):
                os.unlink(entry["memory_file"])
        os.unlink(manifest["manifest"])

    def run(self, check_mode: bool) -> tuple[list[str], list[str]]:
        """(checkpoints deleted or to delete in check mode, checkpoints kept past ``keep`` with why)."""
        doomed = self.doomed()
        if not doomed:
            return [], []
        conns, deleted, kept = {}, [], []
        try:
            for vm, uri in self.vms.items():
                conns[vm] = open_connection(uri, *self.auth, connect_timeout=self.timeout)
            doms = {}
            for vm, conn in conns.items():
                try:
                    doms[vm] = conn.lookupByName(vm)
                except libvirt.libvirtError as exc:
                    raise describe_error(exc, "looking up VM %r" % vm, self.vms[vm]) from None
            for manifest in doomed:
                why = self._check(doms, manifest)
                if why:
                    kept.append("%s: %s" % (manifest["checkpoint"], why))
                    continue
                if not check_mode:
                    try:
                        self.delete(conns, manifest)
                    except libvirt.libvirtError as exc:
                        raise describe_error(exc, "merging checkpoint %r back" % manifest["checkpoint"], "") from None
                deleted.append(manifest["checkpoint"])
        finally:
            for conn in conns.values():
                close_quietly(conn)
        return deleted, kept
