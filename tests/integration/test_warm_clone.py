# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm clones on the lab (module_utils/_warm_clone.py): a base VM booted once and saved; three clones restored from
copies of its image, each with its own name, UUID, MAC and qcow2 overlay over the base's disk, on three lab hosts.
Each runs at once with the base's memory (its tick counter at least where the base's was at the save: no boot)."""

from __future__ import annotations

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


def test_warm_clone_of_the_os_guest_gets_its_identity_after_the_restore(lab, tmp_path):
    """The lab's OS guest booted once without a seed and saved; a clone restored from the image under a new name, UUID
    and MAC, then given its seed (hot-plugged: it never boots, so it cannot read one at boot). It takes its own MAC
    and lease, and runs the job's command, whose result appears in the share."""
    from ansible_collections.entropy.cluster.plugins.module_utils import _job_seed as js  # pylint: disable=import-outside-toplevel

    hosts = sorted(lab.hosts)
    work = os.path.join(lab.dir, "warm-os-test")
    share = os.path.join(lab.dir, "shares", "warm-os-test")
    for directory in (work, share):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    os.chown(share, LAB_TOOL.NFS_ANON_ID, LAB_TOOL.NFS_ANON_ID)
    base, clone = "warm-os-base", "warm-os-clone 'a' {{ 1 }}"
    base_mac, clone_mac = "52:54:00:77:01:01", "52:54:00:77:01:02"
    leases = os.path.join(lab.dir, "net", "dnsmasq.leases")

    def lease(mac):
        with open(leases, encoding="utf-8") as handle:
            return next((line.split()[2] for line in handle if line.split()[1:2] == [mac]), None)

    try:
        xml = ET.fromstring(LAB_TOOL.job_guest_xml(base))
        ET.SubElement(xml.find("devices/interface"), "mac", address=base_mac)
        conn = lab.connect(hosts[0])
        try:
            dom = conn.defineXML(ET.tostring(xml, encoding="unicode"))
            dom.create()
            deadline = time.monotonic() + 400
            while lease(base_mac) is None and time.monotonic() < deadline:
                time.sleep(1)
            assert lease(base_mac), "the base guest got no lease in 400 s"
            image_path = os.path.join(work, "base.save")
            dom.save(image_path)
        finally:
            conn.close()
        image = wc.read_save_image(image_path)
        clone_image = wc.write_clone_image(image, wc.CloneIdentity(name=clone, uuid=str(uuid.uuid4()), macs=(clone_mac,), disks={}),
                                           os.path.join(work, "clone.save"))
        seed = js.JobSeed(vm_name=clone, ssh_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk o@lab",
                          command="echo warm $(hostname)", nfs_server=lab.state["network"]["address"].split("/")[0], nfs_path=share)
        seed_path = os.path.join(work, "clone-seed.iso")
        with open(seed_path, "wb") as handle:
            handle.write(js.build_seed_image(seed))
        conn = lab.connect(hosts[1])
        try:
            started = time.monotonic()
            conn.restore(clone_image)
            restored = conn.lookupByName(clone)
            restored.attachDeviceFlags(js.seed_disk_xml(seed_path, "vda"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            exit_file = os.path.join(share, clone + ".exit")
            deadline = time.monotonic() + 300
            while not os.path.exists(exit_file) and time.monotonic() < deadline:
                time.sleep(0.5)
            took = time.monotonic() - started
            assert os.path.exists(exit_file), "no result from the warm clone in 300 s: %s" % os.listdir(share)
        finally:
            conn.close()
        with open(os.path.join(share, clone + ".out"), encoding="utf-8") as handle:
            assert handle.read() == "warm %s\n" % seed.hostname
        assert lease(clone_mac), "the clone did not ask for a lease with its own MAC"
        print("warm clone: restore to command result in %.1f s" % took)
    finally:
        for name in (clone, base):
            lab.remove_vm(name)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(share, ignore_errors=True)
