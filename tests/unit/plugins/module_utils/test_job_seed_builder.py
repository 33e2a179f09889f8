# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job seed builder (module_utils/_job_seed.py): the cloud-init NoCloud volume, read back as a guest reads it,
tenant data kept literal in YAML and in the plain files, bad values refused with a line naming them."""

from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.entropy.cluster.plugins.module_utils import _job_seed as js

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk alice@laptop"
NASTY = "job \"q\" 'x' {{ lookup('pipe', 'id') }} $(id) -1"


def seed(**over):
    values = dict(vm_name=NASTY, ssh_key=KEY, command="echo \"{{ x }}\" $(id) > out.txt\nexit 3", nfs_server="10.77.0.1",
                  nfs_path="/srv/shares/alice dir/job")
    values.update(over)
    return js.JobSeed(**values)


def test_volume_is_a_cidata_iso_with_literal_values():
    one = seed()
    image = js.build_seed_image(one)
    assert image[0x8001:0x8006] == b"CD001" and len(image) % 2048 == 0
    files = js.read_seed_image(image)
    assert sorted(files) == sorted(["meta-data", "user-data"] + ["entropy-job/" + n for n in js.PLAIN_FILES])
    assert files["entropy-job/vm-name"].decode() == NASTY
    assert files["entropy-job/command"].decode() == one.command
    assert files["entropy-job/nfs-path"].decode() == "/srv/shares/alice dir/job"
    assert files["entropy-job/authorized_keys"].decode() == KEY + "\n"
    user = files["user-data"].decode()
    assert user.startswith("#cloud-config\n")
    config = yaml.safe_load(user)
    assert config["ssh_authorized_keys"] == [KEY]
    assert config["hostname"] == files["entropy-job/hostname"].decode() == one.hostname
    # the name and the command are arguments of the fixed script, never inside its text
    assert config["runcmd"] == [["sh", "-c", js.RUN_SCRIPT, "entropy-job", js.SHARE_MOUNTPOINT, NASTY, one.command]]
    assert NASTY not in js.RUN_SCRIPT
    assert config["mounts"] == [["10.77.0.1:/srv/shares/alice\\040dir/job", js.SHARE_MOUNTPOINT, "nfs4", "vers=4.1,_netdev", "0", "0"]]
    meta = yaml.safe_load(files["meta-data"].decode())
    assert meta == {"instance-id": one.instance_id, "local-hostname": one.hostname}


def test_volume_label_is_cidata():
    image = js.build_seed_image(seed())
    assert image[0x8028:0x8028 + 32].decode().strip() == "cidata"  # the primary volume descriptor's label


def test_json_fallback_is_the_same_yaml(monkeypatch):
    one = seed()
    with_yaml = yaml.safe_load(js.user_data(one))
    monkeypatch.setattr(js, "HAS_YAML", False)
    text = js.user_data(one)
    assert json.loads(text.split("\n", 1)[1]) == yaml.safe_load(text) == with_yaml


def test_hostname_and_instance_id():
    assert js.hostname_for(NASTY) == "job-q-x-lookup-pipe-id-id-1"
    assert js.hostname_for("{{ }}") == "entropy-job"
    assert len(js.hostname_for("a" * 100)) == 63
    assert seed().instance_id == seed().instance_id != seed(command="true").instance_id
    assert seed(hostname="given").hostname == "given"


@pytest.mark.parametrize("over, words", [
    (dict(vm_name="a/b"), "vm_name 'a/b' cannot name a file"),
    (dict(vm_name=".."), "cannot name a file"),
    (dict(ssh_key="not a key"), "ssh_key must be one SSH public key line"),
    (dict(nfs_path="relative/dir"), "nfs_path must be absolute"),
    (dict(nfs_server="host;rm -rf /"), "nfs_server must be a host name or an address"),
    (dict(command=""), "command must be a non-empty string"),
    (dict(command="a\0b"), "command contains a NUL"),
])
def test_bad_values_are_refused_naming_them(over, words):
    with pytest.raises(js.SeedError) as caught:
        seed(**over)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_seed_disk_xml_escapes_the_path():
    xml = js.seed_disk_xml("/p/it's <a> & {{ b }}.iso", "vdz")
    assert "it&apos;s" in xml or "it's" in xml
    assert "&lt;a&gt; &amp; {{ b }}" in xml and "<readonly />" in xml


def test_static_address_and_mac_for_a_warm_clone():
    plain = js.seed_files(seed())
    assert "entropy-job/address" not in plain and "entropy-job/mac" not in plain
    assert seed(address="").instance_id == seed().instance_id  # seeds without them keep the id they had before the fields
    files = js.seed_files(seed(address="10.77.0.200/24", mac="52:54:00:12:34:56"))
    assert files["entropy-job/address"] == b"10.77.0.200/24" and files["entropy-job/mac"] == b"52:54:00:12:34:56"
    assert seed(address="10.77.0.200/24").instance_id != seed().instance_id
    for bad in ("10.77.0.200", "10.77.0.300/24", "10.77.0.2/24; reboot", "10.77.0.2/24\n", "fe80::1/64"):
        with pytest.raises(js.SeedError, match="address must be an IPv4 address with its prefix"):
            seed(address=bad)
    for bad in ("52:54:00:12:34", "52:54:00:12:34:5G", "52:54:00:12:34:56\n"):
        with pytest.raises(js.SeedError, match="mac must be six lower-case hex bytes"):
            seed(mac=bad)
