# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of the job modules (private: names may change between releases): a job's VMs and its record.

entropy.cluster.job_vm defines one VM of a job (a qcow2 linked clone of the job's base image, a domain whose
metadata names the job and its owner) or removes it with its overlay; entropy.cluster.job_record keeps the job's
record (state, VMs, hosts, times) in the cluster store; entropy.cluster.job_status reads the records and what
libvirt shows. Job, owner and VM names are tenant data: they go into XML as text nodes (escaped by ElementTree) and
into JSON records, never into a template or a shell.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils._linked_clone import volume_xml
from ansible_collections.entropy.cluster.plugins.module_utils._run_lock import iso, user_at_host
from ansible_collections.entropy.cluster.plugins.module_utils._storage import active_pool, find_volume
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt
from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore, StoreError, volume_name
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    open_connection,
)

STATES = ("queued", "running", "done", "cancelled", "failed")
FINAL = ("done", "cancelled", "failed")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def overlay_name(vm: str) -> str:
    """The overlay volume of a job VM: the name made safe for a file name, plus a digest of the exact name (two names
    that differ only in unsafe characters never share a volume)."""
    return "entropy-job-%s-%s.qcow2" % (_UNSAFE.sub("_", vm)[:48], hashlib.sha256(vm.encode("utf-8")).hexdigest()[:10])


def seed_name(vm: str) -> str:
    """The seed volume of a job VM (entropy.cluster.job_seed), named like its overlay: removed with it."""
    return overlay_name(vm)[:-len(".qcow2")] + ".seed.iso"


def domain_xml(params: dict, disk: str) -> str:
    """The definition of a job VM (every name a text node, escaped by ElementTree)."""
    dom = ET.Element("domain", type=params["domain_type"])
    ET.SubElement(dom, "name").text = params["name"]
    metadata = ET.SubElement(dom, "metadata")
    element = ET.fromstring(vm_metadata.render({"job": params["job"], "owner": params["owner"],
                                                "priority": params.get("priority")}))
    element.tag = "{%s}vm" % vm_metadata.NAMESPACE
    for child in element:
        child.tag = "{%s}%s" % (vm_metadata.NAMESPACE, child.tag)
    metadata.append(element)
    ET.SubElement(dom, "memory", unit="MiB").text = str(params["memory_mib"])
    ET.SubElement(dom, "currentMemory", unit="MiB").text = str(params["memory_mib"])
    ET.SubElement(dom, "vcpu").text = str(params["vcpus"])
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    if params.get("kernel"):  # direct kernel boot (the disk is still the job's linked clone)
        for option in ("kernel", "initrd", "cmdline"):
            if params.get(option):
                ET.SubElement(os_, option).text = params[option]
    else:
        ET.SubElement(os_, "boot", dev="hd")
    features = ET.SubElement(dom, "features")
    ET.SubElement(features, "acpi")
    if params["domain_type"] == "qemu":  # TCG: without a bounded translation cache QEMU 7.2 may grow to ~1 GB
        ET.SubElement(ET.SubElement(features, "tcg"), "tb-cache", unit="MiB").text = "32"
    ET.SubElement(dom, "clock", offset="utc")
    for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        ET.SubElement(dom, event).text = action
    devices = ET.SubElement(dom, "devices")
    disk_el = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk_el, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk_el, "source", file=disk)
    ET.SubElement(disk_el, "target", dev="vda", bus="virtio")
    if params.get("bridge"):
        nic = ET.SubElement(devices, "interface", type="bridge")
        ET.SubElement(nic, "source", bridge=params["bridge"])
        ET.SubElement(nic, "model", type="virtio")
    ET.SubElement(devices, "memballoon", model="virtio")
    return ET.tostring(dom, encoding="unicode")


def _lookup_domain(conn, name: str):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


