# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: job_plan
author: entropy.cluster contributors (!UNKNOWN)
short_description: Read a job file and place all of its VMs, or say why not
version_added: 0.1.0
description:
  - Reads and validates a job file (the collection's docs/jobs.md; YAML safe loader, every string kept literally), builds
    the cluster model from the inventory of P(entropy.cluster.libvirt_cluster#inventory) (as
    P(entropy.cluster.reconfiguration_plan#lookup) does), and places all the job's VMs with the placement solver, or
    none - new VMs enter the model as waiting VMs, running VMs may move to make room.
  - Returns one dictionary. When the job is placed, C(plan) is a plan for role P(entropy.cluster.apply_plan#role) - the
    moves of running VMs, then a C(start) of each job VM on its host - whose C(initial) holds the job's VMs shut off on
    those hosts (where entropy.cluster.job_vm defines them before the plan is applied).
  - Otherwise C(outcome) says why - V(invalid) (the job file, one line naming the field), V(refused) (larger than the
    whole cluster, even empty), V(no_room) (it would fit an emptier cluster, so the job is to wait in the queue) - and
    C(error) holds the one-line message with the numbers.
  - Runs on the controller. Needs the Python packages C(ortools) and C(PyYAML) there.
options:
  _terms:
    description: Not used.
    required: false
  job_file:
    description: Path of the job file on the controller. One of O(job_file) and O(job) is required.
    type: path
  job:
    description:
      - The job's fields as a dictionary instead of a file - the C(job) of its record in the cluster store, which
        entropy.cluster.job_queue places again - validated the same way.
    type: dict
  place:
    description:
      - V(false) only reads and validates the job file (C(outcome) V(read) or V(invalid)), for a playbook that needs
        the job's exact name and VMs (entropy.cluster.cancel), without building a model or solving.
    type: bool
    default: true
  time_limit_s:
    description: Wall-clock time the solver may use, in seconds.
    type: float
    default: 10
  ansible_lookup_hostvars:
    description:
      - Inventory host variables to build the model from. Defaults to the play's C(hostvars).
    type: dict
seealso:
  - plugin: entropy.cluster.reconfiguration_plan
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Place the job's VMs
  ansible.builtin.set_fact:
    placed: "{{ lookup('entropy.cluster.job_plan', job_file='job.yml') }}"
"""

RETURN = r"""
_raw:
  description: One dictionary.
  type: list
  elements: dict
  contains:
    outcome:
      description: V(placed), V(invalid), V(refused), V(no_room), or V(read) with O(place=false).
      type: str
    error:
      description: Why the job was not placed (one line), empty when it was.
      type: str
    job:
      description: The validated job's fields (absent when the file is invalid).
      type: dict
    vms:
      description: "The job's VMs, C({name, host, overlay, seed}) (host null when not placed; C(seed), the name of its seed volume)."
      type: list
      elements: dict
    plan:
      description: The plan that starts the job's VMs (C(initial), C(target), C(steps), C(placement)), when placed.
      type: dict
    figures:
      description: Memory and CPU the job needs and the cluster has free (C(needs_memory_mib), C(free_memory_mib), ...).
      type: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.entropy.cluster.plugins.module_utils._job import overlay_name, seed_name
from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model
from ansible_collections.entropy.cluster.plugins.plugin_utils.jobs import JobError, check_room, load_job_file, parse_job, place_job, real_model
from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import initial_placement


def outcome(job_file: str | dict, model: dict | None, time_limit_s: float) -> dict:
    """The job placed, or why not (see RETURN). ``job_file``: a path, or the job's fields (a record's ``job``)."""
    try:
        if isinstance(job_file, dict):
            job = parse_job(dict(job_file), "job %r (its record)" % job_file.get("name"))
        else:
            job = load_job_file(job_file)
    except JobError as exc:
        return {"outcome": "invalid", "error": str(exc), "field": exc.field}
    result = {"job": job.to_dict(), "vms": [{"name": n, "host": None, "overlay": overlay_name(n), "seed": seed_name(n)}
                                            for n in job.vm_names()],
              "error": "", "figures": {}}
    if model is None:
        return dict(result, outcome="read")
    try:  # against the cluster emptied of its VMs: what no placement could ever hold
        check_room(job, dict(model, vms=[]))
    except JobError as exc:
        return dict(result, outcome="refused", error="refused: %s" % exc)
    try:
        result["figures"] = check_room(job, model)
        plan = place_job(job, model, time_limit_s=time_limit_s, allow_suspend=False)
    except JobError as exc:
        if exc.field == "name":
            return dict(result, outcome="invalid", error=str(exc))
        return dict(result, outcome="no_room", error="queued: %s" % exc)
    plan["initial"] = initial_placement(real_model(job, model, plan["placement"]))
    # the solver moved the job's VMs off its staging host: in this plan they are starts, not migrations
    moves = [a for step in plan["steps"] for a in step if a.get("action") == "migrate"]
    plan["stats"] = dict(plan.get("stats") or {}, migrations=len(moves), memory_moved_mib=sum(a.get("memory_mib", 0) for a in moves),
                         starts=job.vms)
    if isinstance(plan["stats"].get("hosts_used_before"), int):
        plan["stats"]["hosts_used_before"] -= 1  # the staging host held the job's VMs before
    for vm in result["vms"]:
        vm["host"] = plan["placement"][vm["name"]]
    return dict(result, outcome="placed", plan=plan)


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        source = self.get_option("job") if self.get_option("job") is not None else self.get_option("job_file")
        if not source:
            raise AnsibleLookupError("job_plan: give job_file (the path of a job file) or job (the job's fields)")
        if not self.get_option("place"):
            return [outcome(source, None, 0)]
        hostvars = self.get_option("ansible_lookup_hostvars") or (variables or {}).get("hostvars") or {}
        try:
            model = build_model({name: hostvars[name] for name in hostvars})
        except ValueError as exc:
            raise AnsibleLookupError("job_plan: %s" % exc) from None
        model.pop("warnings", None)
        if not model["hosts"]:
            raise AnsibleLookupError("job_plan: the inventory has no reachable hypervisor (no host with entropy_kind=hypervisor): use "
                                     "the entropy.cluster.libvirt_cluster inventory")
        return [outcome(source, model, float(self.get_option("time_limit_s")))]
