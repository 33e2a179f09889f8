"""The among and split constraints (BtrPlace): parsing, checker, CP-SAT encoding (dense and LNS),
the planner's guard and the infeasibility explanations."""
from __future__ import annotations

import pytest

import placement
from placement import InfeasibleError, ModelError
from placement import solver as solver_mod
from placement.solver import plan_for_target

from helpers import host, model, solve_checked, vm


@pytest.fixture(name="path", params=["dense", "lns"])
def fixture_path(request, monkeypatch):
    """Run a test on the small-problem path (one CP-SAT model) and on the large one (greedy + LNS)."""
    if request.param == "lns":
        monkeypatch.setattr(solver_mod, "DENSE_PAIRS", 0)
    return request.param


def among_case() -> tuple[list, list]:
    # hv1 alone is group 0, hv2 and hv3 group 1; a + b (40 GiB) do not fit in group 0
    hosts = [host("hv1", gib=32), host("hv2", gib=32), host("hv3", gib=32)]
    vms = [vm("a", "hv1", gib=20), vm("b", "hv2", gib=20), vm("c", "hv3", gib=8)]
    return hosts, vms


AMONG = {"type": "among", "vms": ["a", "b"], "groups": [["hv1"], ["hv2", "hv3"]]}


# --- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("con, expected", [
    ({"type": "among", "vms": ["a"]}, "constraints[0] (among): missing field 'groups'"),
    ({"type": "among", "vms": ["a"], "groups": []}, "field 'groups' must be a list of at least 1 lists of host names"),
    ({"type": "among", "vms": ["a"], "groups": [["hv1"], ["hv1", "hv2"]]},
     "constraints[0] (among): host 'hv1' is in groups[0] and groups[1]; groups must not overlap"),
    ({"type": "among", "vms": ["a"], "groups": [["hv9"]]}, "constraints[0] (among): unknown host 'hv9'"),
    ({"type": "among", "vms": ["a"], "groups": [[]]}, "field 'groups[0]' must be a non-empty list of host names"),
    ({"type": "split", "groups": [["a", "b"]]}, "constraints[0] (split): field 'groups' must be a list of at least 2"),
    ({"type": "split", "groups": [["a"], ["nope"]]}, "constraints[0] (split): unknown vm 'nope'"),
    ({"type": "split", "groups": [["a"], ["a", "b"]]}, "vm 'a' is in groups[0] and groups[1]"),
    ({"type": "split", "groups": [["a"], ["b"]], "vms": ["c"]}, "constraints[0] (split): unknown field(s) 'vms'"),
])
def test_malformed_among_and_split_name_the_entry(con, expected):
    hosts, vms = among_case()
    with pytest.raises(ModelError) as err:
        placement.load_model(model(hosts, vms, [con]))
    assert expected in str(err.value)


def test_the_registry_knows_the_new_types():
    from placement.constraints import constraint_types  # pylint: disable=import-outside-toplevel
    assert {"among", "split"} <= set(constraint_types())


# --- checker ------------------------------------------------------------------------------------
def test_among_checker():
    hosts, vms = among_case()
    m = placement.load_model(model(hosts, vms, [AMONG]))
    con = m.constraints[0]
    assert con.check_final(m, {"a": "hv2", "b": "hv3", "c": "hv3"}) == []
    assert con.check_final(m, {"a": "hv1", "b": "hv2", "c": "hv3"}) == [
        "constraint #0 (among ['a', 'b'] in one of 2 host groups): vms are in more than one group "
        "('a' in groups[0], 'b' in groups[1])"]
    m2 = placement.load_model(model(hosts, vms, [{"type": "among", "vms": ["a"], "groups": [["hv2"]]}]))
    assert m2.constraints[0].check_final(m2, {"a": "hv1"}) == [
        "constraint #0 (among ['a'] in one of 1 host groups): vm 'a' is on 'hv1', in none of the groups"]
    # during a migration a VM occupies both ends: crossing groups breaks a continuous among
    assert con.check_state(m, {"a": {"hv2", "hv1"}, "b": {"hv2"}})


def test_split_checker():
    hosts, vms = among_case()
    m = placement.load_model(model(hosts, vms, [{"type": "split", "groups": [["a"], ["b", "c"]]}]))
    con = m.constraints[0]
    assert con.check_final(m, {"a": "hv1", "b": "hv2", "c": "hv2"}) == []   # one group may share
    assert con.check_final(m, {"a": "hv2", "b": "hv2", "c": "hv3"}) == [
        "constraint #0 (split 2 vm groups ['a'] / ['b', 'c']): vms 'a' and 'b' of different groups share host 'hv2'"]
    assert con.check_state(m, {"a": {"hv1", "hv3"}, "b": {"hv2"}, "c": {"hv3"}})


# --- the solver obeys them ------------------------------------------------------------------------
def test_among_keeps_the_vms_in_one_group(path):
    hosts, vms = among_case()
    free = solve_checked(model(hosts, vms))
    assert free["target"]["a"] == "hv1"             # unconstrained: a stays, c joins b
    plan = solve_checked(model(hosts, vms, [AMONG]))
    t = plan["target"]
    assert {t["a"], t["b"]} <= {"hv2", "hv3"}
    assert plan["stats"]["hosts_used_after"] == 2


