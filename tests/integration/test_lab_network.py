# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's own network: one network namespace per lab holding a bridge and dnsmasq; every lab VM NIC on
that bridge and nowhere else; the daemons inside the namespace, reached through their unix sockets; nothing
in the machine's own network namespace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab's network namespace is readable by root only")


def netns_of(lab) -> dict:
    return lab.state["network"]


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def ip_json(*argv: str, netns: str | None = None) -> list:
    cmd = ["ip", "-j", *argv]
    if netns:
        cmd = ["nsenter", "--net=/run/netns/%s" % netns, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def nics(lab) -> list[tuple[str, str, ET.Element]]:
    """(host, vm, <interface>) for every NIC of every domain on every lab host."""
    found = []
    for host in lab.hosts:
        conn = lab.connect(host)
        try:
            for dom in conn.listAllDomains():
                flags = libvirt.VIR_DOMAIN_XML_INACTIVE if not dom.isActive() else 0
                for iface in ET.fromstring(dom.XMLDesc(flags)).iterfind("devices/interface"):
                    found.append((host, dom.name(), iface))
        finally:
            conn.close()
    return found


def test_every_vm_nic_sits_on_the_lab_bridge_only(lab):
    """No user (SLIRP) NIC, no port forward, no tap elsewhere: each NIC is type='bridge' on the lab's bridge, and
    its tap is a port of that bridge inside the lab's namespace, absent from the machine's own namespace."""
    net = netns_of(lab)
    found = nics(lab)
    assert len({vm for _h, vm, _i in found}) >= len(lab.vms), found
    ports = {link["ifname"]: link for link in ip_json("link", "show", "master", net["bridge"], netns=net["netns"])}
    root_links = {link["ifname"] for link in ip_json("link")}
    root_macs = {link.get("address") for link in ip_json("link")}
    for host, vm, iface in found:
        what = "%s on %s: %s" % (vm, host, ET.tostring(iface, encoding="unicode"))
        assert iface.get("type") == "bridge", what
        assert iface.find("source").get("bridge") == net["bridge"], what
        assert iface.find("backend") is None and not iface.findall("portForward"), what
        target = iface.find("target")
        if target is not None:  # running: libvirt names the tap
            tap = target.get("dev")
            assert tap in ports, "%s: tap %s is not a port of %s in %s" % (what, tap, net["bridge"], net["netns"])
            assert tap not in root_links, "%s: tap %s is in the machine's own network namespace" % (what, tap)
        mac = iface.find("mac").get("address")
        # a tap's MAC is the guest's with fe: in front; neither is in the machine's own namespace
        assert mac not in root_macs and "fe" + mac[2:] not in root_macs, what


def test_nothing_of_the_lab_in_the_machines_network_namespace(lab):
    """The bridge, the guests' subnet and the daemons' loopback addresses exist only inside the lab's namespace;
    the daemons, dnsmasq and the QEMUs run in it; no daemon listens on TCP where the machine can reach it."""
    net = netns_of(lab)
    own = ns_inode("/run/netns/%s" % net["netns"])
    assert own != ns_inode("/proc/self/ns/net")
    root_names = {link["ifname"] for link in ip_json("link")}
    assert net["bridge"] not in root_names
    root_addrs = [a["local"] for link in ip_json("addr") for a in link.get("addr_info", [])]
    guest_net = net["address"].rsplit(".", 1)[0] + "."
    assert not [a for a in root_addrs if a.startswith(guest_net)], root_addrs
    assert not [a for a in root_addrs if a in {h["address"] for h in lab.hosts.values()}], root_addrs
    inside = [a["local"] for link in ip_json("addr", netns=net["netns"]) for a in link.get("addr_info", [])]
    assert net["address"].split("/")[0] in inside
    with open(os.path.join(lab.dir, "net", "dnsmasq.pid"), encoding="utf-8") as handle:
        processes = {"dnsmasq": int(handle.read())}
    with open(os.path.join(lab.dir, "lab.json"), encoding="utf-8") as handle:  # fresh: earlier tests restart daemons
        processes.update({"libvirtd of %s" % host["name"]: host["pid"] for host in json.load(handle)["hosts"]})
    for what, pid in processes.items():
        assert ns_inode("/proc/%d/ns/net" % pid) == own, "%s (pid %d) is not in the lab's namespace" % (what, pid)
    for host in lab.hosts.values():
        assert host["uri"].startswith("qemu+unix:///system?socket="), host["uri"]
        probe = socket.socket()
        probe.settimeout(2)
        try:
            with pytest.raises(OSError):  # the daemon listens on this address inside the namespace only
                probe.connect((host["address"], 16509))
        finally:
            probe.close()


def test_migrated_vm_keeps_its_nic_on_the_bridge(lab):
    """A live migration between two lab daemons (data over their loopback addresses inside the namespace):
    the destination puts the VM's new tap on the same bridge."""
    net = netns_of(lab)
    vm = sorted(lab.vms)[0]
    source, destination = _migrate(lab, vm)
    try:
        ports = {link["ifname"] for link in ip_json("link", "show", "master", net["bridge"], netns=net["netns"])}
        conn = lab.connect(destination)
        try:
            iface = ET.fromstring(conn.lookupByName(vm).XMLDesc(0)).find("devices/interface")
        finally:
            conn.close()
        assert iface.get("type") == "bridge" and iface.find("target").get("dev") in ports
    finally:
        _migrate(lab, vm, source)
    lab.assert_each_vm_once()


def _migrate(lab, vm: str, destination: str | None = None) -> tuple[str, str]:
    source = lab.running_on(vm)[0]
    destination = destination or next(h for h in sorted(lab.hosts) if h != source)
    src, dst = lab.connect(source), lab.connect(destination)
    try:
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
                 | libvirt.VIR_MIGRATE_UNSAFE)
        src.lookupByName(vm).migrate3(dst, {}, flags)
    finally:
        src.close()
        dst.close()
    return source, destination


