# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Survey answers (text) read as the lists and dictionaries the roles take, as data, never templated."""

from __future__ import annotations

import pytest

from ansible_collections.entropy.cluster.plugins.filter.survey import survey_data, survey_error, survey_list
from ansible_collections.entropy.cluster.plugins.plugin_utils.survey import survey_value


@pytest.mark.parametrize("value, expected", [
    ("hv1,hv2", ["hv1", "hv2"]),
    (" hv1 , hv2 ,", ["hv1", "hv2"]),
    ("hv1\nhv2\n", ["hv1", "hv2"]),  # an AWX multiple-choice answer
    ('["hv1", "hv2"]', ["hv1", "hv2"]),
    (["hv1", "hv2"], ["hv1", "hv2"]),
    ("", []),
    (None, []),
    ("{{ lookup('pipe', 'id') }}", ["{{ lookup('pipe'", "'id') }}"]),  # split as text, never templated
])
def test_survey_list(value, expected):
    assert survey_list(value) == expected


@pytest.mark.parametrize("value, kind, expected", [
    ('[{"type": "spread", "vms": ["a", "b"]}]', "list", [{"type": "spread", "vms": ["a", "b"]}]),
    ("- {type: spread, vms: [a, b]}\n", "list", [{"type": "spread", "vms": ["a", "b"]}]),
    ([{"type": "ban", "vms": ["a"], "hosts": ["h"]}], "list", [{"type": "ban", "vms": ["a"], "hosts": ["h"]}]),
    ("", "list", []),
    ("max_parallel_migrations_per_host: 2", "dict", {"max_parallel_migrations_per_host": 2}),
    ('{"workers": 1}', "dict", {"workers": 1}),
    ({"workers": 1}, "dict", {"workers": 1}),
    ("  ", "dict", {}),
    ('[{"type": "spread", "vms": ["{{ 7 * 7 }}"]}]', "list", [{"type": "spread", "vms": ["{{ 7 * 7 }}"]}]),
])
def test_survey_data(value, kind, expected):
    assert survey_data(value, kind, "entropy_x") == expected
    assert survey_error(value, kind, "entropy_x") == ""


@pytest.mark.parametrize("value, kind, error", [
    ("[{type: spread", "list", "entropy_constraints is not valid YAML or JSON (line 1, column 15: "),
    ("spread", "list", "entropy_constraints is a string, not a list: give a list, as data or as YAML/JSON text, e.g. [{type: spread"),
    ('["spread"]', "list", "entropy_constraints[0] is a string, not a constraint (a dictionary with a type)"),
    ({"type": "spread"}, "list", "entropy_constraints is a dict, not a list"),
])
def test_survey_errors_name_the_variable_and_the_fix_in_one_line(value, kind, error):
    message = survey_error(value, kind, "entropy_constraints")
    assert message.startswith(error) and "\n" not in message, message
    assert survey_value(value, kind, "entropy_constraints")[0] is None


def test_solver_options_that_are_not_a_dictionary():
    assert survey_error("[1, 2]", "dict", "entropy_solver_options").startswith(
        "entropy_solver_options is a list, not a dict: give a dict, as data or as YAML/JSON text, e.g. {max_parallel_migrations_per_host: 2}")
