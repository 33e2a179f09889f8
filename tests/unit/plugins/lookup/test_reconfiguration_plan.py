# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reconfiguration_plan lookup, loaded and run as Ansible runs it: a model from a file, as data
or from hostvars; objective, constraints, budgets; which options win; errors that name the fix."""

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

# tests/unit/conftest.py put this checkout's collection on sys.path and Ansible's collection finder in place.
from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import load_model

COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))

NAME = "entropy.cluster.reconfiguration_plan"


def lookup():
    loader = DataLoader()
    plugin = lookup_loader.get(NAME, loader=loader, templar=Templar(loader=loader))
    assert plugin is not None, "the lookup was not found in %s" % COLLECTIONS
    return plugin


def run(variables=None, **kwargs) -> dict:
    result = lookup().run([], variables or {}, **kwargs)
    assert isinstance(result, list) and len(result) == 1
    return result[0]


@pytest.fixture
def solved(monkeypatch):
    """The options the solver really ran with, for each run of the lookup (the real solve still runs)."""
    module = sys.modules[type(lookup()).__module__]
    real, seen = module.solve, []

    def spy(model, **overrides):
        seen.append(load_model(model, **overrides).options)
        return real(model, **overrides)

    monkeypatch.setattr(module, "solve", spy)
    return seen


def model(options=None, **extra) -> dict:
    """Four 4 GiB hosts, eight 1 GiB VMs two per host: a consolidation frees two hosts."""
    data = {
        "version": 1,
        "hosts": [{"name": "hv%d" % i, "cpu": 8, "memory_mib": 4096} for i in range(1, 5)],
        "vms": [{"name": "vm%d" % i, "host": "hv%d" % (i % 4 + 1), "cpu": 0.5, "memory_mib": 1024} for i in range(1, 9)],
        "constraints": [],
    }
    if options is not None:
        data["options"] = options
    data.update(extra)
    return data


def write(tmp_path, data, name="model.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_a_model_files_options_hold_when_the_caller_sets_none(tmp_path, solved):
    path = write(tmp_path, model({"objective": "repair", "time_limit_s": 3, "seed": 7, "max_migrations": 0,
                                  "allow_suspend": True, "bandwidth_mib_s": 50}))
    plan = run(model_file=path)
    used = solved[-1]
    assert (used.objective, used.time_limit_s, used.seed, used.max_migrations, used.allow_suspend, used.bandwidth_mib_s) \
        == ("repair", 3.0, 7, 0, True, 50.0)
    assert plan["objective"] == "repair" and plan["status"] == "unchanged"


def test_the_callers_options_win_over_the_model_files(tmp_path, solved):
    path = write(tmp_path, model({"objective": "repair", "time_limit_s": 3, "seed": 7, "max_migrations": 0,
                                  "bandwidth_mib_s": 50}))
    plan = run(model_file=path, objective="consolidate", time_limit_s=2, max_migrations=4, min_gain_hosts=0,
               solver_options={"bandwidth_mib_s": 100})
    used = solved[-1]
    assert (used.objective, used.time_limit_s, used.max_migrations, used.min_gain_hosts, used.bandwidth_mib_s) \
        == ("consolidate", 2.0, 4, 0, 100.0)
    assert used.seed == 7   # not given: the file's seed still holds
    assert plan["objective"] == "consolidate"
    assert plan["stats"]["migrations"] == 4 and plan["stats"]["hosts_used_after"] == 2


def test_without_options_anywhere_the_lookups_defaults_apply(tmp_path, solved):
    plan = run(model_file=write(tmp_path, model()))
    used = solved[-1]
    assert (used.objective, used.time_limit_s, used.seed, used.min_gain_hosts, used.allow_suspend) \
        == ("consolidate", 10.0, 0, 1, False)
    assert (used.max_migrations, used.max_memory_moved_mib) == (None, None)
    assert plan["stats"]["hosts_used_before"] == 4 and plan["stats"]["hosts_used_after"] == 2


def test_min_gain_hosts_defaults_to_one_host(tmp_path):
    # two hosts, each VM too big to share: consolidation frees nothing, so nothing moves
    data = {"version": 1, "hosts": [{"name": "hv1", "cpu": 8, "memory_mib": 4096}, {"name": "hv2", "cpu": 8, "memory_mib": 4096}],
            "vms": [{"name": "a", "host": "hv1", "cpu": 1, "memory_mib": 3000}, {"name": "b", "host": "hv2", "cpu": 1, "memory_mib": 3000}]}
    plan = run(model=data)
    assert plan["status"] == "unchanged" and plan["steps"] == []


def test_model_given_as_data_with_objective_constraints_and_budget():
    data = model(warnings=["made by hand"])
    plan = run(model=data, objective="consolidate", time_limit_s=5,
               constraints=[{"type": "spread", "vms": ["vm1", "vm2", "vm3"]}], max_memory_moved_mib=2048)
    assert len({plan["target"][vm] for vm in ("vm1", "vm2", "vm3")}) == 3
    assert plan["stats"]["memory_moved_mib"] <= 2048
    assert plan["initial"] == {vm["name"]: {"host": vm["host"], "state": "running"} for vm in data["vms"]}
    assert plan["model_warnings"] == ["made by hand"]
    assert data["warnings"] == ["made by hand"] and data["constraints"] == []   # the caller's model is left as it was


def test_evacuate_empties_the_hosts():
    plan = run(model=model(), objective="repair", evacuate=["hv1", "hv2"], time_limit_s=5)
    assert set(plan["target"].values()) <= {"hv3", "hv4"}
    assert {a["vm"] for step in plan["steps"] for a in step} == {vm for vm, where in plan["initial"].items()
                                                                 if where["host"] in ("hv1", "hv2")}


def hostvars() -> dict:
    """What the libvirt_cluster inventory gives: hypervisors and VMs told apart by entropy_kind."""
    hvs = {"hv%d" % i: {"entropy_kind": "hypervisor", "entropy_reachable": True, "entropy_cpu_cores": 4,
                        "entropy_memory_mib": 4096} for i in (1, 2)}
    hvs["hv3"] = {"entropy_kind": "hypervisor", "entropy_reachable": False, "entropy_error": "connection refused"}
    vms = {"web%d" % i: {"entropy_kind": "vm", "entropy_hypervisor": "hv%d" % i, "entropy_state": "running",
                         "entropy_memory_mib": 1024, "entropy_vcpus": 1, "entropy_cpu_demand_cores": 0.25} for i in (1, 2)}
    vms["web2"].pop("entropy_cpu_demand_cores")
    return {**hvs, **vms, "localhost": {"ansible_connection": "local"}}


def test_model_from_the_plays_hostvars():
    plan = run({"hostvars": hostvars()}, time_limit_s=5)
    assert plan["initial"] == {"web1": {"host": "hv1", "state": "running"}, "web2": {"host": "hv2", "state": "running"}}
    assert plan["stats"]["hosts_used_after"] == 1
    warnings = plan["model_warnings"]
    assert any("hv3 left out of the model: it was unreachable (connection refused)" in w for w in warnings), warnings
    assert any("web2: CPU demand not measured" in w for w in warnings), warnings


def test_model_from_given_hostvars_wins_over_the_plays():
    given = {"hv9": {"entropy_kind": "hypervisor", "entropy_reachable": True, "entropy_cpu_cores": 2, "entropy_memory_mib": 2048}}
    plan = run({"hostvars": hostvars()}, ansible_lookup_hostvars=given)
    assert plan["target"] == {} and plan["initial"] == {}


def carrying(constraints=None, options=None) -> dict:
    """hostvars() with the inventory file's model_constraints / model_options on every hypervisor, as the inventory sets them."""
    data = hostvars()
    for name in ("hv1", "hv2", "hv3"):
        data[name] = dict(data[name], **({"entropy_model_constraints": constraints} if constraints else {}),
                          **({"entropy_model_options": options} if options else {}))
    return data


