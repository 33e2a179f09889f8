# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.entropy.cluster`` importable from this checkout.

tools/run.sh setup links the checkout as .tmp/collections/ansible_collections/entropy/cluster.
Also turns every unexpected skip into a failure (see ALLOWED_SKIP_REASONS)."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "entropy", "cluster")

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# Ansible's collection finder first, before any test imports ansible_collections: a plugin loaded
# later through the plugin loader (a lookup run as Ansible runs it) fails otherwise.
from ansible.plugins.loader import init_plugin_loader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402  pylint: disable=wrong-import-position

if not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
    init_plugin_loader([COLLECTIONS])


# A skipped test is a test CI never ran: every skip fails the run unless its reason matches an entry
# of this list, kept for skips that depend on the machine (none are needed today). Add an entry only
# with a comment saying which machines lack what, and why the test cannot carry what it needs.
ALLOWED_SKIP_REASONS: tuple[str, ...] = ()


def _unexpected_skip(report) -> str | None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if any(allowed in reason for allowed in ALLOWED_SKIP_REASONS):
        return None
    return ("unexpected skip (%s): tests/unit/conftest.py lets no test skip unless its reason is in ALLOWED_SKIP_REASONS; "
            "install what it needs (bash tools/run.sh setup) or fix the test" % reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    report = (yield).get_result()
    message = _unexpected_skip(report)
    if message:
        report.outcome, report.longrepr = "failed", message


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # pylint: disable=unused-argument
    report = (yield).get_result()
    message = _unexpected_skip(report)   # a module-level importorskip skips a whole file
    if message:
        report.outcome, report.longrepr = "failed", message
