# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec of entropy.cluster.wait_actions (private: names may change between releases): the action plugin
does the work on the controller, the module file holds its documentation; both validate with this one spec."""

from __future__ import annotations

ARGUMENT_SPEC = {
    "jobs": {"type": "list", "elements": "dict", "required": True},
    "uris": {"type": "dict", "default": {}},
    "timeout": {"type": "int", "default": 420},
    "poll_interval": {"type": "float", "default": 1.0},
    "progress_interval": {"type": "float", "default": 5.0},
    "label": {"type": "str", "default": ""},
}
