# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt access shared by the modules and the controller plugins.

No Ansible import here, so the inventory plugin and the modules use the same code:
open a connection by URI, turn libvirt errors into messages that name the object and the fix,
and look domains up by name.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import traceback

from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import state_word

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

HAS_LIBVIRT = libvirt is not None

DEFAULT_URI = "qemu:///system"
URI_ENV = "LIBVIRT_DEFAULT_URI"
USERNAME_ENV = "ENTROPY_LIBVIRT_USERNAME"
PASSWORD_ENV = "ENTROPY_LIBVIRT_PASSWORD"
CONNECT_TIMEOUT_ENV = "ENTROPY_LIBVIRT_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 10.0
# An open connection whose hypervisor stops answering is closed by libvirt's keepalive after
# interval * (count + 1) seconds: about 1.5 x the connect timeout.
KEEPALIVE_COUNT = 2


class EntropyLibvirtError(Exception):
    """A libvirt failure already turned into a message for a person.

    ``kind`` lets callers branch without parsing text: unreachable, auth, no_domain,
    operation_invalid, unsupported, migration, other.
    """

    def __init__(self, message: str, kind: str = "other", libvirt_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.libvirt_code = libvirt_code


def resolve_uri(uri: str | None) -> str:
    """The URI to use: the option, else LIBVIRT_DEFAULT_URI, else qemu:///system."""
    return uri or os.environ.get(URI_ENV) or DEFAULT_URI


def _error_kind(code: int | None) -> str:
    if libvirt is None or code is None:
        return "other"
    kinds = {
        libvirt.VIR_ERR_NO_DOMAIN: "no_domain",
        libvirt.VIR_ERR_AUTH_FAILED: "auth",
        libvirt.VIR_ERR_AUTH_CANCELLED: "auth",
        libvirt.VIR_ERR_AUTH_UNAVAILABLE: "auth",
        libvirt.VIR_ERR_OPERATION_INVALID: "operation_invalid",
        libvirt.VIR_ERR_NO_SUPPORT: "unsupported",
        libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "unsupported",
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: "unsupported",
        libvirt.VIR_ERR_MIGRATE_UNSAFE: "migration",
        libvirt.VIR_ERR_OPERATION_ABORTED: "aborted",
        libvirt.VIR_ERR_OPERATION_TIMEOUT: "timeout",
        libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT: "no_snapshot",
        libvirt.VIR_ERR_NO_CONNECT: "unreachable",
        libvirt.VIR_ERR_RPC: "unreachable",
    }
    return kinds.get(code, "other")


# What to do about each kind of libvirt failure: the second half of every message.
ERROR_HINTS = {
    "auth": " Check the credentials (auth_username / auth_password or %s / %s)." % (USERNAME_ENV, PASSWORD_ENV),
    "unreachable": " Check that libvirtd runs there and that the URI is right.",
    "no_domain": " Check the VM's name and the hypervisor URI (entropy.cluster.vm_info lists the VMs there).",
    "no_snapshot": " Check the snapshot's name (entropy.cluster.vm_snapshot returns the VM's snapshots).",
    "operation_invalid": " The VM is not in a state that allows this; check its state (entropy.cluster.vm_info) and run again.",
    "aborted": " Another client aborted the job (virsh domjobabort, or a tool's own timeout); run again if that was not meant.",
    "timeout": " libvirt gave up waiting (a busy hypervisor or a stuck job: virsh domjobinfo shows it); run again later.",
}


def describe_error(exc: Exception, action: str, uri: str | None = None) -> EntropyLibvirtError:
    """Wrap a libvirt error: what we were doing, where, what libvirt said, and what to do."""
    if isinstance(exc, EntropyLibvirtError):
        return exc
    code = None
    text = str(exc).strip()
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        code = exc.get_error_code()
        text = (exc.get_error_message() or text).strip()
    kind = _error_kind(code)
    if kind == "other" and "keepalive timeout" in text:
        kind = "unreachable"  # the hypervisor stopped answering on an open connection
    where = " on %s" % uri if uri else ""
    hint = ERROR_HINTS.get(kind, "")
    return EntropyLibvirtError("%s%s failed: %s.%s" % (action, where, text.rstrip("."), hint), kind=kind, libvirt_code=code)


def _auth_callback(username: str | None, password: str | None):
    def request(credentials, _opaque):
        for cred in credentials:
            if cred[0] in (libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_USERNAME):
                cred[4] = username or ""
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                cred[4] = password or ""
            else:
                return -1
        return 0

    return [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_USERNAME, libvirt.VIR_CRED_PASSPHRASE], request, None]