def test_the_inventory_files_constraints_and_options_reach_the_plan(solved):
    """Without the carried spread both VMs share one host (test_model_from_the_plays_hostvars)."""
    spread = {"type": "spread", "vms": ["web1", "web2"]}
    plan = run({"hostvars": carrying([spread], {"seed": 5})}, time_limit_s=5)
    assert plan["stats"]["hosts_used_after"] == 2 and plan["target"]["web1"] != plan["target"]["web2"]
    assert solved[-1].seed == 5
    # with the caller's constraints besides (union) and the caller's option winning over the file's
    plan = run({"hostvars": carrying([spread], {"seed": 5})}, constraints=[{"type": "ban", "vms": ["web1"], "hosts": ["hv2"]}, spread],
               seed=6, time_limit_s=5)
    assert plan["target"] == {"web1": "hv1", "web2": "hv2"} and solved[-1].seed == 6


@pytest.mark.parametrize("variables, expected", [
    ({"hostvars": dict(carrying(), hv1=dict(hostvars()["hv1"], entropy_model_options={"seed": 1}),
                       hv2=dict(hostvars()["hv2"], entropy_model_options={"seed": 2}))},
     "reconfiguration_plan: hypervisors hv1 and hv2 carry different model_options seed (1 and 2)"),
    ({"hostvars": carrying([{"type": "root", "vms": ["web3"]}])},
     "the cluster model is malformed: constraints[0] (root): unknown vm 'web3' (the model builder: hypervisor hv3 left out of the model"),
])
def test_carried_constraints_errors_name_the_cause(variables, expected):
    with pytest.raises(AnsibleError) as err:
        run(variables)
    message = str(err.value)
    assert expected in message and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("kwargs, variables, expected", [
    ({"model": model(), "model_file": "/x.json"}, {}, "reconfiguration_plan: give either model or model_file, not both"),
    ({"model_file": "{tmp}/missing.json"}, {},
     "reconfiguration_plan: cannot read the model file {tmp}/missing.json: No such file or directory"),
    ({"model_file": "{tmp}/broken.json"}, {}, "reconfiguration_plan: the model file {tmp}/broken.json is not valid JSON: "),
    ({"model": model(vms=[{"name": "web01", "host": "hv1", "cpu": 1, "memory_mib": "8G"}])}, {},
     "the cluster model is malformed: vms[0] (name 'web01'): field 'memory_mib' must be a non-negative integer, got '8G'"),
    ({"model": model({"objective": "fastest"})}, {},
     "the cluster model is malformed: options: field 'objective' must be one of consolidate, repair, balance, schedule, got 'fastest'"),
    ({"model": model(), "constraints": [{"type": "fence", "vms": ["vm1"], "hosts": ["nohost"]}]}, {},
     "the cluster model is malformed: constraints[0] (fence): unknown host 'nohost'"),
    ({"model": model(), "evacuate": ["hv1", "hv2", "hv3", "hv4"]}, {}, "no placement satisfies the request: "),
    ({}, {"hostvars": {"localhost": {}}},
     "reconfiguration_plan: the inventory has no reachable hypervisor (no host with entropy_kind=hypervisor)"),
    ({"model": model(), "objective": "fastest"}, {}, "fastest"),
])
def test_errors_name_the_object_and_the_fix(tmp_path, kwargs, variables, expected):
    write(tmp_path, "{not json", "broken.json")
    kwargs = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(AnsibleError) as err:
        run(variables, **kwargs)
    message = str(err.value)
    assert expected.replace("{tmp}", str(tmp_path)) in message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message


