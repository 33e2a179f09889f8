# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_recover (private: names may change between releases): restart a fenced
hypervisor's VMs on the surviving hypervisors from their latest group checkpoint (entropy.cluster.vm_checkpoint).

1. assess: refuse unless the failed hypervisor is fenced (its record in the cluster store); read every surviving
   hypervisor (and the failed one when it answers again); the failed hypervisor's VMs are the VMs of the checkpoint
   manifests last seen there, plus the names the caller gives, that are active on no surviving hypervisor. Each one
   restarts from the newest checkpoint that holds it and whose files are all there; every other VM of that checkpoint's
   group rolls back with it (on its own hypervisor). A VM without a usable checkpoint is cold-booted from its newest disk
   (policy ``cold_boot``, when its definition is known: its record in the cluster store, written by entropy.cluster.vm_definitions,
   or a checkpoint manifest) or reported lost (policy ``report``). The store's records also name VMs never checkpointed.
2. restore, with the placement the solver chose for the lost VMs: for each group, every member at once, the surviving
   members destroyed first, is restored paused from its memory image onto a new qcow2 overlay over its frozen disk (the
   checkpoint's files stay untouched, so the checkpoint can be used again) and defined there with autostart off; the
   group resumes together once all are restored. Right before each
   restore the VM is checked to run nowhere: never two copies.
3. stale copies: when the fenced hypervisor answers again, its inactive definitions of VMs that now run elsewhere are
   removed, so nobody can start them there.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
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
from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils._checkpoint import _parallel, file_part
from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore
from ansible_collections.entropy.cluster.plugins.module_utils._definitions import read_records as read_definition_records

POLICIES = ("report", "cold_boot")


def read_manifests(directory: str) -> list[dict[str, t.Any]]:
    """Every checkpoint manifest of ``directory``, newest first; unreadable ones are skipped with a note."""
    found = []
    for path in glob.glob(os.path.join(directory, "*.checkpoint.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("vms"), dict) and isinstance(data.get("created"), (int, float)):
            data["manifest"] = path
            found.append(data)
    return sorted(found, key=lambda m: m["created"], reverse=True)


def usable(manifest: dict[str, t.Any]) -> str | None:
    """None when every file of the checkpoint is there (memory images, frozen disks), else what is missing."""
    for vm, entry in sorted(manifest["vms"].items()):
        files = [entry.get("memory_file")] + [d.get("frozen") for d in entry.get("disks", [])]
        missing = [f for f in files if not f or not os.path.exists(f)]
        if missing:
            return "VM %r: %s missing" % (vm, ", ".join(str(f) for f in missing))
    return None


def domain_facts(definition: str, name: str) -> dict[str, t.Any]:
    """vcpus, memory (MiB) and priority of a domain XML, for the solver's model."""
    root = ET.fromstring(definition)
    unit = (root.find("memory").get("unit") or "KiB") if root.find("memory") is not None else "KiB"
    amount = int(root.findtext("memory") or 0)
    scale = {"KiB": 1 / 1024, "k": 1 / 1024, "MiB": 1, "M": 1, "GiB": 1024, "G": 1024, "b": 1 / 1048576, "bytes": 1 / 1048576}
    priority = vm_metadata.read(definition, name, strict=False)["priority"]
    return {"vcpus": int(root.findtext("vcpu") or 1), "memory_mib": max(1, int(amount * scale.get(unit, 1 / 1024))),
            "priority": priority if isinstance(priority, int) else None}


class Recovery:
    """Assess and carry out the recovery of one fenced hypervisor."""

    def __init__(self, failed_host: str, hypervisors: t.Mapping[str, str], directory: str, policy: str,
                 extra_vms: t.Iterable[str] = (), pool: str = "entropy-cluster", username: str | None = None,
                 password: str | None = None, connect_timeout: float | None = None) -> None:
        self.failed = failed_host
        self.failed_uri = hypervisors[failed_host]
        self.survivors = {name: uri for name, uri in hypervisors.items() if name != failed_host}
        self.directory = directory
        self.policy = policy
        self.extra = sorted(set(extra_vms))
        self.pool = pool
        self.auth = (username, password)
        self.timeout = connect_timeout
        self.conns: dict[str, t.Any] = {}
        self.failed_conn = None
        self.unreachable: dict[str, str] = {}
        self.definitions: dict[str, dict[str, t.Any]] = {}
        self.started = time.time()

    # ------------------------------------------------------------------ reading

    def connect(self) -> None:
        for name, uri in sorted(self.survivors.items()):
            try:
                self.conns[name] = open_connection(uri, *self.auth, connect_timeout=self.timeout)
            except EntropyLibvirtError as exc:
                self.unreachable[name] = exc.message
        if not self.conns:
            raise EntropyLibvirtError("no surviving hypervisor answers (%s): nothing can be restarted"
                                      % "; ".join("%s: %s" % kv for kv in sorted(self.unreachable.items())), kind="unreachable")
        try:
            self.failed_conn = open_connection(self.failed_uri, *self.auth, connect_timeout=min(self.timeout or 5, 5))
        except EntropyLibvirtError:
            self.failed_conn = None  # fenced: not answering is expected

    def close(self) -> None:
        for conn in list(self.conns.values()) + [self.failed_conn]:
            close_quietly(conn)

    def fence_record(self) -> dict[str, t.Any] | None:
        """The failed hypervisor's fence record (None without one); also reads the VM definition records of the store
        (entropy.cluster.vm_definitions) into ``self.definitions``."""
        uris = [self.survivors[name] for name in sorted(self.conns)]
        with ClusterStore(uris, self.pool, *self.auth, connect_timeout=self.timeout) as store:
            record = store.read("fence", self.failed)
            self.definitions = read_definition_records(store) if record is not None else {}
        return None if record is None else (record.data or {})

    def live(self) -> dict[str, list[tuple[str, bool]]]:
        """VM name -> [(hypervisor, active)] on the surviving hypervisors that answer, and the failed one if it answers."""
        where: dict[str, list[tuple[str, bool]]] = {}
        conns = dict(self.conns)
        if self.failed_conn is not None:
            conns[self.failed] = self.failed_conn
        for host, conn in sorted(conns.items()):
            try:
                for dom in conn.listAllDomains():
                    where.setdefault(dom.name(), []).append((host, bool(dom.isActive())))
            except libvirt.libvirtError as exc:
                if host == self.failed:
                    continue
                raise describe_error(exc, "listing the VMs", self.survivors[host]) from None
        return where

    def assess(self) -> dict[str, t.Any]:
        """What the recovery will do; raises when it must not start."""
        fence = self.fence_record()
        if fence is None:
            raise EntropyLibvirtError(
                "hypervisor %s is not fenced (no fence record in the cluster store %s): its VMs may still run there, and a copy "
                "started elsewhere would run twice. Fence it first (playbook entropy.cluster.fence), then recover"
                % (self.failed, self.pool), kind="not_fenced")
        live = self.live()
        running_on_failed = sorted(vm for vm, places in live.items() if (self.failed, True) in places)
        if running_on_failed:
            raise EntropyLibvirtError(
                "hypervisor %s is fenced but answers and runs %s: nothing restarts while a copy may run there. Stop them (or "
                "fence the hypervisor again), then recover" % (self.failed, ", ".join(running_on_failed)), kind="not_fenced")
        active_elsewhere = {vm for vm, places in live.items() if any(active for host, active in places if host != self.failed)}
        manifests = read_manifests(self.directory)
        last_seen: dict[str, str] = {}
        for manifest in reversed(manifests):  # oldest first: the newest manifest's URI wins
            for vm, entry in manifest["vms"].items():
                last_seen[vm] = entry.get("uri", "")
        # the VMs the store's definition records place on the failed hypervisor (checkpointed or not)
        recorded_there = {vm for vm, rec in self.definitions.items() if rec.get("host") == self.failed or rec.get("uri") == self.failed_uri}
        lost = sorted({vm for vm, uri in last_seen.items() if uri == self.failed_uri} | recorded_there | set(self.extra))
        lost = [vm for vm in lost if vm not in active_elsewhere]
        groups: dict[str, dict[str, t.Any]] = {}
        report: dict[str, dict[str, t.Any]] = {}
        skipped: dict[str, str] = {}
        for vm in lost:
            if any(vm in g["manifest"]["vms"] for g in groups.values()):
                continue
            chosen = None
            for manifest in manifests:
                if vm not in manifest["vms"]:
                    continue
                missing = usable(manifest)
                if missing is None:
                    chosen = manifest
                    break
                skipped[manifest["checkpoint"]] = missing
            if chosen is not None:
                groups[chosen["checkpoint"]] = {"manifest": chosen, "lost": []}
                continue
            definition, source = self.newest_definition(vm, manifests)
            if self.policy == "cold_boot" and definition:
                report[vm] = {"action": "cold_boot", "checkpoint": None, "checkpoint_age_s": None, "definition": definition,
                              "definition_from": source,
                              "lost": "its memory state (no usable checkpoint): it boots again from its newest disk"}
            else:
                report[vm] = {"action": "lost", "checkpoint": None, "checkpoint_age_s": None, "host": None,
                              "lost": "everything: no usable checkpoint" + ("" if definition else " and no known definition")
                              + ("" if self.policy == "cold_boot" else " (policy report)")}
        for name, group in groups.items():
            manifest = group["manifest"]
            age = round(self.started - manifest["created"], 1)
            for vm, entry in sorted(manifest["vms"].items()):
                places = [host for host, active in live.get(vm, []) if active and host != self.failed]
                action = "restore" if not places else "roll_back"
                report[vm] = {"action": action, "checkpoint": name, "checkpoint_age_s": age, "from": places[0] if places else None,
                              "group": sorted(manifest["vms"]),
                              "lost": "its last %.0f s of run time (memory and disk since checkpoint %s)" % (age, name)}
                if action == "restore":
                    group["lost"].append(vm)
        to_place = {}
        for vm, entry in report.items():
            if entry["action"] in ("restore", "cold_boot"):
                definition = entry.get("definition") or groups[entry["checkpoint"]]["manifest"]["vms"][vm].get("definition")
                to_place[vm] = domain_facts(definition, vm) if definition else {"vcpus": 1, "memory_mib": 0, "priority": None}
        model_vms = [{"name": vm, "host": None, "state": "saved", "cpu": float(facts["vcpus"]), "vcpus": facts["vcpus"],
                      "memory_mib": facts["memory_mib"], **({"priority": facts["priority"]} if facts["priority"] is not None else {})}
                     for vm, facts in sorted(to_place.items())]
        stale = sorted(vm for vm, places in live.items() if (self.failed, False) in places and vm in active_elsewhere)
        return {"fence": fence, "vms": report, "to_place": to_place, "model_vms": model_vms,
                "groups": {n: g["manifest"]["manifest"] for n, g in groups.items()},
                "skipped_checkpoints": skipped, "stale_definitions": stale, "failed_host_answers": self.failed_conn is not None,
                "unreachable": self.unreachable}

    def newest_definition(self, vm: str, manifests: list[dict[str, t.Any]]) -> tuple[str | None, str | None]:
        """The newest known definition of ``vm`` and where it comes from: its record in the cluster store
        (entropy.cluster.vm_definitions) or the newest checkpoint manifest that holds it."""
        found = [(float(m["created"]), m["vms"][vm]["definition"], "checkpoint %s" % m["checkpoint"])
                 for m in manifests if m["vms"].get(vm, {}).get("definition")][:1]
        record = self.definitions.get(vm) or {}
        if record.get("definition"):
            found.append((float(record.get("recorded") or 0), record["definition"], "the cluster store (recorded on %s)" % record.get("host")))
        if not found:
            return None, None
        _when, definition, source = max(found, key=lambda f: f[0])
        return definition, source

    # ------------------------------------------------------------------ acting

    def _active_anywhere(self, vm: str) -> list[str]:
        return sorted(host for host, active in self.live().get(vm, []) if active)

    def failed_host_runs(self, vms: t.Iterable[str]) -> list[str]:
        """Which of ``vms`` the fenced hypervisor runs *now*: asked again each time (a fresh connection, bounded by the
        connect timeout), never taken from the assessment, since a "dead" hypervisor may come back during the recovery."""
        try:
            conn = open_connection(self.failed_uri, *self.auth, connect_timeout=min(self.timeout or 5, 5))
        except EntropyLibvirtError:
            return []  # fenced and silent, as expected
        try:
            return sorted(dom.name() for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) if dom.name() in set(vms))
        except libvirt.libvirtError as exc:
            raise EntropyLibvirtError("hypervisor %s answers again but could not list its VMs (%s): nothing more is restored while "
                                      "it may run them" % (self.failed, describe_error(exc, "listing the VMs", self.failed_uri).message),
                                      kind="conflict") from None
        finally:
            close_quietly(conn)

    def _refuse_if_back(self, vms: t.Iterable[str], what: str) -> None:
        back = self.failed_host_runs(vms)
        if back:
            raise EntropyLibvirtError(
                "hypervisor %s answers again and runs %s: %s not %s (never two copies). Fence it again (its power), then run the "
                "recovery again" % (self.failed, ", ".join(back), ", ".join(sorted(set(vms))), what), kind="conflict")

    def _restore_one(self, vm: str, entry: dict[str, t.Any], host: str, stamp: str) -> None:
        conn = self.conns[host]
        running = self._active_anywhere(vm)
        if running:
            raise EntropyLibvirtError("VM %r already runs on %s: not restored (never two copies)" % (vm, ", ".join(running)),
                                      kind="conflict")
        xml = conn.saveImageGetXMLDesc(entry["memory_file"], 0)
        root = ET.fromstring(xml)
        overlays = {}
        for disk in entry.get("disks", []):
            overlay = os.path.join(self.directory, "%s.%s.r%s.%s.qcow2" % (file_part(vm), entry["checkpoint"], stamp, disk["target"]))
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", _format(disk["frozen"]), "-b", disk["frozen"], overlay],
                           check=True, capture_output=True, text=True)
            overlays[disk["target"]] = overlay
        _point_disks(root, overlays)
        dxml = ET.tostring(root, encoding="unicode")
        flags = libvirt.VIR_DOMAIN_SAVE_PAUSED  # the group resumes together once every member is restored (carry_out)
        try:
            self._refuse_if_back([vm], "restored")  # right before this VM's restore: the fenced host may have come back
        except EntropyLibvirtError:
            for overlay in overlays.values():
                os.unlink(overlay)
            raise
        conn.restoreFlags(entry["memory_file"], dxml, flags)
        dom = conn.lookupByName(vm)
        definition = ET.fromstring(entry.get("definition") or dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        _point_disks(definition, overlays)
        conn.defineXML(ET.tostring(definition, encoding="unicode"))
        dom.setAutostart(0)

    def _cold_boot(self, vm: str, definition: str, host: str, stamp: str) -> None:
        conn = self.conns[host]
        running = self._active_anywhere(vm)
        if running:
            raise EntropyLibvirtError("VM %r already runs on %s: not booted (never two copies)" % (vm, ", ".join(running)), kind="conflict")
        root = ET.fromstring(definition)
        overlays = {}
        for disk in root.findall("devices/disk"):
            source = disk.find("source")
            if disk.get("device") in ("cdrom", "floppy") or source is None or not source.get("file"):
                continue
            newest = _newest_layer(self.directory, vm, disk.find("target").get("dev"), source.get("file"))
            overlay = os.path.join(self.directory, "%s.cold%s.%s.qcow2" % (file_part(vm), stamp, disk.find("target").get("dev")))
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", _format(newest), "-b", newest, overlay],
                           check=True, capture_output=True, text=True)
            overlays[disk.find("target").get("dev")] = overlay
        _point_disks(root, overlays)
        try:
            self._refuse_if_back([vm], "booted")
        except EntropyLibvirtError:
            for overlay in overlays.values():
                os.unlink(overlay)
            raise
        dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
        dom.setAutostart(0)
        dom.create()

    def carry_out(self, assessment: dict[str, t.Any], placement: t.Mapping[str, str]) -> dict[str, t.Any]:
        """Restore the groups and cold-boot the VMs, lost VMs where ``placement`` says; returns the report."""
        report = assessment["vms"]
        missing = sorted(vm for vm in assessment["to_place"] if placement.get(vm) not in self.conns)
        for vm in missing:
            report[vm].update(action="lost", host=None, lost="everything: no surviving hypervisor that answers was chosen for it "
                              "(placement gave %r)" % placement.get(vm))
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        problems = []
        for name, path in sorted(assessment["groups"].items()):
            with open(path, encoding="utf-8") as handle:
                manifest = json.load(handle)
            members = {vm: dict(entry, checkpoint=name) for vm, entry in manifest["vms"].items()}
            if any(report[vm]["action"] == "lost" for vm in members if vm in report):
                for vm in members:
                    if report.get(vm, {}).get("action") == "roll_back":
                        report[vm].update(action="kept", host=report[vm]["from"], lost="nothing: its group could not be restored")
                continue
            # the fenced host came back with a member running: the whole group stays as it is (its survivors keep running)
            try:
                self._refuse_if_back(members, "restored, and the group's other members keep running")
            except EntropyLibvirtError as exc:
                for vm in members:
                    if report.get(vm, {}).get("action") == "roll_back":
                        report[vm].update(action="kept", host=report[vm]["from"], done=False, error=exc.message,
                                          lost="nothing: its group could not be restored")
                    elif vm in report:
                        report[vm].update(host=None, done=False, error=exc.message)
                problems.append(exc.message)
                continue

            # the group rolls back together, every member at once: a surviving member stops, then is restored in place, while
            # the lost members are restored on their new hosts; all are restored paused and resumed together once every
            # member is back, so no member runs its checkpointed state beside another still running its later one
            def restore(vm: str) -> str:
                host = report[vm]["from"] if report[vm]["action"] == "roll_back" else placement[vm]
                began = time.monotonic()
                if report[vm]["action"] == "roll_back":
                    try:
                        self.conns[host].lookupByName(vm).destroy()
                    except libvirt.libvirtError as exc:
                        raise describe_error(exc, "stopping VM %r to roll it back" % vm, self.survivors[host]) from None
                stopped = time.monotonic()
                self._restore_one(vm, members[vm], host, stamp)
                report[vm]["seconds"] = {"stop": round(stopped - began, 2), "restore": round(time.monotonic() - stopped, 2)}
                return host

            def resume(vm: str) -> float:
                if members[vm].get("was_running", True):
                    self.conns[report[vm]["host"]].lookupByName(vm).resume()
                return time.time()

            order = sorted(members)
            restored = []
            for vm, (host, exc) in zip(order, _parallel(order, restore)):
                if exc is None:
                    report[vm].update(host=host)
                    restored.append(vm)
                    continue
                target = report[vm]["from"] or placement.get(vm)
                if isinstance(exc, EntropyLibvirtError):
                    message = exc.message
                elif isinstance(exc, libvirt.libvirtError):
                    message = describe_error(exc, "restoring VM %r" % vm, self.survivors.get(target, "")).message
                else:
                    message = "restoring VM %r: %s" % (vm, getattr(exc, "stderr", None) or exc)
                report[vm].update(host=None, done=False, error=message)
                problems.append(message)
            for vm, (at, exc) in zip(restored, _parallel(restored, resume)):
                if exc is None:
                    report[vm].update(done=True, restored_at=round(at, 2))
                else:
                    message = describe_error(exc, "resuming VM %r after its restore" % vm, self.survivors[report[vm]["host"]]).message
                    report[vm].update(done=False, error=message + " (it is restored, paused)")
                    problems.append(message)
        booting = [vm for vm, entry in sorted(report.items()) if entry["action"] == "cold_boot" and vm not in missing]
        for vm, (_res, exc) in zip(booting, _parallel(booting, lambda vm: self._cold_boot(vm, report[vm]["definition"], placement[vm], stamp))):
            if exc is None:
                report[vm].update(host=placement[vm], done=True, restored_at=round(time.time(), 2))
            else:
                message = exc.message if isinstance(exc, EntropyLibvirtError) else str(getattr(exc, "stderr", None) or exc)
                report[vm].update(host=None, done=False, error="cold boot of VM %r: %s" % (vm, message))
                problems.append(report[vm]["error"])
        for entry in report.values():
            entry.pop("definition", None)
        removed = self.remove_stale_copies()
        return {"vms": report, "problems": problems, "stale_definitions_removed": removed}

    def remove_stale_copies(self) -> list[str]:
        """The fenced hypervisor's inactive definitions of VMs that run elsewhere now, when it answers."""
        if self.failed_conn is None:
            return []
        removed = []
        live = self.live()
        for vm, places in sorted(live.items()):
            if (self.failed, False) in places and any(active for host, active in places if host != self.failed):
                try:
                    dom = self.failed_conn.lookupByName(vm)
                    dom.setAutostart(0)
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                    removed.append(vm)
                except libvirt.libvirtError:
                    continue
        return removed


def _format(path: str) -> str:
    with open(path, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


def _point_disks(root: ET.Element, overlays: t.Mapping[str, str]) -> None:
    """Point each file disk of a domain XML named in ``overlays`` (target -> file) at its new qcow2 overlay."""
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        if target is None or target.get("dev") not in overlays:
            continue
        source = disk.find("source")
        source.set("file", overlays[target.get("dev")])
        driver = disk.find("driver")
        if driver is None:
            driver = ET.SubElement(disk, "driver", name="qemu")
        driver.set("type", "qcow2")
        for backing in disk.findall("backingStore"):
            disk.remove(backing)


def _newest_layer(directory: str, vm: str, target: str, fallback: str) -> str:
    """The newest checkpoint overlay of one disk of ``vm`` (the disk it wrote last), else its own disk."""
    layers = glob.glob(os.path.join(directory, "%s.*.%s.qcow2" % (glob.escape(file_part(vm)), glob.escape(target))))
    return max(layers, key=os.path.getmtime) if layers else fallback


def check_params(params: t.Mapping[str, t.Any]) -> str | None:
    """One line naming what is wrong with the module's options, or None."""
    hypervisors = params["hypervisors"]
    if not hypervisors or any(not isinstance(uri, str) or not uri for uri in hypervisors.values()):
        return "hypervisors: give every hypervisor of the cluster as name: libvirt URI"
    if params["failed_host"] not in hypervisors:
        return "failed_host %r is not one of hypervisors (%s)" % (params["failed_host"], ", ".join(sorted(hypervisors)))
    if len(hypervisors) < 2:
        return "hypervisors: name the surviving hypervisors too, not only the failed one"
    if not os.path.isdir(params["directory"]):
        return "directory %s does not exist: give the checkpoint directory of entropy.cluster.vm_checkpoint" % params["directory"]
    for vm, host in (params["placement"] or {}).items():
        if host == params["failed_host"] or host not in hypervisors:
            return "placement: VM %r goes to %r, which is not a surviving hypervisor (%s)" % (
                vm, host, ", ".join(sorted(h for h in hypervisors if h != params["failed_host"])))
    return None
