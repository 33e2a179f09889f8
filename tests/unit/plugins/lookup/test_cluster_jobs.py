# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_jobs on real libvirt: the test:/// driver answers with no job in flight, a closed port does
not answer (left out with a warning, or an error naming it). Jobs in flight are tested on the lab
(tests/integration/test_runs_that_die.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import lookup_loader

from test_cluster_placement import closed_port_uri  # also sets up the collection loader


def run(variables=None, **options):
    return lookup_loader.get("entropy.cluster.cluster_jobs").run([], variables or {}, **options)[0]


def test_no_job_in_flight():
    assert run(hypervisors={"hv1": "test:///default"}) == []


def test_hypervisors_default_to_the_inventory_group():
    variables = {"groups": {"hypervisors": ["hv1"]}, "hostvars": {"hv1": {"entropy_uri": closed_port_uri()}}}
    with pytest.raises(AnsibleLookupError, match="cannot read the jobs of the cluster: hv1: "):
        run(variables, unreachable="fail")


def test_a_host_that_does_not_answer():
    hypervisors = {"hv1": "test:///default", "hv2": closed_port_uri()}
    assert run(hypervisors=hypervisors) == []  # default: left out, with a warning
    with pytest.raises(AnsibleLookupError, match=r"cannot read the jobs of the cluster: hv2: connecting to libvirt on .*Connection refused"):
        run(hypervisors=hypervisors, unreachable="fail")