def resolve_connect_timeout(value: float | int | str | None) -> float:
    """Seconds allowed to open a connection: the option, else ENTROPY_LIBVIRT_CONNECT_TIMEOUT, else 10.
    0 means no bound (libvirt's own behaviour: the system's TCP timeout). ValueError names the option."""
    if value is None or value == "":
        value = os.environ.get(CONNECT_TIMEOUT_ENV) or DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError("connect_timeout must be a number of seconds, 0 or more (0: no bound), got %r" % (value,))
    return seconds


_EVENT_LOOP_LOCK = threading.Lock()
# registered: virEventRegisterDefaultImpl done (once per process); thread/stop/timer: the running loop;
# holders: ids of the open connections whose keepalive needs it; pinned: asked for by ensure_event_loop
# (events), so it runs until stop_event_loop or exit.
_EVENT_LOOP: dict = {
    "registered": False, "thread": None, "stop": None, "timer": None, "holders": set(), "pinned": False, "atexit": False,
}


def ensure_event_loop() -> None:
    """libvirt's default event loop in a daemon thread: keepalive needs it. It runs until the last
    connection that needs it is closed with :func:`close_quietly`, or :func:`stop_event_loop`, or exit.

    Call it before opening the connections that use it; any code of the process that wants libvirt
    events (domain lifecycle events, say) calls this too instead of running a second loop."""
    with _EVENT_LOOP_LOCK:
        _EVENT_LOOP["pinned"] = True
        _start_event_loop_locked()


def _start_event_loop_locked() -> None:
    if libvirt is None or _EVENT_LOOP["thread"] is not None:
        return
    if not _EVENT_LOOP["registered"]:
        libvirt.virEventRegisterDefaultImpl()
        _EVENT_LOOP["registered"] = True
    stop = threading.Event()
    # wakes the loop now and then, so it sees ``stop`` within 0.2 s
    _EVENT_LOOP["timer"] = libvirt.virEventAddTimeout(200, lambda *_: None, None)

    def run() -> None:
        while not stop.is_set():
            libvirt.virEventRunDefaultImpl()

    thread = threading.Thread(target=run, name="libvirt-event-loop", daemon=True)
    _EVENT_LOOP.update(thread=thread, stop=stop)
    if not _EVENT_LOOP["atexit"]:
        # A loop thread still running while the interpreter shuts down calls back into a finalizing
        # Python and can kill the process (SIGSEGV after the work is done): stop it before that.
        atexit.register(stop_event_loop)
        _EVENT_LOOP["atexit"] = True
    thread.start()


def _detach_event_loop_locked() -> tuple:
    running = (_EVENT_LOOP["thread"], _EVENT_LOOP["stop"], _EVENT_LOOP["timer"])
    _EVENT_LOOP.update(thread=None, stop=None, timer=None, pinned=False)
    _EVENT_LOOP["holders"].clear()
    return running


def _join_event_loop(running: tuple, timeout: float) -> None:
    thread, stop, timer = running
    if thread is None:
        return
    stop.set()
    thread.join(timeout)
    if timer is not None and not thread.is_alive():
        try:
            libvirt.virEventRemoveTimeout(timer)
        except Exception:  # pylint: disable=broad-except
            pass


def stop_event_loop(timeout: float = 2.0) -> None:
    """Stop the event loop thread, if one runs, and wait for it (at most ``timeout`` seconds)."""
    with _EVENT_LOOP_LOCK:
        running = _detach_event_loop_locked()
    _join_event_loop(running, timeout)


def _forget_event_loop_in_child() -> None:
    # a forked child has no loop thread, whatever the parent had, and no other thread holding the lock
    global _EVENT_LOOP_LOCK  # pylint: disable=global-statement
    _EVENT_LOOP_LOCK = threading.Lock()
    _EVENT_LOOP.update(thread=None, stop=None, timer=None, pinned=False)
    _EVENT_LOOP["holders"] = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_event_loop_in_child)


def _bounded(opener, uri: str, timeout: float):
    """``opener()`` in a thread, waited for at most ``timeout`` seconds.

    libvirt has no connect timeout: a hypervisor that stops answering without refusing (powered off,
    cable pulled, daemon stopped) holds virConnectOpen for the system's TCP timeout, or for ever
    when the TCP connection is accepted but nothing answers. Past the timeout the open is left to
    finish on its own (its thread closes the connection if it ever opens) and the caller gets an
    'unreachable' error."""
    box: dict = {}
    lock = threading.Lock()
    done = threading.Event()

    def run() -> None:
        try:
            conn = opener()
        except BaseException as exc:  # pylint: disable=broad-except
            with lock:
                box["error"] = exc
        else:
            with lock:
                box["conn"] = conn
                abandoned = box.get("abandoned", False)
            if abandoned:
                close_quietly(conn)
        done.set()

    threading.Thread(target=run, name="libvirt-open", daemon=True).start()
    done.wait(timeout)
    with lock:
        if "conn" in box:
            return box["conn"]
        if "error" in box:
            raise box["error"]
        box["abandoned"] = True
    raise EntropyLibvirtError(
        "connecting to libvirt on %s failed: no answer within %g s (connect_timeout): the hypervisor is down, "
        "unreachable or its daemon is stopped.%s Raise connect_timeout (env %s) for a slow link."
        % (uri, timeout, ERROR_HINTS["unreachable"], CONNECT_TIMEOUT_ENV), kind="unreachable")


