# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_priority against the libvirt test driver: set, idempotent, check mode, diff, refusals."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI, libvirt  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata  # noqa: E402  pylint: disable=wrong-import-position


def priority(run, value, check=False):
    return run("vm_priority", dict(uri=TEST_URI, name="test", priority=value), check=check, diff=True)


def stored(hv, inactive=False):
    return vm_metadata.read_domain(hv.lookupByName("test"), libvirt, inactive=inactive)["priority"]


def test_set_idempotent_check_mode_and_removed(hv, run):
    dry = priority(run, 10, check=True)
    assert dry["changed"] and dry["diff"] == {"before": {"priority": None}, "after": {"priority": 10}}
    assert stored(hv) is None and stored(hv, inactive=True) is None
    first = priority(run, 10)
    assert first["changed"] and first["previous_priority"] is None and first["priority"] == 10
    assert stored(hv) == 10 and stored(hv, inactive=True) == 10  # the running VM and its definition
    assert not priority(run, "10")["changed"]
    gone = priority(run, None)
    assert gone["changed"] and gone["previous_priority"] == 10 and stored(hv) is None and stored(hv, inactive=True) is None


@pytest.mark.parametrize("value", ["high", 1.5, True, [1], 2 ** 31])
def test_a_priority_that_is_no_integer_is_refused_naming_the_vm(hv, run, value):
    result = priority(run, value)
    assert result["failed"] and result["error_kind"] == "invalid_argument", result
    assert "VM 'test'" in result["msg"] and "Nothing was done." in result["msg"], result["msg"]
    assert stored(hv) is None


def test_a_hand_written_priority_is_replaced(hv, run):
    hv.lookupByName("test").setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<vm><priority>urgent</priority></vm>", "entropy",
                                        vm_metadata.NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    result = priority(run, 3)
    assert result["changed"] and result["previous_priority"] == "urgent" and stored(hv) == 3
