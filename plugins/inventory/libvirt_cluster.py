# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt_cluster
short_description: libvirt hypervisors and their VMs, with measured CPU and memory load
version_added: 0.1.0
description:
  - Builds an inventory of a libvirt cluster from a list of hypervisor URIs. Every hypervisor
    becomes a host in group C(hypervisors), every VM (domain) a host in group C(vms), with its
    capacity, allocation and measured load as C(entropy_*) variables whose names carry their unit.
  - Load is measured. The plugin takes a first sample of every hypervisor (node CPU times, domain
    C(cpu.time), network bytes) concurrently, waits O(sampling_interval) seconds once, takes a
    second sample and reports the rates. One wait in total, not one per hypervisor.
  - An unreachable hypervisor is reported (group C(unreachable), variable C(entropy_error)) and the
    rest of the inventory still builds, unless O(strict=true).
  - A VM defined on several hypervisors is reported (group C(duplicates), variable
    C(entropy_duplicate_on) and a warning), not hidden.
  - The plugin can export the cluster as the placement solver's model (JSON version 1), as the
    variable C(entropy_model) of the host named by O(model_host) and/or written to O(model_file).
  - With caching enabled the cache holds the raw data read from libvirt, not the built inventory,
    so a cached run replays the same data and builds the same inventory without contacting libvirt.
  - The configuration file name must end in C(.libvirt_cluster.yml) or C(.libvirt_cluster.yaml).
author:
  - entropy.cluster developers (@entropy)
