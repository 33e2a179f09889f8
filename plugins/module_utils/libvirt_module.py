# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one module base of the collection (amazon.aws style): connection options, the
``missing_required_lib`` check, connections that are always closed, and failures that carry
the message of EntropyLibvirtError instead of a traceback."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
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

# Keep in sync with plugins/doc_fragments/connection.py.
CONNECTION_ARGUMENT_SPEC = dict(
    uri=dict(type="str", fallback=(env_fallback, [URI_ENV])),
    auth_username=dict(type="str", fallback=(env_fallback, [USERNAME_ENV])),
    auth_password=dict(type="str", no_log=True, fallback=(env_fallback, [PASSWORD_ENV])),
)


class LibvirtModule(AnsibleModule):
    """AnsibleModule with the connection options and libvirt helpers.

    Use ``with module.connection() as conn:`` (or ``module.connect(uri)``); libvirt failures
    raised as EntropyLibvirtError become ``fail_json`` with their message and ``error_kind``.
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

    def connect(self, uri: str | None = None, readonly: bool = False):
        """Open (and remember, to close at exit) a connection; fail the module clearly if it cannot."""
        try:
            conn = open_connection(uri or self.uri, self.params.get("auth_username"), self.params.get("auth_password"), readonly=readonly)
        except EntropyLibvirtError as exc:
            self.fail_libvirt(exc)
        self._connections.append(conn)
        return conn

    def fail_libvirt(self, exc: Exception, action: str = "libvirt call", uri: str | None = None, **result) -> None:
        err = describe_error(exc, action, uri)
        self.close_connections()
        self.fail_json(msg=err.message, error_kind=err.kind, **result)

    def close_connections(self) -> None:
        while self._connections:
            close_quietly(self._connections.pop())

    def exit_json(self, **kwargs) -> None:
        self.close_connections()
        super().exit_json(**kwargs)

    def fail_json(self, msg, **kwargs) -> None:
        self.close_connections()
        super().fail_json(msg=msg, **kwargs)
