# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""open_connection's connect timeout against a real libvirt client and a socket that never answers.

A TCP socket that listens but never accepts nor answers is what a stopped daemon (SIGSTOP) looks like to a
client: the kernel completes the handshake, then nothing. libvirt itself would wait for ever there. The lab
test (tests/integration/test_fault_tolerance.py) does the same with a real stopped lab daemon."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.entropy.cluster.plugins.module_utils import libvirt_common as lc
from ansible_collections.entropy.cluster.plugins.plugin_utils.hypervisor_reads import read_hypervisors

libvirt = pytest.importorskip("libvirt")


@pytest.fixture()
def silent_uri():
    """A qemu+tcp URI on a loopback socket that completes TCP handshakes and never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield "qemu+tcp://127.0.0.1:%d/system" % sock.getsockname()[1]
    finally:
        sock.close()


def test_a_silent_hypervisor_is_unreachable_within_the_timeout(silent_uri):
    started = time.monotonic()
    with pytest.raises(lc.EntropyLibvirtError) as err:
        lc.open_connection(silent_uri, connect_timeout=1)
    elapsed = time.monotonic() - started
    assert err.value.kind == "unreachable"
    assert silent_uri in err.value.message and "connect_timeout" in err.value.message
    assert 0.9 < elapsed < 3, elapsed


def test_the_timeout_comes_from_the_environment(silent_uri, monkeypatch):
    monkeypatch.setenv(lc.CONNECT_TIMEOUT_ENV, "0.5")
    started = time.monotonic()
    with pytest.raises(lc.EntropyLibvirtError):
        lc.open_connection(silent_uri)
    assert time.monotonic() - started < 2


def test_without_the_bound_libvirt_waits_on(silent_uri):
    """The protection is needed: connect_timeout=0 (libvirt's own behaviour) is still waiting after 4 s."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.entropy.cluster.plugins.module_utils import libvirt_common as lc\n"
            "lc.open_connection(%r, connect_timeout=0)\n" % (sys.path[0], silent_uri))
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))  # pylint: disable=consider-using-with
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=4)
    finally:
        proc.kill()
        proc.wait()


def test_one_silent_hypervisor_does_not_hold_the_others(silent_uri):
    started = time.monotonic()
    results, errors = read_hypervisors({"good": "test:///default", "silent": silent_uri}, lambda conn: conn.getHostname(),
                                       "reading the host name", None, None, 2, connect_timeout=1)
    assert list(results) == ["good"] and list(errors) == ["silent"]
    assert "no answer within 1 s" in errors["silent"]
    assert time.monotonic() - started < 3


def test_test_driver_connections_open_with_keepalive_asked():
    """Drivers without keepalive (test:///) open as before."""
    conn = lc.open_connection("test:///default", connect_timeout=5)
    try:
        assert conn.getHostname()
    finally:
        conn.close()


@pytest.mark.parametrize("value", [-1, "ten", float("nan"), True])
def test_a_bad_timeout_is_one_clear_line(value):
    with pytest.raises(lc.EntropyLibvirtError) as err:
        lc.open_connection("test:///default", connect_timeout=value)
    assert err.value.kind == "config" and "connect_timeout must be a number of seconds" in err.value.message


def test_the_modules_document_connect_timeout_once():
    """The doc fragment's two copies of the modules' connect_timeout (a fragment can only be plain text) say the same."""
    import yaml  # pylint: disable=import-outside-toplevel

    from ansible_collections.entropy.cluster.plugins.doc_fragments.connection import ModuleDocFragment  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC  # pylint: disable=import-outside-toplevel

    shared = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["connect_timeout"]
    alone = yaml.safe_load(ModuleDocFragment.MODULE_CONNECT_TIMEOUT)["options"]["connect_timeout"]
    assert shared == alone and shared["type"] == CONNECT_TIMEOUT_SPEC["connect_timeout"]["type"]


def _loop_threads() -> list:
    import threading  # pylint: disable=import-outside-toplevel

    return [th for th in threading.enumerate() if th.name == "libvirt-event-loop" and th.is_alive()]


def test_the_event_loop_stops_with_the_last_connection_that_needs_it():
    """A loop thread left running is what killed ansible-playbook at exit (rc -11 after a clean recap):
    it runs only while a connection with keepalive is open."""
    lc.stop_event_loop()
    first = lc.open_connection("test:///default", connect_timeout=5)
    second = lc.open_connection("test:///default", connect_timeout=5)
    assert len(_loop_threads()) == 1
    lc.close_quietly(first)
    assert len(_loop_threads()) == 1, "the second connection still needs the loop"
    lc.close_quietly(second)
    assert not _loop_threads()
    unbounded = lc.open_connection("test:///default", connect_timeout=0)
    assert not _loop_threads(), "connect_timeout=0: no keepalive, no loop"
    lc.close_quietly(unbounded)


def test_an_event_loop_asked_for_runs_until_stopped():
    lc.stop_event_loop()
    lc.ensure_event_loop()
    conn = lc.open_connection("test:///default", connect_timeout=5)
    lc.close_quietly(conn)
    assert len(_loop_threads()) == 1, "asked for by ensure_event_loop (events): closing a connection keeps it"
    lc.stop_event_loop()
    assert not _loop_threads()


def test_the_event_loop_is_stopped_before_the_interpreter_shuts_down():
    """A process that leaves its connection open exits with no loop thread running into finalization."""
    code = ("import atexit, sys, threading\n"
            "sys.path.insert(0, %r)\n"
            # registered first, so it runs after the module's own exit handler (atexit is last in, first out)
            "atexit.register(lambda: print('loop threads at exit:', sum(th.name == 'libvirt-event-loop' and th.is_alive()"
            " for th in threading.enumerate())))\n"
            "from ansible_collections.entropy.cluster.plugins.module_utils import libvirt_common as lc\n"
            "conn = lc.open_connection('test:///default', connect_timeout=5)\n" % sys.path[0])
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and "loop threads at exit: 0" in proc.stdout, proc.stdout