class JobVM:
    """entropy.cluster.job_vm: one VM of a job, defined shut off on a hypervisor with its overlay (present), or gone
    with its overlay (absent). A VM of that name that is not the job's is never touched."""

    def __init__(self, module) -> None:
        self.module = module
        self.params = module.params
        self.name: str = self.params["name"]
        self.job: str = self.params["job"]
        self.uri: str = module.uri
        self.overlay = overlay_name(self.name)

    def fail(self, msg: str, kind: str) -> t.NoReturn:
        self.module.fail(msg, kind, uri=self.uri)

    def pool(self, conn):
        return active_pool(conn, self.params["pool"], self.uri, self.fail, missing=(
            "Storage pool %r for the overlays of job %r is not defined on %s: define it on every hypervisor over the shared "
            "image directory (entropy_job_pool)." % (self.params["pool"], self.job, self.uri)))

    def volume(self, pool):
        return find_volume(pool, self.overlay)

    def seed_volume(self, pool):
        return find_volume(pool, seed_name(self.name))

    def owned(self, dom) -> dict:
        """The job metadata of an existing domain; fails when the VM belongs to no job or to another one."""
        marks = vm_metadata.read(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), self.name, strict=False)
        if marks.get("job") != self.job:
            self.fail("VM %r on %s exists and is not part of job %r (its job: %r): it is left alone; choose another job name, "
                      "or cancel the job it belongs to" % (self.name, self.uri, self.job, marks.get("job")), "not_the_jobs")
        return marks

    def run(self) -> t.NoReturn:
        module, result = self.module, self.module.result
        conn = module.connect()
        dom = _lookup_domain(conn, self.name)
        pool = self.pool(conn)
        vol = self.volume(pool)
        seed = self.seed_volume(pool)
        result.update(name=self.name, job=self.job, uri=self.uri, overlay=self.overlay, seed=seed_name(self.name))
        before = {"defined": dom is not None, "active": bool(dom is not None and dom.isActive()), "overlay": vol is not None,
                  "seed": seed is not None}
        if dom is not None:
            self.owned(dom)
        if self.params["state"] == "absent":
            after = {"defined": False, "active": False, "overlay": False, "seed": False}
            result["changed"] = before != after
            if result["changed"] and not module.check_mode:
                if dom is not None:
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                for volume in (vol, seed):
                    if volume is not None:
                        volume.delete(0)
            module.set_diff(before, after)
            module.exit(state="absent")
        image = self.params["image"]
        if not image or not image.startswith("/"):
            self.fail("job %r: image must be the absolute path of the base image (got %r)" % (self.job, image), "invalid_argument")
        after = {"defined": True, "active": before["active"], "overlay": True, "seed": before["seed"]}
        result["changed"] = before != after
        if result["changed"] and not module.check_mode:
            if vol is None:
                try:
                    capacity = conn.storageVolLookupByPath(image).info()[1]
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                        self.fail("Base image %r of job %r is not a volume of any storage pool on %s: put it in the job pool's "
                                  "directory (and refresh the pool)." % (image, self.job, self.uri), "no_base")
                    raise
                vol = pool.createXML(volume_xml(self.overlay, image, capacity), 0)
            if dom is None:
                conn.defineXML(domain_xml(self.params, vol.path()))
        result["path"] = vol.path() if vol is not None else None
        module.set_diff(before, after)
        module.exit(state="present")


class JobStore:
    """The job records of the cluster store, reached through the first hypervisor that answers."""

    def __init__(self, params: dict) -> None:
        self.store = ClusterStore(params["uris"], params["pool"], params.get("auth_username"), params.get("auth_password"),
                                  connect_timeout=params.get("connect_timeout"))

    def __enter__(self) -> ClusterStore:
        self.store.open()
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


