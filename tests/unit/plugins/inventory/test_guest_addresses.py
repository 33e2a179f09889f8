# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible_host of VMs (option guest_addresses), on the libvirt test driver.

The test driver answers virDomainInterfaceAddresses for a running VM on a libvirt network with one IPv4
address per network card, for the LEASE and the AGENT source alike. What a real guest agent reports (loopback,
IPv6, link-local, container bridges inside the guest) or its absence cannot be produced by the test driver:
those two cases replace the AGENT call alone, the LEASE call stays real.
"""

from __future__ import annotations

import os

import pytest

libvirt = pytest.importorskip("libvirt")

# pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.inventory.libvirt_cluster import choose_address  # noqa: E402

NODE = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>4</active><total>4</total><nodes>1</nodes>
       <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
  <network><name>default</name><bridge name='virbr0'/><forward/>
    <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>
  </network>
  %s
</node>
"""
NIC = "<interface type='network'><mac address='%s'/><source network='default'/></interface>"
DOMAIN = "<domain type='test'><name>%s</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>%s<devices>%s</devices></domain>"
MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"


def _node(cluster):
    domains = [
        DOMAIN % ("two_nics", "", NIC % MAC1 + NIC % MAC2),
        DOMAIN % ("no_nic", "", ""),
        DOMAIN % ("stopped", "<test:runstate xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>5</test:runstate>", NIC % "52:54:00:00:00:03"),
        DOMAIN % ("paused", "<test:runstate xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>3</test:runstate>", NIC % "52:54:00:00:00:04"),
    ]
    path = os.path.join(cluster.path, "hv1.xml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(NODE % "\n  ".join(domains))
    return "test://" + path


def _vars(cluster, **options):
    inv = cluster.inventory(cluster.config([{"name": "hv1", "uri": _node(cluster)}], **options))
    return {host.name: host.get_vars() for host in inv.groups["vms"].get_hosts()}


def _lease(uri, name):
    """What the test driver itself reports for the VM (the LEASE source, real)."""
    conn = libvirt.open(uri)
    try:
        return conn.lookupByName(name).interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
    finally:
        conn.close()


def test_running_vms_get_the_address_libvirt_reports(cluster):
    hostvars = _vars(cluster)
    reported = _lease(_node(cluster), "two_nics")
    first_nic = next(entry for entry in reported.values() if entry["hwaddr"] == MAC1)
    assert hostvars["two_nics"]["ansible_host"] == first_nic["addrs"][0]["addr"]
    # no network card, not running: no address, and nothing else is set in its place
    assert "ansible_host" not in hostvars["no_nic"]
    assert "ansible_host" not in hostvars["stopped"] and "ansible_host" not in hostvars["paused"]


def test_guest_addresses_false_asks_nothing(cluster, monkeypatch):
    asked = []
    original = libvirt.virDomain.interfaceAddresses
    monkeypatch.setattr(libvirt.virDomain, "interfaceAddresses", lambda dom, *a: asked.append(dom.name()) or original(dom, *a))
    hostvars = _vars(cluster, guest_addresses=False)
    assert not [name for name, hvars in hostvars.items() if "ansible_host" in hvars]
    assert not asked
    _vars(cluster)
    assert sorted(set(asked)) == ["no_nic", "two_nics"]  # running VMs only


def _agent_reports(reported, fail=False):
    """Replace the AGENT source only; LEASE stays the test driver's."""
    original = libvirt.virDomain.interfaceAddresses

    def interface_addresses(dom, source, flags=0):
        if source != libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT:
            return original(dom, source, flags)
        if fail:  # what libvirt says of a VM without a guest agent channel (seen on the lab's QEMU VMs)
            raise libvirt.libvirtError("argument unsupported: QEMU guest agent is not configured")
        return reported
    return interface_addresses


def test_the_guest_agent_wins_and_its_address_is_chosen(cluster, monkeypatch):
    agent = {  # as qemu-guest-agent reports a guest with a container bridge, in the guest's order
        "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"addr": "127.0.0.1", "prefix": 8, "type": 0},
                                                        {"addr": "::1", "prefix": 128, "type": 1}]},
        "docker0": {"hwaddr": "02:42:ac:11:00:01", "addrs": [{"addr": "172.17.0.1", "prefix": 16, "type": 0}]},
        "eth0": {"hwaddr": MAC1.upper(), "addrs": [
            {"addr": "fe80::5054:ff:fe00:1", "prefix": 64, "type": 1},
            {"addr": "2001:db8::5", "prefix": 64, "type": 1},
            {"addr": "10.0.0.5", "prefix": 24, "type": 0},
        ]},
    }
    monkeypatch.setattr(libvirt.virDomain, "interfaceAddresses", _agent_reports(agent))
    assert _vars(cluster)["two_nics"]["ansible_host"] == "10.0.0.5"


def test_without_a_guest_agent_the_lease_is_used(cluster, monkeypatch):
    monkeypatch.setattr(libvirt.virDomain, "interfaceAddresses", _agent_reports(None, fail=True))
    hostvars = _vars(cluster)
    first_nic = next(e for e in _lease(_node(cluster), "two_nics").values() if e["hwaddr"] == MAC1)
    assert hostvars["two_nics"]["ansible_host"] == first_nic["addrs"][0]["addr"]


def test_an_agent_with_only_unusable_addresses_falls_back_to_the_lease(cluster, monkeypatch):
    agent = {"lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"addr": "127.0.0.1", "prefix": 8, "type": 0}]},
             "eth0": {"hwaddr": MAC1, "addrs": [{"addr": "{{ lookup('pipe','id') }}", "prefix": 24, "type": 0}]}}
    monkeypatch.setattr(libvirt.virDomain, "interfaceAddresses", _agent_reports(agent))
    address = _vars(cluster)["two_nics"]["ansible_host"]
    assert address.startswith("192.168.122.")  # the test driver's lease


@pytest.mark.parametrize("reported, expected", [
    ([], None),
    ([["lo", "", "127.0.0.1"], ["lo", "", "::1"]], None),
    ([["eth0", MAC1, "169.254.3.4"], ["eth0", MAC1, "fe80::1"], ["eth0", MAC1, "0.0.0.0"], ["eth0", MAC1, "224.0.0.1"]], None),
    ([["eth0", MAC1, "2001:db8::5"], ["eth0", MAC1, "10.0.0.5"]], "10.0.0.5"),          # IPv4 first
    ([["eth0", MAC1, "2001:db8::5"]], "2001:db8::5"),                                 # else IPv6
    ([["docker0", "02:42:ac:11:00:01", "172.17.0.1"], ["eth0", MAC1, "2001:db8::5"]], "2001:db8::5"),  # own card first
    ([["docker0", "02:42:ac:11:00:01", "172.17.0.1"]], "172.17.0.1"),                # else any
    ([["eth0", MAC1, "10.0.0.7"], ["eth1", MAC2, "10.0.0.6"]], "10.0.0.7"),           # the first reported
    ([["eth0", MAC1, "not an address"], ["eth0", MAC1, "{{ 6 * 7 }}"]], None),        # the guest says anything: checked
    ([["eth0", MAC1, "2001:DB8:0::5"]], "2001:db8::5"),                               # written canonically
])
def test_choose_address(reported, expected):
    assert choose_address(reported, [MAC1, MAC2]) == expected
