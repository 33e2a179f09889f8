# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_constraints written in a *.libvirt_cluster.yml file shape the plans of the consolidate and evacuate
playbooks, run as a user runs them (ansible-playbook -i <file> --check) on libvirt test-driver hypervisors.

--check computes and shows the plan and checks it against the live cluster; nothing moves (the test driver
cannot migrate). Before the fix the lookup rebuilt the model from hostvars and dropped these constraints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import solve

COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))
MIGRATION = re.compile(r'"\s*migrate (\S+): (\S+) -> (\S+) \(')


def three_hypervisors(cluster, **options):
    """hv1, hv2, hv3 (4 cores, 1 GiB each) with one 256 MiB VM each: a, b, c. All three fit on one host."""
    hypervisors = [{"name": hv, "uri": cluster.node(hv, [{"name": vm, "memory_mib": 256}]), "cpu": 4, "memory_mib": 1024}
                   for hv, vm in (("hv1", "a"), ("hv2", "b"), ("hv3", "c"))]
    return cluster.config(hypervisors, sampling_interval=0, **options)


def run_check(cluster, inventory, playbook, extra_vars=None) -> dict:
    """ansible-playbook --check -i inventory entropy.cluster.<playbook>; returns the placement after the plan."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check", "-i", inventory,
           "entropy.cluster.%s" % playbook, "-e", json.dumps(dict(extra_vars or {}, entropy_lock_file=os.path.join(cluster.path, "lock")))]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    res = subprocess.run(cmd, cwd=cluster.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         check=False, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    placement = {"a": "hv1", "b": "hv2", "c": "hv3"}
    for vm, source, destination in set(MIGRATION.findall(res.stdout)):
        assert placement[vm] == source, res.stdout[-3000:]
        placement[vm] = destination
    return placement


def test_an_inventory_constraint_and_a_role_constraint_shape_consolidate(cluster):
    model_file = os.path.join(cluster.path, "model.json")
    inventory = three_hypervisors(cluster, model_file=model_file, model_constraints=[{"type": "spread", "vms": ["a", "b"]}])
    placement = run_check(cluster, inventory, "consolidate")
    assert placement["a"] != placement["b"], placement
    assert len(set(placement.values())) == 2, placement  # the spread costs one host, no more

    # Without the constraint the same cluster consolidates onto one host: the constraint, not the cluster, kept a and b apart.
    with open(model_file, encoding="utf-8") as handle:
        model = json.load(handle)
    assert model["constraints"] == [{"type": "spread", "vms": ["a", "b"]}]
    assert solve(dict(model, constraints=[]), time_limit_s=5, min_gain_hosts=1)["stats"]["hosts_used_after"] == 1

    # The role's entropy_constraints add to the inventory's (union): b is kept apart from a and from c.
    placement = run_check(cluster, inventory, "consolidate", {"entropy_constraints": [{"type": "spread", "vms": ["b", "c"]}]})
    assert placement["b"] not in (placement["a"], placement["c"]), placement
    assert len(set(placement.values())) == 2, placement


@pytest.mark.parametrize("banned, expected", [("hv2", "hv3"), ("hv3", "hv2")])
def test_an_inventory_ban_shapes_evacuate(cluster, banned, expected):
    """Both cases pass only if the ban is obeyed: without it the solver (seed 0) sends a to the same host both times."""
    inventory = three_hypervisors(cluster, model_constraints=[{"type": "ban", "vms": ["a"], "hosts": [banned]}])
    placement = run_check(cluster, inventory, "evacuate", {"entropy_evacuate_hosts": ["hv1"]})
    assert placement["a"] == expected, placement


def test_the_command_line_builds_the_same_model_from_ansible_inventory_output(cluster):
    """ansible-inventory --list > inventory.json; tools/entropy_solve.py inventory.json: the inventory file's
    constraint holds there too (the model is built by cluster_model.build_model, as everywhere else)."""
    bindir = os.path.dirname(sys.executable)
    inventory = three_hypervisors(cluster, model_constraints=[{"type": "spread", "vms": ["a", "b"]}])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    listed = subprocess.run([os.path.join(bindir, "ansible-inventory"), "-i", inventory, "--list"], env=env, capture_output=True,
                            text=True, check=False, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    listing = os.path.join(cluster.path, "inventory.json")
    with open(listing, "w", encoding="utf-8") as handle:
        handle.write(listed.stdout)
    tool = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, os.pardir, "tools", "entropy_solve.py")
    solved = subprocess.run([sys.executable, tool, listing, "-q", "--time-limit", "5"], env=env, capture_output=True, text=True,
                            check=False, timeout=300)
    assert solved.returncode == 0, solved.stderr[-3000:]
    plan = json.loads(solved.stdout)
    assert plan["target"]["a"] != plan["target"]["b"] and plan["stats"]["hosts_used_after"] == 2, plan["target"]