def set_keepalive(conn, connect_timeout: float) -> None:
    """Let libvirt close ``conn`` when its hypervisor stops answering (about 1.5 x ``connect_timeout``):
    a call on it then fails with 'connection closed due to keepalive timeout' instead of waiting for
    ever. Drivers without keepalive (test:///, local drivers) are left as they are."""
    if not connect_timeout:
        return
    interval = max(1, int(math.ceil(connect_timeout / KEEPALIVE_COUNT)))
    try:
        conn.setKeepAlive(interval, KEEPALIVE_COUNT)
    except libvirt.libvirtError:
        pass  # not supported by this driver: nothing to bound


def open_connection(uri: str | None = None, username: str | None = None, password: str | None = None, readonly: bool = False,
                    connect_timeout: float | int | str | None = None):
    """Open a libvirt connection or raise EntropyLibvirtError naming the URI and the fix.

    The open takes at most ``connect_timeout`` seconds (None: env ENTROPY_LIBVIRT_CONNECT_TIMEOUT, else 10;
    0: no bound), and the connection gets libvirt keepalive, so a hypervisor that stops answering later
    fails the call in progress instead of holding it."""
    if libvirt is None:
        raise EntropyLibvirtError("the Python module 'libvirt' (libvirt-python) is not installed: pip install libvirt-python", kind="missing_library")
    uri = resolve_uri(uri)
    try:
        timeout = resolve_connect_timeout(connect_timeout)
    except ValueError as exc:
        raise EntropyLibvirtError("connecting to libvirt on %s: %s" % (uri, exc), kind="config") from None
    username = username or os.environ.get(USERNAME_ENV)
    password = password or os.environ.get(PASSWORD_ENV)
    # libvirt prints every error to stderr by default; we report them ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    flags = libvirt.VIR_CONNECT_RO if readonly else 0

    def opener():
        if username or password:
            return libvirt.openAuth(uri, _auth_callback(username, password), flags)
        return libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)

    try:
        if timeout:
            with _EVENT_LOOP_LOCK:
                _start_event_loop_locked()  # before the open, so the connection starts its keepalive
            conn = _bounded(opener, uri, timeout)
        else:
            conn = opener()
    except libvirt.libvirtError as exc:
        err = describe_error(exc, "connecting to libvirt", uri)
        if err.kind == "other" and exc.get_error_domain() in (libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE):
            err.kind = "unreachable"
            err.message = "connecting to libvirt on %s failed: %s.%s" % (
                uri, (exc.get_error_message() or str(exc)).rstrip("."), ERROR_HINTS["unreachable"])
            err.args = (err.message,)
        raise err from None
    set_keepalive(conn, timeout)
    if timeout:
        with _EVENT_LOOP_LOCK:
            _EVENT_LOOP["holders"].add(id(conn))
            _start_event_loop_locked()  # again: the last other holder may have stopped it meanwhile
    return conn


def lookup_domain(conn, name: str):
    """The domain called ``name`` on ``conn``, or an error listing what is there."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise describe_error(exc, "looking up VM %r" % name, conn.getURI()) from None
    known = sorted(dom.name() for dom in conn.listAllDomains())
    shown = ", ".join(repr(n) for n in known[:20]) + (", ..." if len(known) > 20 else "")
    raise EntropyLibvirtError(
        "VM %r is not defined on %s (VMs there: %s). Check the name and the hypervisor URI." % (name, conn.getURI(), shown or "none"),
        kind="no_domain",
    )


def find_domain(conn, name: str):
    """The domain called ``name`` or None when it is not defined there."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise describe_error(exc, "looking up VM %r" % name, conn.getURI()) from None


def domain_state(dom) -> str:
    """The domain's state as a word (running, paused, shutoff, ...)."""
    state, _reason = dom.state()
    return state_word(state)


def host_uuid(conn) -> str | None:
    """The hypervisor's host UUID from its capabilities, None where the driver has none (test driver)."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    uuid = ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
    return uuid or None


def close_quietly(conn) -> None:
    """Close ``conn`` (None is fine); the event loop stops with the last connection that needed it."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # pylint: disable=broad-except
        pass  # closing a dead connection must not hide the error being reported
    running: tuple = (None, None, None)
    with _EVENT_LOOP_LOCK:
        holders = _EVENT_LOOP["holders"]
        if id(conn) in holders:
            holders.discard(id(conn))
            if not holders and not _EVENT_LOOP["pinned"]:
                running = _detach_event_loop_locked()
    _join_event_loop(running, 2.0)
