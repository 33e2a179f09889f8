# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_placement on real libvirt: the test:/// driver answers, a closed port does not."""

from __future__ import annotations

import os
import socket
import sys

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import init_plugin_loader, lookup_loader
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

pytest.importorskip("libvirt")

# tests/unit/conftest.py puts the collection of this checkout on sys.path.
COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))
if not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
    init_plugin_loader([COLLECTIONS])


def closed_port_uri() -> str:
    """A TCP URI nothing listens on (bound then closed), so the connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "qemu+tcp://127.0.0.1:%d/system" % port


def run(**options):
    return lookup_loader.get("entropy.cluster.cluster_placement").run([], {}, **options)[0]


def test_all_hosts_answer():
    placement = run(hypervisors={"hv1": "test:///default"})
    assert placement == {"test": [{"host": "hv1", "state": "running"}]}
    assert run(hypervisors={"hv1": "test:///default"}, unreachable="report") == {"placement": placement, "unreachable": {}}


def test_a_host_that_does_not_answer():
    hypervisors = {"hv1": "test:///default", "hv2": closed_port_uri()}
    with pytest.raises(AnsibleLookupError, match="cannot read the placement of the cluster: hv2: "):
        run(hypervisors=hypervisors)
    assert run(hypervisors=hypervisors, unreachable="warn") == {"test": [{"host": "hv1", "state": "running"}]}
    reported = run(hypervisors=hypervisors, unreachable="report")
    assert reported["placement"] == {"test": [{"host": "hv1", "state": "running"}]}
    assert list(reported["unreachable"]) == ["hv2"] and "Check that libvirtd runs there" in reported["unreachable"]["hv2"]


def test_every_libvirt_state_as_the_live_placement_names_it(tmp_path):
    """The test driver puts a domain in any state: model states, except crashed, which no plan expects."""
    codes = {"nostate": 0, "running": 1, "blocked": 2, "paused": 3, "shutdown": 4, "shutoff": 5, "crashed": 6, "pmsuspended": 7}
    domains = "".join("<domain type='test'><name>%s</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                      "<test:runstate>%d</test:runstate></domain>" % (word, code) for word, code in codes.items())
    node = tmp_path / "node.xml"
    node.write_text("<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><cpu><active>2</active><total>2</total></cpu>"
                    "<memory>4194304</memory>%s</node>" % domains)
    placement = run(hypervisors={"hv1": "test://%s" % node})
    assert {vm: where[0]["state"] for vm, where in placement.items()} == {
        "nostate": "running", "running": "running", "blocked": "running", "shutdown": "running", "paused": "paused",
        "pmsuspended": "paused", "crashed": "crashed", "shutoff": "stopped"}
