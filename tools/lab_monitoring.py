# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's monitoring (``lab.py monitoring up|down|status``, or ``lab.py up --monitoring``): Debian's
prometheus-libvirt-exporter, one per lab host and pointed at that host's libvirt socket, and one Prometheus server
that scrapes them every second, its data in <lab>/monitoring/data.

Everything listens on the lab's own loopback address 127.0.S.1 of the machine's loopback (Prometheus on port 19090,
the exporter of the N-th host on 19177 + N - 1): the inventory plugin, which runs in the machine's namespace, queries
Prometheus there. Each process is started here and stopped by the PID in its pidfile, after checking that the PID is
that program with this lab's files on its command line; never anything found by name. The system services that
Debian's packages install are not used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

PROMETHEUS_PORT = 19090
EXPORTER_PORT = 19177
SCRAPE_INTERVAL_S = 1
# The rate window of the lab's Prometheus inventory file: ten scrapes (a scrape that times out on a busy machine leaves enough).
WINDOW = "10s"
INVENTORY = "lab-prometheus.libvirt_cluster.yml"


class MonitoringError(Exception):
    """A problem the operator can fix; lab.py prints it without a traceback."""


def monitoring_dir(state: dict) -> str:
    return os.path.join(state["dir"], "monitoring")


def address(state: dict) -> str:
    """The lab's monitoring address: 127.0.S.1 (the hosts' daemons have .2 upwards, inside the lab's namespace)."""
    return "%s.1" % state["subnet"]


def prometheus_url(state: dict) -> str:
    return "http://%s:%d" % (address(state), PROMETHEUS_PORT)


def exporter_address(state: dict, index: int) -> str:
    return "%s:%d" % (address(state), EXPORTER_PORT + index)


def _pidfile(state: dict, name: str) -> str:
    return os.path.join(monitoring_dir(state), name + ".pid")


def _our_pid(state: dict, name: str, program: str, marker: str) -> int | None:
    """The PID in <lab>/monitoring/<name>.pid when that process runs ``program`` with ``marker`` (a path of this lab) on
    its command line; None otherwise (a stale pidfile never names another process)."""
    try:
        with open(_pidfile(state, name), encoding="utf-8") as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            zombie = handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, ValueError, IndexError):
        return None
    if zombie or not argv or os.path.basename(argv[0]) != program or not any(marker in arg for arg in argv[1:]):
        return None
    return pid


def _exporter_pid(state: dict, host: dict) -> int | None:
    return _our_pid(state, "exporter-" + host["name"], "prometheus-libvirt-exporter", host["uri"])


def _prometheus_pid(state: dict) -> int | None:
    return _our_pid(state, "prometheus", "prometheus", os.path.join(monitoring_dir(state), "prometheus.yml"))


