# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live reads of every hypervisor at once, for the controller-side lookups (never cached)."""

from __future__ import annotations

import typing as t
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    open_connection,
)

T = t.TypeVar("T")


def read_one(name: str, uri: str, read: t.Callable[[t.Any], T], what: str, username: str | None, password: str | None,
             connect_timeout: float | None = None) -> T:
    """``read(conn)`` on a read-only connection to one hypervisor; any failure becomes an
    EntropyLibvirtError naming the hypervisor, what was being read and the URI."""
    conn = None
    try:
        conn = open_connection(uri, username, password, readonly=True, connect_timeout=connect_timeout)
        return read(conn)
    except EntropyLibvirtError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise describe_error(exc, "%s of %s" % (what, name), uri) from None
    finally:
        close_quietly(conn)


def read_hypervisors(hypervisors: t.Mapping[str, str], read: t.Callable[[t.Any], T], what: str, username: str | None,
                     password: str | None, parallelism: int, connect_timeout: float | None = None) -> tuple[dict[str, T], dict[str, str]]:
    """``read(conn)`` on every hypervisor (name -> URI), ``parallelism`` at a time.

    Returns (result by hypervisor name, error message by hypervisor name), both in name order."""
    results: dict[str, T] = {}
    errors: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(hypervisors) or 1))) as pool:
        futures = {name: pool.submit(read_one, name, uri, read, what, username, password, connect_timeout) for name, uri in sorted(hypervisors.items())}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except EntropyLibvirtError as exc:
                errors[name] = exc.message
    return results, errors
