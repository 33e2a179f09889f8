# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one vocabulary of VM states: libvirt state codes -> words -> model states, and plan actions -> states.

Modules, the inventory, the lookups and the model builder all import it (modules can only import
module_utils, so it lives here). No Ansible import and no libvirt import: the codes are libvirt's
stable ABI (virDomainState in libvirt-domain.h).

Four vocabularies, one table each:

* libvirt word (``DOMAIN_STATES``): what the inventory (``entropy_state``) and vm_info (``state``) show;
* condition (``condition``): what vm_state talks about - the word, but ``blocked`` reads ``running`` and a
  shut-off VM with a managed-save image reads ``saved``;
* model state (``model_state``): what the solver sees - running, paused, saved or stopped
  (docs/model-format.md; ``placement.model.VM_STATES`` validates it); ``live_state`` is the same for the live
  placement checks, except that a crashed VM is called crashed;
* plan actions (``ACTION_MODULE_STATE``, ``ACTION_MODEL_STATE``): what entropy.cluster.vm_state is asked
  for, and what the VM is afterwards.
"""

from __future__ import annotations

# virDomainState code -> word. A code this table does not know (a newer libvirt) reads UNKNOWN.
DOMAIN_STATES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}
UNKNOWN = "unknown"

# Active = the domain has a QEMU process and holds its memory on its host (libvirt's own "active": it has an id).
# Only shutoff has no process. "crashed" keeps its process until it is destroyed (on_crash preserve: resources kept
# for analysis; the other on_crash actions end in shutoff). "nostate" and unknown codes are counted active: the
# safe side, their memory may be held.
INACTIVE_WORDS = frozenset({"shutoff"})
INACTIVE_CODES = frozenset(code for code, word in DOMAIN_STATES.items() if word in INACTIVE_WORDS)

# Model states (docs/model-format.md) and which of them hold memory on their host.
MODEL_RUNNING, MODEL_PAUSED, MODEL_SAVED, MODEL_STOPPED = "running", "paused", "saved", "stopped"
# Active word -> model state. A VM that does not run guest code (paused, pmsuspended, crashed) keeps its memory
# and uses no CPU: paused. "shutdown" is a guest shutting down, still running.
_ACTIVE_MODEL_STATES = {
    "nostate": MODEL_RUNNING,
    "running": MODEL_RUNNING,
    "blocked": MODEL_RUNNING,
    "shutdown": MODEL_RUNNING,
    "paused": MODEL_PAUSED,
    "pmsuspended": MODEL_PAUSED,
    "crashed": MODEL_PAUSED,
}

# Plan actions (docs/plan-format.md). migrate is run by entropy.cluster.vm_migrate and keeps the state.
PLAN_ACTIONS = ("migrate", "suspend", "resume", "start", "stop")
# Plan action -> the state option of entropy.cluster.vm_state that carries it out. The solver's suspend is to disk
# (managed save: it frees the VM's memory); stop is a shutdown forced when the guest does not answer.
ACTION_MODULE_STATE = {"suspend": "saved", "resume": "running", "start": "running", "stop": "shutdown"}
# Plan action -> the model state the VM is in after it.
ACTION_MODEL_STATE = {"suspend": MODEL_SAVED, "resume": MODEL_RUNNING, "start": MODEL_RUNNING, "stop": MODEL_STOPPED}


def state_word(code: int | None) -> str:
    """The word of a virDomainState code (``unknown`` for a code this table does not know)."""
    return DOMAIN_STATES.get(code, UNKNOWN)  # type: ignore[arg-type]


def is_active_word(word: str | None) -> bool:
    """Whether a domain in this state holds its memory on its host (see INACTIVE_WORDS)."""
    return word not in INACTIVE_WORDS


def is_active_code(code: int | None) -> bool:
    return code not in INACTIVE_CODES


def model_state(word: str | None, has_managed_save: bool = False) -> str:
    """Model state of a VM in libvirt state ``word``: running, paused, saved or stopped.

    shutoff with a managed-save image -> saved, shutoff -> stopped; an active state -> running or paused
    (see _ACTIVE_MODEL_STATES); an unknown word -> running (it may hold resources)."""
    if not is_active_word(word):
        return MODEL_SAVED if has_managed_save else MODEL_STOPPED
    return _ACTIVE_MODEL_STATES.get(word, MODEL_RUNNING)  # type: ignore[arg-type]


def live_state(word: str | None, has_managed_save: bool = False) -> str:
    """What the live placement (lookup cluster_placement, the checks of apply_plan) calls a VM: its model state,
    except crashed, which stays crashed - it holds its memory like a paused VM, but its guest is dead and no plan
    expects it, so a check says "found crashed" and a failure report counts it as lost."""
    return "crashed" if word == "crashed" else model_state(word, has_managed_save)


def condition(word: str, has_managed_save: bool = False) -> str:
    """The state entropy.cluster.vm_state talks about: the word, except blocked -> running and shutoff with a
    managed-save image -> saved (it resumes from memory on start)."""
    if word == "blocked":
        return "running"
    if word == "shutoff" and has_managed_save:
        return "saved"
    return word
