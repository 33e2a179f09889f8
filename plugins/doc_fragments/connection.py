# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # For the modules that reach libvirt through their own options (run_lock, host_maintenance, host_fence, vm_checkpoint).
    # The same text as connect_timeout in DOCUMENTATION below (tests/unit/plugins/module_utils/test_connect_timeout.py checks it);
    # the argument spec is CONNECT_TIMEOUT_SPEC in plugins/module_utils/libvirt_module.py.
    MODULE_CONNECT_TIMEOUT = r"""
options:
  connect_timeout:
    description:
      - Seconds allowed to open a connection to a hypervisor. libvirt itself has no connect timeout, so a host that
        stops answering without refusing (powered off, cable pulled, daemon stopped) would hold the task for the
        system's TCP timeout, or for ever; past this bound the module fails with C(error_kind=unreachable).
      - An open connection also gets libvirt keepalive, so a hypervisor that stops answering during a call fails
        that call after about 1.5 times this value.
      - C(0) means no bound (libvirt's own behaviour).
      - If not set, the value of the E(ENTROPY_LIBVIRT_CONNECT_TIMEOUT) environment variable is used, else C(10).
    type: float
    version_added: 0.1.0
"""

    # The credentials of the modules that reach several hypervisors (host_probe, host_fence, host_maintenance,
    # vm_checkpoint); the argument spec is CREDENTIALS_SPEC in plugins/module_utils/libvirt_module.py.
    MODULE_CREDENTIALS = r"""
options:
  auth_username:
    description:
      - User name for libvirt authentication (SASL).
      - If not set, the value of the E(ENTROPY_LIBVIRT_USERNAME) environment variable is used.
    type: str
  auth_password:
    description:
      - Password for libvirt authentication (SASL).
      - If not set, the value of the E(ENTROPY_LIBVIRT_PASSWORD) environment variable is used.
    type: str
"""

    # Where the modules that keep records in the cluster store reach it (host_fence, host_maintenance); the
    # argument spec is STORE_SPEC in plugins/module_utils/libvirt_module.py.
    CLUSTER_STORE = r"""
options:
  pool:
    description:
      - The libvirt storage pool of the cluster store; it must be defined and active on the hypervisors over one shared
        directory (see the collection's docs/playbooks.md, "The cluster store").
    type: str
    default: entropy-cluster
  uris:
    description:
      - libvirt URIs of the hypervisors through which the store is reached, tried in this order until one answers.
    type: list
    elements: str
    required: true
"""

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
  connect_timeout:
    description:
      - Seconds allowed to open a connection to a hypervisor. libvirt itself has no connect timeout, so a host that
        stops answering without refusing (powered off, cable pulled, daemon stopped) would hold the task for the
        system's TCP timeout, or for ever; past this bound the module fails with C(error_kind=unreachable).
      - An open connection also gets libvirt keepalive, so a hypervisor that stops answering during a call fails
        that call after about 1.5 times this value.
      - C(0) means no bound (libvirt's own behaviour).
      - If not set, the value of the E(ENTROPY_LIBVIRT_CONNECT_TIMEOUT) environment variable is used, else C(10).
    type: float
    version_added: 0.1.0
requirements:
  - libvirt-python (the Python binding of libvirt) on the host that runs the module
notes:
  - "Connections are opened by the module on the host it runs on (usually the controller, with
    C(delegate_to: localhost)); remote hypervisors are reached through their libvirt URI."
"""

    # The connect timeout of the controller plugins (the inventory, and the lookups below).
    CONNECT_TIMEOUT = r"""
options:
  connect_timeout:
    description:
      - Seconds allowed to open a connection to each hypervisor. libvirt itself has no connect timeout, so a host
        that stops answering without refusing (powered off, cable pulled, daemon stopped) would hold the whole run
        for the system's TCP timeout, or for ever; past this bound that hypervisor is reported unreachable and the
        others are read.
      - An open connection also gets libvirt keepalive, so a hypervisor that stops answering during a read fails
        that read after about 1.5 times this value.
      - C(0) means no bound (libvirt's own behaviour).
    type: float
    default: 10
    env:
      - name: ENTROPY_LIBVIRT_CONNECT_TIMEOUT
    version_added: 0.1.0
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
