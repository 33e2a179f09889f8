# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm clones on the lab (module_utils/_warm_clone.py): a base VM booted once and saved; three clones restored from
copies of its image, each with its own name, UUID, MAC and qcow2 overlay over the base's disk, on three lab hosts.
Each runs at once with the base's memory (its tick counter at least where the base's was at the save: no boot)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt

from conftest import COLLECTIONS, LAB_TOOL

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.entropy.cluster.plugins.module_utils import _warm_clone as wc  # noqa: E402  pylint: disable=wrong-import-position

BASE = "warm-base"
CLONES = ["warm-clone-1", "warm \"clone\" {{ 2 }}", "warm-clone-3"]


def test_clones_restored_from_one_saved_image_run_with_their_own_identity(lab, tmp_path):
    hosts = sorted(lab.hosts)
    work = os.path.join(lab.dir, "warm-clone-test")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base_disk = os.path.join(work, "base.qcow2")
    try:
        lab.add_vm(BASE, hosts[0], LAB_TOOL.boot_sector(0.0), disk=base_disk)
        conn = lab.connect(hosts[0])
        try:
            dom = conn.lookupByName(BASE)
            deadline = time.monotonic() + 120
            while LAB_TOOL.read_tick_counter(dom) < 60 and time.monotonic() < deadline:  # about 3 s of guest time
                time.sleep(0.5)
            dom.suspend()  # the counter stops: every clone must show at least this many ticks
            ticks_at_save = LAB_TOOL.read_tick_counter(dom)
            dom.resume()
            image_path = os.path.join(work, "base.save")
            dom.save(image_path)
            assert not dom.isActive()  # the base stays shut off: its disk is frozen under the overlays
        finally:
            conn.close()
        assert ticks_at_save >= 60
        image = wc.read_save_image(image_path)
        assert image.version == 2 and image.compressed == 0 and "<name>%s</name>" % BASE in image.xml

        made = []
        for index, name in enumerate(CLONES):
            overlay = os.path.join(work, "clone-%d.qcow2" % index)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base_disk, "-F", "qcow2", overlay], check=True)
            identity = wc.CloneIdentity(name=name, uuid=str(uuid.uuid4()), macs=("52:54:00:77:00:%02x" % (index + 1),),
                                        disks={base_disk: overlay})
            clone_image = wc.write_clone_image(image, identity, os.path.join(work, "clone-%d.save" % index))
            host = hosts[index % len(hosts)]
            started = time.monotonic()
            conn = lab.connect(host)
            try:
                conn.restore(clone_image)
                restored_in = time.monotonic() - started
                clone = conn.lookupByName(name)
                assert clone.state()[0] == libvirt.VIR_DOMAIN_RUNNING, (name, clone.state())
                root = ET.fromstring(clone.XMLDesc(0))
                assert clone.UUIDString() == identity.uuid
                assert [m.get("address") for m in root.findall("devices/interface/mac")] == list(identity.macs)
                assert [s.get("file") for s in root.findall("devices/disk/source")] == [overlay]
                assert LAB_TOOL.read_tick_counter(clone) >= ticks_at_save, "clone %s booted instead of resuming the base's memory" % name
            finally:
                conn.close()
            made.append((name, host, restored_in))
        # every clone is its own VM, defined once, on its host
        placement = lab.placement()
        assert {name: placement[name] for name, _h, _t in made} == {name: [(host, "running")] for name, host, _t in made}
        assert BASE in placement and placement[BASE] == [(hosts[0], "shutoff")]
    finally:
        for name in CLONES + [BASE]:
            lab.remove_vm(name)
        shutil.rmtree(work, ignore_errors=True)


