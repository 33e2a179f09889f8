# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The commands of README.md and docs/*.md that need the lab, run as written with only the site's values
replaced by the lab's (hypervisor URIs, VM names), each outcome checked. tests/unit/test_docs_commands.py
lists every documented command and the test that runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import libvirt
import yaml

from conftest import LAB_DIR, ROOT, lab_cmd

VENV_PYTHON = sys.executable
INVENTORY_ENV = {"ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".tmp", "collections"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
                 "ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}


def doc_block(path: str, after: str, language: str) -> str:
    """The first fenced code block of ``path`` that follows the line containing ``after``."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        text = handle.read()
    match = re.compile(r"^```%s\n(.*?)^```" % language, re.S | re.M).search(text, text.index(after))
    assert match, "no ```%s block after %r in %s" % (language, after, path)
    return match.group(1)


def shell(command: str, cwd, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """A documented command as written, in ``cwd``: ansible-* from the venv running the tests, with the
    collection from this checkout; ``bash tools/run.sh`` is this checkout's."""
    command = command.replace("bash tools/run.sh ", "bash %s " % os.path.join(ROOT, "tools", "run.sh"))
    command = re.sub(r"(^|\s)\.venv/bin/python ", r"\1%s " % VENV_PYTHON, command)
    run_env = dict(os.environ, PATH=os.path.dirname(VENV_PYTHON) + os.pathsep + os.environ["PATH"], ENTROPY_LAB_DIR=LAB_DIR,
                   ENTROPY_VENV=os.path.dirname(os.path.dirname(VENV_PYTHON)), **INVENTORY_ENV)
    run_env.update(env or {})
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False, timeout=timeout)


def lab_uris(lab, text: str, names: dict[str, str]) -> str:
    """A doc's inventory or play with the lab's hypervisors: hv01 -> the first lab host's URI, and so on."""
    for doc_name, lab_host in names.items():
        text = re.sub(r"qemu\+(tcp|ssh)://(root@)?%s(\.example\.com)?/system" % doc_name, lab.uri(lab_host), text)
    return text


def recap(output: str) -> tuple[int, int]:
    match = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1)), int(match.group(2))


def used_hosts(lab) -> set[str]:
    return {h for where in lab.placement().values() for h, s in where if s in ("running", "paused")}


def test_the_demo_consolidates_and_a_second_consolidate_moves_nothing(lab, tmp_path):
    """README: `bash tools/run.sh demo` - 3 hosts -> 2 on the lab; a consolidate right after moves nothing."""
    demo = shell("bash tools/run.sh demo", tmp_path)
    assert demo.returncode == 0, demo.stdout[-4000:]
    assert "the cluster is at the plan's target" in demo.stdout and re.search(r"demo done in \d+ s", demo.stdout), demo.stdout[-3000:]
    assert recap(demo.stdout)[0] > 0
    lab.assert_each_vm_once()
    assert len(used_hosts(lab)) == 2
    again = shell("ansible-playbook -i %s entropy.cluster.consolidate -e entropy_lock_file=%s"
                  % (lab.inventory, tmp_path / "lock"), tmp_path)
    assert again.returncode == 0 and recap(again.stdout) == (0, 0), again.stdout[-3000:]
    assert "nothing to do" in again.stdout


def readme_inventory(lab, directory) -> str:
    """README's inventory file as prod.libvirt_cluster.yml, with the lab's first two hypervisors."""
    hv1, hv2 = sorted(lab.hosts)[:2]
    text = lab_uris(lab, doc_block("README.md", "An inventory file named", "yaml"), {"hv01": hv1, "hv02": hv2})
    text = text.replace("name: hv01", "name: " + hv1).replace("name: hv02", "name: " + hv2)
    assert "qemu+ssh" not in text and "example" not in text, text
    (directory / "prod.libvirt_cluster.yml").write_text(text, encoding="utf-8")
    return text