def test_os_guest_gets_a_dhcp_lease_from_the_labs_dnsmasq(lab):
    """The OS guest (lab.py guest) asks for an address on the bridge: the lab's dnsmasq leases one to its MAC,
    and the guest answers a ping on it from inside the namespace."""
    net = netns_of(lab)
    host = sorted(lab.hosts)[0]
    lab_py = [sys.executable, os.path.join(ROOT, "tools", "lab.py")]
    env = dict(os.environ, ENTROPY_LAB_DIR=lab.dir)
    started = subprocess.run([*lab_py, "guest", "--host", host], capture_output=True, text=True, check=False, env=env, timeout=600)
    assert started.returncode == 0, started.stderr
    try:
        conn = lab.connect(host)
        try:
            mac = ET.fromstring(conn.lookupByName("osvm").XMLDesc(0)).find("devices/interface/mac").get("address")
        finally:
            conn.close()
        leases = os.path.join(lab.dir, "net", "dnsmasq.leases")
        address = None
        deadline = time.monotonic() + 240  # boots in ~6 s idle; minutes on a loaded 2-core machine
        while time.monotonic() < deadline and address is None:
            if os.path.exists(leases):
                with open(leases, encoding="utf-8") as handle:
                    address = next((line.split()[2] for line in handle if line.split()[1:2] == [mac]), None)
            time.sleep(1)
        assert address, "no DHCP lease for the OS guest (MAC %s) within 240 s in %s" % (mac, leases)
        assert address.startswith(net["address"].rsplit(".", 1)[0] + ".")
        # The guest's kernel answers a TCP connection on a closed port with a reset: "refused" proves that the
        # address is the guest's and reachable on the bridge (a timeout or "no route" would not).
        probe = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 9), 5)\nexcept ConnectionRefusedError:\n"
                 "    sys.exit(0)\nexcept OSError as exc:\n    sys.exit(str(exc))\nsys.exit('port 9 open?')\n")
        answered = subprocess.run(["nsenter", "--net=/run/netns/%s" % net["netns"], "--", sys.executable, "-c", probe, address],
                                  capture_output=True, text=True, check=False, timeout=60)
        assert answered.returncode == 0, answered.stderr
    finally:
        removed = subprocess.run([*lab_py, "guest", "--remove"], capture_output=True, text=True, check=False, env=env)
        assert removed.returncode == 0, removed.stderr
