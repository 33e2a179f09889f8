# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cluster_placement
author: entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - entropy.cluster.connection.hypervisor_reads
  - entropy.cluster.connection.connect_timeout
short_description: Where every VM of the cluster is defined right now, read live from libvirt
version_added: 0.1.0
description:
  - Connects to every hypervisor given in O(hypervisors) (in parallel) and returns, for each VM, the hypervisors where it is
    defined and its state there - V(running), V(paused), V(saved) (a managed save, or a definition that
    entropy.cluster.vm_image marked as saved to shared storage) or V(stopped) as in the solver's model, or V(crashed)
    (it holds its memory like a paused VM, but its guest is dead and no plan expects it).
  - Used by role P(entropy.cluster.apply_plan#role) to refuse stale plans and to check the cluster after every step; unlike inventory
    variables it is never cached.
options:
  _terms:
    description: Not used.
    required: false
  hypervisors:
    description: Hypervisor name -> libvirt URI.
    type: dict
    required: true
  unreachable:
    description:
      - V(fail) raises an error naming every hypervisor that could not be read; V(warn) leaves them out with a warning
        (their VMs are then missing from the result).
      - V(report) returns, instead of the placement alone, a mapping with C(placement) (the VMs of the hypervisors that
        answered) and C(unreachable) (hypervisor name -> why it could not be read, empty when all answered), so that the
        caller can tell a VM that is gone from a VM on a hypervisor that was not read.
    type: str
    choices: [fail, warn, report]
    default: fail
"""

EXAMPLES = r"""
- name: Where does every VM run?
  ansible.builtin.debug:
    msg: "{{ lookup('entropy.cluster.cluster_placement', hypervisors={'hv1': 'qemu+tcp://hv1/system', 'hv2': 'qemu+tcp://hv2/system'}) }}"

- name: Read what can be read, and say which hypervisors did not answer
  ansible.builtin.set_fact:
    live: "{{ lookup('entropy.cluster.cluster_placement', hypervisors=entropy_hypervisor_uris, unreachable='report') }}"
# live.placement: {vm1: [{host: hv1, state: running}], ...}; live.unreachable: {hv3: "listing the VMs of hv3 ... failed: ..."}
"""

RETURN = r"""
_raw:
  description:
    - One mapping, VM name -> list of C({host, state}) (one entry per hypervisor where the VM is defined).
    - With O(unreachable=report), one mapping C({placement, unreachable}) - the placement above, read from the hypervisors
      that answered, and hypervisor name -> error message for those that did not.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT, domain_state, libvirt
from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import live_state
from ansible_collections.entropy.cluster.plugins.plugin_utils.hypervisor_reads import read_hypervisors


def vm_states(conn) -> list[tuple[str, str]]:
    """(vm, live state) for every domain defined on one hypervisor. A shut-off definition marked as saved to shared storage
    (entropy.cluster.vm_image) reads saved, like a managed save."""
    return [(dom.name(), live_state(domain_state(dom), bool(dom.hasManagedSaveImage()) or saved_to_shared_storage(dom)))
            for dom in conn.listAllDomains()]


def saved_to_shared_storage(dom) -> bool:
    if dom.isActive() or not dom.isPersistent():
        return False
    return bool(vm_metadata.read_domain(dom, libvirt, inactive=True, strict=False)["saved"])


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if not HAS_LIBVIRT:
            raise AnsibleLookupError("cluster_placement needs the Python module libvirt on the controller: pip install libvirt-python")
        read, errors = read_hypervisors(self.get_option("hypervisors"), vm_states, "listing the VMs", self.get_option("auth_username"),
                                        self.get_option("auth_password"), self.get_option("parallelism"),
                                        self.get_option("connect_timeout"))
        placement: dict[str, list] = {}
        for host, states in read.items():
            for vm, state in states:
                placement.setdefault(vm, []).append({"host": host, "state": state})
        mode = self.get_option("unreachable")
        if mode == "report":
            return [{"placement": placement, "unreachable": errors}]
        if errors and mode == "warn":
            for name, error in errors.items():
                Display().warning("cluster_placement: left out %s: %s" % (name, error))
        elif errors:
            raise AnsibleLookupError("cannot read the placement of the cluster: " + "; ".join("%s: %s" % item for item in errors.items()))
        return [placement]