def test_the_readme_inventory_file_shows_the_measured_load(lab, tmp_path):
    readme_inventory(lab, tmp_path)
    graph = shell("ansible-inventory -i prod.libvirt_cluster.yml --graph --vars", tmp_path)
    assert graph.returncode == 0, graph.stdout[-3000:]
    hv1, hv2 = sorted(lab.hosts)[:2]
    for host in (hv1, hv2):
        assert "|--%s\n" % host in graph.stdout
    # the measured load: host cpu use, each VM's cpu demand (sampled twice, sampling_interval apart)
    assert re.search(r"\{entropy_cpu_used_cores = [0-9.]+\}", graph.stdout), graph.stdout[:3000]
    assert re.search(r"\{entropy_vm_cpu_demand_cores = [0-9.]+\}", graph.stdout), graph.stdout[:3000]
    # the VMs of both hypervisors (one of them may be empty after an earlier test consolidated the lab)
    on_them = [vm for vm, where in lab.placement().items() if where[0][0] in (hv1, hv2)]
    assert on_them and all("|--%s\n" % vm in graph.stdout for vm in on_them)


def lab_prod_inventory(lab, directory) -> None:
    """The lab's own inventory under the README's name, with its group_vars (the lab's lab-only settings)."""
    shutil.copy(lab.inventory, directory / "prod.libvirt_cluster.yml")
    shutil.copytree(os.path.join(lab.dir, "group_vars"), directory / "group_vars")


def test_the_readme_plan_then_the_reviewed_plan_playbook(lab_reset, tmp_path):
    """README: plan only (JSON + playbook + table into ./entropy-plans, nothing moves), then apply the reviewed plan."""
    lab = lab_reset
    lab_prod_inventory(lab, tmp_path)
    before = lab.placement()
    env = {"ENTROPY_LOCK_FILE": str(tmp_path / "lock")}  # the lab's own lock, not /tmp's shared default
    planned = shell("ansible-playbook -i prod.libvirt_cluster.yml entropy.cluster.plan", tmp_path, env)
    assert planned.returncode == 0, planned.stdout[-3000:]
    assert "hosts used          3 -> 2" in planned.stdout, planned.stdout[-3000:]
    assert lab.placement() == before, "entropy.cluster.plan moved something"
    plan = json.loads((tmp_path / "entropy-plans" / "plan-consolidate.json").read_text())
    assert plan["steps"] and (tmp_path / "entropy-plans" / "plan-consolidate.yml").exists()
    applied = shell("ansible-playbook -i prod.libvirt_cluster.yml entropy-plans/plan-consolidate.yml", tmp_path, env)
    assert applied.returncode == 0, applied.stdout[-3000:]
    assert recap(applied.stdout)[0] > 0
    lab.assert_each_vm_once()
    assert {vm: [h for h, _s in where] for vm, where in lab.placement().items()} == {vm: [h] for vm, h in plan["target"].items()}
    assert not (tmp_path / "lock").exists()


def alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_lab_commands(lab, tmp_path):
    """README's lab lines: lab-up (idempotent), lab-status and lab-reset on the test lab; `lab.py up --help`;
    lab-up and lab-down on a one-host lab of their own (lab-down would take the test lab away)."""
    up = shell("bash tools/run.sh lab-up", tmp_path)
    assert up.returncode == 0 and "(0 started), " in up.stdout and "(0 created)" in up.stdout, up.stdout[-2000:]
    status = shell("bash tools/run.sh lab-status", tmp_path)
    assert status.returncode == 0 and all(host in status.stdout for host in lab.hosts) and all(vm in status.stdout for vm in lab.vms), status.stdout
    reset = shell("bash tools/run.sh lab-reset", tmp_path)
    assert reset.returncode == 0, reset.stdout[-2000:]
    lab.assert_each_vm_once()
    assert {vm: where[0][0] for vm, where in lab.placement().items() if vm in lab.vms} == {vm: info["home"] for vm, info in lab.vms.items()}
    helped = shell(".venv/bin/python tools/lab.py up --help", ROOT)
    assert helped.returncode == 0 and "--hosts" in helped.stdout and "--vms-per-host" in helped.stdout, helped.stdout

    # Its own loopback /24: the test lab's third octet + 100 (127.0.0 -> 127.0.100), its own directory.
    octets = (os.environ.get("ENTROPY_LAB_SUBNET") or "127.0.0").split(".")
    other = {"ENTROPY_LAB_DIR": LAB_DIR + "-docs", "ENTROPY_LAB_SUBNET": "%s.%s.%d" % (octets[0], octets[1], int(octets[2]) + 100)}
    try:
        small = shell("bash tools/run.sh lab-up --hosts 1 --vms-per-host 0", tmp_path, other)
        assert small.returncode == 0 and "1 hosts (1 started)" in small.stdout, small.stdout[-2000:]
        with open(os.path.join(other["ENTROPY_LAB_DIR"], "lab.json"), encoding="utf-8") as handle:
            (pid,) = [h["pid"] for h in json.load(handle)["hosts"]]
        assert alive(pid)
        down = shell("bash tools/run.sh lab-down", tmp_path, other)
        assert down.returncode == 0, down.stdout[-2000:]
        assert not os.path.exists(other["ENTROPY_LAB_DIR"]), "lab-down removes the lab directory"
        assert not alive(pid), "lab-down stops the daemon it started"
    finally:
        shell("bash tools/run.sh lab-down", tmp_path, other)
    # the test lab is untouched
    assert lab_cmd("status", "--check").returncode == 0


