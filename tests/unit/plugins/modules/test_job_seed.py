# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.job_seed against the libvirt test driver: check mode, bad values, a missing pool or domain. The
test driver cannot upload a volume's content: the real seed, its upload, idempotence and the guest that reads it are
tested on the lab (tests/integration/test_job_guest.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI  # noqa: E402  pylint: disable=wrong-import-position

POOL = "default-pool"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk alice@laptop"


def seed_args(**over):
    args = dict(uri=TEST_URI, pool=POOL, name="it's {{ job }}-1-seed.iso", vm_name="it's {{ job }}-1", ssh_key=KEY,
                command="echo hi", nfs_server="10.77.0.1", nfs_path="/srv/share")
    args.update(over)
    return args


def volumes(hv):
    return sorted(v.name() for v in hv.storagePoolLookupByName(POOL).listAllVolumes(0))


def test_check_mode_says_what_it_would_make_and_makes_nothing(hv, run):
    before = volumes(hv)
    result = run("job_seed", seed_args(), check=True, diff=True)
    assert result["changed"] is True and result["state"] == "present" and result["path"] is None
    assert result["hostname"] == "it-s-job-1"
    assert result["diff"]["before"] == {"files": None}
    assert result["diff"]["after"]["files"]["entropy-job/vm-name"] == "it's {{ job }}-1"
    assert volumes(hv) == before


def test_bad_values_fail_with_one_line_naming_them(hv, run):
    bad = run("job_seed", seed_args(ssh_key="hello"), check=True)
    assert bad["failed"] and bad["error_kind"] == "invalid_argument"
    assert bad["msg"] == ("job_seed \"it's {{ job }}-1-seed.iso\": job seed for \"it's {{ job }}-1\": ssh_key must be one SSH public key "
                          "line (ssh-ed25519 AAAA... comment)")
    missing = run("job_seed", dict(uri=TEST_URI, pool=POOL, name="x.iso"))
    assert missing["failed"] and "missing: vm_name, ssh_key, command, nfs_server, nfs_path" in missing["msg"]


def test_unknown_pool_or_domain(hv, run):
    nopool = run("job_seed", seed_args(pool="nope"))
    assert nopool["failed"] and nopool["error_kind"] == "no_pool" and "'nope'" in nopool["msg"]
    nodom = run("job_seed", seed_args(domain="no such vm"), check=True)
    assert nodom["failed"] and nodom["error_kind"] == "no_domain" and "'no such vm'" in nodom["msg"]
