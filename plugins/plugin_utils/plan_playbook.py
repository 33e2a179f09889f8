# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan -> what people and playbooks read: the placement after each step, the differences
between an expected and a live placement, a readable table, and a standalone playbook.

Pure Python, no Ansible import. VM and host names come from tenants: in the rendered playbook
every string is written by PyYAML as a double-quoted scalar tagged ``!unsafe`` (never templated),
and no name ever goes into a task name or a comment.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

import yaml

from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import ACTION_MODEL_STATE

from .placement.model import ACTIVE_STATES, VM_STATES

# Plan action -> the model state it leaves behind (migrate keeps the state, moves the host).
STATE_AFTER_ACTION = ACTION_MODEL_STATE


# Plan action -> the fields it needs besides "action" and "vm". A migration runs from "from" to "to";
# suspend and stop run on the VM's "host"; resume and start bring the VM up on "to".
ACTION_FIELDS = {"migrate": ("from", "to"), "suspend": ("host",), "resume": ("to",), "start": ("to",), "stop": ("host",)}
# Older spellings still read: "from" for the host of a suspend or stop, "host" for that of a resume or start.
_OLDER_FIELD = {"host": "from", "to": "host"}


def action_host(action: Mapping) -> str | None:
    """The hypervisor an action runs on: the source of a migration, the target of a resume or start,
    the VM's host for a suspend or stop."""
    if action.get("action") == "migrate":
        return action.get("from")
    field = ACTION_FIELDS.get(action.get("action"), ("host",))[0]
    return action.get(field) or action.get(_OLDER_FIELD[field])


def initial_placement(model: Mapping) -> dict[str, dict]:
    """vm -> {"host", "state"} as the model describes the cluster before the plan."""
    return {vm["name"]: {"host": vm.get("host"), "state": vm.get("state", "running")} for vm in model.get("vms", [])}


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


def shut_off_leftover(where: list) -> tuple[str | None, list[str]]:
    """For one VM's copies (``[{"host", "state"}]``): (the host where it is active, the hosts where it is only
    defined shut off) when it is active on exactly one host and every other copy is shut off without a managed
    save - what a migration leaves when its source daemon dies before its last phase. (None, []) otherwise."""
    active = [entry["host"] for entry in where if entry.get("state") in ACTIVE_STATES]
    stopped = sorted(entry["host"] for entry in where if entry.get("state") == "stopped")
    if len(where) > 1 and len(active) == 1 and len(stopped) == len(where) - 1:
        return active[0], stopped
    return None, []


def placement_leftovers(actual: Mapping[str, list]) -> list[dict]:
    """Every shut-off leftover copy in a live placement: ``[{"vm", "host", "runs_on"}]``, sorted."""
    found = []
    for vm in sorted(actual):
        runs_on, stopped = shut_off_leftover(list(actual[vm] or []))
        found += [{"vm": vm, "host": host, "runs_on": runs_on} for host in stopped]
    return found


