# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the real entropy.cluster.libvirt_cluster inventory plugin through ansible's InventoryManager.

The hypervisors are the libvirt test driver: ``test:///abs/path/node.xml`` files written by the
tests (one file per hypervisor, each with its own domains), ``test:///default`` (shared by every
open in this process while one connection stays open) and a refused TCP URI for an unreachable one.
"""

from __future__ import annotations

import os
import sys

import pytest
import yaml

# tests/unit/conftest.py puts the collection of this checkout on sys.path.
COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

# pylint: disable=wrong-import-position
from ansible.inventory.data import InventoryData  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.plugins.loader import init_plugin_loader, inventory_loader  # noqa: E402
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

if not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
    init_plugin_loader([COLLECTIONS])

PLUGIN = "entropy.cluster.libvirt_cluster"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"

NODE_HEAD = """<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>{cpus}</active><total>{cpus}</total><nodes>1</nodes>
       <sockets>1</sockets><cores>{cpus}</cores><threads>1</threads></cpu>
  <memory>{memory_kib}</memory>
"""
# virDomainState codes; the test driver takes any of them (test:runstate)
RUNSTATES = {"nostate": 0, "running": 1, "blocked": 2, "paused": 3, "shutdown": 4, "shutoff": 5, "crashed": 6, "pmsuspended": 7}


def node_xml(domains, cpus=4, memory_kib=8 * 1024 * 1024):
    """A test driver node: ``domains`` is a list of dicts name, memory_mib, vcpus, state, managed_save, uuid."""
    parts = [NODE_HEAD.format(cpus=cpus, memory_kib=memory_kib)]
    for dom in domains:
        extra = ""
        if dom.get("state", "running") != "running":
            extra += "<test:runstate>%d</test:runstate>" % RUNSTATES[dom["state"]]
        if dom.get("managed_save"):
            extra += "<test:hasmanagedsave/>"
        uuid = "<uuid>%s</uuid>" % dom["uuid"] if dom.get("uuid") else ""
        memory_kib = dom.get("memory_mib", 64) * 1024
        max_kib = dom.get("max_memory_mib", dom.get("memory_mib", 64)) * 1024
        parts.append("  <domain type='test'><name>%s</name>%s<memory>%d</memory><currentMemory>%d</currentMemory><vcpu>%d</vcpu>"
                     "<os><type>hvm</type></os>%s</domain>\n" % (dom["name"], uuid, max_kib, memory_kib, dom.get("vcpus", 1), extra))
    parts.append("</node>\n")
    return "".join(parts)


class Cluster:
    """Writes node XML files and inventory configs into a temp dir and builds inventories from them."""

    def __init__(self, path):
        self.path = path

    def node(self, name, domains, **kwargs):
        """Write a test-driver node file; returns its URI."""
        path = os.path.join(self.path, "%s.xml" % name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(node_xml(domains, **kwargs))
        return "test://" + path

    def config(self, hypervisors, name="cluster.libvirt_cluster.yml", **options):
        data = {"plugin": PLUGIN, "sampling_interval": 0.05}
        if hypervisors is not None:
            data["hypervisors"] = hypervisors
        data.update(options)
        path = os.path.join(self.path, name)
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(data, handle)
        return path

    @staticmethod
    def inventory(path, cache=False):
        """ansible's own InventoryManager on the config (the 'auto' plugin picks ours by its 'plugin' key)."""
        return InventoryManager(loader=DataLoader(), sources=[path], cache=cache)

    @staticmethod
    def parse(path, cache=False):
        """Run our plugin directly so its errors propagate (InventoryManager turns them into warnings)."""
        plugin = inventory_loader.get(PLUGIN)
        data = InventoryData()
        plugin.parse(data, DataLoader(), path, cache=cache)
        return data


@pytest.fixture()
def cluster(tmp_path):
    return Cluster(str(tmp_path))


@pytest.fixture()
def warnings(monkeypatch):
    """Every warning the plugin shows (Display de-duplicates on screen; we record each call)."""
    from ansible.utils.display import Display  # pylint: disable=import-outside-toplevel

    seen = []
    original = Display.warning

    def record(self, msg, *args, **kwargs):
        seen.append(str(msg))
        return original(self, msg, *args, **kwargs)

    monkeypatch.setattr(Display, "warning", record)
    return seen
