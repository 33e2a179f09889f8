# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A ``*.libvirt_cluster.yml`` inventory file read outside ansible's inventory manager (the dashboard, the EDA event source).

Each option is resolved as the inventory plugin resolves it - the file's value, else the environment variable the plugin
documents, else the documented default - and checked by the plugin's own validators; ``read`` is one read of the cluster
through the plugin's own ``fetch`` and ``summarize`` (libvirt sampling, or the load from Prometheus with
``load_source: prometheus``), so every reader sees the figures the inventory gives.
"""

from __future__ import annotations

import os
import typing as t

import yaml

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.entropy.cluster.plugins.inventory import libvirt_cluster as inventory
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import resolve_connect_timeout
from ansible_collections.entropy.cluster.plugins.plugin_utils import prometheus_load

PLUGIN = "entropy.cluster.libvirt_cluster"
_DOCUMENTED: dict = {}


class ClusterFile(t.NamedTuple):
    """What a reader needs from an inventory file (credentials included: never print or cache it whole)."""
    path: str
    specs: list
    sampling_interval: float = 1.0
    parallelism: int = 8
    reserved_memory_mib: int = 0
    connect_timeout: float | None = None
    constraints: list | None = None
    options: dict | None = None
    dirty_rate: bool = False
    prometheus: prometheus_load.Source | None = None
    username: str | None = None
    password: str | None = None


def _documented(name: str) -> dict:
    if not _DOCUMENTED:
        _DOCUMENTED.update(yaml.safe_load(inventory.DOCUMENTATION)["options"])
    return _DOCUMENTED.get(name) or {}


def option(data: t.Mapping, name: str) -> t.Any:
    """The file's value of option ``name``, else its documented environment variable, else its documented default."""
    if data.get(name) is not None:
        return data[name]
    for env in _documented(name).get("env") or []:
        if os.environ.get(env["name"]):
            return os.environ[env["name"]]
    return _documented(name).get("default")


def _typed(data: t.Mapping, name: str, kind: str) -> t.Any:
    """Option ``name`` as the plugin's type ``kind`` (bool, int, float); ValueError naming the option."""
    value = option(data, name)
    try:
        if kind == "bool":
            return boolean(value, strict=True)
        return int(value) if kind == "int" else float(value)
    except (TypeError, ValueError):
        wanted = {"bool": "true or false", "int": "an integer", "float": "a number"}[kind]
        raise ValueError("'%s' must be %s, got %r" % (name, wanted, value)) from None


def load(path: str, sampling_interval: float | None = None) -> ClusterFile:
    """The inventory file at ``path``; ``sampling_interval`` overrides the file's. ValueError with one line naming the file
    and the fix."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ValueError("%s: cannot read the inventory file: %s" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise ValueError("%s: not valid YAML: %s" % (path, str(exc).splitlines()[0])) from None
    if not isinstance(data, dict) or data.get("plugin") != PLUGIN:
        raise ValueError("%s: not a libvirt_cluster inventory file (it needs 'plugin: %s')" % (path, PLUGIN))
    try:
        reserved = _typed(data, "reserved_memory_mib", "int")
        specs = inventory.validate_clusters(data.get("clusters"), data.get("hypervisors"), reserved)
        interval = _typed(data, "sampling_interval", "float") if sampling_interval is None else float(sampling_interval)
        dirty_rate = _typed(data, "dirty_rate", "bool")
        if dirty_rate and interval < 1:
            raise ValueError("'dirty_rate' measures over whole seconds between the two samples: set 'sampling_interval' to 1 or more "
                             "(it is %r)" % interval)
        prometheus = None
        if option(data, "load_source") == "prometheus":
            prometheus = _prometheus_source(data)
        elif option(data, "load_source") != "libvirt":
            raise ValueError("'load_source' must be libvirt or prometheus, got %r" % option(data, "load_source"))
        return ClusterFile(
            path=path, specs=specs, sampling_interval=interval, parallelism=max(1, _typed(data, "parallelism", "int")),
            reserved_memory_mib=reserved, connect_timeout=data.get("connect_timeout"),
            constraints=option(data, "model_constraints") or None, options=option(data, "model_options") or None,
            dirty_rate=dirty_rate, prometheus=prometheus,
            username=option(data, "auth_username"), password=option(data, "auth_password"))
    except (TypeError, ValueError) as exc:
        raise ValueError("%s: %s" % (path, exc)) from None


def _prometheus_source(data: t.Mapping) -> prometheus_load.Source:
    url = option(data, "prometheus_url")
    if not url:
        raise ValueError("load_source: prometheus needs prometheus_url (or env ENTROPY_PROMETHEUS_URL), "
                         "the URL of the Prometheus server that scrapes the libvirt exporters")
    source = prometheus_load.Source(
        url=str(url), window=str(option(data, "prometheus_window")), host_label=str(option(data, "prometheus_host_label")),
        timeout=resolve_connect_timeout(data.get("connect_timeout")), token=option(data, "prometheus_token"),
        username=option(data, "prometheus_username"), password=option(data, "prometheus_password"),
        validate_certs=_typed(data, "prometheus_validate_certs", "bool"))
    prometheus_load.check_source(source)
    return source


def read(cluster: ClusterFile) -> tuple[dict, dict, list]:
    """One read of the cluster as the inventory reads it: (raw data, hypervisor vars by name, VM copies) - see
    libvirt_cluster.fetch / summarize. A Prometheus that cannot give the load raises prometheus_load.PrometheusError."""
    raw = inventory.fetch(cluster.specs, cluster.sampling_interval, cluster.parallelism, cluster.username, cluster.password,
                          False, cluster.connect_timeout, cluster.dirty_rate)
    if cluster.prometheus is not None:
        raw["prometheus"] = prometheus_load.fetch_loads(raw, cluster.prometheus)
    hypervisors, copies = inventory.summarize(raw, cluster.specs, cluster.reserved_memory_mib)
    return raw, hypervisors, copies