def placement_differences(actual: Mapping[str, list], expected: Mapping[str, Mapping], unreadable=(), ignore=()) -> list[str]:
    """Every way the live cluster differs from ``expected`` (vm -> {"host", "state"?}).

    ``actual`` maps a VM to the list of ``{"host", "state"}`` where it is defined. An empty
    list means the cluster is as expected. VMs not named in ``expected`` are not judged.
    ``unreadable`` names hypervisors that could not be read and matter: each is a difference (a VM
    expected on one of them is reported as such, never as "found on no hypervisor").
    ``ignore`` lists copies (``{"vm", "host"}``) to leave out, such as the leftovers check mode would remove.
    """
    problems = []
    skip = {(copy.get("vm"), copy.get("host")) for copy in ignore}
    for vm in sorted(expected):
        want = expected[vm]
        where = [entry for entry in actual.get(vm) or [] if (vm, entry.get("host")) not in skip]
        hosts = sorted(entry["host"] for entry in where)
        active = [entry["host"] for entry in where if entry.get("state") in ACTIVE_STATES]
        if want.get("host") is None and want.get("state") == "saved":
            # saved to shared storage, on no host: at most its saved definition on one host, nothing active
            if active or len(where) > 1 or any(entry.get("state") != "saved" for entry in where):
                problems.append("VM %r: expected saved on shared storage, found %s" % (vm, describe_placement(where)))
            continue
        if want["host"] in unreadable and not where:
            problems.append("VM %r: expected on %s, which could not be read" % (vm, want["host"]))
            continue
        if not where:
            problems.append("VM %r: expected on %s, found on no hypervisor" % (vm, want["host"]))
            continue
        if len(active) > 1:
            problems.append("VM %r: active on several hypervisors at once: %s" % (vm, ", ".join(sorted(active))))
        runs_on, stopped = shut_off_leftover(where)
        if stopped:
            # Seen after a source daemon died at the end of a live migration: the VM runs on the destination,
            # the source never got to undefine its copy. Starting that copy would run the VM twice.
            problems.append("VM %r: defined on several hypervisors: runs on %s and is also defined, shut off, on %s (most likely "
                            "left by a migration whose source daemon died before its last phase); starting it there would run "
                            "the VM twice: check it is the same VM, then remove it (virsh undefine on %s)"
                            % (vm, runs_on, ", ".join(stopped), ", ".join(stopped)))
        elif len(where) > 1:
            problems.append("VM %r: defined on several hypervisors: %s" % (vm, ", ".join(hosts)))
        elif hosts[0] != want["host"]:
            problems.append("VM %r: expected on %s, found on %s (%s)" % (vm, want["host"], hosts[0], where[0].get("state")))
        elif want.get("state") and where[0].get("state") != want["state"]:
            problems.append("VM %r on %s: expected %s, found %s" % (vm, hosts[0], want["state"], where[0].get("state")))
    hidden = {want["host"] for vm, want in expected.items() if not actual.get(vm)}
    problems += ["hypervisor %s could not be read" % host for host in sorted(set(unreadable) - hidden)]
    return problems


def plan_hosts(plan: Mapping) -> set[str]:
    """Every hypervisor a plan names: where its VMs start, their targets, and every action's hosts."""
    hosts = {where.get("host") for where in (plan.get("initial") or {}).values() if isinstance(where, Mapping)}
    hosts |= {host for host in (plan.get("target") or {}).values() if isinstance(host, str)}
    for step in plan.get("steps") or []:
        for action in step if isinstance(step, list) else []:
            if isinstance(action, Mapping):
                hosts |= {action.get(key) for key in ("from", "to", "host")}
    return {host for host in hosts if isinstance(host, str)}


def _action_problems(label: str, action, where: Mapping | None, resume_anywhere: bool = False) -> list[str]:
    """What is wrong with one action, ``where`` being the VM's placement before its step. With ``resume_anywhere`` (saves on
    shared storage, entropy.cluster.vm_image) a saved VM may resume on any host."""
    if not isinstance(action, Mapping):
        return ["%s: not an action (a dictionary with action and vm)" % label]
    kind, vm = action.get("action"), action.get("vm")
    if kind not in ACTION_FIELDS:
        return ["%s: unknown action %r (known: %s)" % (label, kind, ", ".join(ACTION_FIELDS))]
    if not isinstance(vm, str) or not vm:
        return ["%s (%s): no VM name ('vm')" % (label, kind)]
    label = "%s (%s %s)" % (label, kind, vm)
    fields = ACTION_FIELDS[kind]
    if kind != "migrate" and fields[0] not in action and _OLDER_FIELD[fields[0]] in action:
        fields = (_OLDER_FIELD[fields[0]],)
    missing = [key for key in fields if not isinstance(action.get(key), str) or not action.get(key)]
    if missing:
        return ["%s: no %s" % (label, " and no ".join(repr(key) for key in missing))]
    if where is None:
        return ["%s: VM %r is not in the plan's initial placement, so the plan cannot be checked against the cluster" % (label, vm)]
    if kind == "migrate" and action["from"] == action["to"]:
        return ["%s: migrates from %s to itself" % (label, action["from"])]
    if kind == "resume" and where.get("state") == "saved" and (resume_anywhere or where.get("host") is None):
        return []
    if action_host(action) != where.get("host"):
        return ["%s: runs on %s, but the plan has VM %r on %s at that step" % (label, action_host(action), vm, where.get("host"))]
    return []


