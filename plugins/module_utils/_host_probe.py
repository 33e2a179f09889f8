# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.host_probe (private: names may change between releases): failure detection.

A hypervisor is declared failed only after ``probes`` failed probes in a row spanning at least ``grace``
seconds, so one lost packet or a daemon restart never starts a recovery. Each probe (open a read-only
connection, ask the host name) has its own timeout, so a host that stops answering without refusing costs
one timeout per probe, never the TCP timeout. No Ansible import: a benchmark or a controller plugin can use it.
"""

from __future__ import annotations

import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    open_connection,
)

UP = "up"
FAILED = "failed"


def probe(uri: str, timeout: float, username: str | None = None, password: str | None = None) -> tuple[bool, str | None, float]:
    """One probe of one hypervisor: (answered, error message, seconds), never longer than ``timeout``."""
    box: dict = {}
    done = threading.Event()
    started = time.monotonic()

    def run() -> None:
        conn = None
        try:
            conn = open_connection(uri, username, password, readonly=True, connect_timeout=timeout)
            conn.getHostname()
            box["ok"] = True
        except EntropyLibvirtError as exc:
            box["error"] = exc.message
        except Exception as exc:  # pylint: disable=broad-except
            box["error"] = describe_error(exc, "probing the hypervisor", uri).message
        finally:
            close_quietly(conn)
            done.set()

    threading.Thread(target=run, name="entropy-probe", daemon=True).start()
    done.wait(timeout)
    seconds = round(time.monotonic() - started, 3)
    if box.get("ok"):
        return True, None, seconds
    return False, box.get("error") or "no answer within %g s (probe timeout) from %s" % (timeout, uri), seconds


class HostState:
    """What the probes saw of one hypervisor."""

    def __init__(self, name: str, uri: str) -> None:
        self.name = name
        self.uri = uri
        self.status: str | None = None  # None while undecided, then UP or FAILED
        self.probes = 0
        self.failed_probes = 0  # in a row
        self.first_failure: float | None = None
        self.failed_for = 0.0
        self.last_error: str | None = None
        self.came_back = False
        self.decided_after = 0.0

    def as_dict(self) -> dict[str, t.Any]:
        return {"uri": self.uri, "status": self.status, "probes": self.probes, "failed_probes": self.failed_probes,
                "failed_for_seconds": round(self.failed_for, 3), "last_error": self.last_error, "came_back": self.came_back,
                "decided_after_seconds": round(self.decided_after, 3)}


def watch(hypervisors: t.Mapping[str, str], probes: int, interval: float, grace: float, timeout: float,
          username: str | None = None, password: str | None = None,
          probe_fn: t.Callable[..., tuple[bool, str | None, float]] = probe) -> dict[str, HostState]:
    """Probe every hypervisor (name -> URI) until each is decided.

    A host that answers is UP (``came_back`` when it had failed probes first). A host whose probes fail
    ``probes`` times in a row, the first failure at least ``grace`` seconds ago, is FAILED. Undecided
    hosts are probed again every ``interval`` seconds, all at once."""
    states = {name: HostState(name, uri) for name, uri in sorted(hypervisors.items())}
    start = time.monotonic()
    pending = list(states.values())
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(pending) or 1))) as pool:
        while pending:
            round_start = time.monotonic()
            outcomes = list(pool.map(lambda s: probe_fn(s.uri, timeout, username, password), pending))
            now = time.monotonic()
            still = []
            for state, (ok, error, _seconds) in zip(pending, outcomes):
                state.probes += 1
                if ok:
                    state.status = UP
                    state.came_back = state.failed_probes > 0
                    state.failed_probes = 0
                    state.decided_after = now - start
                    continue
                state.failed_probes += 1
                if state.first_failure is None:
                    state.first_failure = round_start
                state.failed_for = now - state.first_failure
                state.last_error = error
                if state.failed_probes >= probes and state.failed_for >= grace:
                    state.status = FAILED
                    state.decided_after = now - start
                else:
                    still.append(state)
            pending = still
            if pending:
                time.sleep(max(0.0, interval - (time.monotonic() - round_start)))
    return states


def check_settings(probes: int, interval: float, grace: float, timeout: float) -> str | None:
    """A one-line complaint about the settings, None when they are usable."""
    if probes < 1:
        return "probes must be at least 1, got %r" % probes
    if not interval > 0:
        return "interval must be more than 0 seconds, got %r" % interval
    if not grace >= 0:
        return "grace must be 0 or more seconds, got %r" % grace
    if not timeout > 0:
        return "probe_timeout must be more than 0 seconds, got %r" % timeout
    return None
