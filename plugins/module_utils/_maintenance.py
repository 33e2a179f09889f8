# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.host_maintenance (private: names may change between releases): a hypervisor's
maintenance mark in the cluster store."""

from __future__ import annotations

from ansible_collections.entropy.cluster.plugins.module_utils._host_record import HostRecord


class HostMaintenance(HostRecord):
    """Set (state=present) or clear (state=absent) the maintenance mark of one hypervisor; check mode reads only."""

    KIND = "maintenance"
