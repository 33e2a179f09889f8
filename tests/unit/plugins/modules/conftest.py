# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's real modules in-process against the libvirt test driver.

``run_module(module, args, check=False, diff=False)`` calls the module's ``main()`` with the
arguments (ansible.module_utils.testing.patch_module_args) and returns the result JSON
(``result["failed"]`` is set when the module failed). Nothing of the module is mocked.

``test:///default`` is one in-process hypervisor whose state lives while a connection is open:
the ``hv`` fixture keeps one open (and resets it between tests by closing it), so successive
module runs see each other's changes just like successive tasks on a real hypervisor.
"""

from __future__ import annotations

import importlib
import io
import json
from contextlib import redirect_stdout

import pytest

# tests/unit/conftest.py puts the collection of this checkout on sys.path.

try:  # the libvirt tests skip without libvirt-python; other tests in this directory do not need it
    import libvirt
except ImportError:
    libvirt = None
else:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position

TEST_URI = "test:///default"
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:1/system"


def run_module(name: str, args: dict, check: bool = False, diff: bool = False) -> dict:
    """Run entropy.cluster.<name> once; the parsed result (``failed`` true when it failed)."""
    module = importlib.import_module("ansible_collections.entropy.cluster.plugins.modules.%s" % name)
    module_args = dict(args)
    module_args["_ansible_check_mode"] = check
    module_args["_ansible_diff"] = diff
    out = io.StringIO()
    with patch_module_args(module_args), redirect_stdout(out):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    text = out.getvalue()
    try:
        result = json.loads(text)
    except ValueError:
        raise AssertionError("module %s printed no JSON (exit %s): %r" % (name, exit_info.value.code, text)) from None
    assert "exception" not in result or result.get("failed"), result
    if exit_info.value.code:
        assert result.get("failed"), result
    return result


_TEST_VM_XML: dict = {}  # the definition of the driver's own VM "test", as first seen


def _fresh(conn) -> None:
    """Put test:///default back as the driver starts it: only the running VM "test", no snapshots.

    (Closing the last connection would reset it too, but libvirt objects still referenced from
    tracebacks keep the connection alive, so the tests do not rely on that.)"""
    if "test" in (dom.name() for dom in conn.listAllDomains()):
        _TEST_VM_XML.setdefault("xml", conn.lookupByName("test").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    else:  # a test removed it (vm_migrate undefines a stale copy)
        conn.defineXML(_TEST_VM_XML["xml"])
    for dom in conn.listAllDomains():
        for snap in dom.listAllSnapshots(0):
            try:
                snap.delete(0)
            except libvirt.libvirtError:
                pass
        if dom.hasManagedSaveImage(0):
            dom.managedSaveRemove(0)
        if dom.name() != "test":
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
            continue
        state = dom.state()[0]
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        elif state == libvirt.VIR_DOMAIN_SHUTOFF:
            dom.create()


@pytest.fixture()
def hv():
    """An open connection to test:///default, fresh for each test and kept open so its state
    persists across the module runs of the test."""
    if libvirt is None:
        pytest.skip("libvirt-python is not installed")
    conn = libvirt.open(TEST_URI)
    _fresh(conn)
    yield conn
    _fresh(conn)
    conn.close()


@pytest.fixture()
def run():
    return run_module
