# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``ansible-inventory --list --export`` prints (what AWX imports), and that tenant strings stay data.

Values are plain JSON except strings that could be templates, which stay wrapped
(``{"__ansible_unsafe": ...}``); such a string, from libvirt, is never templated in a play.
Real libvirt test driver and the real ansible-inventory / templar of the running ansible-core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

libvirt = pytest.importorskip("libvirt")

# pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.template import Templar  # noqa: E402
from ansible.vars.hostvars import HostVars  # noqa: E402
from ansible.vars.manager import VariableManager  # noqa: E402

from ansible_collections.entropy.cluster.plugins.plugin_utils.inventory_values import (  # noqa: E402
    could_be_template,
    inventory_value,
    trust_as_template,
)

# tests/unit/conftest.py puts the collection of this checkout on sys.path.
COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))
# VM names a tenant may choose: each would run code or change the text if templated.
HOSTILE = ["{{ lookup('pipe','id') }}", "{{ 6 * 7 }}", "{% if true %}42{% endif %}", "a{# gone #}b", "#jinja2:trim_blocks:False x"]


def _hostile_cluster(cluster):
    hv1 = cluster.node("hv1", [{"name": name} for name in HOSTILE] + [{"name": "web1", "state": "shutoff"}])
    hv2 = cluster.node("hv2", [{"name": "app1"}])
    return cluster.config([{"name": "hv1", "uri": hv1, "cpu": 2, "memory_mib": 1024}, {"name": "hv2", "uri": hv2}],
                          model_constraints=[{"type": "ban", "vms": ["app1"], "hosts": ["hv1"]}])


def _export(path):
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1")
    done = subprocess.run([binary, "-i", path, "--list", "--export"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _walk(value, where=""):
    """(path, leaf) for every leaf; a {"__ansible_unsafe": s} wrapper is one leaf."""
    if isinstance(value, dict) and set(value) != {"__ansible_unsafe"}:
        for key, item in value.items():
            yield from _walk(item, "%s.%s" % (where, key))
    elif isinstance(value, list):
        for idx, item in enumerate(value):
            yield from _walk(item, "%s[%d]" % (where, idx))
    else:
        yield where, value


def test_export_is_plain_except_possible_templates(cluster):
    exported = _export(_hostile_cluster(cluster))
    hostvars = exported["_meta"]["hostvars"]
    wrapped, plain = [], []
    for where, leaf in _walk(hostvars):
        if isinstance(leaf, dict):
            wrapped.append((where, leaf["__ansible_unsafe"]))
        elif isinstance(leaf, str):
            plain.append((where, leaf))
    # Every wrapped string could be a template, every plain one could not.
    assert wrapped and all(could_be_template(text) for _where, text in wrapped), wrapped
    # (but the interpreter, a template of ours on purpose)
    assert [(where, text) for where, text in plain if could_be_template(text)] == [
        (".%s.ansible_python_interpreter" % host, "{{ ansible_playbook_python }}") for host in ("entropy_cluster",)]
    # The hostile names are exported wrapped, wherever they appear as values.
    model = hostvars["entropy_cluster"]["entropy_model"]
    assert sorted(vm["name"]["__ansible_unsafe"] for vm in model["vms"] if isinstance(vm["name"], dict)) == sorted(HOSTILE)
    # Constants, numbers, booleans and null are plain JSON.
    hv1, web1 = hostvars["hv1"], hostvars["web1"]
    assert hv1["entropy_kind"] == "hypervisor" and web1["entropy_kind"] == "vm"
    assert hostvars["entropy_cluster"]["entropy_kind"] == "model"
    assert hv1["entropy_reachable"] is True and hv1["entropy_error"] is None
    assert hv1["entropy_cpu_cores"] == 2 and hv1["entropy_memory_mib"] == 1024 and hv1["entropy_vm_count"] == len(HOSTILE) + 1
    assert web1["entropy_state"] == "shutoff" and web1["entropy_hypervisor"] == "hv1" and web1["entropy_memory_mib"] == 64
    assert web1["entropy_has_managed_save"] is False and web1["entropy_job"] is None
    assert hv1["entropy_model_constraints"] == [{"type": "ban", "vms": ["app1"], "hosts": ["hv1"]}]
    assert exported["vms"]["vars"]["ansible_connection"] == "local"
    assert exported["hypervisors"]["vars"]["ansible_connection"] == "local"
    assert {"name": "app1", "host": "hv2", "state": "running", "memory_mib": 64, "vcpus": 1} in model["vms"]


def test_tenant_strings_are_never_templated_in_a_play(cluster):
    """Through the variable manager and templar a play uses: the names come back literally."""
    inventory = cluster.inventory(_hostile_cluster(cluster))
    loader = DataLoader()
    manager = VariableManager(loader=loader, inventory=inventory)
    HostVars(inventory=inventory, variable_manager=manager, loader=loader)  # hostvars, as a play's task queue manager makes them
    variables = manager.get_vars(host=inventory.get_host("web1"))
    templar = Templar(loader=loader, variables=variables)

    def render(expression):  # an expression written in a playbook (trusted on ansible-core 2.19)
        return templar.template(trust_as_template(expression))

    names = render("{{ hostvars['entropy_cluster']['entropy_model']['vms'] | map(attribute='name') | sort | list }}")
    assert names == sorted(HOSTILE + ["app1", "web1"])
    warnings = render("{{ hostvars['entropy_cluster']['entropy_model_warnings'] | join('\n') }}")
    assert all(name in warnings for name in HOSTILE) and "VM 42:" not in warnings
    assert render("{{ hostvars['web1']['entropy_kind'] }}") == "vm"


@pytest.mark.parametrize("value, expected", [
    ("plain", False), ("a { b", True), ("}", True), ("{{ x }}", True), ("{% x %}", True), ("{# x #}", True),
    ("#jinja2:variable_start_string:'[['\n[[ x ]]", True), ("", False), ("qemu+tcp://hv1/system", False),
])
def test_could_be_template(value, expected):
    assert could_be_template(value) is expected


def test_inventory_value_keeps_types_and_structure():
    value = {"n": 1, "f": 0.5, "b": False, "none": None, "list": ["x", "{{ y }}"], "nested": {"{{ k }}": ("a",)}}
    converted = inventory_value(value)
    assert converted == {"n": 1, "f": 0.5, "b": False, "none": None, "list": ["x", "{{ y }}"], "nested": {"{{ k }}": ["a"]}}
    assert type(converted["n"]) is int and converted["b"] is False and converted["none"] is None  # pylint: disable=unidiomatic-typecheck
