# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed of a job VM (private: names may change between releases).

A job VM learns who it is and what to do from a cloud-init NoCloud seed: an ISO 9660 volume labelled
``cidata`` holding ``meta-data`` (instance id, hostname) and ``user-data`` (a ``#cloud-config``: the
owner's SSH key, the NFS share mounted on /mnt/entropy-share, the job's command run by ``runcmd``,
its output and exit status written into the share). A guest without cloud-init (the lab's minimal
guest: busybox, no YAML parser) reads the same values from plain files of the same volume, under
``entropy-job/``: ``vm-name``, ``hostname``, ``authorized_keys``, ``command``, ``nfs-server``,
``nfs-path``. One function builds both from one ``JobSeed``, so they cannot disagree.

Tenant data (VM name, owner's key, command, share path) is data only: the YAML is written by a YAML
dumper (or, without PyYAML, as JSON, which is YAML), never by string formatting; in ``runcmd`` the
values are arguments of a fixed script, never part of its text; nothing goes through a template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils._storage import active_pool, find_volume

try:
    import pycdlib

    HAS_PYCDLIB = True
    PYCDLIB_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the module with missing_required_lib
    pycdlib = None
    HAS_PYCDLIB = False
    PYCDLIB_IMPORT_ERROR = _exc

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - JSON is YAML: the seed is still valid
    yaml = None
    HAS_YAML = False

SEED_LABEL = "cidata"
SHARE_MOUNTPOINT = "/mnt/entropy-share"
PLAIN_DIR = "entropy-job"
PLAIN_FILES = ("vm-name", "hostname", "authorized_keys", "command", "nfs-server", "nfs-path")
# The script cloud-init's runcmd runs: the values come as its arguments ($1 share, $2 VM name, $3 command),
# never inside its text. The command's output goes to "<vm name>.out" in the share, its exit status to
# "<vm name>.exit" (written last: its presence says the command ended).
RUN_SCRIPT = ('cd "$1" && { sh -c "$3" > "$1/$2.out" 2>&1; echo $? > "$1/.$2.exit.tmp"; '
              'mv -f "$1/.$2.exit.tmp" "$1/$2.exit"; }')
_ADDRESS = re.compile(r"^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$")
_SSH_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$")


class SeedError(ValueError):
    """A value that cannot go into a seed; the message names it and the fix."""


@dataclasses.dataclass(frozen=True)
class JobSeed:
    """What one job VM is told: its name, the owner's key, the command and the NFS share (server, path)."""

    vm_name: str
    ssh_key: str
    command: str
    nfs_server: str
    nfs_path: str
    hostname: str = ""
    # A static IPv4 address with its prefix (10.77.0.200/24), for a warm clone that should not wait for DHCP; empty: DHCP.
    address: str = ""
    # The VM's MAC address (52:54:00:12:34:56): a warm clone sets it on its NIC at once instead of probing the NIC again.
    mac: str = ""

    def __post_init__(self) -> None:
        for field in ("vm_name", "ssh_key", "command", "nfs_server", "nfs_path"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise SeedError("job seed: %s must be a non-empty string (got %r)" % (field, value))
            if "\0" in value:
                raise SeedError("job seed: %s contains a NUL character: remove it" % field)
        if "/" in self.vm_name or "\n" in self.vm_name or self.vm_name in (".", ".."):
            raise SeedError("job seed: vm_name %r cannot name a file in the share (no '/', no newline, not . or ..): rename the VM"
                            % self.vm_name)
        if not _SSH_KEY.match(self.ssh_key.strip()):
            raise SeedError("job seed for %r: ssh_key must be one SSH public key line (ssh-ed25519 AAAA... comment)" % self.vm_name)
        if not self.nfs_path.startswith("/"):
            raise SeedError("job seed for %r: nfs_path must be absolute (got %r)" % (self.vm_name, self.nfs_path))
        if not re.match(r"^[A-Za-z0-9.:-]+$", self.nfs_server):
            raise SeedError("job seed for %r: nfs_server must be a host name or an address (got %r)" % (self.vm_name, self.nfs_server))
        if not self.hostname:
            object.__setattr__(self, "hostname", hostname_for(self.vm_name))
        if self.address and not _ADDRESS.fullmatch(self.address):
            raise SeedError("job seed for %r: address must be an IPv4 address with its prefix, like 10.77.0.200/24 (got %r)"
                            % (self.vm_name, self.address))
        if self.mac and not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", self.mac):
            raise SeedError("job seed for %r: mac must be six lower-case hex bytes like 52:54:00:12:34:56 (got %r)" % (self.vm_name, self.mac))

    @property
    def instance_id(self) -> str:
        """Stable per content: cloud-init runs its per-instance modules again when the seed changes."""
        fields = dataclasses.asdict(self)
        for name in ("address", "mac"):  # the id of a seed without them is what it was before these fields existed
            if not fields[name]:
                del fields[name]
        return "entropy-" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def hostname_for(vm_name: str) -> str:
    """A valid host name (RFC 1123 label) for a VM name that may hold anything: lower case letters, digits and '-'."""
    label = re.sub(r"[^a-z0-9]+", "-", vm_name.lower()).strip("-")[:63].strip("-")
    return label or "entropy-job"


def dump_yaml(data: dict) -> str:
    """YAML by a dumper (PyYAML's safe dumper), or JSON (a subset of YAML) when PyYAML is missing."""
    if HAS_YAML:
        return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True, width=1 << 16)
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def fstab_escape(text: str) -> str:
    """A field of /etc/fstab (where cloud-init writes ``mounts``): blanks and backslashes as octal escapes."""
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def meta_data(seed: JobSeed) -> str:
    return dump_yaml({"instance-id": seed.instance_id, "local-hostname": seed.hostname})


def user_data(seed: JobSeed) -> str:
    source = fstab_escape("%s:%s" % (seed.nfs_server, seed.nfs_path))
    config = {
        "hostname": seed.hostname,
        "ssh_authorized_keys": [seed.ssh_key.strip()],
        "mounts": [[source, SHARE_MOUNTPOINT, "nfs4", "vers=4.1,_netdev", "0", "0"]],
        "runcmd": [["sh", "-c", RUN_SCRIPT, "entropy-job", SHARE_MOUNTPOINT, seed.vm_name, seed.command]],
    }
    return "#cloud-config\n" + dump_yaml(config)


def plain_files(seed: JobSeed) -> dict[str, str]:
    """The same values as plain files, for a guest without cloud-init."""
    files = {"vm-name": seed.vm_name, "hostname": seed.hostname, "authorized_keys": seed.ssh_key.strip() + "\n",
             "command": seed.command, "nfs-server": seed.nfs_server, "nfs-path": seed.nfs_path}
    for name in ("address", "mac"):
        if getattr(seed, name):
            files[name] = getattr(seed, name)
    return files


def seed_files(seed: JobSeed) -> dict[str, bytes]:
    """Path in the volume -> content, for every file of the seed."""
    files = {"meta-data": meta_data(seed).encode(), "user-data": user_data(seed).encode()}
    for name, text in plain_files(seed).items():
        files[PLAIN_DIR + "/" + name] = text.encode()
    return files


def build_seed_image(seed: JobSeed) -> bytes:
    """The seed volume: ISO 9660 with Rock Ridge and Joliet names, volume label ``cidata``."""
    if not HAS_PYCDLIB:
        raise SeedError("building a job seed needs the Python library pycdlib (pip install pycdlib)")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=SEED_LABEL, joliet=3, rock_ridge="1.09")
    iso.add_directory("/D1", rr_name=PLAIN_DIR, joliet_path="/" + PLAIN_DIR)
    for index, (path, data) in enumerate(sorted(seed_files(seed).items()), start=1):
        name = path.rsplit("/", 1)[-1]
        iso_path = ("/D1/F%d.;1" % index) if "/" in path else ("/F%d.;1" % index)
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=name, joliet_path="/" + path)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed_image(data: bytes) -> dict[str, bytes]:
    """The files of a seed volume (by their Joliet paths): to compare a volume with what it should hold."""
    if not HAS_PYCDLIB:
        raise SeedError("reading a job seed needs the Python library pycdlib (pip install pycdlib)")
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    files: dict[str, bytes] = {}
    try:
        for dirname, _dirs, names in iso.walk(joliet_path="/"):
            for name in names:
                path = dirname.rstrip("/") + "/" + name
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, joliet_path=path)
                files[path.lstrip("/")] = out.getvalue()
    finally:
        iso.close()
    return files


