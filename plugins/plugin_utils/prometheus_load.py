# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU and network load of libvirt VMs from a Prometheus server that scrapes Debian's prometheus-libvirt-exporter
(option ``load_source: prometheus`` of the inventory ``entropy.cluster.libvirt_cluster``, docs/inventory.md).

Three instant queries, rates over the counters the exporter publishes, summed per hypervisor label and domain::

    sum by (<host label>, domain, uuid) (rate(libvirt_domain_info_cpu_time_seconds_total[<window>]))
    sum by (<host label>, domain, uuid) (rate(libvirt_domain_interface_stats_receive_bytes_total[<window>]))
    sum by (<host label>, domain, uuid) (rate(libvirt_domain_interface_stats_transmit_bytes_total[<window>]))

Each hypervisor's exporter is scraped with a label (default ``hypervisor``) whose value is the hypervisor's inventory
name. A VM is found by that label and its name, else by its UUID on another hypervisor (it migrated within the window).
A running VM without a CPU series is an error naming the VM, its hypervisor and the fix; so is a server that cannot be
reached or refuses the query. Pure Python (the HTTP client of ansible-core); never logs or returns a credential.
"""

from __future__ import annotations

import json
import math
import re
import time
import typing as t
from urllib.parse import urlencode, urlsplit, urlunsplit

from ansible.module_utils.urls import open_url

CPU_SECONDS = "libvirt_domain_info_cpu_time_seconds_total"
RX_BYTES = "libvirt_domain_interface_stats_receive_bytes_total"
TX_BYTES = "libvirt_domain_interface_stats_transmit_bytes_total"
# A Prometheus duration (one unit: what rate() windows usually are)
_WINDOW = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RUNNING = 1  # libvirt's VIR_DOMAIN_RUNNING


class PrometheusError(Exception):
    """Prometheus could not give the load: the message names the server (without credentials), what failed and the fix."""


class Source(t.NamedTuple):
    """Where and how to ask. ``token`` (Bearer) or ``username``/``password`` (basic), never both needed."""
    url: str
    window: str = "2m"
    host_label: str = "hypervisor"
    timeout: float = 10.0
    token: str | None = None
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True


def check_source(source: Source) -> None:
    """ValueError naming the option and the fix."""
    parts = urlsplit(source.url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("'prometheus_url' must be the http(s) URL of a Prometheus server, such as http://prometheus.example.com:9090 "
                         "(option prometheus_url or env ENTROPY_PROMETHEUS_URL), got %r" % public_url(source.url or ""))
    if not isinstance(source.window, str) or not _WINDOW.match(source.window):
        raise ValueError("'prometheus_window' must be a Prometheus duration such as 30s or 2m (at least two scrape intervals), got %r"
                         % (source.window,))
    if not isinstance(source.host_label, str) or not _LABEL.match(source.host_label):
        raise ValueError("'prometheus_host_label' must be a Prometheus label name such as hypervisor, got %r" % (source.host_label,))


def public_url(url: str) -> str:
    """The URL without user:password@ (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += ":%d" % parts.port
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def query(source: Source, promql: str) -> list:
    """The result vector of an instant query: [{"metric": {...}, "value": [time, "text"]}, ...]."""
    where = public_url(source.url)
    headers = {"Accept": "application/json"}
    if source.token:
        headers["Authorization"] = "Bearer %s" % source.token
    url = "%s/api/v1/query?%s" % (source.url.rstrip("/"), urlencode({"query": promql}))
    try:
        response = open_url(url, method="GET", headers=headers, timeout=source.timeout or None, validate_certs=source.validate_certs,
                            url_username=source.username, url_password=source.password, force_basic_auth=bool(source.username),
                            follow_redirects="safe")
        body = response.read()
    except Exception as exc:  # pylint: disable=broad-except
        raise PrometheusError(_describe(exc, where)) from None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PrometheusError("%s did not answer like a Prometheus server (no JSON from /api/v1/query): check prometheus_url" % where) from None
    if not isinstance(data, dict) or data.get("status") != "success" or not isinstance(data.get("data"), dict):
        raise PrometheusError("Prometheus at %s refused the query %s: %s" % (where, promql, (data or {}).get("error") if isinstance(data, dict) else data))
    return data["data"].get("result") or []


def _describe(exc: Exception, where: str) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        text = ""
        try:
            text = json.loads(exc.read().decode("utf-8")).get("error") or ""  # type: ignore[attr-defined]
        except Exception:  # pylint: disable=broad-except
            text = getattr(exc, "reason", "") or ""
        if code in (401, 403):
            return ("Prometheus at %s refused the query (HTTP %d): give its credentials with prometheus_token "
                    "(env ENTROPY_PROMETHEUS_TOKEN) or prometheus_username / prometheus_password" % (where, code))
        return "Prometheus at %s answered HTTP %d%s: check prometheus_url" % (where, code, ": %s" % text if text else "")
    reason = getattr(exc, "reason", None) or exc
    return ("cannot reach Prometheus at %s: %s; check prometheus_url (env ENTROPY_PROMETHEUS_URL) and that the server runs, "
            "or set load_source: libvirt to sample libvirt instead" % (where, reason))


def _rates(source: Source, metric: str) -> tuple[dict, dict]:
    """((host label value, domain) -> rate, uuid -> rate) of one counter, summed over its devices."""
    label = source.host_label
    promql = "sum by (%s, domain, uuid) (rate(%s[%s]))" % (label, metric, source.window)
    by_name, by_uuid = {}, {}
    for series in query(source, promql):
        labels, value = series.get("metric") or {}, series.get("value") or [None, None]
        try:
            rate = max(0.0, float(value[1]))
        except (TypeError, ValueError, IndexError):
            continue
        if math.isnan(rate):  # no usable pair of samples
            continue
        if labels.get(label) is not None and labels.get("domain") is not None:
            by_name[(labels[label], labels["domain"])] = rate
        if labels.get("uuid"):
            by_uuid[labels["uuid"]] = rate
    return by_name, by_uuid


def fetch_loads(raw: dict, source: Source) -> dict:
    """The load of every VM the libvirt sample in ``raw`` (the inventory's fetch) found, from Prometheus:
    {"url", "window", "host_label", "taken_at", "vms": {hypervisor: {vm: {"cpu": cores, "rx": bytes/s, "tx": bytes/s}}}}
    (JSON-serializable, no credentials: it goes into the inventory cache). PrometheusError for an unreachable server, a
    refused query, or a running VM that has no CPU series."""
    cpu, cpu_uuid = _rates(source, CPU_SECONDS)
    rx, rx_uuid = _rates(source, RX_BYTES)
    tx, tx_uuid = _rates(source, TX_BYTES)
    loads: dict = {}
    missing = []
    for record in raw.get("hypervisors") or []:
        if not record.get("reachable") or not record.get("samples"):
            continue
        host = record["name"]
        details = record.get("details") or {}
        loads[host] = {}
        for name, stats in sorted(record["samples"][0]["domains"].items()):
            uuid = (details.get(name) or {}).get("uuid")
            key = (host, name)
            load = {"cpu": cpu.get(key, cpu_uuid.get(uuid)), "rx": rx.get(key, rx_uuid.get(uuid)), "tx": tx.get(key, tx_uuid.get(uuid))}
            if load["cpu"] is None and stats.get("state.state") == RUNNING:
                missing.append((host, name))
            loads[host][name] = load
    if missing:
        host, name = missing[0]
        more = " (and %d more: %s)" % (len(missing) - 1, ", ".join("%s on %s" % (n, h) for h, n in missing[1:6])) if len(missing) > 1 else ""
        raise PrometheusError(
            "Prometheus at %s has no CPU series for the running VM %s on hypervisor %s%s: query rate(%s{%s=%s, domain=%s}[%s]). "
            "Scrape that hypervisor's prometheus-libvirt-exporter with the label %s: %s, and give it at least two scrapes within "
            "prometheus_window %s (a VM that just started has none yet), or set load_source: libvirt"
            % (public_url(source.url), name, host, more, CPU_SECONDS, source.host_label, json.dumps(host), json.dumps(name),
               source.window, source.host_label, host, source.window))
    return {"url": public_url(source.url), "window": source.window, "host_label": source.host_label, "taken_at": time.time(), "vms": loads}


def apply_vm_load(vm: dict, load: dict | None, running: bool) -> None:
    """A VM's variables from the libvirt sample, with CPU demand and network rates replaced by Prometheus' (rounded as the
    libvirt sampling rounds them). A VM that does not run uses no CPU (0.0) whatever the window still shows."""
    load = load or {}
    vm["entropy_cpu_demand_cores"] = round(load["cpu"], 4) if running and load.get("cpu") is not None else (None if running else 0.0)
    vm["entropy_net_rx_bytes_s"] = None if load.get("rx") is None else round(load["rx"], 1)
    vm["entropy_net_tx_bytes_s"] = None if load.get("tx") is None else round(load["tx"], 1)
