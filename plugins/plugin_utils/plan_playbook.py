# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan -> what people and playbooks read: the placement after each step, the differences
between an expected and a live placement, a readable table, and a standalone playbook.

Pure Python, no Ansible import. VM and host names come from tenants: in the rendered playbook
every string is written as a YAML double-quoted scalar tagged ``!unsafe`` (never templated), and
no name ever goes into a task name or a comment.
"""

from __future__ import annotations

from collections.abc import Mapping

ACTIVE_STATES = ("running", "paused")
# Plan action -> the VM state it leaves behind (migrate keeps the state, moves the host).
# The solver's suspend is to disk (managed save): it frees the VM's memory on its host.
STATE_AFTER_ACTION = {"suspend": "saved", "resume": "running", "start": "running", "stop": "stopped"}


def action_host(action: Mapping) -> str | None:
    """The hypervisor an action runs on (its source for a migration)."""
    return action.get("host") or action.get("from")


def initial_placement(model: Mapping) -> dict[str, dict]:
    """vm -> {"host", "state"} as the model describes the cluster before the plan."""
    return {vm["name"]: {"host": vm["host"], "state": vm.get("state", "running")} for vm in model.get("vms", [])}


def placements_after_steps(initial: Mapping[str, Mapping], steps: list) -> list[dict[str, dict]]:
    """The expected placement after each step, replaying the plan's actions on ``initial``."""
    current = {vm: dict(where) for vm, where in initial.items()}
    result = []
    for step in steps:
        for action in step:
            entry = current.setdefault(action["vm"], {"host": action_host(action), "state": "running"})
            if action.get("action") == "migrate":
                entry["host"] = action["to"]
            elif action.get("action") in STATE_AFTER_ACTION:
                entry["host"] = action_host(action) or entry["host"]
                entry["state"] = STATE_AFTER_ACTION[action["action"]]
        result.append({vm: dict(where) for vm, where in current.items()})
    return result


def placement_differences(actual: Mapping[str, list], expected: Mapping[str, Mapping]) -> list[str]:
    """Every way the live cluster differs from ``expected`` (vm -> {"host", "state"?}).

    ``actual`` maps a VM to the list of ``{"host", "state"}`` where it is defined. An empty
    list means the cluster is as expected. VMs not named in ``expected`` are not judged.
    """
    problems = []
    for vm in sorted(expected):
        want = expected[vm]
        where = list(actual.get(vm) or [])
        hosts = sorted(entry["host"] for entry in where)
        active = [entry["host"] for entry in where if entry.get("state") in ACTIVE_STATES]
        if not where:
            problems.append("VM %r: expected on %s, found on no hypervisor" % (vm, want["host"]))
            continue
        if len(active) > 1:
            problems.append("VM %r: active on several hypervisors at once: %s" % (vm, ", ".join(sorted(active))))
        if len(where) > 1:
            problems.append("VM %r: defined on several hypervisors: %s" % (vm, ", ".join(hosts)))
        elif hosts[0] != want["host"]:
            problems.append("VM %r: expected on %s, found on %s (%s)" % (vm, want["host"], hosts[0], where[0].get("state")))
        elif want.get("state") and where[0].get("state") != want["state"]:
            problems.append("VM %r on %s: expected %s, found %s" % (vm, hosts[0], want["state"], where[0].get("state")))
    return problems


def cross_host_resumes(plan: Mapping) -> list[str]:
    """Resumes the actuators cannot run: a VM suspended to disk on one host and resumed on another
    (a managed-save image stays on the host that wrote it)."""
    suspended_on: dict[str, str | None] = {}
    problems = []
    for step in plan.get("steps", []):
        for action in step:
            if action.get("action") == "suspend":
                suspended_on[action["vm"]] = action_host(action)
            elif action.get("action") == "resume" and action["vm"] in suspended_on and suspended_on[action["vm"]] != action_host(action):
                problems.append("VM %r is suspended on %s and resumed on %s" % (action["vm"], suspended_on[action["vm"]], action_host(action)))
    return problems