def seed_disk_xml(path: str, target: str = "vdz") -> str:
    """The domain's disk element for a seed volume: a read-only raw virtio disk (the path escaped by ElementTree)."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    ET.SubElement(disk, "readonly")
    return ET.tostring(disk, encoding="unicode")


def seed_from_params(params: t.Mapping) -> JobSeed:
    return JobSeed(vm_name=params["vm_name"], ssh_key=params["ssh_key"], command=params["command"], nfs_server=params["nfs_server"],
                   nfs_path=params["nfs_path"], hostname=params.get("hostname") or "")


# --------------------------------------------------------------------------- entropy.cluster.job_seed

def _target_names(root) -> set:
    return {target.get("dev") for target in root.iter("target") if target.get("dev")}


class JobSeedVolume:
    """entropy.cluster.job_seed: a job VM's seed volume in a libvirt storage pool, present (with this content) or absent,
    optionally attached to a defined domain (its persistent definition: the guest reads the seed when it boots)."""

    def __init__(self, module, libvirt) -> None:
        self.module = module
        self.libvirt = libvirt
        self.params = module.params
        self.name: str = self.params["name"]
        self.pool_name: str = self.params["pool"]
        self.uri: str = module.uri

    def fail(self, msg: str, kind: str) -> t.NoReturn:
        self.module.fail(msg, kind, uri=self.uri)

    def lookup_pool(self, conn):
        return active_pool(conn, self.pool_name, self.uri, self.fail)

    def lookup_volume(self, pool):
        return find_volume(pool, self.name)

    def lookup_domain(self, conn):
        name = self.params.get("domain")
        if not name:
            return None
        try:
            return conn.lookupByName(name)
        except self.libvirt.libvirtError as exc:
            if exc.get_error_code() == self.libvirt.VIR_ERR_NO_DOMAIN:
                self.fail("job_seed %r: domain %r is not defined on %s: define the VM first, or leave out domain." % (self.name, name, self.uri),
                          "no_domain")
            raise

    @staticmethod
    def read_volume(conn, vol) -> bytes:
        size = vol.info()[1]
        stream = conn.newStream(0)
        vol.download(stream, 0, size, 0)
        chunks = []
        while True:
            data = stream.recv(1 << 18)
            if not data:
                break
            chunks.append(data)
        stream.finish()
        return b"".join(chunks)

    def write_volume(self, conn, pool, image: bytes):
        import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = self.name
        ET.SubElement(vol, "capacity", unit="bytes").text = str(len(image))
        ET.SubElement(ET.SubElement(vol, "target"), "format", type="raw")
        created = pool.createXML(ET.tostring(vol, encoding="unicode"), 0)
        stream = conn.newStream(0)
        created.upload(stream, 0, len(image), 0)
        view = memoryview(image)
        while view:
            sent = stream.send(bytes(view[:1 << 18]))
            view = view[sent:]
        stream.finish()
        return created

    def attached(self, dom, path: str) -> bool:
        import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

        root = ET.fromstring(dom.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE))
        return any(source.get("file") == path for source in root.iter("source"))

    def attach(self, dom, path: str) -> None:
        import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

        used = _target_names(ET.fromstring(dom.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE)))
        target = next(("vd" + letter for letter in "zyxwvutsrq" if "vd" + letter not in used), None)
        if target is None:
            self.fail("job_seed %r: domain %r has no free virtio disk name (vdq..vdz) for the seed." % (self.name, dom.name()), "no_target")
        dom.attachDeviceFlags(seed_disk_xml(path, target), self.libvirt.VIR_DOMAIN_AFFECT_CONFIG)

    def run(self) -> t.NoReturn:
        conn = self.module.connect()
        pool = self.lookup_pool(conn)
        vol = self.lookup_volume(pool)
        dom = self.lookup_domain(conn)
        self.module.result.update(uri=self.uri, pool=self.pool_name, name=self.name)
        before = None
        if vol is not None:
            try:
                before = {k: v.decode(errors="replace") for k, v in read_seed_image(self.read_volume(conn, vol)).items()}
            except Exception:  # pylint: disable=broad-except
                before = {"(not a seed volume)": ""}
        if self.params["state"] == "absent":
            if vol is None:
                self.module.exit(state="absent")
            path = vol.path()
            self.module.result["changed"] = True
            self.module.set_diff(dict(files=before), dict(files=None))
            if not self.module.check_mode:
                vol.delete(0)
            self.module.exit(state="absent", path=path)
        try:
            seed = seed_from_params(self.params)
            files = seed_files(seed)
            image = build_seed_image(seed)
        except SeedError as exc:
            self.fail("job_seed %r: %s" % (self.name, exc), "invalid_argument")
        after = {k: v.decode() for k, v in files.items()}
        result = dict(state="present", hostname=seed.hostname, instance_id=seed.instance_id, files=sorted(files))
        if before != after:
            self.module.result["changed"] = True
            self.module.set_diff(dict(files=before), dict(files=after))
            if not self.module.check_mode:
                if vol is not None:
                    vol.delete(0)
                vol = self.write_volume(conn, pool, image)
        path = vol.path() if vol is not None else None
        if dom is not None and (path is None or not self.attached(dom, path)):
            self.module.result["changed"] = True
            if not self.module.check_mode:
                self.attach(dom, path)
            result["attached_to"] = dom.name()
        elif dom is not None:
            result["attached_to"] = dom.name()
        self.module.exit(path=path, **result)
