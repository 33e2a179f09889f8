# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read survey answers (text) as the lists and dictionaries the roles take; logic in plugin_utils/survey.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.entropy.cluster.plugins.plugin_utils.survey import KINDS, survey_names, survey_value


def _kind(kind) -> str:
    if kind not in KINDS:
        raise AnsibleFilterError("survey_data: kind must be list or dict, not %r" % (kind,))
    return kind


def survey_list(value) -> list:
    return survey_names(value)


def survey_data(value, kind="list", name="the value"):
    parsed, error = survey_value(value, _kind(kind), str(name))
    if error:
        raise AnsibleFilterError(error)
    return parsed


def survey_error(value, kind="list", name="the value") -> str:
    return survey_value(value, _kind(kind), str(name))[1]


class FilterModule:

    def filters(self):
        return {"survey_list": survey_list, "survey_data": survey_data, "survey_error": survey_error}
