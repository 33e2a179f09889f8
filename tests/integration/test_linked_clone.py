# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.linked_clone on a real lab daemon: qcow2 clones whose backing file is the base image (nothing
copied), a VM boots from one, and state=absent removes them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import libvirt

from conftest import LAB_TOOL

POOL = "entropy-clone-test"


def test_linked_clones_of_a_base_image_boot_and_go_away(lab, playbook):
    host = sorted(lab.hosts)[0]
    pool_dir = os.path.join(lab.dir, "clone-test")
    shutil.rmtree(pool_dir, ignore_errors=True)
    os.makedirs(pool_dir)
    base = os.path.join(pool_dir, "base.qcow2")
    LAB_TOOL.write_boot_disk(base, LAB_TOOL.boot_sector(0.0))
    base_size = os.path.getsize(base)
    conn = lab.connect(host)
    pool = conn.storagePoolDefineXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (POOL, pool_dir), 0)
    vm = "clone-vm-1"
    try:
        pool.create(0)
        clones = ["job-1.qcow2", "job-2.qcow2", "job-3.qcow2"]
        made = playbook("linked_clone.yml", extra_vars=dict(uri=lab.uri(host), pool=POOL, base=base, clones=clones, state="present"))
        assert made.returncode == 0, made.stdout[-4000:]
        for name in clones:
            path = os.path.join(pool_dir, name)
            info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U", path], capture_output=True, text=True,
                                             check=True).stdout)
            assert info["format"] == "qcow2" and info["backing-filename"] == base, info
            assert os.path.getsize(path) < base_size, "%s is %d bytes, the base %d: not a linked clone" % (name, os.path.getsize(path), base_size)
        # a VM boots from a clone: its boot sector is the base's
        conn.defineXML(LAB_TOOL.domain_xml({"name": vm, "memory_mib": LAB_TOOL.VM_MEMORY_MIB, "disk": os.path.join(pool_dir, clones[0])})).create()
        time.sleep(2)
        dom = conn.lookupByName(vm)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        lab.remove_vm(vm)
        gone = playbook("linked_clone.yml", extra_vars=dict(uri=lab.uri(host), pool=POOL, base=base, clones=clones, state="absent"))
        assert gone.returncode == 0, gone.stdout[-4000:]
        assert sorted(os.listdir(pool_dir)) == ["base.qcow2"]
    finally:
        lab.remove_vm(vm)
        try:
            pool.destroy()
        except libvirt.libvirtError:
            pass
        pool.undefine()
        conn.close()
        shutil.rmtree(pool_dir, ignore_errors=True)