def plan_problems(plan, known_hosts=None, resume_anywhere: bool = False) -> list[str]:
    """Everything that keeps a plan from being applied, one line each (empty: the plan can run).

    Checked before anything moves: the shape of the plan, known action names and their fields,
    every VM of every step in the initial placement and on the host the step says, no VM twice in
    one step, and (with ``known_hosts``) every hypervisor the plan names has a libvirt URI. A saved VM on no host (saved to
    shared storage) and, with ``resume_anywhere``, any saved VM may resume on any host.
    """
    if not isinstance(plan, Mapping):
        return ["the plan is a %s, not a dictionary with initial, target and steps" % type(plan).__name__]
    problems = []
    initial, target, steps = plan.get("initial"), plan.get("target"), plan.get("steps")
    if not isinstance(initial, Mapping):
        problems.append("the plan has no 'initial' placement (VM -> {host, state})")
        initial = {}
    if not isinstance(target, Mapping):
        problems.append("the plan has no 'target' placement (VM -> host)")
    if not isinstance(steps, list):
        problems.append("the plan has no 'steps' list")
        steps = []
    for vm, where in initial.items():
        saved_nowhere = isinstance(where, Mapping) and where.get("host") is None and where.get("state") == "saved"
        if not isinstance(where, Mapping) or not (isinstance(where.get("host"), str) or saved_nowhere) or where.get("state", "running") not in VM_STATES:
            problems.append("initial placement of VM %r: expected {host, state} with state one of %s, got %r" % (vm, ", ".join(VM_STATES), where))
    if problems:
        return problems
    current = {vm: dict(where) for vm, where in initial.items()}
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, list):
            problems.append("step %d: not a list of actions" % number)
            continue
        seen: set = set()
        for index, action in enumerate(step, start=1):
            label = "step %d, action %d" % (number, index)
            vm = action.get("vm") if isinstance(action, Mapping) else None
            found = _action_problems(label, action, current.get(vm) if isinstance(vm, str) else None, resume_anywhere)
            if not found and vm in seen:
                found = ["%s (%s %s): VM %r has another action in the same step" % (label, action["action"], vm, vm)]
            seen.add(vm)
            problems += found
        if not problems:
            current = placements_after_steps(current, [step])[0]
    if known_hosts is not None:
        unknown = sorted(plan_hosts(plan) - set(known_hosts))
        if unknown:
            problems.append("the plan names hypervisors the inventory does not know: %s. Run it with the cluster's inventory "
                            "(-i <cluster>.libvirt_cluster.yml) or set entropy_hypervisor_uris" % ", ".join(unknown))
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


# Actions plan_table lists one per line; beyond them each step is one line and the rest is in the plan file.
SUMMARY_ACTIONS = 50
# Steps plan_table lists (one line each, with their first actions) before it says how many more there are.
SUMMARY_STEPS = 30
# Host names listed after "hosts freed".
SUMMARY_HOSTS = 20
# Cluster lines of a grid plan the summary shows.
SUMMARY_CLUSTERS = 20


def _some(names: list, limit: int) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (" ... and %d more" % (len(names) - limit) if len(names) > limit else "")


