# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage pools and volumes as the modules that make volumes use them (private: names may change between
releases): linked_clone, job_vm, job_seed. One wording for a missing or stopped pool."""

from __future__ import annotations

import typing as t

from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def active_pool(conn, name: str, uri: str, fail: t.Callable[[str, str], t.NoReturn], missing: str | None = None):
    """The storage pool ``name`` on ``conn``, active and refreshed (volumes made by others are seen).
    ``fail(msg, kind)`` otherwise: kind no_pool (with ``missing`` as the message when given) or pool_inactive."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            fail(missing or "Storage pool %r is not defined on %s: define it (virsh pool-define-as) or name another pool." % (name, uri),
                 "no_pool")
        raise
    if not pool.isActive():
        fail("Storage pool %r on %s is not active: start it (virsh pool-start) first." % (name, uri), "pool_inactive")
    pool.refresh(0)
    return pool


def find_volume(pool, name: str):
    """The volume ``name`` of ``pool``, or None."""
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise
