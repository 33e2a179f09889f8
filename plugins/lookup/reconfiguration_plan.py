# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: reconfiguration_plan
author: entropy.cluster contributors (!UNKNOWN)
short_description: Compute where every VM should run and the plan of parallel steps that gets there
version_added: 0.1.0
description:
  - Builds the cluster model from the inventory of P(entropy.cluster.libvirt_cluster#inventory) (hypervisors and VMs with their measured
    load, from O(ansible_lookup_hostvars)), or takes a model given as data or as a JSON file, and solves it with the
    placement solver of the collection (OR-Tools CP-SAT).
  - A model built from the inventory holds the inventory file's C(model_constraints) and C(model_options) (the same model as the
    inventory's own export); the constraints given here are added to them.
  - Returns one plan (a dictionary) in the documented plan format (C(docs/plan-format.md)), with two additions used by
    role P(entropy.cluster.apply_plan#role) to refuse stale plans and to check each step - C(initial), the placement the plan starts from,
    and C(model_warnings), what the model builder left out.
  - Runs on the controller. Needs the Python package C(ortools) there.
options:
  _terms:
    description: Not used.
    required: false
  model:
    description:
      - The cluster model as data (format version 1, C(docs/model-format.md)). Mutually exclusive with O(model_file).
      - If neither O(model) nor O(model_file) is given, the model is built from the hostvars of the inventory.
    type: dict
  model_file:
    description:
      - Path of a model JSON file on the controller.
      - "The options written in the model (C(options.objective), C(options.time_limit_s), budgets, ...) hold unless the matching
        option of this lookup is given: an option given here > the model's own option > the default of this lookup."
    type: path
  objective:
    description:
      - V(consolidate) uses the fewest hosts, then moves the least memory; V(repair) removes every overload and constraint
        violation moving the least memory; V(balance) evens the load without changing the number of hosts used.
      - V(schedule) chooses which VMs run when demand exceeds capacity, higher C(priority) first - lower-priority VMs are
        suspended to disk, saved VMs resume on any host with room - and the plan gets there (the plan lists in C(saved) the
        VMs it leaves saved). Only this objective saves VMs to make room; the others suspend a VM only to break a migration
        cycle, and only with C(allow_suspend) true in O(solver_options).
      - Defaults to the model's own option, else V(consolidate).
    type: str
    choices: [consolidate, repair, balance, schedule]
  constraints:
    description:
      - Placement constraints added to the model's own (the inventory file's C(model_constraints), or the model's
        C(constraints)); a constraint given in both is used once (see C(docs/model-format.md)).
      - "For example C({type: spread, vms: [a, b]})."
    type: list
    elements: dict
    default: []
  evacuate:
    description: Hypervisors to empty, for maintenance (adds an C(offline) constraint for them).
    type: list
    elements: str
    default: []
  time_limit_s:
    description:
      - Wall-clock time the solver may use, in seconds.
      - Defaults to the model's own option, else 10 (not the 30 of the model format, which is for the command line).
    type: float
  seed:
    description:
      - Random seed of the solver; the same model, seed and limits give the same plan.
      - Defaults to the model's own option, else 0.
    type: int
  max_migrations:
    description:
      - The plan moves at most this many VMs (the best plan within the budget is returned).
      - Defaults to the model's own option, else no limit.
    type: int
  max_memory_moved_mib:
    description:
      - The plan moves at most this much VM memory, in MiB.
      - Defaults to the model's own option, else no limit.
    type: int
  min_gain_hosts:
    description:
      - With O(objective=consolidate), return an empty plan unless it frees at least this many hosts.
      - Defaults to the model's own option, else 1 (a consolidation that frees no host moves nothing).
    type: int
  solver_options:
    description:
      - Other solver options (C(workers), C(bandwidth_mib_s), C(max_parallel_migrations_per_host), ...); each one given
        here replaces the model's own.
      - C(allow_suspend) defaults to the model's own option, else V(false) - a migration cycle with no pivot host is then
        reported instead of being broken by a suspend to disk. With V(true) and no O(save_dir), suspends are run as managed
        saves, and a plan that would resume a VM on another host than the one that saved it is refused.
    type: dict
    default: {}
  save_dir:
    description:
      - The directory on shared storage where role P(entropy.cluster.apply_plan#role) saves suspended VMs with
        entropy.cluster.vm_image (variable C(entropy_save_dir)). When set, a plan may resume a VM on another host than the one
        that suspended it.
    type: str
    vars:
      - name: entropy_save_dir
  grid:
    description:
      - V(true) solves each cluster of a grid on its own, in parallel worker processes, after a grid level that moves VMs
        out of clusters above 90% of their capacity (C(placement.grid.solve_grid), C(docs/solver.md)); the plan gets C(grid),
        each cluster's figures, and its moves between clusters. V(false) solves the whole model as one problem.
      - Unset - V(true) when the model's hosts belong to two clusters or more (the inventory's C(clusters) option) and the
        objective is not V(schedule), else V(false).
    type: bool
    version_added: 0.1.0
  grid_workers:
    description: Worker processes that solve the clusters of a grid side by side (never more than the controller's cores).
    type: int
    default: 2
    version_added: 0.1.0
  on_error:
    description:
      - V(raise) fails the task that uses the lookup; Ansible then wraps the message in its own (the task, the variable,
        the lookup).
      - V(return) returns a dictionary with the key C(error) instead of a plan, holding the message alone (what the
        solver wrote, such as C(no placement satisfies the request) and the constraint it names), for a playbook to fail
        with it as it is. The P(entropy.cluster.plan#role) role does so.
    type: str
    choices: [raise, return]
    default: raise
    version_added: 0.1.0
  ansible_lookup_hostvars:
    description:
      - Inventory host variables to build the model from. Defaults to the play's C(hostvars); hosts are told apart by
        their C(entropy_kind) variable (C(hypervisor) or C(vm)).
    type: dict
notes:
  - The model built from the inventory leaves out unreachable hypervisors and their VMs; the plan's C(model_warnings) says so.
seealso:
  - plugin: entropy.cluster.libvirt_cluster
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Plan a consolidation of the cluster in the inventory
  ansible.builtin.set_fact:
    plan: "{{ lookup('entropy.cluster.reconfiguration_plan', objective='consolidate', time_limit_s=10) }}"

- name: Plan the evacuation of hv03, keeping two VMs apart
  ansible.builtin.set_fact:
    plan: >-
      {{ lookup('entropy.cluster.reconfiguration_plan', objective='repair', evacuate=['hv03'],
                constraints=[{'type': 'spread', 'vms': ['db1', 'db2']}]) }}

- name: What-if on a saved model, without any inventory (its options, e.g. options.time_limit_s, hold)
  ansible.builtin.debug:
    msg: "{{ lookup('entropy.cluster.reconfiguration_plan', model_file='cluster.json').stats }}"
"""

RETURN = r"""
_raw:
  description: One plan.
  type: list
  elements: dict
  contains:
    status:
      description: C(optimal), C(feasible) or C(unchanged).
      type: str
    target:
      description: VM name -> hypervisor name after the plan.
      type: dict
    initial:
      description: "VM name -> C({host, state}) before the plan (what a stale-plan check compares with)."
      type: dict
    steps:
      description: "Steps in order; the actions of a step run in parallel (C({action, vm, from, to, memory_mib}) for a migration)."
      type: list
      elements: list
    stats:
      description: Hosts used before and after, lower bound, migrations, memory moved (MiB), solve seconds, estimated duration.
      type: dict
    model_warnings:
      description: What the model builder left out or assumed (unreachable hypervisors, unmeasured CPU demand).
      type: list
      elements: str
    error:
      description: With O(on_error=return), the only key when no plan could be computed - why, in one message.
      type: str
"""

import json
from collections.abc import Mapping

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model, union_constraints
from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import cross_host_resumes, initial_placement
from ansible_collections.entropy.cluster.plugins.plugin_utils.placement import InfeasibleError, ModelError, PlacementError, solve
from ansible_collections.entropy.cluster.plugins.plugin_utils.placement.grid import solve_grid

# Options this lookup may be given by name; each one given replaces the model's own.
NAMED_OPTIONS = ("objective", "time_limit_s", "seed", "max_migrations", "max_memory_moved_mib", "min_gain_hosts")
# What applies when neither the caller nor the model sets an option. Unlike the model format's defaults (for the
# command line) a plan inside a playbook is quick, moves nothing for no gain, and never suspends a VM unasked
# (the actuators resume it only on the host that saved it).
LOOKUP_DEFAULTS = {"time_limit_s": 10.0, "min_gain_hosts": 1, "allow_suspend": False}


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        on_error = kwargs.get("on_error", "raise")
        if on_error not in ("raise", "return"):
            raise AnsibleLookupError("reconfiguration_plan: on_error must be raise or return, not %r" % (on_error,))
        try:
            self.set_options(var_options=variables, direct=kwargs)
            return [self._plan(variables or {})]
        except AnsibleError as exc:
            if on_error == "return":
                return [{"error": " ".join(str(exc.message).split())}]
            raise

    def _plan(self, variables: Mapping) -> dict:
        model = self._model(variables)
        model = dict(model)
        # The model's own constraints (the inventory file's model_constraints, or the model file's), then the caller's.
        evacuate = self.get_option("evacuate") or []
        if isinstance(model.get("constraints"), (list, type(None))):  # anything else: the solver says what is wrong
            model["constraints"] = union_constraints(model.get("constraints"), self.get_option("constraints"),
                                                     [{"type": "offline", "hosts": list(evacuate)}] if evacuate else [])
        overrides = self._overrides(model.get("options"))
        warnings = list(model.pop("warnings", None) or [])
        try:
            if self._use_grid(model, overrides):
                workers = self.get_option("grid_workers")
                if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                    raise AnsibleLookupError("reconfiguration_plan: grid_workers must be a positive integer, got %r" % (workers,))
                # plain data: the worker processes get the clusters' models pickled, and Ansible's lazy containers
                # (a model built from hostvars) refuse pickling
                plan = solve_grid(json.loads(json.dumps(model)), workers=workers, **json.loads(json.dumps(overrides)))
            else:
                plan = solve(model, **overrides)
        except InfeasibleError as exc:
            raise AnsibleLookupError("no placement satisfies the request: %s" % (getattr(exc, "explanation", None) or exc)) from None
        except ModelError as exc:
            raise AnsibleLookupError("the cluster model is malformed: %s%s" % (
                exc, " (the model builder: %s)" % "; ".join(warnings) if warnings else "")) from None
        except PlacementError as exc:
            raise AnsibleLookupError("the placement solver failed: %s" % exc) from None
        # with a save directory on shared storage (entropy.cluster.vm_image) a VM resumes on any host
        unrunnable = [] if self.get_option("save_dir") else cross_host_resumes(plan)
        if unrunnable:
            raise AnsibleLookupError("the plan resumes suspended VMs on another host, which managed saves cannot do (%s); "
                                     "set entropy_save_dir (a directory every hypervisor sees) so that suspends go to shared "
                                     "storage, or leave solver_options.allow_suspend false" % "; ".join(unrunnable))
        plan["initial"] = initial_placement(model)
        plan["model_warnings"] = warnings
        return plan

    def _use_grid(self, model: Mapping, overrides: Mapping) -> bool:
        """The grid option, or (unset) whether the hosts form two clusters or more and the solve can be partitioned."""
        wanted = self.get_option("grid")
        if wanted is not None:
            return bool(wanted)
        hosts = model.get("hosts")
        if model.get("version") != 1 or not isinstance(hosts, list):
            return False
        clusters = {h.get("cluster") for h in hosts if isinstance(h, Mapping)}
        own = model.get("options") if isinstance(model.get("options"), Mapping) else {}
        objective = overrides.get("objective", own.get("objective"))
        return len(clusters) >= 2 and objective != "schedule"

    def _overrides(self, own: object) -> dict:
        """Options for the solver: given here > the model's own (they stay in the model) > LOOKUP_DEFAULTS."""
        own = own if isinstance(own, Mapping) else {}   # a malformed `options` is reported by the solver
        overrides = {k: v for k, v in LOOKUP_DEFAULTS.items() if own.get(k) is None}
        overrides.update(self.get_option("solver_options") or {})
        overrides.update({name: self.get_option(name) for name in NAMED_OPTIONS if self.get_option(name) is not None})
        return overrides

    def _model(self, variables: Mapping) -> Mapping:
        given, path = self.get_option("model"), self.get_option("model_file")
        if given and path:
            raise AnsibleError("reconfiguration_plan: give either model or model_file, not both")
        if given:
            return given
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    return json.load(handle)
            except OSError as exc:
                raise AnsibleError("reconfiguration_plan: cannot read the model file %s: %s" % (path, exc.strerror)) from None
            except ValueError as exc:
                raise AnsibleError("reconfiguration_plan: the model file %s is not valid JSON: %s" % (path, exc)) from None
        hostvars = self.get_option("ansible_lookup_hostvars") or variables.get("hostvars") or {}
        try:
            model = build_model({name: hostvars[name] for name in hostvars})
        except ValueError as exc:
            raise AnsibleError("reconfiguration_plan: %s" % exc) from None
        if not model["hosts"]:
            raise AnsibleError("reconfiguration_plan: the inventory has no reachable hypervisor (no host with entropy_kind=hypervisor); "
                               "use the entropy.cluster.libvirt_cluster inventory, or pass model / model_file"
                               + (" (%s)" % "; ".join(model["warnings"]) if model["warnings"] else ""))
        return model
