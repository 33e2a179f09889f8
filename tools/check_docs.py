# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check that ansible-doc renders every plugin of the installed collection (ANSIBLE_COLLECTIONS_PATH).

Exit 1 naming each plugin whose documentation ansible-doc cannot show."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PLUGIN_TYPES = {"modules": "module", "inventory": "inventory", "lookup": "lookup", "filter": "filter", "roles": "role"}


def main() -> int:
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    failures, shown = [], []
    for plugin_type in PLUGIN_TYPES.values():
        listing = subprocess.run([ansible_doc, "-t", plugin_type, "--list", "--json", "entropy.cluster"],
                                 capture_output=True, text=True, check=False)
        names = sorted(json.loads(listing.stdout or "{}")) if listing.returncode == 0 else []
        for name in names:
            result = subprocess.run([ansible_doc, "-t", plugin_type, "--json", name], capture_output=True, text=True, check=False)
            doc = json.loads(result.stdout or "{}").get(name, {}) if result.returncode == 0 else {}
            # roles document their entry points (meta/argument_specs.yml), plugins have one doc
            doc = doc.get("entry_points", {}).get("main") if plugin_type == "role" else doc.get("doc")
            if not doc or not doc.get("short_description"):
                failures.append("%s %s: %s" % (plugin_type, name, result.stderr.strip() or "no documentation"))
            else:
                shown.append("%s %s" % (plugin_type, name))
    for line in shown:
        print("ansible-doc ok: %s" % line)
    for line in failures:
        print("ansible-doc FAILED: %s" % line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
