from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT
from helpers import host, model, vm

TOOL = os.path.join(ROOT, "tools", "entropy_solve.py")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, input=stdin, check=False,
                          timeout=60)


def test_cli_solves_and_checks(tmp_path):
    src = tmp_path / "model.json"
    out = tmp_path / "plan.json"
    src.write_text(json.dumps(model([host("hv1"), host("hv2")], [vm("a", "hv1"), vm("b", "hv2", gib=4)])))
    res = run(str(src), "-o", str(out), "--time-limit", "2", "--seed", "3")
    assert res.returncode == 0, res.stderr
    plan = json.loads(out.read_text())
    assert plan["stats"]["hosts_used_after"] == 1
    assert "hosts used 2 -> 1" in res.stderr
    assert "Traceback" not in res.stderr
    res = run(str(src), "--check", str(out))
    assert res.returncode == 0 and "plan is valid" in res.stderr
    plan["target"]["a"] = "hv2" if plan["target"]["a"] == "hv1" else "hv1"
    out.write_text(json.dumps(plan))
    res = run(str(src), "--check", str(out))
    assert res.returncode == 1 and "violation: target: vm 'a'" in res.stderr


def test_cli_bad_input_exit_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(model([host("hv1")], [{"name": "web01", "host": "hv1", "cpu": 1, "memory_mib": "8G"}])))
    res = run(str(bad))
    assert res.returncode == 2
    assert "vms[0] (name 'web01'): field 'memory_mib' must be a non-negative integer, got '8G'" in res.stderr
    assert "Traceback" not in res.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    res = run(str(broken))
    assert res.returncode == 2 and "cannot read model" in res.stderr and "Traceback" not in res.stderr
    res = run(str(tmp_path / "missing.json"))
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_cli_infeasible_exit_3(tmp_path):
    src = tmp_path / "m.json"
    src.write_text(json.dumps(model([host("hv1", gib=8)], [vm("a", "hv1", gib=16)])))
    res = run(str(src))
    assert res.returncode == 3 and "infeasible: " in res.stderr and "'a'" in res.stderr


def test_package_imports_without_ortools():
    code = ("import sys; sys.modules['ortools'] = None; sys.modules['ortools.sat'] = None; "
            "sys.modules['ortools.sat.python'] = None; sys.path.insert(0, sys.argv[1]); import placement; "
            "m = {'version': 1, 'hosts': [{'name': 'h', 'cpu': 1, 'memory_mib': 1}], 'vms': []}; "
            "placement.load_model(m); print(placement.check_plan(m, {'steps': [], 'target': {}}))\n"
            "try:\n    placement.solve(m)\nexcept placement.PlacementError as e:\n    print('ERR', e)")
    res = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "plugins", "plugin_utils")],
                         capture_output=True, text=True, check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["[]", "ERR ortools is required to optimise placements: pip install ortools"]


def test_no_ansible_and_only_relative_imports():
    pkg = os.path.join(ROOT, "plugins", "plugin_utils", "placement")
    for name in os.listdir(pkg):
        if name.endswith(".py"):
            with open(os.path.join(pkg, name), encoding="utf-8") as handle:
                text = handle.read()
            assert "import ansible" not in text and "from ansible" not in text, name
            assert "\nfrom placement" not in text and "\nimport placement" not in text, name
            assert "from __future__ import annotations" in text, name


def test_cli_btrplace_instance(tmp_path):
    data = os.path.join(ROOT, "tests", "data", "btrplace", "issue-131-0.json.gz")
    out = tmp_path / "plan.json"
    res = run("--btrplace", data, "-o", str(out), "--time-limit", "2", "--objective", "consolidate")
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    # the user's objective wins: no word about mapping the instance's own; alike constraints share one line
    assert warnings == [
        "warning: resource view 'controller_cpu' ignored (only cpu and memory are modelled)",
        "warning: 4 resourceCapacity constraints ignored: resource 'controller_cpu' is not modelled "
        "(constraints[2], [5], [13], ...)",
        "warning: 25 preserve constraints ignored: resource 'controller_cpu' is not modelled "
        "(constraints[14], [16], [17], ...)"], res.stderr
    # BtrPlace amounts have no unit: no GiB, no seconds of migration
    summary = res.stderr.splitlines()[0]
    assert summary.startswith("status ") and " memory units moved, " in summary, summary
    assert "GiB" not in res.stderr and "s to run" not in res.stderr, res.stderr
    assert json.loads(out.read_text())["objective"] == "consolidate"
    res = run("--btrplace", data, "-o", str(out), "--time-limit", "2")
    assert res.returncode == 0, res.stderr
    assert "warning: objective 'minimizeMTTR' mapped to 'repair'" in res.stderr.splitlines()[-1], res.stderr
    assert json.loads(out.read_text())["objective"] == "repair"
    res = run("--btrplace", data, "--check", str(out))
    assert res.returncode == 0 and "plan is valid" in res.stderr
    res = run("--btrplace", os.path.join(ROOT, "tests", "data", "btrplace", "nope.json.gz"))
    assert res.returncode == 2 and "error: btrplace: cannot read" in res.stderr and "Traceback" not in res.stderr


def _venv() -> str:
    """The venv running these tests: what `bash tools/run.sh setup` built (or $ENTROPY_VENV)."""
    return os.environ.get("ENTROPY_VENV") or sys.prefix


def test_documented_entry_run_sh_solve(tmp_path):
    """README: `bash tools/run.sh solve MODEL -o PLAN` from any directory, paths relative to it."""
    (tmp_path / "m.json").write_text(json.dumps(model([host("hv1"), host("hv2")], [vm("a", "hv1"), vm("b", "hv2")])))
    env = dict(os.environ, ENTROPY_VENV=_venv())
    cmd = ["bash", os.path.join(ROOT, "tools", "run.sh"), "solve", "m.json", "--time-limit", "2"]
    res = subprocess.run([*cmd, "-o", "plan.json"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((tmp_path / "plan.json").read_text())["stats"]["hosts_used_after"] == 1
    assert "hosts used 2 -> 1" in res.stderr
    res = subprocess.run([*cmd, "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stats"]["hosts_used_after"] == 1   # stdout is the plan and nothing else


def test_documented_entry_python3_without_ortools_uses_the_venv(tmp_path):
    """README: `python3 tools/entropy_solve.py` with a Python that has no ortools re-runs itself in the venv."""
    (tmp_path / "m.json").write_text(json.dumps(model([host("hv1"), host("hv2")], [vm("a", "hv1"), vm("b", "hv2")])))
    env = {"PATH": "/usr/bin:/bin", "ENTROPY_VENV": _venv()}
    # the system's python3 as written; then with -S (no site-packages), which surely lacks ortools
    for python in (["python3"], [sys.executable, "-S"]):
        (tmp_path / "plan.json").unlink(missing_ok=True)
        res = subprocess.run([*python, TOOL, "m.json", "-o", "plan.json", "--time-limit", "2"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, check=False, timeout=120)
        assert res.returncode == 0, (python, res.stderr)
        assert json.loads((tmp_path / "plan.json").read_text())["stats"]["hosts_used_after"] == 1
    # without a venv to go to, the solver's own message says what is missing
    env["ENTROPY_VENV"] = str(tmp_path / "no-venv")
    res = subprocess.run([sys.executable, "-S", TOOL, "m.json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=False, timeout=120)
    assert res.returncode == 2 and "ortools is required" in res.stderr and "Traceback" not in res.stderr, res.stderr
