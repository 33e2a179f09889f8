# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster's web dashboard: the cluster live in a browser, and VM actions through the collection's playbooks.

Starlette + Jinja2 (autoescape) + htmx (vendored in static/, with its licence); live updates over server-sent
events. The data comes from the collection's own inventory code (plugins/inventory/libvirt_cluster.py: same
sampling, same model); every action runs dashboard/playbooks/vm_action.yml through ansible-runner.
Start it with ``python -m dashboard serve -i <file>.libvirt_cluster.yml --users users.json``.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
HERE = os.path.dirname(os.path.abspath(__file__))


def collections_path() -> str:
    """The directory that holds ansible_collections/entropy/cluster for this checkout (or installed collection),
    made importable: the inventory code is imported from the collection itself, never copied."""
    parts = ROOT.split(os.sep)
    if len(parts) >= 3 and parts[-3] == "ansible_collections":
        found = os.sep.join(parts[:-3]) or os.sep  # the dashboard ships inside an installed collection
    else:
        found = os.path.join(ROOT, ".tmp", "collections")  # a checkout: tools/run.sh setup links it there
        link = os.path.join(found, "ansible_collections", "entropy", "cluster")
        if not os.path.exists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(ROOT, link)
    if found not in sys.path:
        sys.path.insert(0, found)
    return found
