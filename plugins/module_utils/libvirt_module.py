# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module base of the collection (amazon.aws style).

EntropyModule: the module's result, its diff, and one way to exit and to fail: ``fail()`` with a
message that names the object and the fix, never a traceback. LibvirtModule adds the connection
options, the ``missing_required_lib`` check, connections that are always closed and
``fail_libvirt()``, which turns a libvirt error into such a message."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    CONNECT_TIMEOUT_ENV,
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    PASSWORD_ENV,
    URI_ENV,
    USERNAME_ENV,
    EntropyLibvirtError,
    close_quietly,
    describe_error,
    open_connection,
    resolve_uri,
)

# Keep in sync with plugins/doc_fragments/connection.py (MODULE_CONNECT_TIMEOUT).
CONNECT_TIMEOUT_SPEC = dict(connect_timeout=dict(type="float", fallback=(env_fallback, [CONNECT_TIMEOUT_ENV])))

# Keep in sync with plugins/doc_fragments/connection.py (MODULE_CREDENTIALS, and the auth options of DOCUMENTATION).
CREDENTIALS_SPEC = dict(
    auth_username=dict(type="str", fallback=(env_fallback, [USERNAME_ENV])),
    auth_password=dict(type="str", no_log=True, fallback=(env_fallback, [PASSWORD_ENV])),
)

# Keep in sync with plugins/doc_fragments/connection.py.
CONNECTION_ARGUMENT_SPEC = dict(
    uri=dict(type="str", fallback=(env_fallback, [URI_ENV])),
    **CREDENTIALS_SPEC,
    **CONNECT_TIMEOUT_SPEC,
)


class EntropyModule(AnsibleModule):
    """AnsibleModule with the result and the failure path of every module of the collection.

    ``module.result`` is the result being built (``changed`` false until a module says otherwise);
    ``module.exit()`` and ``module.fail(msg, error_kind)`` return it, ``module.set_diff()`` adds the diff.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.result: dict = dict(changed=False)
        super().__init__(*args, **kwargs)

    def set_diff(self, before: dict, after: dict) -> None:
        """Put the diff into the result when the user asked for one (--diff)."""
        if self._diff:
            self.result["diff"] = dict(before=before, after=after)

    def exit(self, **extra) -> t.NoReturn:
        """Exit with the result (updated with ``extra``)."""
        self.result.update(extra)
        self.exit_json(**self.result)

    def fail(self, msg: str, error_kind: str | None = None, **extra) -> t.NoReturn:
        """Fail with ``msg`` (one line naming the object and the fix), the result so far and ``error_kind``."""
        self.result.update(extra)
        if error_kind is not None:
            self.result["error_kind"] = error_kind
        result = dict(self.result)
        result.pop("msg", None)
        self.fail_json(msg=msg, **result)


class LibvirtModule(EntropyModule):
    """EntropyModule with the connection options and libvirt connections.

    ``module.connect(uri)`` opens a connection that is closed at exit, or fails the module naming
    the URI and the fix; ``module.fail_libvirt(exc, action, uri)`` is the failure path of any libvirt error.
    """

    def __init__(self, argument_spec: dict, **kwargs) -> None:
        # before AnsibleModule.__init__: it calls fail_json (which closes connections) on bad arguments
        self._connections: list = []
        spec = dict(CONNECTION_ARGUMENT_SPEC)
        spec.update(argument_spec)
        super().__init__(argument_spec=spec, **kwargs)
        if not HAS_LIBVIRT:
            self.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)

    @property
    def uri(self) -> str:
        return resolve_uri(self.params.get("uri"))

    # ------------------------------------------------------------------ connections

    def open_connection(self, uri: str | None = None, readonly: bool = False):
        """Open a connection that is closed at exit; raises EntropyLibvirtError (naming the URI and the
        fix) for a caller that words the failure itself."""
        conn = open_connection(uri or self.uri, self.params.get("auth_username"), self.params.get("auth_password"), readonly=readonly,
                               connect_timeout=self.params.get("connect_timeout"))
        self._connections.append(conn)
        return conn

    def connect(self, uri: str | None = None, readonly: bool = False):
        """Open (and remember, to close at exit) a connection; fail the module clearly if it cannot."""
        try:
            return self.open_connection(uri, readonly=readonly)
        except EntropyLibvirtError as exc:
            self.fail_libvirt(exc)

    def close_connections(self) -> None:
        while self._connections:
            close_quietly(self._connections.pop())

    # ------------------------------------------------------------------ failures and exit

    def fail_libvirt(self, exc: Exception, action: str = "libvirt call", uri: str | None = None, **extra) -> t.NoReturn:
        """The one path of a libvirt failure: what was being done, where, what libvirt said, and the fix."""
        err = describe_error(exc, action, uri)
        self.fail(err.message, err.kind, **extra)

    def exit_json(self, **kwargs) -> t.NoReturn:
        self.close_connections()
        super().exit_json(**kwargs)

    def fail_json(self, msg, **kwargs) -> t.NoReturn:
        self.close_connections()
        super().fail_json(msg=msg, **kwargs)
