# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cluster_placement
author: entropy.cluster contributors (!UNKNOWN)
short_description: Where every VM of the cluster is defined right now, read live from libvirt
version_added: 0.1.0
description:
  - Connects to every hypervisor given in O(hypervisors) (in parallel) and returns, for each VM, the hypervisors where it is
    defined and its state there (V(running), V(paused), V(saved) or V(stopped)).
  - Used by M(entropy.cluster.apply_plan) to refuse stale plans and to check the cluster after every step; unlike inventory
    variables it is never cached.
options:
  _terms:
    description: Not used.
    required: false
  hypervisors:
    description: Hypervisor name -> libvirt URI.
    type: dict
    required: true
  auth_username:
    description: User name for libvirt authentication (SASL).
    type: str
    env:
      - name: ENTROPY_LIBVIRT_USERNAME
  auth_password:
    description: Password for libvirt authentication (SASL).
    type: str
    env:
      - name: ENTROPY_LIBVIRT_PASSWORD
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
  parallelism:
    description: Hypervisors read at once.
    type: int
    default: 8
requirements:
  - libvirt-python on the controller
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

from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    HAS_LIBVIRT,
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    domain_state,
    open_connection,
)
from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import vm_model_state


def read_hypervisor(name: str, uri: str, username: str | None, password: str | None) -> list[tuple[str, str, str]]:
    """(vm, host, model state) for every domain defined on one hypervisor."""
    conn = None
    try:
        conn = open_connection(uri, username, password, readonly=True)
        return [(dom.name(), name, vm_model_state(domain_state(dom), bool(dom.hasManagedSaveImage()))) for dom in conn.listAllDomains()]
    except EntropyLibvirtError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise describe_error(exc, "listing the VMs of %s" % name, uri) from None
    finally:
        close_quietly(conn)


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if not HAS_LIBVIRT:
            raise AnsibleLookupError("cluster_placement needs the Python module libvirt on the controller: pip install libvirt-python")
        hypervisors = self.get_option("hypervisors")
        username, password = self.get_option("auth_username"), self.get_option("auth_password")
        placement: dict[str, list] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.get_option("parallelism"), len(hypervisors) or 1))) as pool:
            futures = {name: pool.submit(read_hypervisor, name, uri, username, password) for name, uri in sorted(hypervisors.items())}
            errors: dict[str, str] = {}
            for name, future in futures.items():
                try:
                    for vm, host, state in future.result():
                        placement.setdefault(vm, []).append({"host": host, "state": state})
                except EntropyLibvirtError as exc:
                    errors[name] = exc.message
        mode = self.get_option("unreachable")
        if mode == "report":
            return [{"placement": placement, "unreachable": errors}]
        if errors and mode == "warn":
            for name, error in errors.items():
                Display().warning("cluster_placement: left out %s: %s" % (name, error))
        elif errors:
            raise AnsibleLookupError("cannot read the placement of the cluster: " + "; ".join("%s: %s" % item for item in errors.items()))
        return [placement]
