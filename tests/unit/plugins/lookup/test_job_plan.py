# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job_plan lookup's decision (placed / no_room / refused / invalid) with the real CP-SAT solver, on plain models."""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("ortools")

from ansible_collections.entropy.cluster.plugins.lookup.job_plan import outcome  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk alice@laptop"
MODEL = {"version": 1,
         "hosts": [{"name": "hv1", "cpu": 2, "memory_mib": 320}, {"name": "hv2", "cpu": 2, "memory_mib": 320}],
         "vms": [{"name": "a", "host": "hv1", "cpu": 0.1, "vcpus": 1, "memory_mib": 192},
                 {"name": "b", "host": "hv2", "cpu": 0.1, "vcpus": 1, "memory_mib": 192}]}


def job_file(tmp_path, **fields):
    data = dict(name="j {{ x }}", owner="o'wner", vms=2, vcpus=1, memory_mib=64, cpu=0.1, image="/srv/base.qcow2",
                command="true", share="/srv/share", ssh_key=KEY, time_limit_s=60)
    data.update(fields)
    path = tmp_path / "job.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_placed_with_starts_and_the_vms_shut_off_in_initial(tmp_path):
    got = outcome(job_file(tmp_path), MODEL, 5)
    assert got["outcome"] == "placed", got
    names = ["j {{ x }}-1", "j {{ x }}-2"]
    assert [vm["name"] for vm in got["vms"]] == names and all(vm["host"] in ("hv1", "hv2") for vm in got["vms"])
    starts = [a for step in got["plan"]["steps"] for a in step if a["action"] == "start"]
    assert sorted(a["vm"] for a in starts) == names
    assert all(got["plan"]["initial"][n]["state"] == "stopped" for n in names)
    assert got["plan"]["stats"]["starts"] == 2 and got["plan"]["stats"]["migrations"] == 0, got["plan"]["stats"]


def test_no_room_now_is_queued_with_the_numbers(tmp_path):
    got = outcome(job_file(tmp_path, vms=3, memory_mib=128), MODEL, 5)
    assert got["outcome"] == "no_room" and "needs 384 MiB" in got["error"] and "256 MiB free" in got["error"], got


def test_larger_than_the_whole_cluster_is_refused(tmp_path):
    got = outcome(job_file(tmp_path, vms=11, memory_mib=64), MODEL, 5)
    assert got["outcome"] == "refused" and "needs 704 MiB" in got["error"] and "640 MiB free" in got["error"], got


def test_bad_field_is_named(tmp_path):
    got = outcome(job_file(tmp_path, memory_mib="512M"), MODEL, 5)
    assert got["outcome"] == "invalid" and "field 'memory_mib'" in got["error"] and "\n" not in got["error"]


def test_a_records_job_fields_are_placed_like_its_file(tmp_path):
    # entropy.cluster.job_queue places a queued job again from the fields its record keeps (the validated job's to_dict)
    read = outcome(job_file(tmp_path), None, 0)
    assert read["outcome"] == "read" and read["vms"][0]["seed"].endswith(".seed.iso")
    again = outcome(read["job"], MODEL, 5)
    assert again["outcome"] == "placed" and again["job"] == read["job"], again
    bad = outcome(dict(read["job"], memory_mib="512M"), MODEL, 5)
    assert bad["outcome"] == "invalid" and bad["error"].startswith("job 'j {{ x }}' (its record)") and "memory_mib" in bad["error"], bad