def test_the_fault_soak_in_one_short_round(lab, tmp_path):
    """README / docs/fault-soak.md: benchmarks/soak_faults.py on the test lab, cut to one round whose plan has a
    daemon killed mid-migration (the documented run, 50 migrations, takes a quarter of an hour)."""
    soak = shell(".venv/bin/python benchmarks/soak_faults.py --min-migrations 1 --max-rounds 1 --fault-rate 1 --pause-rate 0",
                 ROOT, timeout=900)
    assert soak.returncode == 0, soak.stdout[-4000:]
    assert re.search(r"^round  1: consolidate +\d+ planned, \d+ completed, rc \d+, killed ", soak.stdout, re.M), soak.stdout[-3000:]
    row = soak.stdout.strip().splitlines()[-1].strip("|").split("|")
    assert [cell.strip() for cell in row[5:7]] == ["0", "0"], "VMs lost, VMs running twice: %s" % soak.stdout[-2000:]
    lab.assert_each_vm_once()


def test_a_stale_definition_is_refused_until_the_documented_virsh_undefine(lab_reset, playbook, tmp_path):
    """docs/fault-soak.md / docs/playbooks.md: a shut-off copy of a VM that runs on another host, which apply may not
    remove by itself (here: the running copy is transient, so the shut-off copy holds the only persistent definition),
    is kept and named with the fix, `virsh undefine` there; once run as the message says, the plan applies.
    (A leftover apply may remove is removed without asking: tests/integration/test_stale_source_definition.py.)"""
    lab = lab_reset
    hv1, _hv2, hv3 = sorted(lab.hosts)[:3]
    vm = sorted(v for v, where in lab.placement().items() if where[0][0] == hv1)[0]
    plan_file = tmp_path / "plan.json"
    planned = playbook("entropy.cluster.plan", inventory=lab.inventory, extra_vars={"entropy_plan_file": str(plan_file)})
    assert planned.returncode == 0, planned.stdout[-3000:]
    src, leftover = lab.connect(hv1), lab.connect(hv3)
    try:
        running = src.lookupByName(vm)
        leftover.defineXML(running.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # the leftover: same VM, shut off on hv3
        running.undefine()  # it keeps running on hv1, transient
    finally:
        src.close()
        leftover.close()
    try:
        refused = playbook("entropy.cluster.apply", inventory=lab.inventory,
                           extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(tmp_path / "lock")})
        assert refused.returncode != 0
        assert "was kept: " in refused.stdout, refused.stdout[-3000:]
        assert "(virsh undefine on %s)" % hv3 in refused.stdout, refused.stdout[-3000:]
        assert lab.running_on(vm) == [hv1], "the refusal moved nothing"
    finally:
        # the documented fix, as the message says (also when the test failed: it never leaves the leftover behind)
        fixed = subprocess.run(["virsh", "-c", lab.uri(hv3), "undefine", vm], capture_output=True, text=True, check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    applied = playbook("entropy.cluster.apply", inventory=lab.inventory,
                       extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(tmp_path / "lock")})
    assert applied.returncode == 0, applied.stdout[-3000:]
    lab.assert_each_vm_once()


