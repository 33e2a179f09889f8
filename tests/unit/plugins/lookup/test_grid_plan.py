# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of a grid of clusters through the reconfiguration_plan lookup and the plan playbook: each cluster solved
on its own (placement.grid.solve_grid) when the hosts belong to several clusters, or on request; one solve otherwise;
the plan summary bounded per cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import lookup_loader
from ansible.template import Templar

from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import check_plan
from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import plan_table

COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
TWO_CLUSTERS = os.path.join(ROOT, "tests", "data", "grid", "two-clusters.json")


def run(**kwargs) -> dict:
    loader = DataLoader()
    plugin = lookup_loader.get("entropy.cluster.reconfiguration_plan", loader=loader, templar=Templar(loader=loader))
    return plugin.run([], {}, **kwargs)[0]


def grid_model(clusters=3) -> dict:
    """`clusters` clusters of three 4 GiB hosts, each host with one 1 GiB VM: each cluster frees two hosts."""
    hosts, vms = [], []
    for c in range(clusters):
        for i in range(3):
            hosts.append({"name": "c%dh%d" % (c, i), "cpu": 8, "memory_mib": 4096, "cluster": "c%d" % c})
            vms.append({"name": "c%dvm%d" % (c, i), "host": "c%dh%d" % (c, i), "cpu": 0.5, "memory_mib": 1024})
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": [], "options": {"time_limit_s": 4}}


def test_several_clusters_are_solved_each_on_its_own():
    data = grid_model()
    plan = run(model=data)
    assert set(plan["grid"]["clusters"]) == {"c0", "c1", "c2"}
    assert plan["stats"]["clusters"] == 3 and plan["stats"]["hosts_used_after"] == 3
    for c in range(3):   # every VM stays in its cluster
        assert {plan["target"]["c%dvm%d" % (c, i)][:2] for i in range(3)} == {"c%d" % c}
    assert check_plan(data, plan) == []
    assert plan["initial"]["c0vm0"] == {"host": "c0h0", "state": "running"}


def test_grid_false_solves_the_whole_model_at_once_and_one_cluster_is_no_grid():
    plan = run(model=grid_model(), grid=False)
    assert "grid" not in plan and plan["stats"]["hosts_used_after"] == 3
    assert "grid" not in run(model=grid_model(clusters=1))
    assert "grid" in run(model=grid_model(clusters=1), grid=True)


def test_objective_schedule_is_solved_at_once_unless_the_grid_is_asked_for():
    assert "grid" not in run(model=grid_model(), objective="schedule")
    error = run(model=grid_model(), objective="schedule", grid=True, on_error="return")["error"]
    assert "objective 'schedule' is not partitioned" in error and "\n" not in error


def test_an_overloaded_cluster_sheds_vms_to_another_with_the_disk_copied():
    with open(TWO_CLUSTERS, encoding="utf-8") as handle:
        data = json.load(handle)
    plan = run(model=data, grid_workers=1)
    moves = plan["grid"]["moves"]
    assert moves and all(m["from_cluster"] != m["to_cluster"] for m in moves)
    assert plan["steps"][0][:len(moves)] == moves
    assert check_plan(data, plan) == []


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"constraints": [{"type": "spread", "vms": ["c0vm0", "c1vm0"]}]}, "names hosts or VMs of several clusters ('c0', 'c1')"),
    ({"grid_workers": 0}, "grid_workers must be a positive integer, got 0"),
])
def test_errors_name_the_object_and_the_fix(kwargs, expected):
    error = run(model=grid_model(), on_error="return", **kwargs)["error"]
    assert expected in error and "\n" not in error, error
    with pytest.raises(AnsibleError):
        run(model=grid_model(), **kwargs)


def test_the_summary_shows_each_cluster_bounded():
    plan = run(model=grid_model())
    text = plan_table(plan)
    assert "  clusters" in text and "3, 0 migrations between them" in text
    assert "  cluster c0: hosts 3 -> 1 (lower bound 1), 2 migrations" in text
    many = dict(plan, grid={"clusters": {"k%02d" % i: {"migrations": i} for i in range(25)}, "moves": []})
    lines = plan_table(many).splitlines()
    shown = [line for line in lines if line.startswith("  cluster k")]
    assert len(shown) == 20 and shown[0].startswith("  cluster k24:") and "  ... and 5 more clusters (see the plan file)" in lines


def test_the_plan_playbook_solves_per_cluster_and_shows_it(tmp_path):
    """`ansible-playbook entropy.cluster.plan` on a model file of three clusters: the grid plan, its summary, its file;
    entropy_grid=false gives one solve."""
    model_file = tmp_path / "grid.json"
    model_file.write_text(json.dumps(grid_model()))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    for grid in (None, False):
        plan_file = tmp_path / ("plan-%s.json" % grid)
        extra = {"entropy_model_file": str(model_file), "entropy_plan_file": str(plan_file), "entropy_grid_workers": 2}
        if grid is not None:
            extra["entropy_grid"] = grid
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "entropy.cluster.plan",
                              "-e", json.dumps(extra)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, check=False, timeout=300)
        assert res.returncode == 0, res.stdout[-3000:]
        plan = json.loads(plan_file.read_text())
        assert ("grid" in plan) is (grid is None)
        assert ("cluster c1: hosts 3 -> 1" in res.stdout) is (grid is None), res.stdout[-3000:]
        assert plan["stats"]["hosts_used_after"] == 3
