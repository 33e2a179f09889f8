# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_states: every libvirt state code -> word -> active? -> condition -> model state, and every plan action ->
the vm_state module's state and the model state after it. The table is pinned here by hand (not derived from
the module), and checked against real libvirt: the test driver takes any state code (test:runstate) and says
itself which domains are active."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.entropy.cluster.plugins.module_utils import _vm_state, vm_states
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import domain_facts, vm_condition
from ansible_collections.entropy.cluster.plugins.module_utils.domain_jobs import domain_job
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import domain_state
from ansible_collections.entropy.cluster.plugins.modules import vm_state as vm_state_module
from ansible_collections.entropy.cluster.plugins.plugin_utils import plan_playbook
from ansible_collections.entropy.cluster.plugins.plugin_utils.placement.model import ACTIVE_STATES, VM_STATES

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

# libvirt constant, word, active (holds its memory), condition (vm_state), model state, model state with a managed save
TABLE = [
    ("VIR_DOMAIN_NOSTATE", "nostate", True, "nostate", "running", "running"),
    ("VIR_DOMAIN_RUNNING", "running", True, "running", "running", "running"),
    ("VIR_DOMAIN_BLOCKED", "blocked", True, "running", "running", "running"),
    ("VIR_DOMAIN_PAUSED", "paused", True, "paused", "paused", "paused"),
    ("VIR_DOMAIN_SHUTDOWN", "shutdown", True, "shutdown", "running", "running"),
    ("VIR_DOMAIN_SHUTOFF", "shutoff", False, "shutoff", "stopped", "saved"),
    ("VIR_DOMAIN_CRASHED", "crashed", True, "crashed", "paused", "paused"),
    ("VIR_DOMAIN_PMSUSPENDED", "pmsuspended", True, "pmsuspended", "paused", "paused"),
]

NODE = """<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>4</active><total>4</total><nodes>1</nodes>
       <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
%s</node>
"""
DOMAIN = ("<domain type='test'><name>%s</name><memory>65536</memory><currentMemory>65536</currentMemory><vcpu>1</vcpu>"
          "<os><type>hvm</type></os><test:runstate>%d</test:runstate></domain>\n")


@pytest.mark.parametrize("constant, word, active, condition, model, model_saved", TABLE)
def test_every_libvirt_state(constant, word, active, condition, model, model_saved):
    code = getattr(libvirt, constant)
    assert vm_states.DOMAIN_STATES[code] == vm_states.state_word(code) == word
    assert vm_states.is_active_code(code) is active and vm_states.is_active_word(word) is active
    assert vm_states.condition(word) == condition
    assert vm_states.model_state(word) == model and vm_states.model_state(word, True) == model_saved
    assert (vm_states.model_state(word) in ACTIVE_STATES) is active  # the solver counts its memory exactly when libvirt holds it


def test_the_table_covers_every_libvirt_state_and_nothing_else():
    assert sorted(vm_states.DOMAIN_STATES) == sorted(getattr(libvirt, row[0]) for row in TABLE) == list(range(8))
    assert vm_states.condition("shutoff", True) == "saved"


def test_a_state_code_from_a_newer_libvirt_is_unknown_and_counted_active():
    assert vm_states.state_word(99) == "unknown" and vm_states.state_word(None) == "unknown"
    assert vm_states.is_active_code(99) and vm_states.model_state("unknown") == "running"


def test_the_model_states_are_the_solvers():
    produced = {vm_states.model_state(word, saved) for word in [*vm_states.DOMAIN_STATES.values(), "unknown"] for saved in (False, True)}
    assert produced == set(VM_STATES)
    assert set(vm_states.ACTION_MODEL_STATE.values()) <= set(VM_STATES)


# plan action -> vm_state's state option, the condition vm_state leaves, the model state after the action
ACTIONS = [
    ("suspend", "saved", "saved", "saved"),
    ("resume", "running", "running", "running"),
    ("start", "running", "running", "running"),
    ("stop", "shutdown", "shutoff", "stopped"),
]


@pytest.mark.parametrize("action, module_state, condition, model", ACTIONS)
def test_every_plan_action(action, module_state, condition, model):
    choices = yaml.safe_load(vm_state_module.DOCUMENTATION)["options"]["state"]["choices"]
    assert vm_states.ACTION_MODULE_STATE[action] == module_state and module_state in choices
    assert _vm_state.RESULT_STATE[module_state] == condition  # what the module reports once it is done
    assert vm_states.ACTION_MODEL_STATE[action] == model
    word = "shutoff" if condition in ("saved", "shutoff") else condition
    assert vm_states.model_state(word, condition == "saved") == model  # what the next inventory read shows
    assert plan_playbook.STATE_AFTER_ACTION[action] == model  # what the step check expects


def test_every_plan_action_has_its_states():
    assert vm_states.PLAN_ACTIONS == ("migrate", "suspend", "resume", "start", "stop")
    assert set(vm_states.ACTION_MODULE_STATE) == set(vm_states.ACTION_MODEL_STATE) == set(vm_states.PLAN_ACTIONS) - {"migrate"}
    assert set(plan_playbook.ACTION_FIELDS) == set(vm_states.PLAN_ACTIONS)


def test_libvirt_itself_agrees_for_every_state_code(tmp_path):
    """The test driver puts a domain in any state: libvirt's own isActive() is the vocabulary's is_active_code,
    and the readers (domain_state, vm_condition, vm_info's facts, the job check) use the vocabulary."""
    node = tmp_path / "states.xml"
    node.write_text(NODE % "".join(DOMAIN % (row[1], getattr(libvirt, row[0])) for row in TABLE))
    conn = libvirt.open("test://%s" % node)
    try:
        for _constant, word, active, condition, _model, _saved in TABLE:
            dom = conn.lookupByName(word)
            assert bool(dom.isActive()) is active is vm_states.is_active_code(dom.state()[0]), word
            assert domain_state(dom) == domain_facts(dom)["state"] == word
            assert vm_condition(dom) == domain_facts(dom)["condition"] == condition
            assert domain_job(dom) is None  # the test driver has no jobs; a shut-off domain is not even asked
    finally:
        conn.close()


def test_the_live_placement_calls_a_crashed_vm_crashed_and_every_other_vm_by_its_model_state():
    for _constant, word, _active, _condition, model, model_saved in TABLE:
        expected = ("crashed", "crashed") if word == "crashed" else (model, model_saved)
        assert (vm_states.live_state(word), vm_states.live_state(word, True)) == expected


def test_a_vm_that_crashed_during_a_plan_is_a_difference_and_lost():
    plan = {"initial": {"a": {"host": "hv1", "state": "running"}}, "target": {"a": "hv2"},
            "steps": [[{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}]]}
    crashed = {"a": [{"host": "hv2", "state": vm_states.live_state("crashed")}]}
    assert plan_playbook.placement_differences(crashed, {"a": {"host": "hv2", "state": "running"}}) == [
        "VM 'a' on hv2: expected running, found crashed"]
    assert plan_playbook.plan_progress(plan, crashed, 1)["lost"] == ["a: was running on hv1, now crashed on hv2"]