def plan_playbook(tmp_path, extra_vars: dict) -> tuple[subprocess.CompletedProcess, dict]:
    """`ansible-playbook entropy.cluster.plan -e ...` as docs/playbooks.md shows it (no inventory, no libvirt)."""
    plan_file = tmp_path / "plan.json"
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "entropy.cluster.plan",
           "-e", json.dumps(dict(extra_vars, entropy_plan_file=str(plan_file)))]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    res = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         check=False, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    return res, json.loads(plan_file.read_text())


def test_the_plan_role_leaves_a_model_files_options_in_force(tmp_path):
    """The role's variables are unset by default: the file's objective and budget hold, until set with -e."""
    path = write(tmp_path, model({"objective": "repair", "max_migrations": 0, "time_limit_s": 3}))
    _res, plan = plan_playbook(tmp_path, {"entropy_model_file": path})
    assert plan["objective"] == "repair" and plan["stats"]["migrations"] == 0
    _res, plan = plan_playbook(tmp_path, {"entropy_model_file": path, "entropy_objective": "consolidate",
                                          "entropy_max_migrations": 8, "entropy_time_limit_s": 5})
    assert plan["objective"] == "consolidate" and plan["stats"]["hosts_used_after"] == 2


def test_objective_schedule_runs_the_highest_priorities_and_lists_the_saved_vms():
    """Four 4 GiB hosts full of 2 GiB priority-0 VMs; two priority-5 VMs wait saved: two priority-0 VMs are saved."""
    data = model({"objective": "schedule"})
    for vm in data["vms"]:
        vm["memory_mib"] = 2048
    data["vms"] += [{"name": "hi1", "state": "saved", "cpu": 0.5, "memory_mib": 2048, "priority": 5},
                    {"name": "hi2", "state": "saved", "host": "hv1", "cpu": 0.5, "memory_mib": 1024, "priority": 5}]
    plan = run(model=data)
    assert plan["objective"] == "schedule"
    assert {"hi1", "hi2"} <= set(plan["target"]) and len(plan["saved"]) == 2
    kinds = sorted(a["action"] for step in plan["steps"] for a in step)
    assert kinds == ["resume", "resume", "suspend", "suspend"]
    assert plan["initial"]["hi1"] == {"host": None, "state": "saved"}


