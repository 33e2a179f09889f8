# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Page load of the web dashboard for big clusters on libvirt's test driver: one node XML per hypervisor.

    python benchmarks/bench_dashboard.py [--sizes 200x2000] [--repeat 20]

For each size (hosts x VMs): the inventory read (fetch + summarize + build_model, sampling_interval 0), then the
cluster map page (GET /, logged in, through Starlette's TestClient) and its htmx partial, timed over --repeat loads;
a table of the median and worst times. The target: a page load <= 300 ms for 200 hosts / 2000 VMs."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from dashboard import auth  # noqa: E402  pylint: disable=wrong-import-position
from dashboard.app import Config, create_app  # noqa: E402  pylint: disable=wrong-import-position
from dashboard.collector import Collector, load_inventory_file  # noqa: E402  pylint: disable=wrong-import-position


def make_cluster(work: str, hosts: int, vms: int) -> str:
    """hosts node XML files with vms spread over them, and the inventory file naming them."""
    entries = []
    for h in range(hosts):
        domains = "".join('<domain type="test"><name>vm%05d</name><memory>%d</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>'
                          % (v, 262144 * (1 + v % 4)) for v in range(h, vms, hosts))
        path = os.path.join(work, "hv%03d.xml" % h)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>32</cores><threads>1</threads></cpu>"
                         "<memory>268435456</memory>%s</node>" % domains)
        entries.append({"name": "hv%03d" % h, "uri": "test://" + path})
    inventory = os.path.join(work, "bench.libvirt_cluster.yml")
    with open(inventory, "w", encoding="utf-8") as handle:
        json.dump({"plugin": "entropy.cluster.libvirt_cluster", "sampling_interval": 0, "parallelism": 8, "hypervisors": entries}, handle)
    return inventory


def bench(hosts: int, vms: int, repeat: int) -> dict:
    from starlette.testclient import TestClient  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory() as work:
        inventory = make_cluster(work, hosts, vms)
        users = os.path.join(work, "users.json")
        auth.add_user(users, "bench", "bench password", "viewer")
        collector = Collector(load_inventory_file(inventory), refresh=3600, events=False)
        started = time.perf_counter()
        collector.refresh()
        read_s = time.perf_counter() - started
        client = TestClient(create_app(collector, Config(users_file=users)))
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"username": "bench", "password": "bench password", "csrf_token": token})
        times = {"/": [], "/partials/map": []}
        size = 0
        for _round in range(repeat):
            for path, found in times.items():
                started = time.perf_counter()
                response = client.get(path)
                found.append(time.perf_counter() - started)
                assert response.status_code == 200 and response.text.count('class="vm ') == vms, path
                size = max(size, len(response.content))
    return {"hosts": hosts, "vms": vms, "read_s": read_s, "page": times["/"], "partial": times["/partials/map"], "bytes": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20x200,200x2000", help="comma-separated HOSTSxVMS")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print("| hosts | VMs | inventory read s | page median ms | page worst ms | partial median ms | page KiB |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        hosts, vms = (int(x) for x in size.split("x"))
        r = bench(hosts, vms, args.repeat)
        cells = (r["hosts"], r["vms"], r["read_s"], 1000 * statistics.median(r["page"]), 1000 * max(r["page"]),
                 1000 * statistics.median(r["partial"]), r["bytes"] // 1024)
        print("| %d | %d | %.2f | %.0f | %.0f | %.0f | %d |" % cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