def plan_table(plan: Mapping, max_actions: int = SUMMARY_ACTIONS) -> str:
    """A readable summary of a plan: figures, then one line per action, grouped by step; bounded at scale (at most
    `max_actions` action lines and SUMMARY_STEPS step lines; the whole plan stays in the plan file)."""
    stats = plan.get("stats", {})
    lines = ["plan: objective %s, status %s" % (plan.get("objective", "?"), plan.get("status", "?"))]
    hosts_used = "%s -> %s" % (stats.get("hosts_used_before", "?"), stats.get("hosts_used_after", "?"))
    if stats.get("hosts_lower_bound", "?") is not None:   # objective schedule has none
        hosts_used += " (lower bound %s)" % stats.get("hosts_lower_bound", "?")
    figures = [
        ("hosts used", hosts_used),
        ("hosts freed", _some(list(stats.get("hosts_freed") or plan.get("hosts_freed") or []), SUMMARY_HOSTS) or "-"),
        ("migrations", stats.get("migrations", 0)),
        ("memory moved", "%s MiB" % stats.get("memory_moved_mib", 0)),
        ("steps", len(plan.get("steps", []))),
        ("estimated duration", "%s s" % stats.get("estimated_duration_s", "?")),
        ("solve time", "%s s" % stats.get("solve_seconds", "?")),
    ]
    if "saved" in plan:   # objective schedule: the VMs it leaves saved to disk
        kept = plan["saved"]
        names = ": " + ", ".join(kept[:10]) + (" ..." if len(kept) > 10 else "") if kept else ""
        figures.append(("vms left saved", "%d%s" % (len(kept), names)))
    if isinstance(plan.get("grid"), Mapping):   # placement.grid: clusters solved on their own
        grid = plan["grid"]
        figures.append(("clusters", "%s, %s migrations between them" % (len(grid.get("clusters") or {}), len(grid.get("moves") or []))))
    width = max(len(name) for name, _value in figures)
    lines += ["  %s  %s" % (name.ljust(width), value) for name, value in figures]
    if isinstance(plan.get("grid"), Mapping) and isinstance(plan["grid"].get("clusters"), Mapping):
        lines += _cluster_lines(plan["grid"]["clusters"])
    steps = plan.get("steps", [])
    budget = max_actions
    for number, step in enumerate(steps[:SUMMARY_STEPS], start=1):
        lines.append("step %d of %d (%d action%s in parallel)" % (number, len(steps), len(step), "" if len(step) == 1 else "s"))
        lines += ["  " + describe_action(action) for action in step[:budget]]
        if 0 < budget < len(step):   # a step past the budget is its header line alone
            lines.append("  ... and %d more action%s (see the plan file)" % (len(step) - budget, "" if len(step) - budget == 1 else "s"))
        budget = max(0, budget - len(step))
    if len(steps) > SUMMARY_STEPS:
        lines.append("... and %d more steps (see the plan file)" % (len(steps) - SUMMARY_STEPS))
    if not plan.get("steps"):
        lines.append("nothing to do: the cluster already matches the target")
    return "\n".join(lines)


def _cluster_lines(clusters: Mapping) -> list:
    """One line per cluster of a grid plan (its own solve), at most SUMMARY_CLUSTERS, the most migrations first."""
    names = sorted(clusters, key=lambda c: (-(clusters[c].get("migrations") or 0) if isinstance(clusters[c], Mapping) else 0, str(c)))
    lines = []
    for name in names[:SUMMARY_CLUSTERS]:
        fig = clusters[name] if isinstance(clusters[name], Mapping) else {}
        lines.append("  cluster %s: hosts %s -> %s (lower bound %s), %s migrations, %s, solved in %s s" % (
            name or "(none)", fig.get("hosts_used_before", "?"), fig.get("hosts_used_after", "?"), fig.get("hosts_lower_bound", "?"),
            fig.get("migrations", 0), fig.get("status", "?"), fig.get("solve_seconds", "?")))
    if len(names) > SUMMARY_CLUSTERS:
        lines.append("  ... and %d more clusters (see the plan file)" % (len(names) - SUMMARY_CLUSTERS))
    return lines


class _Unsafe(str):
    """A tenant's string (VM, host, any plan value): written as ``!unsafe "..."``, never templated."""


class _FlowDict(dict):
    """A mapping of scalars (an action, a VM's placement): written on one line."""


class _FlowList(list):
    """A list of scalars: written on one line."""


class _PlanDumper(yaml.SafeDumper):
    """SafeDumper that tags every ``_Unsafe`` string ``!unsafe`` and indents block lists under their key."""

    def ignore_aliases(self, data) -> bool:
        return True  # every value written where it belongs: no &anchor / *alias for a reader to follow

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


# Double-quoted, so that no character of a name can end the scalar: anything but printable ASCII is escaped.
_PlanDumper.add_representer(_Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str.__str__(value), style='"'))
_PlanDumper.add_representer(_FlowDict, lambda dumper, value: dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True))
_PlanDumper.add_representer(_FlowList, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))


def _plain(text) -> str:
    """A plain str: ansible-core 2.17's AnsibleUnsafeText gives itself back from str()."""
    return str.__str__(text) if isinstance(text, str) else str(text)