def test_continuous_among_stays_in_the_starting_group():
    hosts = [host("hv1", gib=32), host("hv2", gib=32), host("hv3", gib=64)]
    vms = [vm("a", "hv1", gib=10), vm("b", "hv2", gib=10), vm("c", "hv3", gib=40)]
    groups = [["hv1", "hv2"], ["hv3"]]
    plan = solve_checked(model(hosts, vms, [{"type": "among", "vms": ["a", "b"], "groups": groups}]))
    assert plan["stats"]["hosts_used_after"] == 1     # discrete: all three end on hv3
    plan = solve_checked(model(hosts, vms, [{"type": "among", "vms": ["a", "b"], "groups": groups,
                                             "continuous": True}]))
    assert plan["target"]["a"] == plan["target"]["b"] and plan["target"]["a"] in ("hv1", "hv2")


def test_split_keeps_groups_apart(path):
    hosts = [host(f"hv{i}", gib=32) for i in (1, 2, 3)]
    vms = [vm("a", "hv1", gib=8), vm("b", "hv2", gib=8), vm("c", "hv3", gib=8)]
    assert solve_checked(model(hosts, vms))["stats"]["hosts_used_after"] == 1
    plan = solve_checked(model(hosts, vms, [{"type": "split", "groups": [["a"], ["b", "c"]]}]))
    t = plan["target"]
    assert t["a"] not in (t["b"], t["c"])
    assert plan["stats"]["hosts_used_after"] == 2


# --- infeasible: the explanation names the constraint -------------------------------------------
def test_among_without_a_group_big_enough_is_explained():
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [vm("a", "hv1", gib=10), vm("b", "hv2", gib=10)]
    with pytest.raises(InfeasibleError) as err:
        placement.solve(model(hosts, vms, [{"type": "among", "vms": ["a", "b"], "groups": [["hv1"], ["hv2"]]}]))
    assert err.value.explanation == ("constraint #0 (among ['a', 'b'] in one of 2 host groups): no group of hosts "
                                     "can take all its vms (together 2 cpu and 20 GiB)")


def test_split_that_cannot_hold_is_named():
    hosts = [host("hv1"), host("hv2")]
    vms = [vm("a", "hv1"), vm("b", "hv2")]
    cons = [{"type": "split", "groups": [["a"], ["b"]]}, {"type": "fence", "vms": ["a", "b"], "hosts": ["hv1"]}]
    with pytest.raises(InfeasibleError) as err:
        placement.solve(model(hosts, vms, cons))
    assert "without constraint #0 (split 2 vm groups ['a'] / ['b']) one exists" in err.value.explanation


def test_split_across_a_gather_is_explained():
    hosts = [host("hv1"), host("hv2")]
    vms = [vm("a", "hv1"), vm("b", "hv2")]
    cons = [{"type": "gather", "vms": ["a", "b"]}, {"type": "split", "groups": [["a"], ["b"]]}]
    with pytest.raises(InfeasibleError) as err:
        placement.solve(model(hosts, vms, cons))
    assert err.value.explanation == ("constraint #0 (gather ['a', 'b']) conflicts with "
                                     "constraint #1 (split 2 vm groups ['a'] / ['b'])")


# --- the planner's guard --------------------------------------------------------------------------
def test_continuous_split_is_kept_during_the_plan():
    # a and b swap hosts: in one step each would share a host with the other while migrating
    hosts = [host("hv1"), host("hv2"), host("hv3")]
    vms = [vm("a", "hv1"), vm("b", "hv2")]
    m = model(hosts, vms, [{"type": "split", "groups": [["a"], ["b"]], "continuous": True}])
    plan = plan_for_target(m, {"a": "hv2", "b": "hv1"})
    assert placement.check_plan(m, plan) == []
    assert len(plan["steps"]) >= 2 and plan["stats"]["pivots"] == 1
    # the same swap without the continuous flag runs in one step
    m["constraints"][0]["continuous"] = False
    plan = plan_for_target(m, {"a": "hv2", "b": "hv1"})
    assert placement.check_plan(m, plan) == [] and len(plan["steps"]) == 1


def test_no_isinstance_dispatch_on_constraint_classes_outside_constraints_py():
    """Constraints own their behaviour: other modules call hooks, never ask for a class."""
    import os  # pylint: disable=import-outside-toplevel
    import re  # pylint: disable=import-outside-toplevel

    from placement import constraints  # pylint: disable=import-outside-toplevel
    from conftest import ROOT  # pylint: disable=import-outside-toplevel
    names = sorted(cls.__name__ for cls in constraints._REGISTRY.values())  # pylint: disable=protected-access
    assert {"Ban", "Among", "Split"} <= set(names)
    pattern = re.compile(r"isinstance\([^)]*\b(%s)\b|from \.constraints import [^\n]*\b(%s)\b"
                         % ("|".join(names), "|".join(names)))
    pkg = os.path.join(ROOT, "plugins", "plugin_utils", "placement")
    found = []
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py") and name != "constraints.py":
            with open(os.path.join(pkg, name), encoding="utf-8") as handle:
                found += [f"{name}: {m.group(0)}" for m in pattern.finditer(handle.read())]
    assert found == []