def test_the_plan_role_accepts_objective_schedule(tmp_path):
    data = model({"objective": "consolidate", "time_limit_s": 3})
    data["vms"].append({"name": "waiting", "state": "saved", "cpu": 0.5, "memory_mib": 1024, "priority": 1})
    _res, plan = plan_playbook(tmp_path, {"entropy_model_file": write(tmp_path, data), "entropy_objective": "schedule"})
    assert plan["objective"] == "schedule" and plan["saved"] == [] and "waiting" in plan["target"]


def test_on_error_return_gives_the_message_alone():
    assert run(model=model(), evacuate=["hv1", "hv2", "hv3", "hv4"], on_error="return")["error"].startswith(
        "no placement satisfies the request: ")
    assert run(model=model(), objective="fastest", on_error="return")["error"].count("\n") == 0
    with pytest.raises(AnsibleError, match="on_error must be raise or return"):
        run(model=model(), on_error="ignore")


def test_the_plan_role_fails_with_the_solvers_words_first_and_alone(tmp_path):
    path = write(tmp_path, model())
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "entropy.cluster.plan",
           "-e", json.dumps({"entropy_model_file": path, "entropy_plan_file": str(tmp_path / "p.json"),
                             "entropy_constraints": [{"type": "fence", "vms": ["vm1"], "hosts": ["hv1"]},
                                                     {"type": "ban", "vms": ["vm1"], "hosts": ["hv1"]}]})]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    res = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=300)
    assert res.returncode == 2, res.stdout[-3000:]
    fatal = [line for line in res.stdout.splitlines() if line.startswith("fatal: ")]
    assert len(fatal) == 1, res.stdout[-3000:]
    assert '"msg": "no placement satisfies the request: constraint #' in fatal[0], fatal[0]
    for wrapper in ("Finalization of task args", "Error while resolving value", "The lookup plugin", "set_fact"):
        assert wrapper not in res.stdout, res.stdout[-3000:]


def test_the_plan_role_takes_survey_answers_as_text(tmp_path):
    """As an AWX survey passes them: hosts as "hv1,hv2", constraints and solver options as JSON / YAML text."""
    path = write(tmp_path, model())
    _res, plan = plan_playbook(tmp_path, {
        "entropy_model_file": path, "entropy_objective": "repair", "entropy_evacuate_hosts": "hv1\nhv2\n",  # an AWX multiple-select answer
        "entropy_constraints": '[{"type": "spread", "vms": ["vm1", "vm2"]}]',
        "entropy_solver_options": "max_parallel_migrations_per_host: 1\n"})
    assert not set(plan["target"].values()) & {"hv1", "hv2"}, plan["target"]
    assert plan["target"]["vm1"] != plan["target"]["vm2"]
    _res, listed = plan_playbook(tmp_path, {"entropy_model_file": path, "entropy_objective": "repair",
                                            "entropy_evacuate_hosts": ["hv1", "hv2"],
                                            "entropy_constraints": [{"type": "spread", "vms": ["vm1", "vm2"]}],
                                            "entropy_solver_options": {"max_parallel_migrations_per_host": 1}})
    assert listed["target"] == plan["target"]
