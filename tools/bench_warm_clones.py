# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cold boot against warm clones on the lab: time until a job's command has run in all N VMs.

cold: N job VMs (the lab's OS guest, each with its seed from module_utils/_job_seed.py) defined and started; the
clock runs from the first start until every VM's exit file is in the share.
warm: the OS guest booted once without a seed and saved (not timed: a template made ahead); the clock runs from the
first clone image written until every clone's exit file is in the share, each clone restored from its copy of the
image (module_utils/_warm_clone.py) under its own name, UUID and MAC, its seed hot-plugged after the restore.
VMs go round robin over the lab's hosts. Run on a lab (ENTROPY_LAB_DIR) with the project's venv:
  .venv/bin/python tools/bench_warm_clones.py --counts 1 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".tmp", "collections"))

import lab  # noqa: E402  pylint: disable=wrong-import-position
import libvirt  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.module_utils import _job_seed as js  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.module_utils import _warm_clone as wc  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk bench@lab"


def mac(kind: int, index: int) -> str:
    return "52:54:00:78:%02x:%02x" % (kind, index)


def wait_results(share: str, names: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(os.path.join(share, n + ".exit")) for n in names):
            return
        time.sleep(0.2)
    raise SystemExit("bench: not every VM ran its command within %d s: %s" % (timeout, sorted(os.listdir(share))))


def write_seed(work: str, share: str, state: dict, name: str) -> str:
    seed = js.JobSeed(vm_name=name, ssh_key=KEY, command="echo ran", nfs_server=lab.nfs_address(state), nfs_path=share)
    path = os.path.join(work, name + ".seed.iso")
    with open(path, "wb") as handle:
        handle.write(js.build_seed_image(seed))
    return path


def guest_xml(name: str, address: str, seed: str | None = None) -> str:
    root = ET.fromstring(lab.job_guest_xml(name, seed))
    ET.SubElement(root.find("devices/interface"), "mac", address=address)
    return ET.tostring(root, encoding="unicode")


def cold(state: dict, conns: list, work: str, share: str, count: int, timeout: float) -> float:
    names = ["bench-cold-%d" % i for i in range(count)]
    seeds = [write_seed(work, share, state, n) for n in names]
    doms = [conns[i % len(conns)].defineXML(guest_xml(n, mac(1, i), s)) for i, (n, s) in enumerate(zip(names, seeds))]
    started = time.monotonic()
    for dom in doms:
        dom.create()
    wait_results(share, names, timeout)
    return time.monotonic() - started


def warm(state: dict, conns: list, work: str, share: str, count: int, timeout: float) -> float:
    base = conns[0].defineXML(guest_xml("bench-warm-base", mac(2, 255)))
    base.create()
    deadline = time.monotonic() + timeout
    leases = os.path.join(state["dir"], "net", "dnsmasq.leases")
    while time.monotonic() < deadline:
        with open(leases, encoding="utf-8") as handle:
            if any(line.split()[1:2] == [mac(2, 255)] for line in handle):
                break
        time.sleep(0.5)
    image_path = os.path.join(work, "base.save")
    base.save(image_path)
    image = wc.read_save_image(image_path)
    names = ["bench-warm-%d" % i for i in range(count)]
    seeds = [write_seed(work, share, state, n) for n in names]
    started = time.monotonic()
    for i, (name, seed) in enumerate(zip(names, seeds)):
        clone = wc.write_clone_image(image, wc.CloneIdentity(name=name, uuid=str(uuid.uuid4()), macs=(mac(3, i),), disks={}),
                                     os.path.join(work, name + ".save"))
        conn = conns[i % len(conns)]
        conn.restore(clone)
        conn.lookupByName(name).attachDeviceFlags(js.seed_disk_xml(seed, "vda"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_results(share, names, timeout)
    return time.monotonic() - started


def clean(conns: list, work: str, share: str) -> None:
    for conn in conns:
        for dom in conn.listAllDomains():
            if dom.name().startswith("bench-cold-") or dom.name().startswith("bench-warm-"):
                lab.remove_domain(conn, dom.name())
    for directory in (work, share):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    os.chown(share, lab.NFS_ANON_ID, lab.NFS_ANON_ID)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    state = lab.require_state(lab.lab_dir())
    work, share = os.path.join(state["dir"], "bench-warm"), os.path.join(lab.shares_dir(state), "bench-warm")
    conns = [lab.connect(h) for h in state["hosts"]]
    rows = []
    try:
        for count in args.counts:
            for kind, run in (("cold boot", cold), ("warm clone", warm)):
                clean(conns, work, share)
                took = run(state, conns, work, share, count, args.timeout)
                rows.append({"vms": count, "kind": kind, "seconds": round(took, 1)})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        clean(conns, work, share)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(share, ignore_errors=True)
        for conn in conns:
            conn.close()
    print("| VMs | cold boot (s) | warm clone (s) |\n|---|---|---|")
    for count in args.counts:
        got = {r["kind"]: r["seconds"] for r in rows if r["vms"] == count}
        print("| %d | %s | %s |" % (count, got.get("cold boot"), got.get("warm clone")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
