# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan -> approve -> apply across jobs (issue 12), run with ansible-runner, the executor AWX uses.

Job A plans on the lab and publishes the plan with set_stats; what ansible-runner records as the job's
artifact (the ``artifact_data`` of its stats event, which AWX hands to the next workflow node as extra vars)
goes to job B, which applies it. The jobs share nothing but the libvirt endpoints: separate private data
dirs, HOME and TMPDIR, and (with bubblewrap) their own PID namespace and an empty /tmp.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import COLLECTIONS, ROOT
from test_consolidate import INJECTION, _define_diskless

ansible_runner = pytest.importorskip("ansible_runner")

PLAYBOOKS = {
    "plan.yml": "- name: Plan\n  ansible.builtin.import_playbook: entropy.cluster.plan\n",
    "apply.yml": "- name: Apply\n  ansible.builtin.import_playbook: entropy.cluster.apply\n",
}


def job(base, name: str, playbook: str, inventory: str, extravars: dict) -> dict:
    """Keyword arguments of ansible_runner.run for one job in its own private data dir (as an AWX job)."""
    private = os.path.join(str(base), name)
    for sub in ("project", "home", "tmp", "out"):
        os.makedirs(os.path.join(private, sub), exist_ok=True)
    for file_name, text in PLAYBOOKS.items():
        with open(os.path.join(private, "project", file_name), "w", encoding="utf-8") as handle:
            handle.write(text)
    env = {
        "HOME": os.path.join(private, "home"), "TMPDIR": os.path.join(private, "tmp"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(private, "tmp"), "ANSIBLE_REMOTE_TEMP": os.path.join(private, "tmp"),
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_NOCOLOR": "1",
        "ENTROPY_OUTPUT_DIR": os.path.join(private, "out"),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    kwargs = dict(private_data_dir=private, playbook=playbook, inventory=inventory, quiet=True, envvars=env, ident=name,
                  extravars=extravars)
    if shutil.which("bwrap"):
        venv = os.path.dirname(os.path.dirname(sys.executable))
        kwargs.update(process_isolation=True, process_isolation_executable="bwrap",
                      process_isolation_ro_paths=sorted({venv, os.path.realpath(venv), os.path.realpath(sys.base_prefix), ROOT, COLLECTIONS,
                                                         os.path.dirname(inventory)}))
    return kwargs


def artifact(runner) -> dict:
    """What the job published with set_stats, as AWX reads it (the stats event's artifact_data)."""
    stats = [e for e in runner.events if e.get("event") == "playbook_on_stats"]
    assert stats, runner.stdout.read()[-3000:]
    return stats[-1]["event_data"].get("artifact_data") or {}


def output(runner) -> str:
    with open(runner.stdout.name, encoding="utf-8") as handle:
        return handle.read()


def failure(runner) -> str:
    return " | ".join(str(e["event_data"]["res"].get("msg", "")) for e in runner.events
                      if e.get("event") == "runner_on_failed" and "res" in e.get("event_data", {}))


def changed(runner) -> int:
    return sum(ansible_runner_stats(runner).get("changed", {}).values())


def ansible_runner_stats(runner) -> dict:
    return runner.stats or {}


def test_a_plan_job_hands_its_plan_to_an_apply_job_and_a_second_apply_changes_nothing(lab_reset, tmp_path, playbook):
    lab = lab_reset
    hv1 = sorted(lab.hosts)[0]
    # A tenant's VM named with template code: the plan carries it through the artifact and extra vars as a name.
    assert _define_diskless(lab, hv1, INJECTION) == INJECTION
    try:
        handed_over(lab, hv1, tmp_path, playbook)
    finally:
        lab.remove_vm(INJECTION)


def handed_over(lab, hv1: str, tmp_path, playbook) -> None:
    uid_line = subprocess.run(["id"], capture_output=True, text=True, check=True).stdout.strip()
    on_hv1 = sorted(vm for vm, where in lab.placement().items() if any(h == hv1 for h, _s in where) and vm != INJECTION)
    assert on_hv1

    # Job A: plan an evacuation of hv1 (nothing moves); the plan is the job's artifact. The host as a survey passes it: text.
    job_a = ansible_runner.run(**job(tmp_path, "plan-job", "plan.yml", lab.inventory,
                                     {"entropy_objective": "repair", "entropy_evacuate_hosts": hv1 + ","}))
    assert job_a.rc == 0, output(job_a)[-4000:]
    published = artifact(job_a)
    assert set(published) == {"entropy_plan_base64"}, published
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", published["entropy_plan_base64"])
    plan = json.loads(base64.b64decode(published["entropy_plan_base64"]))
    assert plan["initial"][INJECTION]["host"] == hv1 and plan["target"][INJECTION] != hv1, plan
    assert sorted(lab.placement()) == sorted(list(lab.vms) + [INJECTION]) and [vm for vm in on_hv1 if lab.running_on(vm) == [hv1]] == on_hv1

    # (the approval node) then job B gets the artifact as its extra vars, as AWX passes it, and applies it.
    job_b = ansible_runner.run(**job(tmp_path, "apply-job", "apply.yml", lab.inventory, dict(published)))
    assert job_b.rc == 0, output(job_b)[-4000:]
    assert changed(job_b) > 0
    # The wait reads as progress: how many actions, each one's outcome, i of n; no "FAILED - RETRYING".
    text = output(job_b)
    assert "RETRYING" not in text and "FAILED" not in text, text[-4000:]
    assert re.search(r"step 1 of \d+: waiting for \d+ action\(s\)", text), text[-4000:]
    assert re.search(r"step 1 of \d+: migrate %s %s -> hv\d: done \(changed\) \(\d of \d finished\)" % (on_hv1[0], hv1), text), text[-4000:]
    for vm in on_hv1 + [INJECTION]:
        assert lab.running_on(vm) and hv1 not in lab.running_on(vm), (vm, lab.placement())
    lab.assert_each_vm_once(extra=(INJECTION,))
    assert uid_line not in output(job_a) + output(job_b), "a VM name was templated"
    after = lab.placement()

    # A retried job (or a second cron run) with the same plan: ok, nothing changes.
    job_c = ansible_runner.run(**job(tmp_path, "apply-again", "apply.yml", lab.inventory, dict(published)))
    assert job_c.rc == 0, output(job_c)[-4000:]
    assert changed(job_c) == 0, output(job_c)[-4000:]
    assert "already at the plan's target" in output(job_c)
    assert lab.placement() == after

    # The rendered playbook of the same plan, run again by hand: ok, nothing changes.
    rendered = os.path.join(str(tmp_path), "plan-job", "out", "plan-repair.yml")
    again = playbook(rendered, inventory=lab.inventory)
    assert again.returncode == 0 and re.search(r"changed=0\s", again.stdout), again.stdout[-4000:]
    assert "already at the plan's target" in again.stdout
    assert lab.placement() == after

    # A VM neither where the plan starts nor where it ends (paused): the plan is stale, nothing moves.
    conn = lab.connect(lab.running_on(on_hv1[0])[0])
    try:
        dom = conn.lookupByName(on_hv1[0])
        dom.suspend()
        try:
            job_d = ansible_runner.run(**job(tmp_path, "apply-stale", "apply.yml", lab.inventory, dict(published)))
            assert job_d.rc != 0, output(job_d)[-4000:]
            assert "the plan is stale, nothing was moved" in failure(job_d), failure(job_d)
            assert on_hv1[0] in failure(job_d)
        finally:
            dom.resume()
    finally:
        conn.close()
    assert lab.placement() == after


@pytest.mark.parametrize("value, message", [
    ("not base64 at all!", "the plan in entropy_plan_base64 is not base64 of a plan JSON: pass the entropy_plan_base64 artifact"),
    ("eyJzdGVwcyI6IFs=", "the plan in entropy_plan_base64 is not valid JSON (line 1, column 12: "),  # {"steps": [
    ("WzFd", "the plan in entropy_plan_base64 holds a JSON array, not a plan"),  # [1]
])
def test_a_malformed_plan_variable_is_refused_in_one_line(playbook, value, message):
    result = playbook("entropy.cluster.apply", extra_vars={"entropy_plan_base64": value})
    assert result.returncode == 2, result.stdout[-3000:]
    assert message in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stdout


def test_two_plans_at_once_are_refused(playbook, tmp_path):
    result = playbook("entropy.cluster.apply", extra_vars={"entropy_plan_base64": "e30=", "entropy_plan_file": str(tmp_path / "p.json")})
    assert result.returncode == 2, result.stdout[-3000:]
    assert "give the plan once: entropy_plan_base64" in result.stdout, result.stdout[-3000:]
