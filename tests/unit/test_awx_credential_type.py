# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX credential type of docs/awx.md, as written there: its injectors set the variables the
collection reads, and with the execution environment's ssh configuration (tools/ee/ssh_config) the
ssh client offers exactly the injected key (a real ssh run against a local listener)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading

import jinja2
import jinja2.meta
import pytest
import yaml

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import PASSWORD_ENV, USERNAME_ENV

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SSH_CONFIG = os.path.join(ROOT, "tools", "ee", "ssh_config")


def awx_block(after: str) -> dict:
    """The first ```yaml block of docs/awx.md after the line containing ``after``, parsed."""
    with open(os.path.join(ROOT, "docs", "awx.md"), encoding="utf-8") as handle:
        text = handle.read()
    match = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M).search(text, text.index(after))
    assert match, "no ```yaml block after %r in docs/awx.md" % after
    return yaml.safe_load(match.group(1))


def render_injectors(injectors: dict, values: dict, tmp_path) -> dict:
    """What AWX does with the injectors: writes each file template, then renders env with
    tower.filename.<name> naming those files. Returns the environment."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    filenames = {}
    for key, template in injectors.get("file", {}).items():
        name = key.split(".", 1)[1]
        path = tmp_path / name
        path.write_text(env.from_string(template).render(**values), encoding="utf-8")
        filenames[name] = str(path)
    context = dict(values, tower={"filename": filenames})
    return {name: env.from_string(template).render(**context) for name, template in injectors["env"].items()}


@pytest.fixture(scope="module")
def inputs():
    return awx_block("Input configuration:")


@pytest.fixture(scope="module")
def injectors():
    return awx_block("Injector configuration:")


def test_the_inputs_keep_secrets_secret(inputs):
    fields = {field["id"]: field for field in inputs["fields"]}
    assert len(fields) == len(inputs["fields"]), "duplicate ids"
    assert all(field["type"] == "string" and field["label"] for field in fields.values())
    assert fields["libvirt_password"]["secret"] is True
    assert fields["ssh_private_key"]["secret"] is True
    assert fields["ssh_private_key"]["multiline"] is True
    assert inputs["required"] == []


def test_the_injectors_use_only_declared_inputs_and_the_variables_the_collection_reads(inputs, injectors):
    ids = {field["id"] for field in inputs["fields"]}
    env = jinja2.Environment()
    for template in list(injectors["env"].values()) + list(injectors["file"].values()):
        assert jinja2.meta.find_undeclared_variables(env.parse(template)) <= ids | {"tower"}, template
    assert set(injectors["env"]) == {USERNAME_ENV, PASSWORD_ENV, "ENTROPY_LIBVIRT_SSH_KEY_FILE", "ENTROPY_LIBVIRT_KNOWN_HOSTS_FILE"}
    with open(SSH_CONFIG, encoding="utf-8") as handle:
        ssh_config = handle.read()
    for name in ("ENTROPY_LIBVIRT_SSH_KEY_FILE", "ENTROPY_LIBVIRT_KNOWN_HOSTS_FILE"):
        assert "${%s}" % name in ssh_config


def test_the_injectors_render_the_sasl_credentials_and_the_key_file(injectors, tmp_path):
    values = {"libvirt_username": "entropy", "libvirt_password": "s3cret", "ssh_private_key": "KEY\n", "ssh_known_hosts": "hv01 ssh-ed25519 AAAA\n"}
    env = render_injectors(injectors, values, tmp_path)
    assert env[USERNAME_ENV] == "entropy"
    assert env[PASSWORD_ENV] == "s3cret"
    with open(env["ENTROPY_LIBVIRT_SSH_KEY_FILE"], encoding="utf-8") as handle:
        assert handle.read() == "KEY\n"
    with open(env["ENTROPY_LIBVIRT_KNOWN_HOSTS_FILE"], encoding="utf-8") as handle:
        assert handle.read() == "hv01 ssh-ed25519 AAAA\n"


def offered_identities(env: dict) -> list[str]:
    """Run ssh -v with the image's ssh configuration against a local listener that answers no SSH
    banner; return the identity files ssh loaded (it loads them once connected)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def answer():
        conn = server.accept()[0]
        conn.sendall(b"not ssh\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        result = subprocess.run(["ssh", "-v", "-F", SSH_CONFIG, "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                                 "127.0.0.1", "true"], env=dict(os.environ, **env), capture_output=True, text=True, timeout=30,
                                check=False)
    finally:
        thread.join(timeout=5)
        server.close()
    assert "Connection established" in result.stderr, result.stderr
    return re.findall(r"identity file (\S+) type -?\d+", result.stderr)


def test_ssh_in_the_image_offers_only_the_injected_key(injectors, tmp_path):
    key = tmp_path / "generated"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    values = {"libvirt_username": "", "libvirt_password": "", "ssh_private_key": key.read_text(encoding="utf-8"), "ssh_known_hosts": ""}
    env = render_injectors(injectors, values, tmp_path)
    identities = [path for path in offered_identities(env) if not path.endswith("-cert")]
    assert identities == [env["ENTROPY_LIBVIRT_SSH_KEY_FILE"]]


def test_ssh_in_the_image_keeps_its_defaults_without_a_key(injectors, tmp_path):
    values = {"libvirt_username": "", "libvirt_password": "", "ssh_private_key": "", "ssh_known_hosts": ""}
    env = render_injectors(injectors, values, tmp_path)
    identities = offered_identities(env)
    assert env["ENTROPY_LIBVIRT_SSH_KEY_FILE"] not in identities
    assert any("/.ssh/id_" in path for path in identities), identities
