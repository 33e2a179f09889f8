# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""domain_jobs: jobs in flight read from the libvirt test driver (which has none), and the pairing of the
two sides of a migration into one line per VM. The real jobs are read on the lab
(tests/integration/test_runs_that_die.py)."""

from __future__ import annotations

import pytest

from ansible_collections.entropy.cluster.plugins.module_utils.domain_jobs import domain_job, host_jobs, in_flight

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

OUT = {"operation": "migration_out", "type": "unbounded", "elapsed_ms": 12500, "memory_total_bytes": 128 << 20,
       "memory_remaining_bytes": 19 << 20, "postcopy": False}
IN = {"operation": "migration_in", "type": "unbounded", "elapsed_ms": None, "memory_total_bytes": None,
      "memory_remaining_bytes": None, "postcopy": False}


def test_the_test_driver_has_no_job_in_flight():
    conn = libvirt.open("test:///default")
    try:
        assert host_jobs(conn) == {}
        dom = conn.listAllDomains()[0]
        assert domain_job(dom) is None
        dom.suspend()  # paused by the user, not by a migration
        assert domain_job(dom) is None
    finally:
        conn.close()


def test_both_sides_of_a_migration_make_one_entry():
    entries = in_flight({"hv1": {"web 1": OUT}, "hv2": {"web 1": IN, "db": {**OUT, "operation": "save", "elapsed_ms": 3000}}},
                        {"hv1": "qemu+tcp://hv1/system"})
    assert [(e["vm"], e["operation"], e["source"], e["destination"], e["host"]) for e in entries] == [
        ("db", "save", None, None, "hv2"), ("web 1", "migration", "hv1", "hv2", "hv1")]
    assert entries[0]["description"] == "db: save job on hv2, running for 3 s"
    assert entries[1]["description"] == ("web 1: migration from hv1 to hv2, running for 12 s, 19 MiB of 128 MiB memory left "
                                         "to send; to abort it: virsh -c qemu+tcp://hv1/system domjobabort 'web 1'")


def test_a_side_not_seen_is_said_unknown():
    only_in = in_flight({"hv2": {"vm1": IN}})
    assert only_in[0]["source"] is None and only_in[0]["destination"] == "hv2"
    assert only_in[0]["description"] == (
        "vm1: migration from an unknown source (not among the hypervisors read) to hv2; if vm1 runs on another hypervisor, "
        "this paused copy is the leftover of a failed migration and never ran: remove it with virsh -c '<URI of hv2>' destroy vm1")
    named = in_flight({"hv2": {"vm 1": IN}}, {"hv2": "qemu+tcp://10.0.0.2/system"})
    assert named[0]["description"].endswith("virsh -c qemu+tcp://10.0.0.2/system destroy 'vm 1'")
    only_out = in_flight({"hv1": {"vm1": OUT}})
    assert "from hv1 to an unknown destination" in only_out[0]["description"]
    assert "virsh -c '<URI of hv1>' domjobabort vm1" in only_out[0]["description"]
    assert in_flight({"hv1": {}, "hv2": {}}) == []
