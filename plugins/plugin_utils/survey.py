# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Variables as AWX surveys pass them (text) read as the structures the roles take, without Ansible imports.

An AWX survey answer is a string: a text field gives ``hv1,hv2``, a multiple choice gives one choice per line, a
textarea gives whatever was typed (YAML or JSON). The text is parsed as data (PyYAML's safe loader), never templated:
names in it are tenant data.
"""

from __future__ import annotations

import re
import typing as t

import yaml

KINDS = {"list": list, "dict": dict}
SHOWN = {"list": "[{type: spread, vms: [db1, db2]}]", "dict": "{max_parallel_migrations_per_host: 2}"}


def survey_names(value: t.Any) -> list:
    """A list of names from a list, or from text: ``hv1,hv2``, one per line, or a YAML/JSON list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed, error = survey_value(text, "list", "the list")
            if not error:
                return [str(item).strip() if isinstance(item, str) else item for item in parsed]
        return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def survey_value(value: t.Any, kind: str, name: str) -> tuple[t.Any, str]:
    """(the value as a ``kind``, "") or (None, a one-line error naming the variable and the fix).
    A structure of that kind is returned as it is; text is parsed as YAML (JSON is YAML); empty text is empty."""
    wanted = KINDS[kind]
    fix = "give a %s, as data or as YAML/JSON text, e.g. %s" % (kind, SHOWN[kind])
    if value is None:
        return wanted(), ""
    if isinstance(value, str):
        if not value.strip():
            return wanted(), ""
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = " (line %d, column %d: %s)" % (mark.line + 1, mark.column + 1, getattr(exc, "problem", "")) if mark else ""
            return None, "%s is not valid YAML or JSON%s: %s" % (name, where, fix)
        value = wanted() if parsed is None else parsed
    if not isinstance(value, wanted):
        return None, "%s is a %s, not a %s: %s" % (name, _kind_word(value), kind, fix)
    if kind == "list" and name.endswith("constraints"):
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                return None, "%s[%d] is a %s, not a constraint (a dictionary with a type): %s" % (name, index, _kind_word(item), fix)
    return value, ""


def _kind_word(value: t.Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "number", float: "number", list: "list", dict: "dict"}.get(type(value), type(value).__name__)
