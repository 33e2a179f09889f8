# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every command README.md and docs/*.md tell a user to run is run by a test, which checks its outcome.

DOC_COMMANDS maps each command, as the docs write it, to the tests that run it (or its lab equivalent);
a command added to the docs without a test here fails ``test_every_documented_command_has_a_test``.
The cheap ones (the solver's command line, ansible-doc, the benchmarks in a short run) run below; the
ones that need the lab run in tests/integration/test_docs_commands.py and the tests named."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = ["README.md"] + sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
# What starts a command in the docs (in a sh / plain code block, or an inline code span with an argument).
COMMAND_PREFIXES = ("ansible-playbook ", "ansible-inventory ", "ansible-doc ", "ansible-test ", "bash tools/run.sh ", "python3 ",
                    "python ", ".venv/bin/python ", "virsh ", "ENTROPY_")

HERE = "tests/unit/test_docs_commands.py::"
LAB = "tests/integration/test_docs_commands.py::"
CI = "the test command itself (.ci/run runs `bash tools/run.sh test`: units, lint, sanity, build, integration, oldest)"

# command as written -> the tests that run it (node ids), or why the suite runs it otherwise or cannot run it here.
DOC_COMMANDS: dict[str, tuple[str, ...] | str] = {
    # README.md
    "bash tools/run.sh demo": (LAB + "test_the_demo_consolidates_and_a_second_consolidate_moves_nothing",),
    "bash tools/run.sh test": CI,
    "ansible-inventory -i prod.libvirt_cluster.yml --graph --vars": (LAB + "test_the_readme_inventory_file_shows_the_measured_load",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.plan": (LAB + "test_the_readme_plan_then_the_reviewed_plan_playbook",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy-plans/plan-consolidate.yml": (LAB + "test_the_readme_plan_then_the_reviewed_plan_playbook",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.consolidate": (
        "tests/integration/test_consolidate.py::test_consolidate_frees_hosts_and_a_rerun_changes_nothing",
        "tests/integration/test_check_mode.py::test_check_mode_of_the_playbooks_moves_nothing"),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.evacuate -e '{\"entropy_evacuate_hosts\": [\"hv02\"]}'": (
        "tests/integration/test_consolidate.py::test_evacuate_empties_the_named_host",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.rebalance": (
        "tests/integration/test_consolidate.py::test_consolidate_frees_hosts_and_a_rerun_changes_nothing",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.schedule": (
        "tests/integration/test_schedule_playbook.py::test_check_mode_of_schedule_shows_the_suspends_and_moves_nothing",
        "tests/integration/test_schedule_playbook.py::test_schedule_saves_the_vms_it_leaves_out_and_resumes_them_when_room_frees_up"),
    "ansible-playbook entropy.cluster.plan -e entropy_model_file=M.json -e entropy_plan_file=P.json": (
        "tests/integration/test_plan_offline.py::test_the_readme_what_if_line_with_paths_relative_to_where_it_runs",),
    "ansible-playbook entropy.cluster.<name>": (
        LAB + "test_the_readme_plan_then_the_reviewed_plan_playbook",
        "tests/integration/test_consolidate.py::test_consolidate_frees_hosts_and_a_rerun_changes_nothing"),
    "bash tools/run.sh solve model.json -o plan.json --time-limit 30": (HERE + "test_the_solve_lines_of_the_readme_and_solver_md",),
    "bash tools/run.sh solve model.json --check plan.json": (HERE + "test_the_solve_lines_of_the_readme_and_solver_md",),
    "bash tools/run.sh solve --btrplace tests/data/btrplace/issue-131-0.json.gz -o plan.json": (HERE + "test_the_btrplace_lines",),
    "python3 tools/entropy_solve.py tests/data/network/two-racks.json -o plan.json": (HERE + "test_the_network_model_line",),
    "python3 tools/entropy_solve.py INVENTORY.json --network": (
        "tests/unit/plugins/plugin_utils/placement/test_network.py::test_entropy_solve_network_builds_version_2_from_inventory_output",),
    "python benchmarks/bench_network.py": (HERE + "test_the_network_benchmark_in_a_short_run",),
    "python3 tools/entropy_solve.py tests/data/grid/two-clusters.json --grid -o plan.json": (HERE + "test_the_grid_line",),
    "python benchmarks/bench_grid.py": (HERE + "test_the_grid_benchmark_in_a_short_run",),
    ".venv/bin/python tools/migration_fit.py": ("tests/integration/test_migration_bandwidth.py::test_migration_fit_prints_its_table",),
    "bash tools/run.sh solve": ("tests/unit/plugins/plugin_utils/placement/test_cli_and_import.py::test_documented_entry_run_sh_solve",),
    "bash tools/run.sh setup": CI + ": every layer runs setup first",
    "python3 tools/entropy_solve.py ARGS": (
        "tests/unit/plugins/plugin_utils/placement/test_cli_and_import.py::test_documented_entry_python3_without_ortools_uses_the_venv",),
    "bash tools/run.sh lab-up": (LAB + "test_the_lab_commands",),
    "bash tools/run.sh lab-status": (LAB + "test_the_lab_commands",),
    "bash tools/run.sh lab-reset": (LAB + "test_the_lab_commands",),
    "bash tools/run.sh lab-down": (LAB + "test_the_lab_commands",),
    ".venv/bin/python tools/lab.py guest": (
        "tests/integration/test_inventory.py::test_network_rates_and_guest_memory_from_a_guest_with_an_os",),
    ".venv/bin/python benchmarks/soak_faults.py": (LAB + "test_the_fault_soak_in_one_short_round",),
    "bash tools/run.sh units | lint | sanity | build | integration | oldest": CI,
    "ansible-test sanity --venv": CI + ": `bash tools/run.sh sanity`",
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.apply -e entropy_plan_base64=<the artifact>": (
        "tests/integration/test_awx_workflow.py::test_a_plan_job_hands_its_plan_to_an_apply_job_and_a_second_apply_changes_nothing",),
    # docs/awx.md
    "ansible-doc -t role entropy.cluster.apply_plan": (HERE + "test_the_ansible_doc_lines",),
    "bash tools/run.sh ee": CI + ": `bash tools/run.sh lint` ends with it",
    "bash tools/run.sh lint": CI,
    "bash tools/run.sh changelog": "not run: it rewrites changelogs/ and CHANGELOG.rst in the checkout (a release step); "
                                   "`bash tools/run.sh lint` checks the fragments and changelog.yaml it reads with antsibull-changelog lint",
    "ansible-doc -t role entropy.cluster.plan": (HERE + "test_the_ansible_doc_lines",),
    "ansible-doc -t role entropy.cluster.dashboard": (HERE + "test_the_ansible_doc_lines",),
    "ansible-inventory -i inventories/prod.libvirt_cluster.yml --graph": (
        "tests/unit/plugins/inventory/test_awx_inventory_example.py::test_the_awx_inventory_source_example_builds",),
    # docs/benchmarks.md
    "python benchmarks/bench_solver.py": (HERE + "test_the_solver_benchmark_in_a_short_run",),
    "python benchmarks/bench_schedule.py": (HERE + "test_the_schedule_benchmark_in_a_short_run",),
    "python benchmarks/bench_solver.py --heavy --sizes 2000x5000,500x1500,2000x6000 --repair '' --time-limit 30": (
        HERE + "test_the_heavy_solver_benchmark_in_a_short_run",),
    "bash tools/run.sh solve --btrplace tests/data/btrplace/FILE --time-limit 5": (HERE + "test_the_btrplace_lines",),
    # docs/fault-soak.md
    "ENTROPY_LAB_DIR=/var/tmp/entropy-soak ENTROPY_LAB_SUBNET=127.0.9 .venv/bin/python benchmarks/soak_faults.py --min-migrations 50": (
        LAB + "test_the_fault_soak_in_one_short_round",),
    "virsh undefine": (LAB + "test_a_stale_definition_is_refused_until_the_documented_virsh_undefine",),
    "virsh destroy": "not run: the paused incoming copy a killed destination daemon may leave cannot be produced on demand "
                     "(seen in the fault soak only); the refusal that names it is tested in tests/integration/test_runs_that_die.py",
    # docs/fault-tolerance.md
    "ENTROPY_LIBVIRT_CONNECT_TIMEOUT=3 ansible-inventory -i prod.libvirt_cluster.yml --graph": (
        "tests/integration/test_fault_tolerance.py::test_a_stopped_hypervisor_is_unreachable_within_the_timeout_and_the_others_are_read",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.fence -e entropy_fence_hook=/path/to/power_off.yml": (
        "tests/integration/test_fault_tolerance.py::test_a_failed_host_is_fenced_recorded_left_out_and_does_not_restart_its_vms",),
    ".venv/bin/python tools/lab.py fence hv2": (
        "tests/integration/test_fault_tolerance.py::test_a_failed_host_is_fenced_recorded_left_out_and_does_not_restart_its_vms",),
    ".venv/bin/python benchmarks/bench_save_restore.py --sizes 64,256,512 --rounds 3": (
        "tests/integration/test_vm_image.py::test_the_save_restore_benchmark_in_one_round",),
    ".venv/bin/python benchmarks/bench_host_failure.py --rounds 3 --failure stop": (
        "tests/integration/test_fault_tolerance.py::test_the_failure_benchmark_in_one_round",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.checkpoint -e entropy_checkpoint_group=job_42 "
    "-e entropy_checkpoint_dir=/srv/shared/checkpoints": (
        "tests/integration/test_recover.py::test_checkpoint_retention_keeps_the_newest_and_merges_overlays_back",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.recover -e entropy_recover_host=hv02 "
    "-e entropy_checkpoint_dir=/srv/shared/checkpoints": (
        "tests/integration/test_recover.py::test_a_group_restarts_from_its_checkpoint_after_its_host_dies_and_never_runs_twice",),
    ".venv/bin/python benchmarks/bench_recover.py --rounds 3": ("tests/integration/test_recover.py::test_the_recovery_benchmark_in_one_round",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.recover -e entropy_recover_host=hv02 "
    "-e entropy_checkpoint_dir=/srv/shared/checkpoints -e entropy_recover_without_checkpoint=cold_boot": (
        "tests/integration/test_recover.py::test_a_vm_without_a_usable_checkpoint_is_cold_booted_or_reported_by_the_policy",),
    # docs/inventory.md
    "ansible-doc -t inventory entropy.cluster.libvirt_cluster": (HERE + "test_the_ansible_doc_lines",),
    "ansible-inventory -i cluster.libvirt_cluster.yml --graph": (LAB + "test_the_inventory_md_file_and_its_commands",),
    "ansible-inventory -i cluster.libvirt_cluster.yml --graph --vars": (LAB + "test_the_inventory_md_file_and_its_commands",),
    "ansible-inventory -i cluster.libvirt_cluster.yml --list": (LAB + "test_the_inventory_md_file_and_its_commands",),
    "ansible-inventory -i cluster.libvirt_cluster.yml --list > cluster.json": (
        "tests/unit/plugins/inventory/test_model_constraints_reach_the_plan.py::"
        "test_the_command_line_builds_the_same_model_from_ansible_inventory_output",),
    "python3 tools/entropy_solve.py cluster.json -o plan.json": (
        "tests/unit/plugins/inventory/test_model_constraints_reach_the_plan.py::"
        "test_the_command_line_builds_the_same_model_from_ansible_inventory_output",),
    "ansible-inventory --flush-cache": ("tests/integration/test_inventory.py::test_cache_replays_the_same_measurements_and_model_file",),
    "ansible-playbook --flush-cache": (LAB + "test_the_inventory_md_file_and_its_commands",),
    "ansible-inventory --list": ("tests/integration/test_inventory.py::test_list_shows_hypervisors_and_vms_with_measured_load",),
    "ansible-inventory --list --export": ("tests/unit/plugins/inventory/test_inventory_export.py::test_export_is_plain_except_possible_templates",),
    # docs/modules.md
    "ansible-doc -t module entropy.cluster.<name>": (HERE + "test_the_ansible_doc_lines",),
    "virsh hypervisor-cpu-baseline": "not run: the fix for hosts whose CPUs differ; every lab host runs on the same CPU",
    "virsh suspend": ("tests/integration/test_paused_migration.py::test_a_vm_moved_paused_by_another_tool_survives_its_next_moves",),
    "virsh domjobabort": ("tests/integration/test_migrate_paths.py::test_a_job_aborted_by_another_client_is_reported_and_the_vm_stays",),
    ".venv/bin/python -m pytest -q tests/unit/plugins/modules/test_vm_*.py": (HERE + "test_the_pytest_lines_select_tests",),
    "ENTROPY_LAB_DIR=... .venv/bin/python -m pytest -q tests/integration/test_modules_*.py": (HERE + "test_the_pytest_lines_select_tests",),
    # docs/jobs.md
    ".venv/bin/python tools/entropy_job.py check job.yml": (
        "tests/unit/plugins/plugin_utils/jobs/test_job_schema.py::test_documented_entry_entropy_job_check",),
    ".venv/bin/python tools/entropy_job.py check job.yml --model model.json": (
        "tests/unit/plugins/plugin_utils/jobs/test_job_schema.py::test_documented_entry_entropy_job_check",),
    # README.md and docs/jobs.md: the job playbooks
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.submit -e entropy_job_file=job.yml": (
        "tests/integration/test_jobs.py::test_submit_status_cancel_with_names_that_would_break_a_template",
        "tests/integration/test_jobs.py::test_no_room_queues_the_job_with_the_numbers",
        "tests/integration/test_jobs.py::test_a_job_larger_than_the_cluster_is_refused_with_the_numbers",
        "tests/integration/test_jobs.py::test_a_bad_job_file_is_refused_naming_the_field"),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.job_queue": (
        "tests/integration/test_job_guest.py::test_a_submitted_job_runs_its_command_and_the_queue_finishes_it_then_starts_the_next",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.job_status": (
        "tests/integration/test_jobs.py::test_submit_status_cancel_with_names_that_would_break_a_template",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.job_status -e entropy_job_name=analysis-42": (
        "tests/integration/test_jobs.py::test_no_room_queues_the_job_with_the_numbers",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.cancel -e entropy_job_name=analysis-42": (
        "tests/integration/test_jobs.py::test_no_room_queues_the_job_with_the_numbers",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.cancel -e entropy_job_file=job.yml": (
        "tests/integration/test_jobs.py::test_submit_status_cancel_with_names_that_would_break_a_template",),
    ".venv/bin/python tools/bench_warm_clones.py --counts 1 4 8": "not run: a benchmark of several minutes on the lab; its cold path is "
    "tests/integration/test_job_guest.py, its warm path tests/integration/test_warm_clone.py",
    # docs/playbooks.md
    "virsh -c 'qemu+unix:///system?socket=/var/tmp/entropy-lab/hosts/hv1/run/libvirt/libvirt-sock' domjobabort osvm": (
        "tests/integration/test_runs_that_die.py::test_after_kill_9_the_migration_goes_on_and_the_next_run_refuses_to_plan",),
    "virsh -c <destination> destroy <vm>": "not run: see `virsh destroy` (docs/fault-soak.md)",
    # docs/solver.md
    "bash tools/run.sh solve MODEL.json [-o PLAN.json] [--objective consolidate|repair|balance|schedule]": (
        "tests/unit/plugins/plugin_utils/placement/test_cli_and_import.py::test_documented_entry_run_sh_solve",
        "tests/unit/plugins/plugin_utils/placement/test_cli_and_import.py::test_cli_btrplace_instance"),
    "python3 tools/entropy_solve.py MODEL.json ...": (
        "tests/unit/plugins/plugin_utils/placement/test_cli_and_import.py::test_documented_entry_python3_without_ortools_uses_the_venv",),
    "bash tools/run.sh solve cluster.json -o plan.json --time-limit 30": (HERE + "test_the_solve_lines_of_the_readme_and_solver_md",),
    "bash tools/run.sh solve cluster.json --check plan.json": (HERE + "test_the_solve_lines_of_the_readme_and_solver_md",),
    "bash tools/run.sh units": CI,
    ".venv/bin/python -m pytest tests/unit/plugins/plugin_utils/placement -q": (HERE + "test_the_pytest_lines_select_tests",),
    ".venv/bin/python benchmarks/bench_solver.py": (HERE + "test_the_solver_benchmark_in_a_short_run",),
    "python3 tools/entropy_solve.py": (
        "tests/unit/plugins/plugin_utils/placement/test_cli_and_import.py::test_documented_entry_python3_without_ortools_uses_the_venv",),
    "ansible-test sanity": CI + ": `bash tools/run.sh sanity`",
    # docs/autonomic.md and README.md (the event-driven loop)
    "ENTROPY_INVENTORY=inventory/prod.libvirt_cluster.yml ansible-rulebook -r entropy.cluster.autonomic -i inventory/ -E ENTROPY_INVENTORY": (
        "tests/integration/test_autonomic_loop.py::test_an_overloaded_host_is_repaired_within_30_s_once",),
    "ansible-playbook -i grid.libvirt_cluster.yml entropy.cluster.repair -e "
    "'{\"entropy_cluster_disk_dirs\": {\"paris\": \"/srv/paris/images\", \"lyon\": \"/srv/lyon/images\"}}'": (
        "tests/integration/test_migrate_between_clusters.py::"
        "test_a_move_to_storage_the_source_does_not_see_copies_the_disk_then_removes_the_old_one",),
    "ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.repair": (
        "tests/integration/test_autonomic_loop.py::test_an_overloaded_host_is_repaired_within_30_s_once",),
    # docs/dashboard.md and README.md (web dashboard)
    "bash tools/run.sh dashboard": ("tests/integration/test_dashboard_browser.py::test_dashboard_in_a_browser",),
    "python -m dashboard adduser --users users.json alice --role operator": ("tests/unit/test_dashboard.py::test_adduser_command",),
    "python -m dashboard serve -i prod.libvirt_cluster.yml --users users.json": (
        "tests/integration/test_dashboard_browser.py::test_dashboard_in_a_browser",),
    "python -m dashboard serve -i prod.libvirt_cluster.yml --users users.json --audit-log audit.jsonl": (
        "tests/integration/test_dashboard_browser.py::test_dashboard_in_a_browser",),
    "python benchmarks/bench_dashboard.py": ("tests/unit/test_dashboard.py::test_the_dashboard_benchmark_in_a_short_run",),
    "bash tools/run.sh units tests/unit/test_dashboard.py": ("tests/unit/test_dashboard.py::test_login_and_cookie_flags",),
    "bash tools/run.sh integration tests/integration/test_dashboard_browser.py": (
        "tests/integration/test_dashboard_browser.py::test_dashboard_in_a_browser",),
    # docs/lab.md, docs/inventory.md, README.md (monitoring: Prometheus and the libvirt exporters)
    ".venv/bin/python tools/lab.py monitoring up": (
        "tests/integration/test_prometheus_load.py::test_prometheus_cpu_agrees_with_libvirt_sampling",),
    ".venv/bin/python tools/lab.py monitoring status": (
        "tests/integration/test_prometheus_load.py::test_prometheus_cpu_agrees_with_libvirt_sampling",),
    ".venv/bin/python tools/lab.py monitoring down": (
        "tests/integration/test_prometheus_load.py::test_prometheus_cpu_agrees_with_libvirt_sampling",),
    'ansible-inventory -i "$ENTROPY_LAB_DIR/lab-prometheus.libvirt_cluster.yml" --list': (
        "tests/integration/test_prometheus_load.py::test_prometheus_cpu_agrees_with_libvirt_sampling",),
}


def doc_text(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def documented_commands(path: str) -> list[str]:
    """The commands of one doc: lines of ```sh and plain code blocks (without a `$ ` prompt or a trailing
    comment), and inline code spans outside code blocks, that start with a command."""
    text = doc_text(path)
    found = []
    for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if block.group(1) not in ("", "sh"):
            continue
        for line in block.group(2).splitlines():
            line = re.sub(r"\s+#.*$", "", re.sub(r"^\$ ", "", line.strip())).strip()
            if line.startswith(COMMAND_PREFIXES):
                found.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found += [span.strip() for span in re.findall(r"`([^`\n]+)`", prose) if span.strip().startswith(COMMAND_PREFIXES) and " " in span.strip()]
    return found


def test_every_documented_command_has_a_test():
    commands = {command for path in DOCS for command in documented_commands(path)}
    assert len(commands) > 40, commands
    missing = sorted(commands - set(DOC_COMMANDS))
    assert not missing, "documented commands no test runs (add one, then list it in DOC_COMMANDS): %s" % missing
    stale = sorted(set(DOC_COMMANDS) - commands)
    assert not stale, "DOC_COMMANDS lists commands the docs no longer have: %s" % stale


def test_every_test_named_exists():
    for command, runs in DOC_COMMANDS.items():
        if isinstance(runs, str):
            assert runs.startswith(("the test command itself", "not run: ")), (command, runs)
            continue
        for node in runs:
            path, name = node.split("::")
            assert re.search(r"^def %s\(" % re.escape(name), doc_text(path), re.M), "%s: no test %s" % (command, node)


def venv_env() -> dict:
    # the venv running these tests is the one `bash tools/run.sh setup` built (or $ENTROPY_VENV)
    return dict(os.environ, ENTROPY_VENV=os.environ.get("ENTROPY_VENV") or sys.prefix)


def shell(command: str, cwd=ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """A documented command as written, run by bash in ``cwd`` (default: the checkout's root, where the docs
    run them); ``bash tools/run.sh`` and ``.venv/bin/python`` are this checkout's. Another ``cwd`` sees the
    checkout's tests/ (data files) through a symlink, so that a command writing its output writes it there."""
    if str(cwd) != ROOT and not os.path.exists(os.path.join(cwd, "tests")):
        os.symlink(os.path.join(ROOT, "tests"), os.path.join(cwd, "tests"))
    command = command.replace("bash tools/run.sh ", "bash %s " % os.path.join(ROOT, "tools", "run.sh"))
    command = re.sub(r"^(\.venv/bin/python|python3?) ", sys.executable + " ", command)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=venv_env(), capture_output=True, text=True, check=False, timeout=timeout)


def small_model() -> dict:
    hosts = [{"name": "hv%d" % i, "cpu": 8, "memory_mib": 8192} for i in (1, 2, 3)]
    vms = [{"name": "vm%d" % i, "host": "hv%d" % (i % 3 + 1), "state": "running", "vcpus": 2, "cpu": 1, "memory_mib": 2048}
           for i in range(1, 7)]
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": [], "options": {}}


def test_the_solve_lines_of_the_readme_and_solver_md(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(small_model()))
    solved = shell("bash tools/run.sh solve model.json -o plan.json --time-limit 30", tmp_path)
    assert solved.returncode == 0, solved.stderr
    assert "hosts used 3 -> 2" in solved.stderr
    assert json.loads((tmp_path / "plan.json").read_text())["stats"]["hosts_used_after"] == 2
    checked = shell("bash tools/run.sh solve model.json --check plan.json", tmp_path)
    assert checked.returncode == 0 and "plan is valid" in checked.stderr, checked.stderr
    # docs/solver.md: the same lines on cluster.json, and what they print
    shutil.copy(tmp_path / "model.json", tmp_path / "cluster.json")
    solved = shell("bash tools/run.sh solve cluster.json -o plan.json --time-limit 30", tmp_path)
    assert solved.returncode == 0 and re.search(r"^status \w+ \(consolidate\): hosts used 3 -> 2 \(lower bound 2\)", solved.stderr, re.M), solved.stderr
    checked = shell("bash tools/run.sh solve cluster.json --check plan.json", tmp_path)
    assert checked.returncode == 0 and "plan is valid" in checked.stderr, checked.stderr


def test_the_network_model_line(tmp_path):
    """README: the example network model (version 2) solved by tools/entropy_solve.py: valid, fewer hosts, and its
    declared traffic kept inside the racks."""
    for name in ("tools", "plugins"):
        os.symlink(os.path.join(ROOT, name), os.path.join(tmp_path, name))
    solved = shell("python3 tools/entropy_solve.py tests/data/network/two-racks.json -o plan.json", tmp_path)
    assert solved.returncode == 0, solved.stderr
    assert re.search(r"^network: cross-rack traffic 3800 -> 0 Mbit/s$", solved.stderr, re.M), solved.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["stats"]["hosts_used_after"] < plan["stats"]["hosts_used_before"]
    checked = shell("python3 tools/entropy_solve.py tests/data/network/two-racks.json --check plan.json", tmp_path)
    assert checked.returncode == 0 and "plan is valid" in checked.stderr, checked.stderr


def test_the_grid_line(tmp_path):
    """README: the two-cluster example solved with --grid: cluster A sheds small1 to cluster B, and the plan is valid."""
    for name in ("tools", "plugins"):
        os.symlink(os.path.join(ROOT, name), os.path.join(tmp_path, name))
    solved = shell("python3 tools/entropy_solve.py tests/data/grid/two-clusters.json --grid -o plan.json", tmp_path)
    assert solved.returncode == 0, solved.stderr
    assert re.search(r"^grid: 2 clusters, 1 migrations between clusters", solved.stderr, re.M), solved.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [m["vm"] for m in plan["grid"]["moves"]] == ["small1"]
    checked = shell("python3 tools/entropy_solve.py tests/data/grid/two-clusters.json --check plan.json", tmp_path)
    assert checked.returncode == 0 and "plan is valid" in checked.stderr, checked.stderr


def test_the_grid_benchmark_in_a_short_run():
    """docs/benchmarks.md: the grid benchmark on a small grid prints the grid and the global rows, both plans valid."""
    bench = shell("python benchmarks/bench_grid.py --clusters 2 --hosts 40 --vms 200 --time-limit 2 --global-limit 2", timeout=300)
    assert bench.returncode == 0, bench.stderr
    rows = [line for line in bench.stdout.splitlines() if line.startswith(("| grid |", "| global |"))]
    assert len(rows) == 2 and all("| ok |" in row for row in rows), bench.stdout


def test_the_network_benchmark_in_a_short_run():
    """docs/benchmarks.md's network benchmark on a small cluster with a 2 s limit (the measured run takes minutes)."""
    bench = shell("python benchmarks/bench_network.py --sizes 80x400 --rack-size 10 --time-limit 2 --markdown", timeout=300)
    assert bench.returncode == 0, bench.stderr
    row = [line for line in bench.stdout.splitlines() if line.startswith("| 80/400 |")]
    assert len(row) == 1, bench.stdout
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert cells[6] == "0" and cells[7] == "0", row   # no NIC/uplink violation, no violation at all


BTRPLACE = sorted(name for name in os.listdir(os.path.join(ROOT, "tests", "data", "btrplace")) if name.endswith(".json.gz"))


def test_the_btrplace_lines(tmp_path):
    solved = shell("bash tools/run.sh solve --btrplace tests/data/btrplace/issue-131-0.json.gz -o plan.json", tmp_path)
    assert solved.returncode == 0, solved.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["status"] in ("optimal", "feasible", "unchanged")
    checked = shell("bash tools/run.sh solve --btrplace tests/data/btrplace/issue-131-0.json.gz --check plan.json", tmp_path)
    assert checked.returncode == 0 and "plan is valid" in checked.stderr, checked.stderr
    # docs/benchmarks.md, for every FILE shipped
    assert len(BTRPLACE) >= 3, BTRPLACE
    for name in BTRPLACE:
        with gzip.open(os.path.join(ROOT, "tests", "data", "btrplace", name), "rt", encoding="utf-8") as handle:
            assert json.load(handle)
        solved = shell("bash tools/run.sh solve --btrplace tests/data/btrplace/%s --time-limit 5 -o %s.plan.json" % (name, name), tmp_path)
        assert solved.returncode == 0, (name, solved.stderr)
        checked = shell("bash tools/run.sh solve --btrplace tests/data/btrplace/%s --check %s.plan.json" % (name, name), tmp_path)
        assert checked.returncode == 0 and "plan is valid" in checked.stderr, (name, checked.stderr)


def test_the_solver_api_example_of_solver_md():
    block = re.search(r"^```python\n(from ansible_collections\.entropy\.cluster\.plugins\.plugin_utils\.placement import .*?)^```",
                      doc_text("docs/solver.md"), re.S | re.M).group(1)
    block = block.replace('"tests/data/btrplace/', '"%s/tests/data/btrplace/' % ROOT)
    scope = {"model_dict": small_model()}
    exec(compile(block, "docs/solver.md", "exec"), scope)  # pylint: disable=exec-used
    # objective "repair" on a cluster without overload: a valid plan that moves nothing
    assert scope["plan"]["objective"] == "repair" and scope["plan"]["steps"] == [] and scope["problems"] == []
    assert scope["model_dict"]["hosts"], "import_btrplace gives a model"


def test_the_ansible_doc_lines(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".tmp", "collections"), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1")
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py") and name != "__init__.py")
    for plugin_type, name in [("inventory", "libvirt_cluster")] + [("module", module) for module in modules]:
        shown = subprocess.run([ansible_doc, "-t", plugin_type, "entropy.cluster." + name], capture_output=True, text=True, check=False,
                               env=env, cwd=tmp_path, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("> %s entropy.cluster.%s " % (plugin_type.upper(), name)) and "OPTIONS" in shown.stdout, shown.stdout[:500]
    # docs/awx.md: the roles' variables
    for role in ("plan", "apply_plan", "dashboard"):
        shown = subprocess.run([ansible_doc, "-t", "role", "entropy.cluster." + role], capture_output=True, text=True, check=False,
                               env=env, cwd=tmp_path, timeout=120)
        assert shown.returncode == 0 and shown.stdout.startswith("> ROLE: *entropy.cluster.%s* " % role), shown.stdout[:500] + shown.stderr
        assert "ENTRY POINT: *main*" in shown.stdout and "entropy_" in shown.stdout, shown.stdout[:2000]


def test_the_pytest_lines_select_tests(tmp_path):
    """The docs' pytest lines select tests that exist (the units and the integration layer of the test command run them all)."""
    for selection, at_least in (("tests/unit/plugins/modules/test_vm_*.py", 30), ("tests/integration/test_modules_*.py", 10),
                                ("tests/unit/plugins/plugin_utils/placement", 100)):
        listed = shell(".venv/bin/python -m pytest -q --collect-only -p no:cacheprovider %s" % selection, timeout=120)
        count = re.search(r"^(\d+) tests? collected", listed.stdout, re.M)
        assert listed.returncode == 0 and count and int(count.group(1)) >= at_least, (selection, listed.stdout[-2000:])


def test_the_solver_benchmark_in_a_short_run(tmp_path):
    """docs/benchmarks.md's command with its smallest size and a 1 s limit (the full run takes minutes)."""
    bench = shell("python benchmarks/bench_solver.py --sizes 100x500 --repair '' --time-limit 1", timeout=120)
    assert bench.returncode == 0, bench.stderr
    row = [line for line in bench.stdout.splitlines() if line.startswith("| 100/500 | consolidate |")]
    assert len(row) == 1 and "| ok |" in row[0], bench.stdout


def test_the_schedule_benchmark_in_a_short_run():
    """docs/benchmarks.md's schedule benchmark at its smallest (the measured run has 2000 hosts / 10000 VMs)."""
    bench = shell("python benchmarks/bench_schedule.py --sizes 100x500 --seeds 0", timeout=120)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    row = [line for line in bench.stdout.splitlines() if line.startswith("| 100/500 | 0 |")]
    assert len(row) == 1 and "| yes |" in row[0], bench.stdout


def test_the_heavy_solver_benchmark_in_a_short_run():
    """docs/benchmarks.md's heavy-mix command on one small size with a 1 s limit: both bounds reported."""
    bench = shell("python benchmarks/bench_solver.py --heavy --sizes 150x400 --repair '' --time-limit 1", timeout=120)
    assert bench.returncode == 0, bench.stderr
    row = [line for line in bench.stdout.splitlines() if line.startswith("| 150/400 | consolidate |")]
    assert len(row) == 1 and "| ok |" in row[0], bench.stdout
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert int(cells[18]) >= int(cells[5]) and cells[21].endswith("x"), row[0]   # strong LB >= LB; moved / LB


def test_the_inventory_benchmark_in_a_short_run():
    """README / docs/inventory.md's benchmarks/bench_inventory.py on 5 hypervisors (the measured run has 200)."""
    script = "bench_inventory.py"
    bench = shell("python benchmarks/%s --hypervisors 5 --vms-per-hypervisor 2 --repeat 1" % script, timeout=120)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert re.search(r"^\| 1 sample \| 8 \| 5 \| 10 \|", bench.stdout, re.M), bench.stdout