def test_warm_clones_of_the_os_guest_get_their_own_identity_after_the_restore(lab, playbook, tmp_path):
    """The lab's OS guest booted once without a seed and saved; entropy.cluster.warm_clone restores two clones of it on
    two other hosts (run twice: the second changes nothing) and hot-plugs each one's seed, which tells it its name, key,
    MAC and static address. Each runs the job's command without booting, with its own name, UUID, MAC, host name, key
    and address; state=absent removes them."""
    from ansible_collections.entropy.cluster.plugins.module_utils import _job_seed as js  # pylint: disable=import-outside-toplevel

    hosts = sorted(lab.hosts)
    work = os.path.join(lab.dir, "warm-os-test")
    share = os.path.join(lab.dir, "shares", "warm-os-test")
    for directory in (work, share):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    os.chown(share, LAB_TOOL.NFS_ANON_ID, LAB_TOOL.NFS_ANON_ID)
    base, console = "warm-os-base", os.path.join(work, "base.console")
    names = ["warm-os 'a' 1", "warm-os \"b\" 2"]
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk owner-%d@lab"

    def console_text(path):
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    clones = []
    try:
        xml = ET.fromstring(LAB_TOOL.job_guest_xml(base, console_log=console))
        ET.SubElement(xml.find("devices/interface"), "mac", address="52:54:00:77:01:01")
        conn = lab.connect(hosts[0])
        try:
            dom = conn.defineXML(ET.tostring(xml, encoding="unicode"))
            dom.create()
            deadline = time.monotonic() + 400
            while "entropy seed watch: watching" not in console_text(console) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert "entropy seed watch: watching" in console_text(console), "the base guest did not come up in 400 s"
            image_path = os.path.join(work, "base.save")
            dom.save(image_path)
        finally:
            conn.close()
        seeds = []
        for index, name in enumerate(names):
            mac = "52:54:00:77:01:%02x" % (index + 2)
            seed = js.JobSeed(vm_name=name, ssh_key=key % index, command="hostname; cat /root/.ssh/authorized_keys",
                              nfs_server=LAB_TOOL.nfs_address(lab.state), nfs_path=share,
                              address=LAB_TOOL.static_address(lab.state, index), mac=mac)
            path = os.path.join(work, "seed-%d.iso" % index)
            with open(path, "wb") as handle:
                handle.write(js.build_seed_image(seed))
            seeds.append(seed)
            clones.append({"name": name, "uri": lab.uri(hosts[index + 1]), "macs": [mac], "seed": path})
        out = str(tmp_path / "made.json")
        started = time.monotonic()
        made = playbook("warm_clone.yml", extra_vars=dict(uri=lab.uri(hosts[0]), base=base, image=image_path, clones=clones, state="present",
                                                          out=out))
        assert made.returncode == 0, made.stdout[-4000:]
        with open(out, encoding="utf-8") as handle:
            runs = json.load(handle)
        assert runs["first"]["changed"] and not runs["second"]["changed"]
        assert [c["state"] for c in runs["second"]["clones"]] == ["present", "present"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(os.path.exists(os.path.join(share, n + ".exit")) for n in names):
            time.sleep(0.5)
        took = time.monotonic() - started
        result = runs["first"]["clones"]
        uuids = [c["uuid"] for c in result]
        assert len(set(uuids)) == 2 and runs["first"]["base"] == base
        for index, (name, seed, clone) in enumerate(zip(names, seeds, result)):
            assert os.path.exists(os.path.join(share, name + ".exit")), "no result from warm clone %r in 300 s: %s" % (name, os.listdir(share))
            with open(os.path.join(share, name + ".out"), encoding="utf-8") as handle:
                assert handle.read() == "%s\n%s\n" % (seed.hostname, key % index)  # its own host name and owner's key
            conn = lab.connect(hosts[index + 1])
            try:
                dom = conn.lookupByName(name)
                root = ET.fromstring(dom.XMLDesc(0))
                assert dom.UUIDString() == clone["uuid"] and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
                assert [m.get("address") for m in root.findall("devices/interface/mac")] == clone["macs"]
            finally:
                conn.close()
            text = console_text("%s.%s" % (console, clone["uuid"]))  # the clone's own console log (the module renames it)
            # the guest's NIC took the clone's MAC and address, and the clone never booted (no boot line on its console)
            assert "entropy seed watch: NIC %s, %s" % (clone["macs"][0], seed.address) in text, text
            assert "entropy lab guest up" not in text, "clone %r booted instead of resuming the base's memory: %s" % (name, text)
        print("warm clones: 2 restored and their commands run in %.1f s" % took)
        gone = playbook("warm_clone.yml", extra_vars=dict(uri=lab.uri(hosts[0]), base=base, clones=clones, state="absent", out=out))
        assert gone.returncode == 0, gone.stdout[-4000:]
        placement = lab.placement()
        assert not any(name in placement for name in names) and placement[base] == [(hosts[0], "shutoff")]
    finally:
        for name in names + [base]:
            lab.remove_vm(name)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(share, ignore_errors=True)