requirements:
  - libvirt-python (the Python binding of libvirt) on the controller
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - entropy.cluster.connection.connect_timeout
options:
  plugin:
    description: Marks this file as a configuration of this plugin.
    required: true
    choices: ['entropy.cluster.libvirt_cluster']
    type: str
  hypervisors:
    description:
      - The hypervisors of the cluster. Each entry is a dictionary with the keys below.
      - C(name) (required, string) - the inventory host name of the hypervisor; names must be unique.
      - C(uri) (required, string) - its libvirt URI, for example C(qemu+tcp://hv01/system) or C(qemu+ssh://root@hv01/system).
      - C(cpu) (optional, positive number) - CPU capacity in cores given to the solver, instead of
        the number of CPUs libvirt reports.
      - C(memory_mib) (optional, positive integer) - memory capacity in MiB, instead of what libvirt reports.
      - C(reserved_memory_mib) (optional, non-negative integer) - memory kept for the hypervisor
        itself, taken off the capacity in the exported model. Defaults to O(reserved_memory_mib).
      - Required unless O(clusters) is given (both may be given; hypervisor names are unique across all of them).
    type: list
    elements: dict
  clusters:
    description:
      - Several clusters (a grid) in one inventory. Each entry is a dictionary with the keys C(name) (required, string),
        C(site) (optional, string) and C(hypervisors) (required, a list of entries like O(hypervisors)).
      - Each of its hypervisors gets C(entropy_cluster) (and C(entropy_site)), carries them into the solver's model
        (host fields C(cluster) and C(site)), and joins group C(cluster_<name>) (and C(site_<site>)) with its VMs.
    type: list
    elements: dict
    version_added: 0.1.0
  auth_username:
    description:
      - User name for libvirt authentication (SASL), for URIs that ask for credentials.
    type: str
    env:
      - name: ENTROPY_LIBVIRT_USERNAME
  auth_password:
    description:
      - Password for libvirt authentication (SASL). Never written to the inventory, the cache or messages.
    type: str
    env:
      - name: ENTROPY_LIBVIRT_PASSWORD
  sampling_interval:
    description:
      - Seconds between the two load samples. CPU demand, host CPU use and network rates are
        averages over this interval.
      - C(0) takes a single sample and leaves the rates unset (V(null)); the exported model then
        assumes every vCPU of a running VM is busy.
    type: float
    default: 1.0
  load_source:
    description:
      - Where the CPU and network load come from.
      - V(libvirt) - two samples of every hypervisor O(sampling_interval) apart, as described above.
      - V(prometheus) - rates over O(prometheus_window) from the Prometheus server at O(prometheus_url), which scrapes
        Debian's C(prometheus-libvirt-exporter) on every hypervisor with the label O(prometheus_host_label) set to the
        hypervisor's inventory name. One libvirt sample is still read (states, memory, details) and there is no
        sampling wait. The variables are the same; C(entropy_cpu_used_cores) of a hypervisor is then the CPU of its VMs (the
        exporter has no node counters). An unreachable server, a refused query or a running VM without a CPU series makes
        the inventory fail with a message naming it and the fix.
    type: str
    choices: [libvirt, prometheus]
    default: libvirt
    version_added: 0.1.0
  prometheus_url:
    description:
      - Base URL of the Prometheus server (its HTTP API is under C(/api/v1/)), for O(load_source=prometheus).
    type: str
    env:
      - name: ENTROPY_PROMETHEUS_URL
    version_added: 0.1.0
  prometheus_window:
    description:
      - Range of the C(rate()) queries, a Prometheus duration such as C(30s) or C(2m); at least two scrape intervals.
    type: str
    default: 2m
    version_added: 0.1.0
  prometheus_host_label:
    description:
      - The label of the libvirt exporter's series whose value is the hypervisor's inventory name (set in the scrape configuration).
    type: str
    default: hypervisor
    version_added: 0.1.0
  prometheus_token:
    description:
      - Bearer token for the Prometheus server. Never written to the inventory, the cache or messages.
    type: str
    env:
      - name: ENTROPY_PROMETHEUS_TOKEN
    version_added: 0.1.0
  prometheus_username:
    description:
      - User name for HTTP basic authentication to the Prometheus server.
    type: str
    env:
      - name: ENTROPY_PROMETHEUS_USERNAME
    version_added: 0.1.0
  prometheus_password:
    description:
      - Password for HTTP basic authentication to the Prometheus server. Never written to the inventory, the cache or messages.
    type: str
    env:
      - name: ENTROPY_PROMETHEUS_PASSWORD
    version_added: 0.1.0
  prometheus_validate_certs:
    description:
      - Check the TLS certificate of an C(https) O(prometheus_url).
    type: bool
    default: true
    version_added: 0.1.0
  parallelism:
    description: Maximum number of hypervisors contacted at the same time.
    type: int
    default: 8
  reserved_memory_mib:
    description: Default memory in MiB kept for each hypervisor itself (see C(reserved_memory_mib) of O(hypervisors)).
    type: int
    default: 0
  connection_vars:
    description:
      - Set C(ansible_connection=local) and C(ansible_python_interpreter={{ ansible_playbook_python }})
        as group variables of C(hypervisors) and C(vms) (and on the model host), so a host variable from
        another inventory source still takes precedence.
      - Hypervisors and VMs are not SSH targets of the entropy.cluster playbooks; the modules run on the
        controller and reach libvirt through C(entropy_uri) / C(entropy_hypervisor_uri). With these
        variables a task on such a host runs on the controller with the Python that runs Ansible
        (which has libvirt-python). Set V(false) if you also manage these machines over SSH from
        another inventory source and want its connection variables to apply.
    type: bool
    default: true
  guest_addresses:
    description:
      - Set C(ansible_host) of each running VM to an address of the guest, so that a play can reach it (with
        O(connection_vars=false), or with connection variables from another inventory source).
      - The address comes from the QEMU guest agent when the guest runs one (what the guest itself reports),
        else from the DHCP leases of the libvirt network the VM is on. Among them, an address on one of the VM's
        own network cards before one on an interface inside the guest (such as a container bridge), IPv4 before
        IPv6, never a loopback, link-local, multicast or unspecified one. A VM with no such address gets no
        C(ansible_host).
      - Like the inventory of community.libvirt, which asks the guest agent by default. Set V(false) to ask
        neither (a guest agent that hangs can delay the inventory by libvirt's agent timeout per VM).
    type: bool
    default: true
    version_added: 0.1.0
  dirty_rate:
    description:
      - Measure how fast each running VM dirties its memory, during the sampling interval, with libvirt's dirty-rate
        calculation (QEMU's C(calc-dirty-rate) in page-sampling mode, which hashes a sample of the guest's pages; the guest
        keeps running), and give it as C(entropy_dirty_mib_s). The network model (version 2) takes it as the VM's
        C(dirty_mib_s), which decides a migration's duration and whether it converges.
      - Needs O(sampling_interval) of at least 1 (the calculation runs for whole seconds). A VM whose hypervisor cannot
        measure it (an older QEMU, another driver) gets V(null). The dirty-bitmap mode is not used (it crashed QEMU 7.2 under TCG).
      - libvirt starts the calculation only on a read-write connection, so with this option the inventory connects read-write
        (otherwise read-only), and the credentials must allow it.
    type: bool
    default: false
    version_added: 0.1.0
  model_host:
    description:
      - Name of an extra host that carries the solver model as the variable C(entropy_model)
        (and its warnings as C(entropy_model_warnings)). It is put in no group other than C(all).
      - Set to an empty string to add no such host.
    type: str
    default: entropy_cluster
  model_file:
    description:
      - If set, the solver model (JSON version 1) is written to this path each time the inventory
        is built (also from the cache).
    type: path
  model_constraints:
    description:
      - Placement constraints of this cluster (the solver validates them), in every model built from this inventory - the
        exported model, and the plans of P(entropy.cluster.reconfiguration_plan#lookup) and of the entropy.cluster playbooks,
        which add their own constraints to these.
      - They travel on each hypervisor as the variable C(entropy_model_constraints).
    type: list
    elements: dict
    default: []
  model_options:
    description:
      - Solver options of this cluster (the solver validates them), in every model built from this inventory, like
        O(model_constraints); an option given to the plan explicitly wins.
      - They travel on each hypervisor as the variable C(entropy_model_options).
    type: dict
    default: {}
  store_pool:
    description:
      - Name of the libvirt storage pool of the cluster store (see the entropy.cluster.host_maintenance module). When set,
        the hypervisors marked in maintenance there get C(entropy_maintenance) (the mark, with C(since), C(by) and C(reason)) and join
        group C(maintenance), and the exported model places no VM on them.
      - The hypervisors fenced there (see the entropy.cluster.host_fence module) get C(entropy_fenced) (the record) and join group
        C(fenced), and the exported model leaves them out with their VMs, even when they answer again.
      - When set and no hypervisor that answers can read the store, the inventory fails rather than forget a mark.
    type: str
    version_added: 0.1.0
  save_dir:
    description:
      - The directory on shared storage where entropy.cluster.vm_image saves VMs (its O(entropy.cluster.vm_image#module:save_dir)).
        Each image there becomes a VM in state C(saved) with no hypervisor (C(entropy_hypervisor=null),
        C(entropy_save_image) its path, C(entropy_defined_on) the host that keeps its shut-off definition), and enters the
        solver's model as a saved VM that can resume on any host.
      - The images are read on the controller (their header holds the VM's XML), so the directory must be mounted there too;
        when it is not, the inventory warns and lists no saved VM.
      - A VM whose definition is marked saved (by entropy.cluster.vm_image) but has no image in this directory is named in a
        warning with the fix (put the image back, or discard the saved state with entropy.cluster.vm_image C(state=absent)).
    type: path
    version_added: 0.1.0
notes:
  - "O(strict) (from the constructed options) also decides what an unreachable hypervisor does: with
    O(strict=true) it makes the whole inventory fail with an error naming the hypervisor; by default it
    is listed in group C(unreachable) and the rest of the inventory builds."
  - "Variables of a hypervisor: C(entropy_kind=hypervisor), C(entropy_uri), C(entropy_reachable),
    C(entropy_error), C(entropy_host_uuid), C(entropy_hostname), C(entropy_cpu_cores) (capacity),
    C(entropy_memory_mib) (capacity), C(entropy_reserved_memory_mib), C(entropy_node_cpu_cores) and
    C(entropy_node_memory_mib) (what libvirt reports), C(entropy_free_memory_mib),
    C(entropy_cpu_used_cores) (measured on the node), C(entropy_vm_count), C(entropy_vm_active_count),
    C(entropy_vm_cpu_demand_cores), C(entropy_vm_memory_mib), C(entropy_maintenance) and C(entropy_fenced) (with O(store_pool)), and when set
    C(entropy_model_constraints) and C(entropy_model_options) (O(model_constraints), O(model_options))."
  - "Variables of a VM: C(entropy_kind=vm), C(entropy_hypervisor), C(entropy_hypervisor_uri),
    C(entropy_uuid), C(entropy_state), C(entropy_vcpus), C(entropy_memory_mib) (allocated),
    C(entropy_memory_max_mib), C(entropy_memory_used_mib) (guest balloon statistics, V(null) where
    the guest reports none), C(entropy_memory_rss_mib) (QEMU process), C(entropy_cpu_demand_cores),
    C(entropy_net_rx_bytes_s), C(entropy_net_tx_bytes_s), C(entropy_dirty_mib_s) (O(dirty_rate)), C(entropy_snapshot_count),
    C(entropy_has_managed_save), C(entropy_priority) (from the VM's metadata, see entropy.cluster.vm_priority; V(null) when unset),
    C(entropy_save_image) and C(entropy_defined_on) (saved VMs, see O(save_dir)), C(entropy_job_name) and C(entropy_job_owner)
    (the user job the VM belongs to and who submitted it, from its metadata, see the entropy.cluster.submit playbook;
    V(null) for other VMs), C(entropy_job) (the libvirt job in flight, such as a migration, or V(null);
    read when the inventory is built, so it may be cached: role P(entropy.cluster.plan#role) checks live with the
    P(entropy.cluster.cluster_jobs#lookup) lookup), for duplicates C(entropy_duplicate_on) and C(entropy_copies), and
    C(ansible_host) when the guest's address is known (O(guest_addresses))."
  - "Groups: C(hypervisors), C(vms), C(unreachable), C(duplicates), C(maintenance) and C(fenced) (with O(store_pool)), C(on_<hypervisor>),
    C(state_<state>) and C(job_<job name>) (the VMs of one user job) (names sanitized as the inventory base does - every character other than a letter, a digit
    or an underscore becomes an underscore)."
  - "With O(clusters), also C(cluster_<cluster>) and C(site_<site>): the hypervisors of that cluster (site) and their VMs, names sanitized alike."
  - Strings that could be templates (containing C({) or C(}), or the C(#jinja2:) header), such as a tenant's VM name
    with template code in it, are marked unsafe and never templated; every other value is plain, so
    C(ansible-inventory --list) prints numbers, booleans and ordinary strings as plain JSON (what AWX imports).
  - libvirt has no connection timeout; O(connect_timeout) bounds the wait for each hypervisor, so one that stops answering
    without refusing (powered off, packets dropped, daemon stopped) is listed in group C(unreachable) after that many
    seconds while the others are read.
  - The guide C(docs/inventory.md) in the collection lists the variables with their units, caching and the model export.
"""

EXAMPLES = r"""
# cluster.libvirt_cluster.yml
plugin: entropy.cluster.libvirt_cluster
hypervisors:
  - name: hv01
    uri: qemu+tcp://hv01.example.com/system
  - name: hv02
    uri: qemu+ssh://root@hv02.example.com/system
    cpu: 16             # capacity given to the solver, in cores
    memory_mib: 65536
    reserved_memory_mib: 2048
sampling_interval: 2
parallelism: 16

# A grid: several clusters in one inventory, grouped as cluster_paris, cluster_lyon (and site_fr).
# plugin: entropy.cluster.libvirt_cluster
# clusters:
#   - name: paris
#     site: fr
#     hypervisors: [{name: pa01, uri: 'qemu+tcp://pa01.example.com/system'}]
#   - name: lyon
#     hypervisors: [{name: ly01, uri: 'qemu+tcp://ly01.example.com/system'}]

# Keep the measurements 5 minutes; a cached run replays them without contacting libvirt.
# plugin: entropy.cluster.libvirt_cluster
# hypervisors: [...]
# cache: true
# cache_plugin: ansible.builtin.jsonfile
# cache_connection: ~/.cache/entropy-inventory
# cache_timeout: 300

# Constructed options: groups from the measured load.
# plugin: entropy.cluster.libvirt_cluster
# hypervisors: [...]
# groups:
#   busy_hypervisors: entropy_kind == 'hypervisor' and (entropy_cpu_used_cores or 0) > 0.8 * entropy_cpu_cores
# keyed_groups:
#   - key: entropy_vcpus | string
#     prefix: vcpus
# compose:
#   memory_gib: (entropy_memory_mib | default(0)) / 1024

# CPU and network load from Prometheus (scraping prometheus-libvirt-exporter, label hypervisor: <inventory name>)
# plugin: entropy.cluster.libvirt_cluster
# hypervisors: [...]
# load_source: prometheus
# prometheus_url: http://prometheus.example.com:9090   # or env ENTROPY_PROMETHEUS_URL; token: env ENTROPY_PROMETHEUS_TOKEN
# prometheus_window: 2m

# Export the solver model to a file each time the inventory is built.
# plugin: entropy.cluster.libvirt_cluster
# hypervisors: [...]
# model_file: /var/tmp/cluster-model.json
"""

import ipaddress
import json
import math
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore, StoreError
from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils.domain_jobs import domain_job
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    host_uuid,
    libvirt,
    open_connection,
    resolve_connect_timeout,
)
from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import is_active_code, is_active_word, model_state, state_word
from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import CONSTRAINTS_VAR, OPTIONS_VAR, build_model
from ansible_collections.entropy.cluster.plugins.plugin_utils.inventory_values import inventory_value, trust_as_template
from ansible_collections.entropy.cluster.plugins.plugin_utils import prometheus_load

RAW_VERSION = 1
# One entry of the hypervisors option. ansible-core's validator finds unknown keys and converts numbers given as
# strings; what it cannot express is checked after it: name and uri non-empty strings (its str type would turn
# `name: 01` into "1" and a list into its repr), no booleans as numbers, finite positive ranges, unique names.
HYPERVISOR_SPEC = {
    "name": {"type": "raw", "required": True},
    "uri": {"type": "raw", "required": True},
    "cpu": {"type": "float"},
    "memory_mib": {"type": "int"},
    "reserved_memory_mib": {"type": "int"},
}
HYPERVISOR_KEYS = tuple(HYPERVISOR_SPEC)
# getAllDomainStats keys kept in the raw data (the cache): nothing else is read.
KEPT_STATS = ("state.state", "state.reason", "cpu.time", "balloon.current", "balloon.maximum", "balloon.available", "balloon.unused",
              "balloon.rss", "vcpu.current", "vcpu.maximum")
_NET_BYTES = re.compile(r"^net\.\d+\.(rx|tx)\.bytes$")
# Where a guest's addresses come from, best first: the guest itself (qemu-guest-agent), then the DHCP leases of
# libvirt's networks. (name, libvirt constant)
ADDRESS_SOURCES = (("agent", "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT"), ("lease", "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE"))


def _mib(kib):
    return None if kib is None else int(kib) // 1024


def _rate(before, after, seconds):
    if before is None or after is None or not seconds or seconds <= 0:
        return None
    return max(0.0, (after - before) / seconds)


# --------------------------------------------------------------------------- fetching (libvirt only)

def _stats_flags():
    return (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
            | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_INTERFACE)


def _domain_stats(conn):
    """name -> the kept stats of every domain, plus the domain objects (for the details pass)."""
    # NOWAIT: the destination of a migration holds the domain's job, and a waiting query blocks ~30 s per sample;
    # what cannot be read at once stays null
    nowait = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
    try:
        records = conn.getAllDomainStats(_stats_flags(), nowait)
    except libvirt.libvirtError as exc:
        # A driver that refuses some stats groups: fall back to state only.
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            raise
        records = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
    stats, domains = {}, {}
    for dom, values in records:
        name = dom.name()
        kept = {key: values[key] for key in KEPT_STATS if key in values}
        rx = tx = None
        for key, value in values.items():
            match = _NET_BYTES.match(key)
            if match:
                if match.group(1) == "rx":
                    rx = (rx or 0) + value
                else:
                    tx = (tx or 0) + value
        kept["net.rx.bytes"] = rx
        kept["net.tx.bytes"] = tx
        stats[name] = kept
        domains[name] = dom
    return stats, domains


def _sample(conn):
    node_cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
    stamp = time.monotonic()
    stats, domains = _domain_stats(conn)
    return {"t": stamp, "node_cpu": dict(node_cpu), "domains": stats}, domains


def _start_dirty_rates(domains, seconds):
    """Start libvirt's dirty-rate calculation (page sampling, ``seconds`` long) on each running domain: the names started."""
    started = []
    mode = getattr(libvirt, "VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING", 0)
    for name, dom in domains.items():
        try:
            if dom.isActive() and dom.info()[0] == libvirt.VIR_DOMAIN_RUNNING:
                dom.startDirtyRateCalc(seconds, mode)
                started.append(name)
        except (libvirt.libvirtError, AttributeError):
            continue  # this VM (or its QEMU, or the driver) cannot measure it: its rate stays null
    return started


def _read_dirty_rates(conn, names, wait_s):
    """name -> MiB/s of the calculations started on ``names``, waiting up to ``wait_s`` for those still measuring."""
    flag = getattr(libvirt, "VIR_DOMAIN_STATS_DIRTYRATE", None)
    measured_status = getattr(libvirt, "VIR_DOMAIN_DIRTYRATE_MEASURED", 2)
    rates, deadline = {}, time.monotonic() + wait_s
    pending = list(names)
    while pending and flag is not None:
        doms = []
        for name in pending:
            try:
                doms.append(conn.lookupByName(name))
            except libvirt.libvirtError:
                continue  # gone since the first sample
        if not doms:
            break
        try:
            records = conn.domainListGetStats(doms, flag, 0)
        except libvirt.libvirtError:
            break
        pending = []
        for dom, values in records:
            if values.get("dirtyrate.calc_status") == measured_status and "dirtyrate.megabytes_per_second" in values:
                # QEMU's "MB" here is 2^20 bytes (calc-dirty-rate divides by 1024 * 1024)
                rates[dom.name()] = float(values["dirtyrate.megabytes_per_second"])
            elif values.get("dirtyrate.calc_status") == getattr(libvirt, "VIR_DOMAIN_DIRTYRATE_MEASURING", 1):
                pending.append(dom.name())
        if pending:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    return rates


def _guest_addresses(dom):
    """{"macs": the VM's own MAC addresses, source: [[interface, hwaddr, address], ...] for each source that
    answered}, asking the next source only while none gave a usable address."""
    found = {"macs": [mac.get("address", "").lower() for mac in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/interface/mac")]}
    for source, constant in ADDRESS_SOURCES:
        try:
            reported = dom.interfaceAddresses(getattr(libvirt, constant), 0) or {}
        except libvirt.libvirtError:
            continue  # no agent in the guest, no libvirt network: this source knows nothing
        found[source] = [[str(iface), str((entry or {}).get("hwaddr") or "").lower(), str(addr.get("addr"))]
                         for iface, entry in reported.items() for addr in (entry or {}).get("addrs") or []]
        if choose_address(found[source], found["macs"]):
            break
    return found


def choose_address(reported, macs=()):
    """The address to reach a guest at, from [[interface, hwaddr, address], ...]: one on the VM's own network cards
    (``macs``) before one on an interface inside the guest, IPv4 before IPv6, first reported first; never loopback,
    link-local, multicast or unspecified. None when there is none."""
    ranked = []
    for position, (_iface, hwaddr, text) in enumerate(reported):
        try:
            address = ipaddress.ip_address(text)  # the agent says what the guest says: only a real address passes
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
            continue
        ranked.append(((hwaddr not in macs, address.version, position), str(address)))
    return min(ranked)[1] if ranked else None


def _details(dom, state, reason=None, addresses=False):
    """What getAllDomainStats does not give: UUID, sizes (test driver), snapshots, managed save, job in flight,
    and with ``addresses`` the guest's addresses (running VMs only)."""
    info = None
    entry = {"uuid": dom.UUIDString()}
    try:
        info = dom.info()  # [state, maxMem KiB, memory KiB, nrVirtCpu, cpuTime]
    except libvirt.libvirtError:
        info = None
    if info:
        entry.update({"info_state": info[0], "max_memory_kib": info[1], "memory_kib": info[2], "vcpus": info[3]})
    try:
        entry["snapshot_count"] = dom.snapshotNum(0)
    except libvirt.libvirtError:
        entry["snapshot_count"] = None
    active = is_active_code(state if state is not None else entry.get("info_state"))
    if addresses and (state if state is not None else entry.get("info_state")) == libvirt.VIR_DOMAIN_RUNNING:
        try:
            entry["addresses"] = _guest_addresses(dom)
        except (libvirt.libvirtError, ET.ParseError):
            entry["addresses"] = None
    entry["job"] = domain_job(dom, state, reason) if active else None
    try:  # priority as written (checked when the inventory is built, so that one bad VM names itself)
        marks = vm_metadata.read(dom.XMLDesc(0), dom.name(), strict=False)
        entry["priority"] = marks["priority"]
        entry["job_name"], entry["job_owner"] = marks["job"], marks["owner"]  # the user job it belongs to (docs/jobs.md)
        if marks["saved"] and not active:
            entry["saved_to"] = marks["saved"]   # its memory was saved there (entropy.cluster.vm_image)
    except (libvirt.libvirtError, ET.ParseError):
        entry["priority"] = None
    if active:
        entry["has_managed_save"] = False
    else:
        try:
            entry["has_managed_save"] = bool(dom.hasManagedSaveImage(0))
        except libvirt.libvirtError:
            entry["has_managed_save"] = None
    return entry


class _Hypervisor:
    """One hypervisor during a fetch: its connection and the raw record being filled."""

    def __init__(self, spec, username, password, addresses=False, connect_timeout=None, dirty_seconds=0):
        self.spec = spec
        self.dirty_seconds = dirty_seconds
        self.dirty_started = []
        self.connect_timeout = connect_timeout
        self.username = username
        self.password = password
        self.addresses = addresses
        self.conn = None
        self.raw = {"name": spec["name"], "uri": spec["uri"], "reachable": False, "error": None, "samples": []}

    def first(self):
        raw = self.raw
        try:
            # libvirt starts a dirty-rate calculation only on a read-write connection; everything else here only reads
            self.conn = open_connection(self.spec["uri"], self.username, self.password, readonly=not self.dirty_seconds,
                                        connect_timeout=self.connect_timeout)
            info = self.conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
            raw["node"] = {"model": info[0], "memory_mib": info[1], "cpus": info[2], "mhz": info[3]}
            raw["host_uuid"] = host_uuid(self.conn)
            raw["hostname"] = self.conn.getHostname()
            raw["free_memory_mib"] = self.conn.getFreeMemory() // (1024 * 1024)
            sample, domains = _sample(self.conn)
            raw["samples"].append(sample)
            raw["details"] = {name: _details(dom, sample["domains"][name].get("state.state"), sample["domains"][name].get("state.reason"),
                                             self.addresses)
                              for name, dom in domains.items()}
            if self.dirty_seconds:
                self.dirty_started = _start_dirty_rates(domains, self.dirty_seconds)
            raw["reachable"] = True
        except EntropyLibvirtError as exc:
            self._fail(exc.message)
        except libvirt.libvirtError as exc:
            self._fail(describe_error(exc, "reading hypervisor %s" % self.spec["name"], self.spec["uri"]).message)
        except Exception as exc:  # pylint: disable=broad-except
            # One odd hypervisor (a driver returning something unexpected) must not hide the others.
            self._fail("reading hypervisor %s on %s failed unexpectedly: %s: %s" % (self.spec["name"], self.spec["uri"], type(exc).__name__, exc))

    def second(self):
        if not self.raw["reachable"]:
            return
        try:
            sample, _domains = _sample(self.conn)
            self.raw["samples"].append(sample)
            if self.dirty_started:
                self.raw["dirty_mib_s"] = _read_dirty_rates(self.conn, self.dirty_started, wait_s=1.0)
        except libvirt.libvirtError as exc:
            self._fail(describe_error(exc, "second load sample of hypervisor %s" % self.spec["name"], self.spec["uri"]).message)
        except Exception as exc:  # pylint: disable=broad-except
            self._fail("second load sample of hypervisor %s on %s failed unexpectedly: %s: %s"
                       % (self.spec["name"], self.spec["uri"], type(exc).__name__, exc))

    def _fail(self, message):
        self.raw["reachable"] = False
        self.raw["error"] = message
        self.close()

    def close(self):
        close_quietly(self.conn)
        self.conn = None


def fetch(specs, sampling_interval, parallelism, username=None, password=None, guest_addresses=False, connect_timeout=None,
          dirty_rate=False):
    """Read every hypervisor: sample 1 on all (concurrently), one wait, sample 2 on all. With ``dirty_rate``, each running
    VM's dirty-rate calculation runs between the two samples (whole seconds, so at least 1).

    Returns the raw data (JSON-serializable, no credentials): what the cache stores.
    """
    dirty_seconds = int(sampling_interval) if dirty_rate and sampling_interval >= 1 else 0  # parse() refuses < 1
    workers = [_Hypervisor(spec, username, password, guest_addresses, connect_timeout, dirty_seconds) for spec in specs]
    started = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(workers) or 1))) as pool:
        list(pool.map(lambda w: w.first(), workers))
        if sampling_interval > 0:
            reachable = [w for w in workers if w.raw["reachable"]]
            if reachable:
                first_done = time.monotonic()
                time.sleep(max(0.0, sampling_interval - (time.monotonic() - first_done)))
                list(pool.map(lambda w: w.second(), reachable))
        list(pool.map(lambda w: w.close(), workers))
    return {"version": RAW_VERSION, "fetched_at": started, "sampling_interval": sampling_interval,
            "guest_addresses": guest_addresses, "dirty_rate": bool(dirty_seconds), "hypervisors": [w.raw for w in workers]}


# --------------------------------------------------------------------------- raw data -> variables (pure)

def summarize(raw, specs, default_reserved_mib=0):
    """Raw fetched data + configuration -> (hypervisor vars by name, list of VM copies).

    Each VM copy is (vm name, vars); a VM defined on several hypervisors gives several copies.
    """
    by_name = {h["name"]: h for h in raw["hypervisors"]}
    hypervisors, copies = {}, []
    for spec in specs:
        record = by_name[spec["name"]]
        hv = hypervisors[spec["name"]] = _hypervisor_vars(spec, record, default_reserved_mib)
        samples = record.get("samples") or []
        if not hv["entropy_reachable"] or not samples:
            continue
        first, second = samples[0], (samples[1] if len(samples) > 1 else None)
        seconds = (second["t"] - first["t"]) if second else None
        loads = (raw["prometheus"]["vms"].get(spec["name"]) or {}) if raw.get("prometheus") else None  # load_source: prometheus
        if second:
            busy = [sum(s["node_cpu"].get(k, 0) for k in ("kernel", "user")) for s in (first, second)]
            used = _rate(busy[0], busy[1], seconds)
            hv["entropy_cpu_used_cores"] = None if used is None else round(used / 1e9, 4)
        demand_sum, memory_sum, active = 0.0, 0, 0
        for name in sorted(first["domains"]):
            later = (second or {}).get("domains", {}).get(name) if second else None
            vm = _vm_vars(spec, first["domains"][name], later, record.get("details", {}).get(name, {}), seconds)
            if raw.get("dirty_rate"):
                vm["entropy_dirty_mib_s"] = (record.get("dirty_mib_s") or {}).get(name)
            if loads is not None:
                prometheus_load.apply_vm_load(vm, loads.get(name), model_state(vm["entropy_state"]) == "running")
            copies.append((name, vm))
            if is_active_word(vm["entropy_state"]):
                active += 1
                memory_sum += vm["entropy_memory_mib"] or 0
                demand_sum += vm["entropy_cpu_demand_cores"] or 0.0
        hv["entropy_vm_count"] = len(first["domains"])
        hv["entropy_vm_active_count"] = active
        hv["entropy_vm_memory_mib"] = memory_sum
        hv["entropy_vm_cpu_demand_cores"] = round(demand_sum, 4) if second or loads is not None else None
        if loads is not None:  # the exporter has no node counters: the CPU its VMs use there
            hv["entropy_cpu_used_cores"] = hv["entropy_vm_cpu_demand_cores"]
    return hypervisors, copies


def _hypervisor_vars(spec, record, default_reserved_mib):
    """A hypervisor's vars from its configuration entry and what was read from it (load sums filled in later)."""
    node = record.get("node") or {}
    hv = {
        "entropy_kind": "hypervisor",
        "entropy_uri": spec["uri"],
        "entropy_reachable": bool(record.get("reachable")),
        "entropy_error": record.get("error"),
        "entropy_host_uuid": record.get("host_uuid"),
        "entropy_hostname": record.get("hostname"),
        "entropy_node_cpu_cores": node.get("cpus"),
        "entropy_node_memory_mib": node.get("memory_mib"),
        "entropy_free_memory_mib": record.get("free_memory_mib"),
        "entropy_reserved_memory_mib": spec.get("reserved_memory_mib", default_reserved_mib),
        "entropy_cpu_used_cores": None,
        "entropy_vm_count": None,
        "entropy_vm_active_count": None,
        "entropy_vm_cpu_demand_cores": None,
        "entropy_vm_memory_mib": None,
    }
    hv["entropy_cpu_cores"] = spec.get("cpu", hv["entropy_node_cpu_cores"])
    for key in ("cluster", "site"):   # the clusters option
        if spec.get(key):
            hv["entropy_" + key] = spec[key]
    hv["entropy_memory_mib"] = spec.get("memory_mib", hv["entropy_node_memory_mib"])
    return hv


def _rounded_rate(before, after, seconds, digits):
    rate = _rate(before, after, seconds)
    return None if rate is None else round(rate, digits)


def _vm_vars(spec, stats, later, detail, seconds):
    """One VM copy's vars: its first sample (`stats`), its second (`later`, None without one) and its details."""
    state = state_word(stats.get("state.state", detail.get("info_state")))
    used_mib = None
    if stats.get("balloon.available") is not None and stats.get("balloon.unused") is not None:
        used_mib = _mib(stats["balloon.available"] - stats["balloon.unused"])
    demand = rx = tx = None
    if later is not None:
        cpu_rate = _rate(stats.get("cpu.time"), later.get("cpu.time"), seconds)
        demand = None if cpu_rate is None else round(cpu_rate / 1e9, 4)
        rx = _rounded_rate(stats.get("net.rx.bytes"), later.get("net.rx.bytes"), seconds, 1)
        tx = _rounded_rate(stats.get("net.tx.bytes"), later.get("net.tx.bytes"), seconds, 1)
    if model_state(state) != "running":
        demand = 0.0 if demand is None else demand
    vm = {
        "entropy_kind": "vm",
        "entropy_hypervisor": spec["name"],
        "entropy_hypervisor_uri": spec["uri"],
        "entropy_uuid": detail.get("uuid"),
        "entropy_state": state,
        "entropy_vcpus": stats.get("vcpu.current", detail.get("vcpus")),
        "entropy_memory_mib": _mib(stats.get("balloon.current", detail.get("memory_kib"))),
        "entropy_memory_max_mib": _mib(stats.get("balloon.maximum", detail.get("max_memory_kib"))),
        "entropy_memory_used_mib": used_mib,
        "entropy_memory_rss_mib": _mib(stats.get("balloon.rss")),
        "entropy_cpu_demand_cores": demand,
        "entropy_net_rx_bytes_s": rx,
        "entropy_net_tx_bytes_s": tx,
        "entropy_snapshot_count": detail.get("snapshot_count"),
        "entropy_has_managed_save": detail.get("has_managed_save"),
        "entropy_job": detail.get("job"),
        "entropy_priority": detail.get("priority"),
        "entropy_job_name": detail.get("job_name"),
        "entropy_job_owner": detail.get("job_owner"),
    }
    address = _address(detail.get("addresses"))
    if address:
        vm["ansible_host"] = address
    return vm


def _address(found):
    """ansible_host from what _guest_addresses found (raw data, possibly cached): the agent's choice, else the leases'."""
    if not found:
        return None
    for source, _constant in ADDRESS_SOURCES:
        address = choose_address(found.get(source) or [], found.get("macs") or [])
        if address:
            return address
    return None


def merge_copies(copies):
    """VM name -> vars, one entry per VM. A VM defined on several hypervisors keeps the copy that is
    active (the first one in configuration order if several are), with entropy_duplicate_on and
    entropy_copies describing every copy."""
    grouped = {}
    for name, vm in copies:
        grouped.setdefault(name, []).append(vm)
    merged = {}
    for name, group in grouped.items():
        if len(group) == 1:
            merged[name] = group[0]
            continue
        chosen = next((vm for vm in group if is_active_word(vm["entropy_state"])), group[0])
        vm = dict(chosen)
        vm["entropy_duplicate_on"] = [c["entropy_hypervisor"] for c in group]
        vm["entropy_copies"] = [{"hypervisor": c["entropy_hypervisor"], "state": c["entropy_state"], "uuid": c["entropy_uuid"],
                                 "memory_mib": c["entropy_memory_mib"], "cpu_demand_cores": c["entropy_cpu_demand_cores"],
                                 "has_managed_save": c["entropy_has_managed_save"], "job": c["entropy_job"]} for c in group]
        merged[name] = vm
    return merged


# --------------------------------------------------------------------------- configuration

def validate_hypervisors(value, default_reserved_mib=0):
    """The hypervisors option, checked entry by entry; raises ValueError with a message naming the entry and the fix."""
    if not isinstance(value, list) or not value:
        raise ValueError("'hypervisors' must be a non-empty list of {name, uri} entries, for example: "
                         "hypervisors: [{name: hv01, uri: 'qemu+tcp://hv01/system'}]")
    if default_reserved_mib is None or isinstance(default_reserved_mib, bool) or not isinstance(default_reserved_mib, int) or default_reserved_mib < 0:
        raise ValueError("'reserved_memory_mib' must be a non-negative integer (MiB), got %r" % (default_reserved_mib,))
    validator = ArgumentSpecValidator(HYPERVISOR_SPEC)
    specs, names, uris = [], {}, {}
    for idx, entry in enumerate(value):
        spec = _hypervisor_entry(validator, idx, entry)
        label = "hypervisors[%d] (name %s)" % (idx, spec["name"])
        if spec["name"] in names:
            raise ValueError("%s: duplicate name %r, already used by hypervisors[%d]; give every hypervisor its own name"
                             % (label, spec["name"], names[spec["name"]]))
        names[spec["name"]] = idx
        if spec["uri"] in uris:
            spec["_same_uri_as"] = uris[spec["uri"]]
        uris.setdefault(spec["uri"], spec["name"])
        specs.append(spec)
    return specs


def validate_clusters(value, hypervisors, default_reserved_mib=0):
    """The hypervisors and clusters options together -> one list of hypervisor specs, those of a cluster with its
    cluster (and site) name; raises ValueError naming the entry and the fix."""
    if value is None:
        if hypervisors is None:
            raise ValueError("'hypervisors' (one cluster) or 'clusters' (several) is required, for example: "
                             "hypervisors: [{name: hv01, uri: 'qemu+tcp://hv01/system'}]")
        return validate_hypervisors(hypervisors, default_reserved_mib)
    if not isinstance(value, list) or not value:
        raise ValueError("'clusters' must be a non-empty list of {name, hypervisors} entries, for example: "
                         "clusters: [{name: paris, hypervisors: [{name: hv01, uri: 'qemu+tcp://hv01/system'}]}]")
    specs = validate_hypervisors(hypervisors, default_reserved_mib) if hypervisors is not None else []
    owner = dict((spec["name"], "hypervisors") for spec in specs)
    seen = {}
    for idx, entry in enumerate(value):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = "clusters[%d] (name %s)" % (idx, name) if isinstance(name, str) and name else "clusters[%d]" % idx
        if not isinstance(entry, dict) or not isinstance(name, str) or not name.strip():
            raise ValueError("%s: must be a dictionary with a non-empty string 'name' and a list 'hypervisors'" % label)
        extra = sorted(str(key) for key in entry if key not in ("name", "site", "hypervisors"))
        if extra:
            raise ValueError("%s: unknown key(s) %s; allowed keys are name, site, hypervisors" % (label, ", ".join(extra)))
        if name in seen:
            raise ValueError("%s: duplicate name, already used by clusters[%d]; give every cluster its own name" % (label, seen[name]))
        seen[name] = idx
        site = entry.get("site")
        if site is not None and (not isinstance(site, str) or not site.strip()):
            raise ValueError("%s: 'site' must be a non-empty string, got %r" % (label, site))
        try:
            members = validate_hypervisors(entry.get("hypervisors"), default_reserved_mib)
        except ValueError as exc:
            raise ValueError("%s: %s" % (label, exc)) from None
        for spec in members:
            if spec["name"] in owner:
                raise ValueError("%s: hypervisor name %r is already used in %s; hypervisor names are unique across clusters"
                                 % (label, spec["name"], owner[spec["name"]]))
            owner[spec["name"]] = label
            spec["cluster"] = name
            if site is not None:
                spec["site"] = site
            specs.append(spec)
    return specs


def _hypervisor_entry(validator, idx, entry):
    """One entry of the hypervisors option -> {name, uri[, cpu, memory_mib, reserved_memory_mib]}."""
    label = "hypervisors[%d]" % idx
    if not isinstance(entry, dict):
        raise ValueError("%s must be a dictionary with keys name and uri, got %r" % (label, entry))
    name = entry.get("name")
    if isinstance(name, str) and name:
        label = "hypervisors[%d] (name %s)" % (idx, name)
    result = validator.validate(entry)
    if result.unsupported_parameters:
        raise ValueError("%s: unknown key(s) %s; allowed keys are %s"
                         % (label, ", ".join(sorted(str(k) for k in result.unsupported_parameters)), ", ".join(HYPERVISOR_KEYS)))
    if not isinstance(name, str) or not name.strip():
        raise ValueError("%s: 'name' is required and must be a non-empty string (the inventory host name)" % label)
    uri = entry.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("%s: 'uri' is required and must be a libvirt URI string such as qemu+tcp://%s/system" % (label, name))
    spec = {"name": name, "uri": uri.strip()}
    checked = result.validated_parameters
    for key, positive, what in (("cpu", True, "a positive number of cores"), ("memory_mib", True, "a positive integer (MiB)"),
                                ("reserved_memory_mib", False, "a non-negative integer (MiB)")):
        if entry.get(key) is None:
            continue
        number = checked[key]  # converted by the validator; left as given when it could not be
        if (isinstance(entry[key], bool) or not isinstance(number, (int, float) if key == "cpu" else int) or not math.isfinite(number)
                or (number <= 0 if positive else number < 0)):
            raise ValueError("%s: %r must be %s, got %r" % (label, key, what, entry[key]))
        spec[key] = entry[key] if isinstance(entry[key], int) else number  # cpu: 2 stays 2 (not 2.0) in the variables
    return spec


SAVE_MAGIC = b"LibvirtQemudSave"
SAVE_MAGIC_PARTIAL = b"LibvirtQemudPart"  # a save still being written (or one that died half-way)
SAVE_HEADER_LEN = 92  # magic (16 bytes), then uint32 version, data_len, was_running, compressed, cookieOffset, 14 unused (libvirt 9.0)
SAVE_XML_MAX = 16 * 1024 * 1024


def read_saved_images(save_dir):
    """One record per ``*.save`` file of entropy.cluster.vm_image in ``save_dir``: name, uuid, sizes and priority from the
    domain XML in libvirt's QEMU save header, or ``error`` for a file that is no complete libvirt save image."""
    records = []
    for entry in sorted(os.listdir(save_dir)):
        if not entry.endswith(".save"):
            continue
        path = os.path.join(save_dir, entry)
        record = {"path": path}
        records.append(record)
        try:
            with open(path, "rb") as handle:
                header = handle.read(SAVE_HEADER_LEN)
                if header[:16] == SAVE_MAGIC_PARTIAL:
                    record["error"] = "the save is unfinished (still being written, or it failed half-way)"
                    continue
                if len(header) < SAVE_HEADER_LEN or header[:16] != SAVE_MAGIC:
                    record["error"] = "not a libvirt QEMU save image"
                    continue
                data_len = int.from_bytes(header[20:24], "little")
                if not 0 < data_len <= SAVE_XML_MAX:
                    record["error"] = "its header gives an XML length of %d bytes" % data_len
                    continue
                text = handle.read(data_len).split(b"\0", 1)[0].decode("utf-8")
            root = ET.fromstring(text)
            memory = _xml_kib(root, "currentMemory") or _xml_kib(root, "memory")
            record.update(name=root.findtext("name"), uuid=root.findtext("uuid"), vcpus=int(root.findtext("vcpu") or 1),
                          memory_mib=_mib(memory), memory_max_mib=_mib(_xml_kib(root, "memory") or memory),
                          priority=vm_metadata.read(text, root.findtext("name") or entry, strict=False)["priority"])
            if record["name"] + ".save" != entry:
                record["error"] = "it holds VM %r, not %r" % (record["name"], entry[:-5])
        except (OSError, ValueError, ET.ParseError) as exc:
            record["error"] = "unreadable (%s)" % exc
    return records


def _xml_kib(root, tag):
    node = root.find(tag)
    if node is None or not (node.text or "").strip().isdigit():
        return None
    factor = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024, "g": 1024 ** 2, "gib": 1024 ** 2}
    return int(int(node.text) * factor.get((node.get("unit") or "KiB").lower(), 1))


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """libvirt hypervisors and VMs with measured load (see DOCUMENTATION)."""

    NAME = "entropy.cluster.libvirt_cluster"

    def verify_file(self, path):
        """Accept only files named *.libvirt_cluster.yml or *.libvirt_cluster.yaml."""
        if super().verify_file(path):
            return path.endswith((".libvirt_cluster.yml", ".libvirt_cluster.yaml"))
        return False

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        try:
            config = self._read_config_data(path)
        except AnsibleParserError:
            raise
        except AnsibleError as exc:  # an option of the wrong type: ansible says which, without a traceback
            raise AnsibleParserError("%s: %s" % (path, exc)) from None
        unknown = sorted(str(key) for key in config if key not in self._options)
        if unknown:
            raise AnsibleParserError("%s: unknown option(s) %s; the options of %s are: %s"
                                     % (path, ", ".join(unknown), self.NAME, ", ".join(sorted(self._options))))
        try:
            specs = validate_clusters(self.get_option("clusters"), self.get_option("hypervisors"), self.get_option("reserved_memory_mib"))
            interval = float(self.get_option("sampling_interval"))
            if interval < 0:
                raise ValueError("'sampling_interval' must be 0 or more seconds, got %r" % interval)
            if self.get_option("dirty_rate") and interval < 1:
                raise ValueError("'dirty_rate' measures over whole seconds between the two samples: set 'sampling_interval' to 1 or more "
                                 "(it is %r)" % interval)
            parallelism = self.get_option("parallelism")
            if parallelism < 1:
                raise ValueError("'parallelism' must be at least 1, got %r" % parallelism)
            resolve_connect_timeout(self.get_option("connect_timeout"))
            source = self._prometheus_source()
            if source is not None:
                interval = 0.0  # one libvirt sample: the rates come from Prometheus
        except ValueError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc)) from None
        for spec in specs:
            if "_same_uri_as" in spec:
                self.display.warning("libvirt_cluster: hypervisors %s and %s have the same URI %s: their VMs will show as duplicates"
                                     % (spec["_same_uri_as"], spec["name"], spec["uri"]))

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        raw = None
        if use_cache:
            try:
                raw = self._cache[cache_key]
            except KeyError:
                update_cache = True
            else:
                if (not self._cache_matches(raw, specs, interval, self.get_option("guest_addresses"), self.get_option("dirty_rate"))
                        or bool(raw.get("prometheus")) != (source is not None)):
                    raw, update_cache = None, True
        if raw is None:
            if libvirt is None:
                raise AnsibleParserError("%s: the Python module 'libvirt' (libvirt-python) is not installed on the controller: "
                                         "pip install libvirt-python" % path)
            raw = fetch(specs, interval, parallelism, self.get_option("auth_username"), self.get_option("auth_password"),
                        self.get_option("guest_addresses"), self.get_option("connect_timeout"), self.get_option("dirty_rate"))
            if source is not None:
                try:
                    raw["prometheus"] = prometheus_load.fetch_loads(raw, source)
                except prometheus_load.PrometheusError as exc:
                    raise AnsibleParserError("%s: %s" % (path, exc)) from None
            if self.get_option("store_pool"):
                raw["maintenance"], raw["fenced"] = self._read_store_marks(raw, path)
            if self.get_option("save_dir"):
                raw["saved_images"] = self._read_saved_images(self.get_option("save_dir"))
        if update_cache:
            self._cache[cache_key] = raw
        self._populate(raw, specs, path)

    def _prometheus_source(self):
        """The Prometheus server of load_source: prometheus (None for libvirt sampling); ValueError naming the option."""
        if self.get_option("load_source") != "prometheus":
            return None
        if not self.get_option("prometheus_url"):
            raise ValueError("load_source: prometheus needs prometheus_url (or env ENTROPY_PROMETHEUS_URL), "
                             "the URL of the Prometheus server that scrapes the libvirt exporters")
        plain = {key: None if self.get_option(key) is None else str(self.get_option(key))  # untagged: they go into the cache
                 for key in ("prometheus_url", "prometheus_window", "prometheus_host_label")}
        source = prometheus_load.Source(
            url=plain["prometheus_url"], window=plain["prometheus_window"], host_label=plain["prometheus_host_label"],
            timeout=resolve_connect_timeout(self.get_option("connect_timeout")), token=self.get_option("prometheus_token"),
            username=self.get_option("prometheus_username"), password=self.get_option("prometheus_password"),
            validate_certs=self.get_option("prometheus_validate_certs"))
        prometheus_load.check_source(source)
        return source

    def _read_store_marks(self, raw, path):
        """(host -> maintenance mark, host -> fence record), read from the cluster store through the hypervisors that answered."""
        uris = [h["uri"] for h in raw["hypervisors"] if h.get("reachable")]
        if not uris:
            return {}, {}
        try:
            with ClusterStore(uris, self.get_option("store_pool"), self.get_option("auth_username"),
                              self.get_option("auth_password"), connect_timeout=self.get_option("connect_timeout")) as store:
                return ({key: record.data or {} for key, record in store.read_all("maintenance").items()},
                        {key: record.data or {} for key, record in store.read_all("fence").items()})
        except StoreError as exc:
            raise AnsibleParserError("%s: cannot read the maintenance marks and fences: %s" % (path, exc.message)) from None

    def _read_saved_images(self, save_dir):
        """The images of entropy.cluster.vm_image in save_dir (read on the controller): one record each."""
        try:
            images = read_saved_images(save_dir)
        except OSError as exc:
            self.display.warning("libvirt_cluster: save_dir %s cannot be read on the controller (%s): saved VMs are not listed; "
                                 "mount the shared storage there at the same path" % (save_dir, exc.strerror or exc))
            return []
        for image in images:
            if image.get("error"):
                self.display.warning("libvirt_cluster: %s is left out: %s" % (image["path"], image["error"]))
        return [image for image in images if not image.get("error")]

    @staticmethod
    def _cache_matches(raw, specs, interval, guest_addresses, dirty_rate=False):
        """A cached record is used only if it covers exactly the configured hypervisors."""
        if not isinstance(raw, dict) or raw.get("version") != RAW_VERSION:
            return False
        cached = [(h.get("name"), h.get("uri")) for h in raw.get("hypervisors") or []]
        return (cached == [(s["name"], s["uri"]) for s in specs] and raw.get("sampling_interval") == interval
                and raw.get("guest_addresses", False) == guest_addresses
                and raw.get("dirty_rate", False) == bool(dirty_rate and interval >= 1))

    def _populate(self, raw, specs, path):
        strict = self.get_option("strict")
        hypervisors, copies = summarize(raw, specs, self.get_option("reserved_memory_mib"))
        down = [(name, hv["entropy_error"]) for name, hv in hypervisors.items() if not hv["entropy_reachable"]]
        if strict and down:
            raise AnsibleParserError("%s: hypervisor %s is unreachable: %s (strict is true; fix the hypervisor or its URI, "
                                     "or set strict: false to list it in group 'unreachable')" % (path, down[0][0], down[0][1]))
        vms = merge_copies(copies)
        for image in raw.get("saved_images") or []:
            self._add_saved_vm(vms, image)
        if self.get_option("save_dir"):
            self._warn_lost_images(raw)
        for name, vm in vms.items():
            if vm.get("entropy_priority") is not None:
                try:
                    vm["entropy_priority"] = vm_metadata.parse_priority(vm["entropy_priority"], name)
                except vm_metadata.MetadataError as exc:
                    raise AnsibleParserError("%s: %s (on %s)" % (path, exc, vm.get("entropy_hypervisor") or vm.get("entropy_save_image"))) from None

        inventory = self.inventory
        for group in ("hypervisors", "vms", "unreachable", "duplicates"):
            inventory.add_group(group)
        model_host = self.get_option("model_host") or None
        connection_vars = {}
        if self.get_option("connection_vars"):
            # constants of ours: trusted, so printed plain (the interpreter is a template on purpose)
            connection_vars = {"ansible_connection": trust_as_template("local"),
                               "ansible_python_interpreter": trust_as_template("{{ ansible_playbook_python }}")}

        # Group variables (cheaper than per host, and a host variable from another source still wins).
        for group in ("hypervisors", "vms"):
            for key, value in connection_vars.items():
                inventory.set_variable(group, key, value)

        # The file's model constraints and options travel with its hypervisors: whoever builds the model from
        # host vars (the export below, the reconfiguration_plan lookup, ansible-inventory --list) gets them.
        carried = {var: value for var, value in ((CONSTRAINTS_VAR, self.get_option("model_constraints")),
                                                 (OPTIONS_VAR, self.get_option("model_options"))) if value}
        all_vars = {}
        marks = raw.get("maintenance") or {}
        fences = raw.get("fenced") or {}
        if self.get_option("store_pool"):
            inventory.add_group("maintenance")
            inventory.add_group("fenced")
        for name, hv in hypervisors.items():
            hv.update(carried)
            inventory.add_host(name, group="hypervisors")
            for key in ("cluster", "site"):   # the clusters option: cluster_<name> and site_<site>
                if hv.get("entropy_" + key):
                    inventory.add_host(name, group=self._group("%s_%s" % (key, hv["entropy_" + key])))
            if self.get_option("store_pool"):
                hv = dict(hv, entropy_maintenance=marks.get(name))
                if marks.get(name) is not None:
                    inventory.add_host(name, group="maintenance")
                hv["entropy_fenced"] = fences.get(name)
                if fences.get(name) is not None:
                    inventory.add_host(name, group="fenced")
            if not hv["entropy_reachable"]:
                inventory.add_host(name, group="unreachable")
                self.display.warning("libvirt_cluster: hypervisor %s is unreachable: %s" % (name, hv["entropy_error"]))
            self._set_vars(name, hv, strict)
            all_vars[name] = hv

        for name in sorted(vms):
            vm = vms[name]
            if name in hypervisors or name == model_host:
                self.display.warning("libvirt_cluster: VM %s on %s has the name of a hypervisor or of the model host: "
                                     "it is left out of the inventory; rename one of them" % (name, vm["entropy_hypervisor"]))
                continue
            inventory.add_host(name, group="vms")
            if vm["entropy_hypervisor"] is not None:
                inventory.add_host(name, group=self._group("on_%s" % vm["entropy_hypervisor"]))
                for key in ("cluster", "site"):
                    if hypervisors.get(vm["entropy_hypervisor"], {}).get("entropy_" + key):
                        inventory.add_host(name, group=self._group("%s_%s" % (key, hypervisors[vm["entropy_hypervisor"]]["entropy_" + key])))
            inventory.add_host(name, group=self._group("state_%s" % vm["entropy_state"]))
            if vm.get("entropy_job_name") is not None:
                inventory.add_host(name, group=self._group("job_%s" % vm["entropy_job_name"]))
            if "entropy_duplicate_on" in vm:
                inventory.add_host(name, group="duplicates")
                self.display.warning("libvirt_cluster: VM %s is defined on several hypervisors: %s (listed on %s)"
                                     % (name, ", ".join("%s (%s)" % (c["hypervisor"], c["state"]) for c in vm["entropy_copies"]),
                                        vm["entropy_hypervisor"]))
            self._set_vars(name, vm, strict)
            all_vars[name] = vm

        model = None
        if model_host or self.get_option("model_file"):
            try:
                model = build_model(all_vars)
            except ValueError as exc:
                raise AnsibleParserError("%s: %s" % (path, exc)) from None
        if model_host:
            inventory.add_host(model_host)
            for key, value in connection_vars.items():
                inventory.set_variable(model_host, key, value)
            for key, value in (("entropy_kind", "model"), ("entropy_model", model), ("entropy_model_warnings", model["warnings"])):
                inventory.set_variable(model_host, key, inventory_value(value))
        model_file = self.get_option("model_file")
        if model_file:
            self._write_model(model_file, model)

    def _warn_lost_images(self, raw):
        """A definition marked saved (entropy.cluster.vm_image) whose image is not in save_dir: no switch can resume it."""
        images = {image["name"] for image in raw.get("saved_images") or []}
        for record in raw["hypervisors"]:
            for name, detail in sorted((record.get("details") or {}).items()):
                if detail.get("saved_to") and name not in images:
                    self.display.warning("libvirt_cluster: VM %s on %s was saved to %s, but save_dir %s has no image of it: no schedule "
                                         "can resume it. Put the image back there, or give up its saved memory with entropy.cluster.vm_image "
                                         "state=absent (then entropy.cluster.vm_state state=running boots it afresh)"
                                         % (name, record["name"], detail["saved_to"], self.get_option("save_dir")))

    def _add_saved_vm(self, vms, image):
        """A VM saved to shared storage: state saved, on no hypervisor. Its shut-off definition on the host that saved it
        is that same VM (entropy_defined_on); a copy that runs makes the image stale (a warning, the running copy wins)."""
        name = image["name"]
        known = vms.get(name)
        if known is not None and is_active_word(known["entropy_state"]):
            self.display.warning("libvirt_cluster: VM %s runs on %s and also has a saved image %s: the image is stale (remove it with "
                                 "entropy.cluster.vm_image state=absent)" % (name, known["entropy_hypervisor"], image["path"]))
            return
        vms[name] = {
            "entropy_kind": "vm", "entropy_hypervisor": None, "entropy_hypervisor_uri": None, "entropy_uuid": image["uuid"],
            "entropy_state": "saved", "entropy_vcpus": image["vcpus"], "entropy_memory_mib": image["memory_mib"],
            "entropy_memory_max_mib": image["memory_max_mib"], "entropy_memory_used_mib": None, "entropy_memory_rss_mib": None,
            "entropy_cpu_demand_cores": 0.0, "entropy_net_rx_bytes_s": None, "entropy_net_tx_bytes_s": None,
            "entropy_snapshot_count": None, "entropy_has_managed_save": False, "entropy_job": None,
            "entropy_priority": image["priority"], "entropy_save_image": image["path"], "entropy_job_name": None, "entropy_job_owner": None,
            "entropy_defined_on": known["entropy_hypervisor"] if known is not None else None,
        }

    def _group(self, name):
        # the inventory base's sanitising (what constructed's keyed_groups use): every character that is not a letter,
        # a digit or _ becomes _, whatever TRANSFORM_INVALID_GROUP_CHARS says, silently
        group = self._sanitize_group_name(str(name))
        self.inventory.add_group(group)
        return group

    def _set_vars(self, host, variables, strict):
        for key, value in variables.items():
            self.inventory.set_variable(host, key, inventory_value(value))
        if not (self.get_option("compose") or self.get_option("groups") or self.get_option("keyed_groups")):
            return
        hostvars = self.inventory.get_host(host).get_vars()
        self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)

    @staticmethod
    def _write_model(path, model):
        path = os.path.expanduser(path)
        tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(model, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise AnsibleParserError("cannot write the model to model_file %s: %s" % (path, exc)) from None
