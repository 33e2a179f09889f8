# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user's environment in a job VM, on the lab: entropy.cluster.job_seed makes a VM's cloud-init NoCloud seed and
attaches it; the lab's OS guest boots with it, installs the owner's key for its SSH server, mounts the owner's share
from the lab's NFS server (inside the lab's network namespace) and runs the job's command, whose output and exit
status appear in the share. The owner logs in over SSH with their key (from inside the lab's namespace); another key
is refused. A VM name with quotes, spaces, braces and $( ) survives literally, through Ansible, the seed and the
guest's shell, into the names of the result files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest
import yaml

from conftest import LAB_TOOL

POOL = "entropy-job-seed-test"
VM = "job \"q\" 'x' {{ lookup('pipe', 'id') }} $(id) -1"
COMMAND = "echo \"ran in $(hostname) as $(id -u)\"\necho '{{ x }}' > literal.txt\nexit 3"
RESULT_TIMEOUT_S = 420  # a TCG boot on a shared 2-core machine: about 30 s idle, minutes under heavy load


class Unsafe(str):
    """A string Ansible must not template: written with the !unsafe tag."""


yaml.SafeDumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def ssh_keypair(directory: str, name: str) -> tuple[str, str]:
    path = os.path.join(directory, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "owner@lab", "-f", path], check=True)
    with open(path + ".pub", encoding="utf-8") as handle:
        return path, handle.read().strip()


def guest_address(lab, dom, timeout: float = 120) -> str:
    """The VM's address from the lab's DHCP leases (by the MAC of its NIC)."""
    mac = ET.fromstring(dom.XMLDesc(0)).find("devices/interface/mac").get("address")
    leases = os.path.join(lab.dir, "net", "dnsmasq.leases")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(leases, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 3 and fields[1].lower() == mac.lower():
                    return fields[2]
        time.sleep(1)
    raise AssertionError("no DHCP lease for %s (%s) in %s" % (dom.name(), mac, leases))


def ssh(lab, key: str, address: str, *command: str) -> subprocess.CompletedProcess:
    """ssh into a lab guest from inside the lab's network namespace (the guests' network is there only)."""
    return subprocess.run(["ip", "netns", "exec", lab.state["network"]["netns"], "ssh", "-i", key, "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20",
                           "-o", "IdentitiesOnly=yes", "root@" + address, *command],
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture()
def seed_pool(lab):
    host = sorted(lab.hosts)[0]
    pool_dir = os.path.join(lab.dir, "job-seed-test")
    shutil.rmtree(pool_dir, ignore_errors=True)
    os.makedirs(pool_dir)
    conn = lab.connect(host)
    pool = conn.storagePoolDefineXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (POOL, pool_dir), 0)
    pool.create(0)
    yield host, pool_dir
    try:
        pool.destroy()
    except libvirt.libvirtError:
        pass
    pool.undefine()
    conn.close()
    shutil.rmtree(pool_dir, ignore_errors=True)


def test_job_vm_gets_key_share_and_command_from_its_seed(lab, playbook, seed_pool, tmp_path):
    host, pool_dir = seed_pool
    key, public = ssh_keypair(str(tmp_path), "owner")
    other_key, _other_public = ssh_keypair(str(tmp_path), "stranger")
    share = os.path.join(lab.dir, "shares", "job-guest-test")  # the lab's NFS export: <lab>/shares
    shutil.rmtree(share, ignore_errors=True)
    os.makedirs(share)
    os.chown(share, LAB_TOOL.NFS_ANON_ID, LAB_TOOL.NFS_ANON_ID)
    nfs_server = lab.state["network"]["address"].split("/")[0]
    # the lab's NFS server listens on the bridge address inside the lab's namespace, and nothing on the machine's network
    inside = subprocess.run(["ip", "netns", "exec", lab.state["network"]["netns"], "ss", "-Hltn"], capture_output=True, text=True, check=True)
    outside = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True)
    assert [line.split()[3] for line in inside.stdout.splitlines() if line.split()[3].endswith(":2049")] == ["[::ffff:%s]:2049" % nfs_server]
    assert not [line for line in outside.stdout.splitlines() if line.split()[3].endswith(":2049")], outside.stdout
    console_log = os.path.join(lab.dir, "job-guest-test.console.log")  # the guest's serial console, for a failure's story
    conn = lab.connect(host)
    try:
        conn.defineXML(LAB_TOOL.job_guest_xml(VM, console_log=console_log))
        made_file = str(tmp_path / "made.json")
        vars_file = tmp_path / "vars.yml"
        vars_file.write_text(yaml.safe_dump({
            "uri": lab.uri(host), "pool": POOL, "volume": Unsafe(VM + ".seed.iso"), "state": "present",
            "vm_name": Unsafe(VM), "ssh_key": Unsafe(public), "command": Unsafe(COMMAND), "nfs_server": nfs_server,
            "nfs_path": Unsafe(share), "domain": Unsafe(VM), "result_file": made_file}))
        made = playbook("job_seed.yml", extra_args=["-e", "@%s" % vars_file])
        assert made.returncode == 0, made.stdout[-4000:]
        with open(made_file, encoding="utf-8") as handle:
            result = json.load(handle)
        assert result["path"] == os.path.join(pool_dir, VM + ".seed.iso") and result["attached_to"] == VM
        disks = ET.fromstring(conn.lookupByName(VM).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findall("devices/disk")
        assert [d.find("source").get("file") for d in disks] == [result["path"]] and disks[0].find("readonly") is not None

        dom = conn.lookupByName(VM)
        dom.create()
        exit_file, out_file = os.path.join(share, VM + ".exit"), os.path.join(share, VM + ".out")
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while not os.path.exists(exit_file) and time.monotonic() < deadline:
            time.sleep(2)
        assert os.path.exists(exit_file), "no %s after %d s; in the share: %s" % (exit_file, RESULT_TIMEOUT_S, os.listdir(share))
        with open(exit_file, encoding="utf-8") as handle:
            assert handle.read() == "3\n"
        with open(out_file, encoding="utf-8") as handle:
            assert handle.read() == "ran in %s as 0\n" % result["hostname"]
        with open(os.path.join(share, "literal.txt"), encoding="utf-8") as handle:
            assert handle.read() == "{{ x }}\n"
        # written over NFS by the guest's root, squashed to the export's anonymous user on this machine
        assert os.stat(out_file).st_uid == LAB_TOOL.NFS_ANON_ID

        address = guest_address(lab, dom)
        login = ssh(lab, key, address, "hostname; grep -c ' /mnt/entropy-share nfs4 ' /proc/mounts; ls /mnt/entropy-share")
        assert login.returncode == 0, login.stderr
        hostname, mounts, *listing = login.stdout.splitlines()
        assert hostname == result["hostname"] and mounts == "1"
        assert sorted(listing) == sorted(os.listdir(share))
        refused = ssh(lab, other_key, address, "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, (refused.returncode, refused.stderr)
    finally:
        lab.remove_vm(VM)
        conn.close()
        shutil.rmtree(share, ignore_errors=True)
        if os.path.exists(console_log):
            os.unlink(console_log)
    gone = playbook("job_seed.yml", extra_vars={"uri": lab.uri(host), "pool": POOL, "state": "absent"},
                    extra_args=["-e", "@%s" % _write(tmp_path / "absent.yml", {"volume": Unsafe(VM + ".seed.iso")})])
    assert gone.returncode == 0, gone.stdout[-4000:]
    assert os.listdir(pool_dir) == []


def _write(path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)
