# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.job_vm against the libvirt test driver: the overlay and the definition with the job's metadata,
check mode, idempotence, removal, and a VM that is not the job's left alone. The VMs booting and running are checked on
the lab's QEMU daemons (tests/integration/test_jobs.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.module_utils._job import overlay_name, seed_name  # noqa: E402  pylint: disable=wrong-import-position

POOL = "default-pool"
JOB = "it's \"a\" {{ lookup('pipe','id') }} job"
OWNER = "bob {{ 6 * 7 }}"


@pytest.fixture()
def base(hv):
    pool = hv.storagePoolLookupByName(POOL)
    vol = pool.createXML("<volume><name>base.qcow2</name><capacity>67108864</capacity><target><format type='qcow2'/></target></volume>", 0)
    yield vol.path()
    for v in pool.listAllVolumes(0):
        v.delete(0)


def job_vm(run, check=False, **args):
    return run("job_vm", dict(dict(uri=TEST_URI, pool=POOL, job=JOB, domain_type="qemu"), **args), check=check, diff=True)


def volumes(hv):
    return sorted(v.name() for v in hv.storagePoolLookupByName(POOL).listAllVolumes(0))


def test_define_check_mode_idempotent_then_absent(hv, run, base):
    name = JOB + "-1"
    present = dict(name=name, owner=OWNER, image=base, memory_mib=64, priority=5)
    checked = job_vm(run, check=True, **present)
    assert checked["changed"] is True and volumes(hv) == ["base.qcow2"] and name not in [d.name() for d in hv.listAllDomains()]
    made = job_vm(run, **present)
    assert made["changed"] is True and made["diff"]["after"] == {"defined": True, "active": False, "overlay": True, "seed": False}
    assert volumes(hv) == sorted(["base.qcow2", overlay_name(name)])
    dom = hv.lookupByName(name)
    assert vm_metadata.read(dom.XMLDesc(0), name) == {"priority": 5, "saved": None, "job": JOB, "owner": OWNER}
    assert job_vm(run, **present)["changed"] is False
    dom.create()
    gone_check = job_vm(run, check=True, name=name, state="absent")
    assert gone_check["changed"] is True and hv.lookupByName(name).isActive()
    gone = job_vm(run, name=name, state="absent")
    assert gone["changed"] is True and name not in [d.name() for d in hv.listAllDomains()] and volumes(hv) == ["base.qcow2"]
    assert job_vm(run, name=name, state="absent")["changed"] is False


def test_a_vm_that_is_not_the_jobs_is_left_alone(hv, run, base):
    # the driver's own VM "test" carries no job: a job whose VM has that name must neither adopt nor remove it
    refused = job_vm(run, name="test", state="absent")
    assert refused["failed"] and refused["error_kind"] == "not_the_jobs" and "left alone" in refused["msg"]
    assert hv.lookupByName("test").isActive()
    adopted = job_vm(run, name="test", owner=OWNER, image=base, memory_mib=64)
    assert adopted["failed"] and adopted["error_kind"] == "not_the_jobs"
    # one VM of another job
    job_vm(run, name="other-1", job="other", owner="x", image=base, memory_mib=64)
    refused = job_vm(run, name="other-1", state="absent")
    assert refused["failed"] and "its job: 'other'" in refused["msg"] and "other-1" in [d.name() for d in hv.listAllDomains()]
    assert job_vm(run, name="other-1", job="other", state="absent")["changed"] is True


def test_overlay_names_are_safe_and_distinct():
    a, b = overlay_name("a b-1"), overlay_name("a_b-1")
    assert a != b and "/" not in a and " " not in a and a.endswith(".qcow2")
    assert overlay_name("../../etc/passwd") .startswith("entropy-job-.._.._etc_passwd-")


def test_absent_removes_the_seed_volume_too_and_kernel_boot_is_defined(hv, run, base):
    name = JOB + "-2"
    made = job_vm(run, name=name, owner=OWNER, image=base, memory_mib=64, kernel="/boot/vmlinuz", initrd="/boot/initrd.gz",
                  cmdline="console=ttyS0 {{ x }}")
    assert made["changed"] is True and made["seed"] == seed_name(name)
    os_ = hv.lookupByName(name).XMLDesc(0)
    assert "<kernel>/boot/vmlinuz</kernel>" in os_ and "<initrd>/boot/initrd.gz</initrd>" in os_ and "<cmdline>console=ttyS0 {{ x }}</cmdline>" in os_
    # the seed entropy.cluster.job_seed made (a volume of that name in the pool) goes with the VM
    hv.storagePoolLookupByName(POOL).createXML("<volume><name>%s</name><capacity>2048</capacity></volume>" % seed_name(name), 0)
    assert seed_name(name) in volumes(hv)
    gone = job_vm(run, name=name, state="absent")
    assert gone["changed"] is True and gone["diff"]["before"]["seed"] is True and gone["diff"]["after"]["seed"] is False
    assert volumes(hv) == ["base.qcow2"]
    assert seed_name(name).startswith(overlay_name(name)[:-len(".qcow2")]) and seed_name(name).endswith(".seed.iso")
