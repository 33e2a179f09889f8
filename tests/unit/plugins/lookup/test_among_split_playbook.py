# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""among and split end to end: a model file -> `ansible-playbook entropy.cluster.plan` -> the plan
file and its playbook -> the independent checker (no inventory, no libvirt)."""

from __future__ import annotations

import json

from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import check_plan

from test_reconfiguration_plan import plan_playbook, write  # also sets up the collection loader


def test_among_and_split_shape_the_plan_of_the_plan_playbook(tmp_path):
    gib = 1024
    hosts = [{"name": "hv%d" % i, "cpu": 16, "memory_mib": 32 * gib} for i in range(1, 5)]
    vms = [{"name": "a", "host": "hv1", "cpu": 1, "memory_mib": 20 * gib},
           {"name": "b", "host": "hv2", "cpu": 1, "memory_mib": 20 * gib},
           {"name": "c", "host": "hv3", "cpu": 1, "memory_mib": 4 * gib},
           {"name": "d", "host": "hv4", "cpu": 1, "memory_mib": 4 * gib}]
    constraints = [{"type": "among", "vms": ["a", "b"], "groups": [["hv1"], ["hv2", "hv3", "hv4"]]},
                   {"type": "split", "groups": [["c"], ["d"]]}]
    model = {"version": 1, "hosts": hosts, "vms": vms, "constraints": constraints,
             "options": {"time_limit_s": 5, "objective": "consolidate"}}
    _res, plan = plan_playbook(tmp_path, {"entropy_model_file": write(tmp_path, model)})
    assert check_plan(model, plan) == []
    t = plan["target"]
    assert {t["a"], t["b"]} <= {"hv2", "hv3", "hv4"} and t["c"] != t["d"]
    assert plan["stats"]["hosts_used_after"] == 2
    assert (tmp_path / "plan.yml").read_text().startswith("---\n# entropy.cluster reconfiguration plan")
    # the same model without the constraints: a stays on hv1
    free = dict(model, constraints=[])
    _res, plan = plan_playbook(tmp_path, {"entropy_model_file": write(tmp_path, free, "free.json")})
    assert check_plan(free, plan) == [] and plan["target"]["a"] == "hv1"
    assert json.loads((tmp_path / "plan.json").read_text()) == plan
