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
from ansible_collections.entropy.cluster.plugins.module_utils._job import overlay_name  # noqa: E402  pylint: disable=wrong-import-position

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
    assert made["changed"] is True and made["diff"]["after"] == {"defined": True, "active": False, "overlay": True}
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
