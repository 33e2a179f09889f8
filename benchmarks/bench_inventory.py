# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time entropy.cluster.libvirt_cluster building a large inventory on the libvirt test driver.

  .venv/bin/python benchmarks/bench_inventory.py [--hypervisors 200] [--vms-per-hypervisor 10] [--repeat 3]

Each hypervisor is a test-driver node file (test:///tmp/.../hvN.xml) with its own domains, so
nothing but the plugin and ansible's InventoryManager is measured. The sampling wait is excluded:
"1 sample" runs with sampling_interval 0; "2 samples" runs with a 0.01 s interval and subtracts it.
One warm-up run per row is not counted.
Phases: fetch (libvirt, thread pool), populate (hosts, vars, groups, model) as measured inside the plugin.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "entropy", "cluster")
if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
sys.path.insert(0, COLLECTIONS)

import libvirt  # noqa: E402  pylint: disable=wrong-import-position
import yaml  # noqa: E402  pylint: disable=wrong-import-position
from ansible import __version__ as ansible_version  # noqa: E402  pylint: disable=wrong-import-position
from ansible.inventory.manager import InventoryManager  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.plugins.loader import init_plugin_loader  # noqa: E402  pylint: disable=wrong-import-position

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
init_plugin_loader([COLLECTIONS])

from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster  # noqa: E402  pylint: disable=wrong-import-position


def node_xml(index: int, vms: int) -> str:
    parts = ["<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>",
             "<cpu><mhz>2000</mhz><model>x86_64</model><active>32</active><total>32</total><nodes>1</nodes>"
             "<sockets>2</sockets><cores>16</cores><threads>1</threads></cpu><memory>%d</memory>" % (256 * 1024 * 1024)]
    for j in range(vms):
        state = "" if j % 5 else "<test:runstate>5</test:runstate>"  # every fifth VM is shut off
        parts.append("<domain type='test'><name>vm-%03d-%02d</name><memory>%d</memory><vcpu>%d</vcpu><os><type>hvm</type></os>%s</domain>"
                     % (index, j, (1 + j % 4) * 1024 * 1024, 1 + j % 4, state))
    parts.append("</node>")
    return "\n".join(parts)


def machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lib = libvirt.getVersion()
    return ("nproc %d, %s, Python %s, ansible-core %s, libvirt %d.%d.%d (libvirt-python %s)"
            % (os.cpu_count() or 0, model, platform.python_version(), ansible_version, lib // 1000000, lib // 1000 % 1000, lib % 1000,
               _dist_version("libvirt-python")))


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version  # pylint: disable=import-outside-toplevel

        return version(name)
    except Exception:  # pylint: disable=broad-except
        return "?"


class Phases:
    """Wraps the plugin's fetch and _populate to time them."""

    def __init__(self) -> None:
        self.fetch = []
        self.populate = []
        self._fetch = libvirt_cluster.fetch
        self._populate = libvirt_cluster.InventoryModule._populate
        phases = self

        def fetch(*args, **kwargs):
            start = time.perf_counter()
            try:
                return phases._fetch(*args, **kwargs)
            finally:
                phases.fetch.append(time.perf_counter() - start)

        def populate(plugin, *args, **kwargs):
            start = time.perf_counter()
            try:
                return phases._populate(plugin, *args, **kwargs)
            finally:
                phases.populate.append(time.perf_counter() - start)

        libvirt_cluster.fetch = fetch
        libvirt_cluster.InventoryModule._populate = populate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--hypervisors", type=int, default=200)
    parser.add_argument("--vms-per-hypervisor", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    phases = Phases()
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        hypervisors = []
        for i in range(args.hypervisors):
            path = os.path.join(tmp, "hv%03d.xml" % i)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(node_xml(i, args.vms_per_hypervisor))
            hypervisors.append({"name": "hv%03d" % i, "uri": "test://" + path})
        rows = []
        for label, interval, parallelism in (("1 sample", 0, 8), ("2 samples", 0.01, 8), ("1 sample, parallelism 1", 0, 1)):
            config = os.path.join(tmp, "bench.libvirt_cluster.yml")
            with open(config, "w", encoding="utf-8") as handle:
                yaml.safe_dump({"plugin": "entropy.cluster.libvirt_cluster", "hypervisors": hypervisors,
                                "sampling_interval": interval, "parallelism": parallelism}, handle)
            InventoryManager(loader=DataLoader(), sources=[config])  # warm-up, not counted
            totals = []
            phases.fetch.clear()
            phases.populate.clear()
            for _run in range(args.repeat):
                start = time.perf_counter()
                inv = InventoryManager(loader=DataLoader(), sources=[config])
                totals.append(time.perf_counter() - start - interval)
            hosts = len(inv.groups["hypervisors"].get_hosts())
            vms = len(inv.groups["vms"].get_hosts())
            assert hosts == args.hypervisors and vms == args.hypervisors * args.vms_per_hypervisor, (hosts, vms)
            rows.append((label, parallelism, hosts, vms, statistics.median(totals), statistics.median(phases.fetch) - interval,
                         statistics.median(phases.populate)))
    print("machine: %s" % machine())
    print("| run | parallelism | hypervisors | VMs | total s (median of %d) | fetch s | populate s |" % args.repeat)
    print("|---|---|---|---|---|---|---|")
    for label, parallelism, hosts, vms, total, fetch, populate in rows:
        print("| %s | %d | %d | %d | %.2f | %.2f | %.2f |" % (label, parallelism, hosts, vms, total, fetch, populate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
