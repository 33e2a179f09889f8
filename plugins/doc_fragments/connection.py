# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every module (plugins/module_utils/libvirt_module.py).
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor, for example C(qemu:///system), C(qemu+tcp://hv01/system)
        or C(qemu+ssh://root@hv01/system).
      - If not set, the value of the E(LIBVIRT_DEFAULT_URI) environment variable is used, else C(qemu:///system).
    type: str
  auth_username:
    description:
      - User name for libvirt authentication (SASL), for URIs that ask for credentials.
      - If not set, the value of the E(ENTROPY_LIBVIRT_USERNAME) environment variable is used.
    type: str
  auth_password:
    description:
      - Password for libvirt authentication (SASL).
      - If not set, the value of the E(ENTROPY_LIBVIRT_PASSWORD) environment variable is used.
    type: str
requirements:
  - libvirt-python (the Python binding of libvirt) on the host that runs the module
notes:
  - "Connections are opened by the module on the host it runs on (usually the controller, with
    C(delegate_to: localhost)); remote hypervisors are reached through their libvirt URI."
"""

    # Options of the lookups that read every hypervisor live, in parallel (plugins/plugin_utils/hypervisor_reads.py).
    HYPERVISOR_READS = r"""
options:
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
  parallelism:
    description: Hypervisors read at once.
    type: int
    default: 8
requirements:
  - libvirt-python on the controller
"""