def _start(state: dict, name: str, argv: list[str]) -> subprocess.Popen:
    log = open(os.path.join(monitoring_dir(state), name + ".log"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,  # pylint: disable=consider-using-with
                            start_new_session=True, close_fds=True, cwd=monitoring_dir(state))
    log.close()
    with open(_pidfile(state, name), "w", encoding="utf-8") as handle:
        handle.write("%d\n" % proc.pid)
    return proc


def _config(state: dict) -> str:
    """prometheus.yml: one scrape job over the lab's exporters, each target labelled with its hypervisor's inventory name
    (the label the inventory's prometheus_host_label names)."""
    targets = [{"targets": [exporter_address(state, i)], "labels": {"hypervisor": host["name"]}} for i, host in enumerate(state["hosts"])]
    config = {"global": {"scrape_interval": "%ds" % SCRAPE_INTERVAL_S, "scrape_timeout": "%ds" % SCRAPE_INTERVAL_S},
              "scrape_configs": [{"job_name": "libvirt", "static_configs": targets}]}
    return "# Written by tools/lab_monitoring.py: the lab's libvirt exporters, one per lab host.\n" + json.dumps(config, indent=2) + "\n"


def _get(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the lab's own loopback address
            return json.loads(response.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _wait(state: dict, procs: dict, timeout: float = 60.0) -> None:
    """Until Prometheus is ready and has scraped every exporter successfully; an error naming the log when a process
    exits or the time is up."""
    deadline = time.monotonic() + timeout
    why = "not ready"
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise MonitoringError("%s exited at start (exit code %s); see %s" % (
                    name, proc.returncode, os.path.join(monitoring_dir(state), name + ".log")))
        targets = _get(prometheus_url(state) + "/api/v1/targets")
        if targets and targets.get("status") == "success":
            active = targets["data"]["activeTargets"]
            health = {t["labels"].get("hypervisor"): t["health"] for t in active}
            if len(active) == len(state["hosts"]) and all(h == "up" for h in health.values()):
                return
            why = "targets %s" % ", ".join("%s %s" % item for item in sorted(health.items()))
        time.sleep(0.2)
    raise MonitoringError("the lab's Prometheus on %s is %s after %ds; see the logs in %s"
                          % (prometheus_url(state), why, timeout, monitoring_dir(state)))


def write_inventory(state: dict) -> str:
    """<lab>/lab-prometheus.libvirt_cluster.yml: the lab's inventory file with its load from the lab's Prometheus."""
    with open(os.path.join(state["dir"], "lab.libvirt_cluster.yml"), encoding="utf-8") as handle:
        text = handle.read()
    text += ("# CPU and network load from the lab's Prometheus (lab.py monitoring up) instead of two libvirt samples\n"
             "load_source: prometheus\nprometheus_url: %s\nprometheus_window: %s\n" % (prometheus_url(state), WINDOW))
    path = os.path.join(state["dir"], INVENTORY)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def up(state: dict) -> dict:
    """Start what is not running (idempotent); returns status(state). Records state["monitoring"] (the caller saves it)."""
    os.makedirs(os.path.join(monitoring_dir(state), "data"), exist_ok=True)
    procs = {}
    for index, host in enumerate(state["hosts"]):
        if _exporter_pid(state, host) is None:
            name = "exporter-" + host["name"]
            procs[name] = _start(state, name, ["prometheus-libvirt-exporter", "--web.listen-address=" + exporter_address(state, index),
                                               "--libvirt.uri=" + host["uri"]])
    config = os.path.join(monitoring_dir(state), "prometheus.yml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(_config(state))
    if _prometheus_pid(state) is None:
        procs["prometheus"] = _start(state, "prometheus", [
            "prometheus", "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(monitoring_dir(state), "data"),
            "--storage.tsdb.retention.time=1d", "--web.listen-address=%s:%d" % (address(state), PROMETHEUS_PORT), "--log.level=warn"])
    state["monitoring"] = {"enabled": True, "prometheus_url": prometheus_url(state), "window": WINDOW,
                           "exporters": {h["name"]: exporter_address(state, i) for i, h in enumerate(state["hosts"])}}
    try:
        _wait(state, procs)
    except MonitoringError:
        down(state)
        state["monitoring"] = {"enabled": False}
        raise
    write_inventory(state)
    return status(state)


def _stop(pid: int | None) -> None:
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _tick in range(100):
        try:
            with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def down(state: dict) -> list[str]:
    """Stop Prometheus and the exporters by their pidfiles (each PID checked first); returns what was stopped."""
    stopped = []
    pid = _prometheus_pid(state)
    _stop(pid)
    if pid:
        stopped.append("prometheus (pid %d)" % pid)
    for host in state["hosts"]:
        pid = _exporter_pid(state, host)
        _stop(pid)
        if pid:
            stopped.append("exporter of %s (pid %d)" % (host["name"], pid))
    if isinstance(state.get("monitoring"), dict):
        state["monitoring"]["enabled"] = False
    try:
        os.unlink(os.path.join(state["dir"], INVENTORY))
    except FileNotFoundError:
        pass
    return stopped


def status(state: dict) -> dict:
    return {"enabled": bool((state.get("monitoring") or {}).get("enabled")), "prometheus_url": prometheus_url(state),
            "prometheus_pid": _prometheus_pid(state), "data": os.path.join(monitoring_dir(state), "data"),
            "inventory": os.path.join(state["dir"], INVENTORY),
            "exporters": {h["name"]: {"address": exporter_address(state, i), "uri": h["uri"], "pid": _exporter_pid(state, h)}
                          for i, h in enumerate(state["hosts"])}}