def _as_data(value, tag_keys: bool = False):
    """JSON-like data with every string wrapped as ``_Unsafe`` (keys too with ``tag_keys``, for mappings
    keyed by VM or host names); Ansible's own str/int/dict subclasses become the plain types."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return _Unsafe(_plain(value))
    if isinstance(value, Mapping):
        items = {(_Unsafe(_plain(key)) if tag_keys else _plain(key)): _as_data(item) for key, item in value.items()}
        return _FlowDict(items) if all(not isinstance(item, (dict, list)) for item in items.values()) else items
    if isinstance(value, (list, tuple)):
        items = [_as_data(item) for item in value]
        return _FlowList(items) if all(not isinstance(item, (dict, list)) for item in items) else items
    raise TypeError("cannot write %s into a plan playbook" % type(value).__name__)


def _dump(data, flow: bool) -> str:
    # No line width: a long name is never folded over several lines.
    return yaml.dump(data, Dumper=_PlanDumper, default_flow_style=flow, sort_keys=False, allow_unicode=False, width=float("inf"))


def yaml_data(value, tag_keys: bool = False) -> str:
    """Flow-style YAML for JSON-like data with every string value tagged !unsafe (keys too with
    ``tag_keys``, for mappings keyed by VM or host names)."""
    text = _dump(_as_data(value, tag_keys), flow=True)
    return text[:-len("\n...\n")] if text.endswith("\n...\n") else text.rstrip("\n")


def render_playbook(plan: Mapping, source: str = "") -> str:
    """A standalone playbook that applies ``plan`` step by step through entropy.cluster.apply_plan.

    Run it later with the cluster's inventory (``-i <name>.libvirt_cluster.yml``): it refuses to
    start if the cluster no longer matches the plan's starting placement, runs each step's actions in
    parallel, checks the placement after every step, and stops at the first failed step.
    The plan's data is written by PyYAML with every string tagged ``!unsafe``; task names and
    comments are ours alone (no name from the plan ever reaches them).
    """
    steps = list(plan.get("steps", []))
    stats = plan.get("stats", {})
    header = [
        "---",
        "# entropy.cluster reconfiguration plan%s." % ((" computed from " + source) if source and source.isprintable() and "\n" not in source else ""),
        "# Review it, commit it, run it later with the cluster's inventory:",
        "#   ansible-playbook -i <cluster>.libvirt_cluster.yml <this file>",
        "# It refuses to start when the cluster has changed since the plan was computed.",
        "# Hosts used %s -> %s, %s migration(s), %s MiB moved, %d step(s)." % (
            stats.get("hosts_used_before", "?"), stats.get("hosts_used_after", "?"), stats.get("migrations", 0),
            stats.get("memory_moved_mib", 0), len(steps)),
        "# entropy_plan: initial is where each VM is before the plan (a stale plan is refused); the steps",
        "# run in order, the actions of a step in parallel. All names in it are data (!unsafe): never templated.",
    ]
    embedded = {key: _as_data(plan[key]) for key in ("version", "objective", "status", "hosts_freed", "hosts_switched_on",
                                                     "warnings", "model_warnings") if key in plan}
    embedded["initial"] = _as_data(plan.get("initial") or {}, tag_keys=True)
    embedded["target"] = _as_data(plan.get("target") or {}, tag_keys=True)
    embedded["steps"] = _as_data(steps)
    embedded["stats"] = _as_data(stats)
    block = [{"name": "Refuse a stale plan and take the run lock",
              "ansible.builtin.include_role": {"name": "entropy.cluster.apply_plan", "tasks_from": "begin.yml"}}]
    for number, step in enumerate(steps, start=1):
        migrations = sum(1 for action in step if action.get("action") == "migrate")
        block.append({
            "name": "Step %d of %d (%d action%s, %d migration%s, in parallel)" % (
                number, len(steps), len(step), "" if len(step) == 1 else "s", migrations, "" if migrations == 1 else "s"),
            "ansible.builtin.include_role": {"name": "entropy.cluster.apply_plan", "tasks_from": "step.yml"},
            "vars": {
                "entropy_step_number": number,
                "entropy_step_count": len(steps),
                "entropy_step": "{{ entropy_plan.steps[%d] }}" % (number - 1),
                "entropy_step_expected": "{{ entropy_plan_timeline[%d] }}" % (number - 1),
            },
        })
    block.append({"name": "Check the final placement",
                  "ansible.builtin.include_role": {"name": "entropy.cluster.apply_plan", "tasks_from": "verify.yml"}})
    play = {
        "name": "Apply an entropy.cluster reconfiguration plan",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"entropy_plan": embedded},
        "tasks": [{
            "name": "Apply the plan, step by step",
            "block": block,
            "always": [{"name": "Release the run lock",
                        "ansible.builtin.include_role": {"name": "entropy.cluster.apply_plan", "tasks_from": "end.yml"}}],
        }],
    }
    return "\n".join(header) + "\n" + _dump([play], flow=False)


def describe_placement(entries: list) -> str:
    """ "running on hv2", "stopped on hv1, paused on hv3" or "on no hypervisor"."""
    return ", ".join("%s on %s" % (entry.get("state", "?"), entry["host"]) for entry in sorted(entries, key=lambda e: e["host"])) or "on no hypervisor"


def plan_progress(plan: Mapping, actual: Mapping[str, list], failed_step: int | None = None,
                  unreadable: Mapping[str, str] | None = None) -> dict:
    """After a run stopped: where every VM is and what that means, claiming nothing that was not read.

    ``actual`` is the live placement (VM -> [{"host", "state"}]) of the hypervisors that answered;
    ``unreadable`` the ones that did not (host -> error); ``failed_step`` the step that failed (from 1;
    default: the last one). A VM's "last seen" placement is the one the plan expected before that
    step (the check after the previous step confirmed it). Returns:

    - ``vms``: VM -> its state now ("running on hv2"), or where it was last seen when a host it may
      be on was not read;
    - ``moved`` / ``not_moved`` / ``elsewhere``: the plan's migrating VMs, from what was read;
    - ``lost``: VMs that were running/paused (or defined) and are now shut off or gone, on hosts
      that were all read (not a planned stop or suspend);
    - ``duplicated``: VMs defined or active on several hypervisors;
    - ``hosts_not_read``, ``not_checked``: what could not be seen, and the VMs it hides;
    - ``every_vm_on_one_host``: true, false, or "unknown" when a hypervisor was not read.
    """
    unreadable = dict(unreadable or {})
    initial = plan.get("initial") or {}
    target = plan.get("target") or {}
    steps = plan.get("steps") or []
    index = len(steps) - 1 if failed_step is None else max(0, min(int(failed_step), len(steps)) - 1)
    timeline = placements_after_steps(initial, steps)
    before = timeline[index - 1] if index > 0 else {vm: dict(where) for vm, where in initial.items()}
    step = steps[index] if steps else []
    report: dict = {"vms": {}, "moved": [], "not_moved": [], "elsewhere": [], "lost": [], "duplicated": [],
                    "hosts_not_read": ["%s: %s" % (host, error) for host, error in sorted(unreadable.items())], "not_checked": []}
    # Hosts each VM may be on: where it was last seen, and both ends of its action in the failed step.
    may_be_on: dict[str, set] = {vm: {where.get("host")} for vm, where in before.items()}
    stopping = set()
    for action in step:
        may_be_on.setdefault(action["vm"], set()).update(h for h in (action.get("from"), action.get("to"), action.get("host")) if h)
        if STATE_AFTER_ACTION.get(action.get("action")) in ("saved", "stopped"):
            stopping.add(action["vm"])
    unchecked, lost = set(), set()
    for vm in sorted(set(may_be_on) | set(actual)):
        found = list(actual.get(vm) or [])
        active = [entry for entry in found if entry.get("state") in ACTIVE_STATES]
        hidden = sorted((may_be_on.get(vm, set()) | {entry["host"] for entry in found}) & set(unreadable))
        last = before.get(vm)
        if hidden:
            unchecked.add(vm)
            seen = ("last seen %s on %s" % (last.get("state", "running"), last["host"])) if last else "not in the plan"
            text = "not read on %s (%s)" % (", ".join(hidden), seen)
            report["vms"][vm] = (describe_placement(found) + "; " + text) if found else text
            report["not_checked"].append("%s: %s" % (vm, report["vms"][vm]))
            continue
        report["vms"][vm] = describe_placement(found)
        if len(found) > 1:
            report["duplicated"].append("%s: %s" % (vm, describe_placement(found)))
        if last is None:
            continue
        if not found or (last.get("state", "running") in ACTIVE_STATES and not active and vm not in stopping):
            lost.add(vm)
            report["lost"].append("%s: was %s on %s, now %s" % (vm, last.get("state", "running"), last["host"], describe_placement(found)))
    migrating = sorted({action["vm"] for step_ in steps for action in step_ if action.get("action") == "migrate"})
    for vm in migrating:
        if vm in unchecked or vm in lost:
            continue
        hosts = sorted(entry["host"] for entry in actual.get(vm) or [])
        start = (initial.get(vm) or {}).get("host")
        if hosts == [target.get(vm)]:
            report["moved"].append("%s: %s -> %s" % (vm, start, hosts[0]))
        elif hosts == [start]:
            report["not_moved"].append("%s: still on %s" % (vm, start))
        else:
            report["elsewhere"].append("%s: %s" % (vm, describe_placement(actual.get(vm) or [])))
    report["not_checked"].sort()
    if unreadable:
        report["every_vm_on_one_host"] = "unknown"
    else:
        report["every_vm_on_one_host"] = not report["lost"] and not report["duplicated"]
    return report


def failed_actions(results) -> list[str]:
    """The failed actions of a step, one line each: "vm2: migrate hv1 -> hv3: <the module's message>".

    ``results`` are loop results as Ansible registers them: of the task that started the action
    (``item`` is the action) or of ``async_status`` waiting for it (``item`` is the start result).
    """
    lines = []
    for result in results or []:
        if not isinstance(result, Mapping) or not result.get("failed"):
            continue
        action = result.get("item")
        if isinstance(action, Mapping) and not isinstance(action.get("vm"), str) and isinstance(action.get("item"), Mapping):
            action = action["item"]
        if result.get("ansible_job_id") and not result.get("finished", 1):
            message = "still running when the wait ended (async job %s)" % result["ansible_job_id"]
        else:
            message = result.get("msg") or result.get("module_stderr") or result.get("exception") or "failed without a message"
        message = " ".join(str(message).split())
        if isinstance(action, Mapping) and isinstance(action.get("vm"), str):
            lines.append("%s: %s%s: %s" % (action["vm"], action.get("action", "?"), _action_where(action), message))
        else:
            lines.append(message)
    return lines


def _action_where(action: Mapping) -> str:
    if action.get("action") == "migrate":
        return " %s -> %s" % (action.get("from"), action.get("to"))
    return " on %s" % action_host(action)


def load_plan(content: str, path: str, encoding: str = "base64", variable: str = "") -> dict:
    """A plan file's content (base64 as ansible.builtin.slurp returns it, or text) -> {"plan", "error"}:
    the parsed plan, or a one-line error naming the file and the fix (the plan's fields are checked later).
    With ``variable`` (e.g. entropy_plan_base64) the content is that variable's value, the plan artifact a job
    published with ansible.builtin.set_stats, and the message names the variable instead of a file."""
    if variable:
        source = "the plan in %s" % variable
        fix = "pass the %s artifact that entropy.cluster.plan published (set_stats), unchanged" % variable
        not_text = "%s is not base64 of a plan JSON: %s" % (source, fix)
    else:
        source = "the plan file %s" % path
        fix = "pass the plan JSON that entropy.cluster.plan wrote (-e entropy_plan_file=<plan>.json)"
        not_text = "%s is not UTF-8 text: %s" % (source, fix)
    try:
        text = base64.b64decode(content, validate=True).decode("utf-8") if encoding == "base64" else content
    except (binascii.Error, ValueError, TypeError):
        return {"plan": None, "error": not_text}
    try:
        plan = json.loads(text)
    except ValueError as exc:
        where = (" (line %d, column %d: %s)" % (exc.lineno, exc.colno, exc.msg)) if isinstance(exc, json.JSONDecodeError) else ""
        return {"plan": None, "error": "%s is not valid JSON%s: %s" % (source, where, fix)}
    if not isinstance(plan, dict):
        return {"plan": None, "error": "%s holds a JSON %s, not a plan (an object with initial, target and steps): %s"
                % (source, {list: "array", str: "string"}.get(type(plan), "value"), fix)}
    return {"plan": plan, "error": ""}
