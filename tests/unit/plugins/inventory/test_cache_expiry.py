# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory cache expiry: a cached run replays the stored data until cache_timeout has passed,
then reads libvirt again. The cache file's age is set with os.utime, so no test waits on a clock."""

from __future__ import annotations

import glob
import os
import time


def _names(inv, group):
    return sorted(h.name for h in inv.groups[group].get_hosts()) if group in inv.groups else []


def test_an_expired_cache_is_read_again_from_libvirt(cluster, tmp_path):
    cache_dir = str(tmp_path / "cache")
    options = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": cache_dir, "cache_timeout": 600}
    uri = cluster.node("hv1", [{"name": "web1"}])
    path = cluster.config([{"name": "hv1", "uri": uri}], **options)
    assert _names(cluster.inventory(path, cache=False), "vms") == ["web1"]
    (cache_file,) = glob.glob(os.path.join(cache_dir, "*"))

    # The hypervisor changes: a second VM is defined there.
    cluster.node("hv1", [{"name": "web1"}, {"name": "web2"}])
    assert _names(cluster.inventory(path, cache=True), "vms") == ["web1"], "a fresh cache is replayed, libvirt is not read"

    # Ten minutes and one second later the cache has expired: the new VM appears, and the cache is refreshed.
    old = time.time() - 601
    os.utime(cache_file, (old, old))
    assert _names(cluster.inventory(path, cache=True), "vms") == ["web1", "web2"]
    assert os.path.getmtime(cache_file) > old + 60, "the expired cache is written anew"
    cluster.node("hv1", [{"name": "web1"}])
    assert _names(cluster.inventory(path, cache=True), "vms") == ["web1", "web2"], "the refreshed cache is replayed"
