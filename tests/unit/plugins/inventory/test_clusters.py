# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.libvirt_cluster with several clusters (the clusters option), on the libvirt test driver."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleParserError

libvirt = pytest.importorskip("libvirt")

try:
    from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import load_model
except ImportError:  # the solver is optional for these tests
    load_model = None


def names(inv, group):
    return sorted(h.name for h in inv.groups[group].get_hosts()) if group in inv.groups else []


def grid(cluster, **options):
    """Cluster 'paris-1' (site fr) with pa1, cluster 'lyon' with ly1 and ly2, and hv0 in the single list."""
    pa1 = cluster.node("pa1", [{"name": "web1"}, {"name": "web2", "state": "shutoff"}])
    ly1 = cluster.node("ly1", [{"name": "db1"}])
    ly2 = cluster.node("ly2", [])
    hv0 = cluster.node("hv0", [{"name": "lone"}])
    clusters = [{"name": "paris-1", "site": "fr", "hypervisors": [{"name": "pa1", "uri": pa1}]},
                {"name": "lyon", "hypervisors": [{"name": "ly1", "uri": ly1}, {"name": "ly2", "uri": ly2}]}]
    return cluster.config([{"name": "hv0", "uri": hv0}], clusters=clusters, **options)


def test_hosts_and_vms_are_grouped_per_cluster_and_site(cluster):
    inv = cluster.inventory(grid(cluster))
    assert names(inv, "hypervisors") == ["hv0", "ly1", "ly2", "pa1"]
    assert names(inv, "cluster_paris_1") == ["pa1", "web1", "web2"]   # sanitised like every group name
    assert names(inv, "cluster_lyon") == ["db1", "ly1", "ly2"]
    assert names(inv, "site_fr") == ["pa1", "web1", "web2"]
    pa1 = inv.get_host("pa1").get_vars()
    assert pa1["entropy_cluster"] == "paris-1" and pa1["entropy_site"] == "fr"
    assert "entropy_cluster" not in inv.get_host("hv0").get_vars()
    model = inv.get_host("entropy_cluster").get_vars()["entropy_model"]
    hosts = {h["name"]: h for h in model["hosts"]}
    assert hosts["pa1"]["cluster"] == "paris-1" and hosts["pa1"]["site"] == "fr"
    assert hosts["ly2"]["cluster"] == "lyon" and "site" not in hosts["ly2"] and "cluster" not in hosts["hv0"]
    if load_model is not None:
        assert load_model(json.loads(json.dumps(model))).host("ly1").cluster == "lyon"


def test_clusters_alone_without_the_single_list(cluster):
    ly1 = cluster.node("ly1", [{"name": "db1"}])
    path = cluster.config(None, clusters=[{"name": "lyon", "hypervisors": [{"name": "ly1", "uri": ly1}]}])
    inv = cluster.inventory(path)
    assert names(inv, "cluster_lyon") == ["db1", "ly1"]


@pytest.mark.parametrize(("clusters", "expected"), [
    ([], "'clusters' must be a non-empty list of {name, hypervisors} entries"),
    ([{"hypervisors": [{"name": "a", "uri": "test:///default"}]}], "clusters[0]: must be a dictionary with a non-empty string 'name'"),
    ([{"name": "c1", "hosts": []}], "clusters[0] (name c1): unknown key(s) hosts; allowed keys are name, site, hypervisors"),
    ([{"name": "c1"}], "clusters[0] (name c1): 'hypervisors' must be a non-empty list"),
    ([{"name": "c1", "site": 3, "hypervisors": [{"name": "a", "uri": "test:///default"}]}], "clusters[0] (name c1): 'site' must be"),
    ([{"name": "c1", "hypervisors": [{"name": "a", "uri": "test:///default"}]},
      {"name": "c1", "hypervisors": [{"name": "b", "uri": "test:///default"}]}], "clusters[1] (name c1): duplicate name"),
    ([{"name": "c1", "hypervisors": [{"name": "a", "uri": "test:///default"}]},
      {"name": "c2", "hypervisors": [{"name": "a", "uri": "test:///default"}]}],
     "clusters[1] (name c2): hypervisor name 'a' is already used in clusters[0] (name c1)"),
    ([{"name": "c1", "hypervisors": [{"name": "a"}]}], "clusters[0] (name c1): hypervisors[0] (name a): 'uri' is required"),
])
def test_bad_clusters_are_refused_naming_the_entry(cluster, clusters, expected):
    with pytest.raises(AnsibleParserError) as err:
        cluster.parse(cluster.config(None, clusters=clusters))
    assert expected in str(err.value) and "Traceback" not in str(err.value)