def describe_action(action: Mapping) -> str:
    kind = action.get("action", "?")
    if kind == "migrate":
        text = "%s: %s -> %s" % (action["vm"], action["from"], action["to"])
        if action.get("memory_mib") is not None:
            text += " (%s MiB)" % action["memory_mib"]
        return "migrate " + text
    return "%s %s on %s" % (kind, action["vm"], action_host(action))


def plan_table(plan: Mapping) -> str:
    """A readable summary of a plan: figures, then one line per action, grouped by step."""
    stats = plan.get("stats", {})
    lines = ["plan: objective %s, status %s" % (plan.get("objective", "?"), plan.get("status", "?"))]
    hosts_used = "%s -> %s (lower bound %s)" % (
        stats.get("hosts_used_before", "?"), stats.get("hosts_used_after", "?"), stats.get("hosts_lower_bound", "?"))
    figures = [
        ("hosts used", hosts_used),
        ("hosts freed", ", ".join(stats.get("hosts_freed") or plan.get("hosts_freed") or []) or "-"),
        ("migrations", stats.get("migrations", 0)),
        ("memory moved", "%s MiB" % stats.get("memory_moved_mib", 0)),
        ("steps", len(plan.get("steps", []))),
        ("estimated duration", "%s s" % stats.get("estimated_duration_s", "?")),
        ("solve time", "%s s" % stats.get("solve_seconds", "?")),
    ]
    width = max(len(name) for name, _value in figures)
    lines += ["  %s  %s" % (name.ljust(width), value) for name, value in figures]
    for number, step in enumerate(plan.get("steps", []), start=1):
        lines.append("step %d of %d (%d action%s in parallel)" % (number, len(plan["steps"]), len(step), "" if len(step) == 1 else "s"))
        lines += ["  " + describe_action(action) for action in step]
    if not plan.get("steps"):
        lines.append("nothing to do: the cluster already matches the target")
    return "\n".join(lines)


