# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values for an inventory's variables: data, never templated, and plain where they cannot be templates.

Tenant strings (VM names, anything read from libvirt) must never reach Jinja. Marking every string unsafe does
that, but ``ansible-inventory --list`` then prints each one as ``{"__ansible_unsafe": "..."}`` and AWX's
inventory import stores those dictionaries as the values (community.general#8212). So, as community.general's
``make_unsafe`` does since that issue, only a string that could be a template is marked unsafe; every other string
is exported plain. Numbers, booleans and None are left as they are.

ansible-core 2.19 (data tagging) templates only strings tagged trusted and prints every untrusted one wrapped:
a plain string is tagged trusted (it holds no template, so trusting it changes nothing), a possible template is
left untrusted. ansible-core < 2.19 templates every string that is not unsafe: a possible template is wrapped
unsafe, a plain string left as it is. Both print the same JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.utils.unsafe_proxy import wrap_var

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19: every string is templated unless unsafe; nothing to trust
    def trust_as_template(value):
        return value

# What can start a template: any brace (Jinja's {{ {% {#, and a braced literal inside one), and the
# "#jinja2:" header that sets other delimiters for the rest of the string.
_TEMPLATE_MARKS = re.compile(r"[{}]|#jinja2:")

__all__ = ["could_be_template", "inventory_value"]


def could_be_template(text: str) -> bool:
    """True when templating ``text`` could do anything but return it unchanged."""
    return bool(_TEMPLATE_MARKS.search(text))


def inventory_value(value):
    """``value`` (JSON-like data) ready for ``inventory.set_variable``: strings that could be templates unsafe,
    every other string plain, recursively through dictionaries (keys too) and lists."""
    if isinstance(value, str):
        return wrap_var(value) if could_be_template(value) else trust_as_template(value)
    if isinstance(value, Mapping):
        return {inventory_value(key): inventory_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [inventory_value(item) for item in value]
    return value
