# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.plan on a model file, with no inventory and no libvirt: what-if analysis,
and the errors an operator sees for bad input."""

from __future__ import annotations

import json
import os

from conftest import ROOT


def model(**extra) -> dict:
    data = {
        "version": 1,
        "hosts": [{"name": "hv%d" % i, "cpu": 8, "memory_mib": 4096, "state": "online"} for i in range(1, 5)],
        "vms": [{"name": "vm%d" % i, "host": "hv%d" % (i % 4 + 1), "state": "running", "vcpus": 1, "cpu": 0.5, "memory_mib": 1024}
                for i in range(1, 9)],
        "constraints": [],
        "options": {"time_limit_s": 5},
    }
    data.update(extra)
    return data


def test_plan_from_a_model_file_without_inventory(playbook, tmp_path):
    model_file, plan_file = tmp_path / "model.json", tmp_path / "plan.json"
    model_file.write_text(json.dumps(model()))
    result = playbook("entropy.cluster.plan", extra_vars={"entropy_model_file": str(model_file), "entropy_plan_file": str(plan_file)})
    assert result.returncode == 0, result.stdout[-4000:]
    plan = json.loads(plan_file.read_text())
    assert plan["stats"]["hosts_used_before"] == 4
    assert plan["stats"]["hosts_used_after"] == 2  # 8 GiB of VMs on 4 GiB hosts
    assert set(plan["target"]) == {"vm%d" % i for i in range(1, 9)}
    assert (tmp_path / "plan.yml").read_text().startswith("---\n# entropy.cluster reconfiguration plan")
    assert "hosts used          4 -> 2 (lower bound 2)" in result.stdout


def test_the_readme_what_if_line_with_paths_relative_to_where_it_runs(playbook, tmp_path):
    """README: ansible-playbook entropy.cluster.plan -e entropy_model_file=M.json -e entropy_plan_file=P.json,
    run in the user's directory: both paths are the user's, nothing is written inside the collection."""
    (tmp_path / "M.json").write_text(json.dumps(model()))
    collection_before = sorted(os.listdir(os.path.join(ROOT, "playbooks")))
    for plan_name in ("P.json", "./P2.json", "out/P3.json"):
        result = playbook("entropy.cluster.plan", extra_vars={"entropy_model_file": "M.json", "entropy_plan_file": plan_name},
                          cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout[-4000:]
        written = tmp_path / plan_name
        assert json.loads(written.read_text())["stats"]["hosts_used_after"] == 2
        assert written.with_suffix(".yml").exists()
        assert "plan written to %s" % written.resolve() in result.stdout
    assert sorted(os.listdir(os.path.join(ROOT, "playbooks"))) == collection_before


def test_a_malformed_model_is_named_not_a_traceback(playbook, tmp_path):
    bad = model()
    bad["vms"][2]["memory_mib"] = "8G"
    model_file = tmp_path / "model.json"
    model_file.write_text(json.dumps(bad))
    result = playbook("entropy.cluster.plan", extra_vars={"entropy_model_file": str(model_file), "entropy_plan_file": str(tmp_path / "p.json")})
    assert result.returncode != 0
    assert "the cluster model is malformed" in result.stdout
    assert "vms[2]" in result.stdout and "memory_mib" in result.stdout
    assert "Traceback" not in result.stdout


def test_infeasible_constraints_are_explained(playbook, tmp_path):
    model_file = tmp_path / "model.json"
    model_file.write_text(json.dumps(model(constraints=[{"type": "fence", "vms": ["vm1"], "hosts": ["hv1"]},
                                                        {"type": "ban", "vms": ["vm1"], "hosts": ["hv1"]}])))
    result = playbook("entropy.cluster.plan", extra_vars={"entropy_model_file": str(model_file), "entropy_plan_file": str(tmp_path / "p.json")})
    assert result.returncode != 0
    assert "no placement satisfies the request" in result.stdout
    assert "vm1" in result.stdout and ("fence" in result.stdout or "ban" in result.stdout)
    assert "Traceback" not in result.stdout


def test_a_missing_model_file_says_so(playbook, tmp_path):
    result = playbook("entropy.cluster.plan", extra_vars={"entropy_model_file": str(tmp_path / "nope.json")})
    assert result.returncode != 0
    assert "cannot read the model file" in result.stdout and "nope.json" in result.stdout


def test_without_inventory_or_model_the_error_says_what_to_give(playbook):
    result = playbook("entropy.cluster.plan")
    assert result.returncode != 0
    assert "no reachable hypervisor" in result.stdout and "model_file" in result.stdout