class JobRecord:
    """entropy.cluster.job_record: write a job's state (and its VMs, hosts, message) into its record."""

    def __init__(self, module) -> None:
        self.module = module
        self.params = module.params
        self.name: str = self.params["name"]

    def new_data(self, before: dict | None) -> dict:
        params, now = self.params, time.time()
        data = dict(before or {})
        data.update(name=self.name, state=params["state"], updated=now, updated_iso=iso(now), by=params["by"] or user_at_host())
        if before is None:
            data.update(submitted=now, submitted_iso=iso(now), history=[])
        for option, key in (("owner", "owner"), ("vms", "vms"), ("detail", "message"), ("job", "job"),
                            ("exit_statuses", "exit_statuses")):
            if params.get(option) is not None:
                data[key] = params[option]
        if params["state"] in FINAL and (before or {}).get("state") not in FINAL:
            data.update(ended=now, ended_iso=iso(now))
        if params["vms"] is not None:
            data["hosts"] = sorted({vm["host"] for vm in params["vms"] if vm.get("host")})
        if before is None or before.get("state") != params["state"]:
            data["history"] = list(data.get("history", [])) + [{"state": params["state"], "at_iso": iso(now)}]
        return data

    @staticmethod
    def same(before: dict | None, after: dict) -> bool:
        if before is None:
            return False
        keys = ("state", "owner", "vms", "message", "job", "exit_statuses")
        return all(before.get(k) == after.get(k) for k in keys)

    def run(self) -> t.NoReturn:
        module, params, result = self.module, self.params, self.module.result
        result.update(name=self.name, store={"pool": params["pool"], "volume": volume_name("job", self.name), "via": None})
        try:
            with JobStore(params) as store:
                result["store"]["via"] = store.via
                record = store.read("job", self.name)
                before = None if record is None else (record.data or {})
                if before is not None and before.get("state") in FINAL and params["state"] != before.get("state"):
                    module.fail("job %r is already %s (since %s): its record is final; submit under another job name"
                                % (self.name, before.get("state"), before.get("updated_iso")), "job_final", record=before)
                after = self.new_data(before)
                if self.same(before, after):
                    module.exit(record=before, previous=before)
                result["changed"] = True
                if not module.check_mode:
                    written = store.create("job", self.name, after) if before is None else store.replace("job", self.name, after)
                    if not written:
                        module.fail("job %r: its record changed while it was being written (another run of the same job?): run "
                                    "again" % self.name, "conflict")
        except StoreError as exc:
            module.fail("%s (job %s)" % (exc.message, self.name), exc.kind)
        module.set_diff({"state": None if before is None else before.get("state")}, {"state": after["state"]})
        module.exit(record=after, previous=before)


def _domains(uri: str, params: dict) -> list[dict]:
    """Every domain of one hypervisor that carries job metadata: [{name, job, owner, state, persistent}]."""
    conn = open_connection(uri, params.get("auth_username"), params.get("auth_password"), readonly=True,
                           connect_timeout=params.get("connect_timeout"))
    try:
        found = []
        for dom in conn.listAllDomains(0):
            try:
                marks = vm_metadata.read(dom.XMLDesc(0), dom.name(), strict=False)
            except ET.ParseError:
                continue
            if marks.get("job") is None:
                continue
            state = dom.state()[0]
            found.append({"name": dom.name(), "job": marks["job"], "owner": marks.get("owner"),
                          "state": {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
                                    libvirt.VIR_DOMAIN_SHUTOFF: "stopped"}.get(state, "other")})
        return found
    finally:
        close_quietly(conn)


def job_status(params: dict) -> dict:
    """{"jobs": [...], "unreachable": {host: error}} from the records and every hypervisor's domains."""
    wanted = params.get("name")
    with JobStore(params) as store:
        via = store.via
        if wanted is not None:
            record = store.read("job", wanted)
            records = {} if record is None else {wanted: record}
        else:
            records = store.read_all("job")
    seen: dict[str, list[dict]] = {}
    unreachable = {}
    for host, uri in sorted((params.get("hypervisors") or {}).items()):
        try:
            domains = _domains(uri, params)
        except (EntropyLibvirtError, libvirt.libvirtError) as exc:
            unreachable[host] = exc.message if isinstance(exc, EntropyLibvirtError) else describe_error(exc, "listing VMs", uri).message
            continue
        for entry in domains:
            if wanted is None or entry["job"] == wanted:
                seen.setdefault(entry["job"], []).append(dict(entry, host=host))
    jobs = []
    for name in sorted(set(records) | set(seen)):
        record = records.get(name)
        data = (record.data or {}) if record is not None else {}
        live = sorted(seen.get(name, []), key=lambda e: (e["name"], e["host"]))
        entry = {"name": name, "state": data.get("state", "unknown" if record is None else "being written"),
                 "owner": data.get("owner", live[0]["owner"] if live else None), "recorded": record is not None,
                 "submitted_iso": data.get("submitted_iso"), "updated_iso": data.get("updated_iso"),
                 "message": data.get("message"), "hosts": data.get("hosts", []),
                 "submitted": data.get("submitted"), "priority": (data.get("job") or {}).get("priority", 0),
                 "job": data.get("job"), "recorded_vms": [{"name": vm.get("name"), "host": vm.get("host")} for vm in data.get("vms") or []],
                 "exit_statuses": data.get("exit_statuses"), "ended_iso": data.get("ended_iso"), "queue_position": None,
                 "vms": [{"name": e["name"], "host": e["host"], "state": e["state"]} for e in live],
                 "problems": []}
        planned = {vm.get("name") for vm in data.get("vms") or []}
        running = {e["name"] for e in live if e["state"] in ("running", "paused")}
        if entry["state"] == "running":
            entry["problems"] += ["VM %r of the record runs nowhere" % vm for vm in sorted(planned - running)]
        if entry["state"] in FINAL:
            entry["problems"] += ["VM %r is still defined on %s though the job is %s" % (e["name"], e["host"], entry["state"]) for e in live]
        if record is None:
            entry["problems"].append("job %r has VMs but no record in the cluster store" % name)
        jobs.append(entry)
    for position, entry in enumerate(queue_order(jobs), start=1):
        entry["queue_position"] = position
    return {"jobs": jobs, "unreachable": unreachable, "store": {"pool": params["pool"], "via": via}}


