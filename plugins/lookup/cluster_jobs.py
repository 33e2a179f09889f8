# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cluster_jobs
author: entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - entropy.cluster.connection.hypervisor_reads
  - entropy.cluster.connection.connect_timeout
short_description: The migrations and other libvirt jobs in flight in the cluster, read live
version_added: 0.1.0
description:
  - Connects to every hypervisor (in parallel) and returns one entry per VM that has a libvirt job in flight,
    that is, a live migration (its outgoing side, a job of operation C(migration_out) on the source, paired with the
    incoming copy on the destination, paused with reason C(migration)), or a save, dump, snapshot or other job.
  - A run killed with C(kill -9) leaves its migrations running; role P(entropy.cluster.plan#role) uses this lookup to refuse to
    plan until they are finished. Never cached, unlike inventory variables.
options:
  _terms:
    description: Not used.
    required: false
  hypervisors:
    description:
      - Hypervisor name -> libvirt URI.
      - Defaults to the hosts of the inventory group C(hypervisors) with their C(entropy_uri) (the
        P(entropy.cluster.libvirt_cluster#inventory) inventory).
    type: dict
  unreachable:
    description:
      - V(warn) leaves a hypervisor that cannot be read out with a warning (a migration from or to it may then show
        with an unknown source or destination); V(fail) raises an error naming it.
    type: str
    choices: [fail, warn]
    default: warn
"""

EXAMPLES = r"""
- name: Refuse to go on while a migration is in flight
  ansible.builtin.assert:
    that: jobs | length == 0
    fail_msg: "{{ jobs | map(attribute='description') | list }}"
  vars:
    jobs: "{{ lookup('entropy.cluster.cluster_jobs') }}"
"""

RETURN = r"""
_raw:
  description:
    - One list with an entry per VM that has a job in flight (empty when there is none).
    - Each entry has C(vm), C(operation) (V(migration), or the job's operation such as V(save), V(dump), V(snapshot)),
      C(source) and C(destination) (hypervisor names of a migration, null when not seen), C(host) (where the job
      runs), C(elapsed_ms), C(memory_total_bytes), C(memory_remaining_bytes) (null when libvirt does not say),
      C(postcopy), and C(description), one line saying what is moving and how to abort it.
  type: list
  elements: list
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.entropy.cluster.plugins.module_utils.domain_jobs import host_jobs, in_flight
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT
from ansible_collections.entropy.cluster.plugins.plugin_utils.hypervisor_reads import read_hypervisors


def inventory_hypervisors(variables: dict | None) -> dict:
    variables = variables or {}
    hostvars = variables.get("hostvars", {})
    return {name: hostvars[name]["entropy_uri"] for name in variables.get("groups", {}).get("hypervisors", [])
            if "entropy_uri" in hostvars.get(name, {})}


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if not HAS_LIBVIRT:
            raise AnsibleLookupError("cluster_jobs needs the Python module libvirt on the controller: pip install libvirt-python")
        hypervisors = self.get_option("hypervisors")
        if hypervisors is None:
            hypervisors = inventory_hypervisors(variables)
        jobs, errors = read_hypervisors(hypervisors, host_jobs, "reading the jobs", self.get_option("auth_username"),
                                        self.get_option("auth_password"), self.get_option("parallelism"),
                                        self.get_option("connect_timeout"))
        if errors and self.get_option("unreachable") == "fail":
            raise AnsibleLookupError("cannot read the jobs of the cluster: " + "; ".join("%s: %s" % item for item in errors.items()))
        for name, error in errors.items():
            Display().warning("cluster_jobs: left out %s: %s" % (name, error))
        return [in_flight(jobs, hypervisors)]