def test_the_inventory_md_file_and_its_commands(lab, tmp_path):
    """docs/inventory.md: its inventory file (every option it shows) with the lab's hypervisors, its three
    ansible-inventory lines, and its cache settings with `ansible-playbook --flush-cache`."""
    hv1, hv2 = sorted(lab.hosts)[:2]
    text = lab_uris(lab, doc_block("docs/inventory.md", "```yaml\n# cluster.libvirt_cluster.yml", "yaml"), {"hv01": hv1, "hv02": hv2})
    text = text.replace("name: hv01", "name: " + hv1).replace("name: hv02", "name: " + hv2)
    assert "example.com" not in text, text
    (tmp_path / "cluster.libvirt_cluster.yml").write_text(text, encoding="utf-8")
    graph = shell("ansible-inventory -i cluster.libvirt_cluster.yml --graph", tmp_path)
    assert graph.returncode == 0 and "@hypervisors:" in graph.stdout and "|--%s\n" % hv2 in graph.stdout, graph.stdout[-3000:]
    with_vars = shell("ansible-inventory -i cluster.libvirt_cluster.yml --graph --vars", tmp_path)
    assert with_vars.returncode == 0 and "{entropy_cpu_used_cores = " in with_vars.stdout, with_vars.stdout[-3000:]
    listed = shell("ansible-inventory -i cluster.libvirt_cluster.yml --list", tmp_path)
    assert listed.returncode == 0, listed.stdout[-3000:]
    hostvars = json.loads(listed.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d))["_meta"]["hostvars"]
    # the capacity overrides and the reserve the doc shows for hv02
    assert hostvars[hv2]["entropy_cpu_cores"] == 16 and hostvars[hv2]["entropy_reserved_memory_mib"] == 2048, hostvars[hv2]
    assert hostvars[hv2]["entropy_memory_mib"] == 65536, hostvars[hv2]
    # "kept for the host itself; taken off capacity in the model"
    model_hosts = {h["name"]: h for h in hostvars["entropy_cluster"]["entropy_model"]["hosts"]}
    assert model_hosts[hv2]["memory_mib"] == 65536 - 2048 and model_hosts[hv2]["cpu"] == 16, model_hosts[hv2]

    # the cache block: a second read replays the cache, --flush-cache reads the hypervisors again
    config = yaml.safe_load(text)
    config.update(yaml.safe_load(doc_block("docs/inventory.md", "```yaml\ncache: true", "yaml")))
    config["cache_connection"] = str(tmp_path / "cache")
    (tmp_path / "cluster.libvirt_cluster.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "show.yml").write_text("- hosts: %s\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {var: entropy_cpu_used_cores}\n" % hv1)
    first = shell("ansible-playbook -i cluster.libvirt_cluster.yml show.yml", tmp_path)
    cached = shell("ansible-playbook -i cluster.libvirt_cluster.yml show.yml", tmp_path)
    flushed = shell("ansible-playbook --flush-cache -i cluster.libvirt_cluster.yml show.yml", tmp_path)
    values = [re.search(r'"entropy_cpu_used_cores": ([0-9.]+)', run.stdout) for run in (first, cached, flushed)]
    assert all(values), [run.stdout[-2000:] for run in (first, cached, flushed)]
    assert values[0].group(1) == values[1].group(1), "the second run replays the cache"
    assert values[2].group(1) != values[0].group(1), "--flush-cache measures again"


def test_the_modules_md_examples(lab_reset, playbook, tmp_path):
    """docs/modules.md: module_defaults for the group, then the vm_migrate task with its register."""
    lab = lab_reset
    hv1, hv2 = sorted(lab.hosts)[:2]
    web01 = sorted(vm for vm, where in lab.placement().items() if where[0][0] == hv1)[0]
    first = doc_block("docs/modules.md", "```yaml\n- hosts: localhost\n  module_defaults:", "yaml")
    migrate = doc_block("docs/modules.md", "```yaml\n- entropy.cluster.vm_migrate:", "yaml")
    play = lab_uris(lab, first, {"hv01": hv1, "hv02": hv2}).replace("web01", web01).rstrip("\n") + "\n"
    play += "".join("    " + line + "\n" for line in lab_uris(lab, migrate, {"hv01": hv1, "hv02": hv2}).replace("web01", web01).splitlines())
    play += "    - ansible.builtin.assert:\n        that: moved is changed and moved.migration is defined\n"
    path = tmp_path / "modules_md.yml"
    path.write_text(play, encoding="utf-8")
    # the lab's disks sit on a directory libvirt cannot see is shared: its group_vars set this
    result = playbook(str(path), extra_vars={"entropy_migrate_unsafe": True})
    assert result.returncode == 0, play + result.stdout[-3000:]
    assert lab.placement()[web01] == [(hv2, "running")]
    lab.assert_each_vm_once()
    assert lab_cmd("reset").returncode == 0
