# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory source of docs/awx.md builds as written, with only the hypervisor URIs replaced by
libvirt test-driver hosts."""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("libvirt")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


def test_the_awx_inventory_source_example_builds(cluster):
    with open(os.path.join(ROOT, "docs", "awx.md"), encoding="utf-8") as handle:
        text = handle.read()
    example = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M).search(text, text.index("Keep the inventory file in a project")).group(1)
    assert "inventories/prod.libvirt_cluster.yml" in text
    for name in ("hv01", "hv02"):
        uri = "qemu+ssh://root@%s/system" % name
        assert uri in example
        example = example.replace(uri, cluster.node(name, [{"name": "vm-on-" + name, "memory_mib": 64}]))
    path = os.path.join(cluster.path, "prod.libvirt_cluster.yml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(example)
    inventory = cluster.parse(path)
    assert sorted(inventory.groups["hypervisors"].get_hosts(), key=str) == [inventory.hosts["hv01"], inventory.hosts["hv02"]]
    assert inventory.hosts["vm-on-hv02"].get_vars()["entropy_hypervisor"] == "hv02"