def yaml_string(value: str) -> str:
    """A YAML double-quoted scalar that reads back as exactly ``value``: only printable ASCII is
    written as is, everything else as an escape, so no character can end the scalar or break the file."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append("\\x%02x" % code)
        elif code <= 0xFFFF:
            out.append("\\u%04x" % code)
        else:
            out.append("\\U%08x" % code)
    out.append('"')
    return "".join(out)


def yaml_data(value, tag_keys: bool = False) -> str:
    """Flow-style YAML for JSON-like data with every string value tagged !unsafe (keys too with
    ``tag_keys``, for mappings keyed by VM or host names)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "!unsafe " + yaml_string(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join("%s: %s" % (yaml_data(str(k)) if tag_keys else yaml_string(str(k)), yaml_data(v)) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_data(v) for v in value) + "]"
    raise TypeError("cannot write %s into a plan playbook" % type(value).__name__)


def render_playbook(plan: Mapping, source: str = "") -> str:
    """A standalone playbook that applies ``plan`` step by step through entropy.cluster.apply_plan.

    Run it later with the cluster's inventory (``-i <name>.libvirt_cluster.yml``): it refuses to
    start if the cluster no longer matches the plan's starting placement, runs each step's actions in
    parallel, checks the placement after every step, and stops at the first failed step.
    """
    steps = list(plan.get("steps", []))
    stats = plan.get("stats", {})
    lines = [
        "---",
        "# entropy.cluster reconfiguration plan%s." % ((" computed from " + source) if source and source.isprintable() and "\n" not in source else ""),
        "# Review it, commit it, run it later with the cluster's inventory:",
        "#   ansible-playbook -i <cluster>.libvirt_cluster.yml <this file>",
        "# It refuses to start when the cluster has changed since the plan was computed.",
        "# Hosts used %s -> %s, %s migration(s), %s MiB moved, %d step(s)." % (
            stats.get("hosts_used_before", "?"), stats.get("hosts_used_after", "?"), stats.get("migrations", 0),
            stats.get("memory_moved_mib", 0), len(steps)),
        "# All names below are data (!unsafe): they are never templated.",
        "- name: Apply an entropy.cluster reconfiguration plan",
        "  hosts: localhost",
        "  connection: local",
        "  gather_facts: false",
        "  vars:",
        "    entropy_plan:",
    ]
    for key in ("version", "objective", "status", "hosts_freed", "hosts_switched_on", "warnings", "model_warnings"):
        if key in plan:
            lines.append("      %s: %s" % (key, yaml_data(plan[key])))
    lines.append("      # where each VM is before the plan (a stale plan is refused)")
    lines.append("      initial:" + ("" if plan.get("initial") else " {}"))
    lines += ["        %s: %s" % (yaml_data(vm), yaml_data(where)) for vm, where in (plan.get("initial") or {}).items()]
    lines.append("      target:" + ("" if plan.get("target") else " {}"))
    lines += ["        %s: %s" % (yaml_data(vm), yaml_data(host)) for vm, host in (plan.get("target") or {}).items()]
    lines.append("      # steps run in order; the actions of a step run in parallel")
    lines.append("      steps:" + ("" if steps else " []"))
    for number, step in enumerate(steps, start=1):
        lines.append("        - # step %d" % number)
        lines += ["          - " + yaml_data(action) for action in step]
    lines.append("      stats: " + yaml_data(stats))
    lines += [
        "  tasks:",
        "    - name: Apply the plan, step by step",
        "      block:",
        "        - name: Refuse a stale plan and take the run lock",
        "          ansible.builtin.include_role:",
        "            name: entropy.cluster.apply_plan",
        "            tasks_from: begin.yml",
    ]
    for number, step in enumerate(steps, start=1):
        migrations = sum(1 for action in step if action.get("action") == "migrate")
        lines += [
            "        - name: Step %d of %d (%d action%s, %d migration%s, in parallel)" % (
                number, len(steps), len(step), "" if len(step) == 1 else "s", migrations, "" if migrations == 1 else "s"),
            "          ansible.builtin.include_role:",
            "            name: entropy.cluster.apply_plan",
            "            tasks_from: step.yml",
            "          vars:",
            "            entropy_step_number: %d" % number,
            "            entropy_step_count: %d" % len(steps),
            '            entropy_step: "{{ entropy_plan.steps[%d] }}"' % (number - 1),
            '            entropy_step_expected: "{{ entropy_plan_timeline[%d] }}"' % (number - 1),
        ]
    lines += [
        "        - name: Check the final placement",
        "          ansible.builtin.include_role:",
        "            name: entropy.cluster.apply_plan",
        "            tasks_from: verify.yml",
        "      always:",
        "        - name: Release the run lock",
        "          ansible.builtin.include_role:",
        "            name: entropy.cluster.apply_plan",
        "            tasks_from: end.yml",
        "",
    ]
    return "\n".join(lines)


def plan_progress(plan: Mapping, actual: Mapping[str, list]) -> dict[str, list[str]]:
    """After a run stopped: which planned migrations happened, which did not, and which VMs are
    somewhere else. ``actual`` is a live placement (VM -> [{"host", "state"}])."""
    initial = plan.get("initial") or {}
    target = plan.get("target") or {}
    report: dict[str, list[str]] = {"moved": [], "not_moved": [], "elsewhere": []}
    migrating = sorted({action["vm"] for step in plan.get("steps", []) for action in step if action.get("action") == "migrate"})
    for vm in migrating:
        hosts = sorted(entry["host"] for entry in actual.get(vm) or [])
        start = (initial.get(vm) or {}).get("host")
        if hosts == [target.get(vm)]:
            report["moved"].append("%s: %s -> %s" % (vm, start, hosts[0]))
        elif hosts == [start]:
            report["not_moved"].append("%s: still on %s" % (vm, start))
        else:
            report["elsewhere"].append("%s: on %s" % (vm, ", ".join(hosts) or "no hypervisor"))
    return report