def queue_order(jobs: list[dict]) -> list[dict]:
    """The queued jobs (with their job file's fields in the record) in the order the queue tries them: highest priority
    first, then the earliest submitted, then by name."""
    queued = [e for e in jobs if e.get("state") == "queued" and e.get("job")]
    return sorted(queued, key=lambda e: (-int(e.get("priority") or 0), float(e.get("submitted") or 0), e["name"]))


# --------------------------------------------------------------------------- entropy.cluster.job_result

EXIT_SUFFIX = ".exit"  # what a job VM writes into the share when its command ends (entropy.cluster.job_seed): "<vm>.exit"
OUTPUT_SUFFIX = ".out"


def read_exit_status(share: str, vm: str) -> tuple[int | None, str | None]:
    """The exit status a VM's command left in the share, (None, None) while it has not ended, (None, problem) when the
    file is there but holds no exit status. The VM name is a file name (no '/', which job names cannot hold)."""
    if "/" in vm or vm in (".", ".."):
        return None, "VM name %r cannot name a file in the share" % vm
    path = os.path.join(share, vm + EXIT_SUFFIX)
    try:
        with open(path, "rb") as handle:
            text = handle.read(64)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, "cannot read %s: %s" % (path, exc.strerror)
    try:
        return int(text.decode("ascii").strip()), None
    except (UnicodeDecodeError, ValueError):
        return None, "%s holds %r, not an exit status" % (path, text[:20])


def job_outcome(job: str, vms: list[str], statuses: dict[str, int | None]) -> dict:
    """Whether the job's command has ended in all its VMs, and what the job's record becomes then: done (every exit
    status 0) or failed (naming the VMs and their statuses). A job with a VM still running its command has not ended."""
    waiting = [vm for vm in vms if statuses.get(vm) is None]
    if not vms or waiting:
        return {"ended": False, "state": "running",
                "detail": "job %r: the command still runs in %d of its %d VM(s) (%s)" % (
                    job, len(waiting), len(vms), ", ".join(repr(vm) for vm in waiting[:5]) + (", ..." if len(waiting) > 5 else ""))}
    failed = {vm: statuses[vm] for vm in vms if statuses[vm] != 0}
    if not failed:
        return {"ended": True, "state": "done", "detail": "the command ended with exit status 0 in all %d VM(s)" % len(vms)}
    return {"ended": True, "state": "failed",
            "detail": "the command failed in %d of %d VM(s): %s" % (len(failed), len(vms), ", ".join(
                "%r exit status %d" % (vm, status) for vm, status in sorted(failed.items())))}


class JobResult:
    """entropy.cluster.job_result: read what a job's command left in its share (each VM's exit status), read-only."""

    def __init__(self, module) -> None:
        self.module = module
        self.params = module.params

    def run(self) -> t.NoReturn:
        share, job, vms = self.params["share"], self.params["job"], self.params["vms"]
        self.module.result.update(job=job, share=share)
        if not share.startswith("/") or not os.path.isdir(share):
            self.module.fail("job %r: its share %r is not a directory on this host: run the module where the shares are seen "
                             "(entropy_job_share_host), at the paths the job files give" % (job, share), "no_share")
        statuses: dict[str, int | None] = {}
        problems = []
        for vm in vms:
            statuses[vm], problem = read_exit_status(share, vm)
            if problem:
                problems.append(problem)
        outcome = job_outcome(job, vms, statuses)
        self.module.exit(exit_statuses=statuses, problems=problems,
                         outputs={vm: os.path.join(share, vm + OUTPUT_SUFFIX) for vm in vms}, **outcome)
