"""The job file schema (plugins/plugin_utils/jobs): every field validated with a one-line error naming it and the
fix; tenant strings kept literally; the admission check with the numbers."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

# plugins/plugin_utils on sys.path: the packages import standalone as `jobs` and `placement` (no conftest of our
# own here: a second module named conftest would shadow the one other unit tests import from)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 5), "plugins", "plugin_utils"))

from jobs import JOB_FIELDS, JobError, check_room, load_job_file, parse_job  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk alice@laptop"
GOOD = {"name": "analysis", "owner": "alice", "vms": 3, "vcpus": 1, "memory_mib": 64, "cpu": 0.5,
        "image": "/var/lib/libvirt/images/base.qcow2", "command": "echo done > result.txt", "priority": 0,
        "share": "/home/alice/job1", "ssh_key": KEY, "time_limit_s": 600}


def job(**changes):
    data = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return data


def refused(data, field=None) -> str:
    with pytest.raises(JobError) as caught:
        parse_job(data)
    message = str(caught.value)
    assert "\n" not in message, message
    if field is not None:
        assert caught.value.field == field, message
        assert "'%s'" % field in message or field in message, message
    return message


def test_a_good_job_is_read_with_its_defaults():
    parsed = parse_job(job(cpu=..., priority=..., constraints=[{"type": "spread"}]))
    assert parsed.cpu == 1.0 and parsed.priority == 0
    assert parsed.vm_names() == ["analysis-1", "analysis-2", "analysis-3"]
    assert parsed.memory_total_mib == 192
    assert parsed.constraints[0].to_model(parsed.vm_names()) == {"type": "spread", "vms": parsed.vm_names()}
    assert parse_job(parsed.to_dict()) == parsed


@pytest.mark.parametrize("field", [k for k, (required, _w) in JOB_FIELDS.items() if required])
def test_each_missing_required_field_is_named(field):
    assert "is missing: add it" in refused(job(**{field: ...}), field)


@pytest.mark.parametrize("field,value,words", [
    ("name", "", "is empty"),
    ("name", 12, "must be a string"),
    ("name", True, "quote it"),
    ("name", "a/b", "'/'"),
    ("name", " padded", "spaces"),
    ("name", "x" * 65, "at most 64"),
    ("name", "two\nlines", "line break"),
    ("owner", None, "must be a string"),
    ("vms", 0, "at least 1"),
    ("vms", "3", "must be an integer"),
    ("vms", True, "must be an integer"),
    ("vms", 1001, "at most 1000"),
    ("vcpus", 1.5, "must be an integer"),
    ("memory_mib", "512M", "must be an integer"),
    ("memory_mib", -1, "at least 1"),
    ("cpu", 0, "more than 0"),
    ("cpu", 2, "at most vcpus"),
    ("cpu", "half", "number of cores"),
    ("cpu", float("nan"), "number of cores"),
    ("image", "base.qcow2", "absolute path"),
    ("share", "~/job", "absolute path"),
    ("command", "   ", "is empty"),
    ("priority", 1.5, "must be an integer"),
    ("ssh_key", "AAAA", "not an SSH public key"),
    ("ssh_key", "ssh-ed25519 not*base64", "not base64"),
    ("ssh_key", "ssh-rsa " + KEY.split()[1], "does not match its type"),
    ("ssh_key", KEY + "\nssh-ed25519 AAAA", "line break"),
    ("time_limit_s", 0, "at least 1"),
])
def test_each_bad_value_is_refused_naming_the_field_and_the_fix(field, value, words):
    message = refused(job(**{field: value}), field)
    assert words in message, message
    assert message.startswith("job file")


@pytest.mark.parametrize("constraints,words,field", [
    ("spread", "must be a list", "constraints"),
    ([{"type": "pack"}], "use spread, gather or among", "constraints[0]"),
    ([{"kind": "spread"}], "must be a mapping with a type", "constraints[0]"),
    ([{"type": "spread", "vms": ["x"]}], "unknown key(s) 'vms'", "constraints[0]"),
    ([{"type": "among"}], "non-empty list of non-empty lists", "constraints[0].groups"),
    ([{"type": "among", "groups": [["hv1"], ["hv1", "hv2"]]}], "must be disjoint", "constraints[0].groups"),
    ([{"type": "gather", "continuous": "yes"}], "true or false", "constraints[0].continuous"),
    ([{"type": "spread"}, {"type": "gather"}], "both spread and gather", "constraints"),
])
def test_bad_constraints_are_named(constraints, words, field):
    message = refused(job(constraints=constraints), field)
    assert words in message, message


def test_unknown_field_gets_the_close_name_and_a_non_mapping_is_refused():
    message = refused(job(memory=64))
    assert "unknown field 'memory'" in message and "did you mean 'memory_mib'?" in message
    assert "must be a YAML mapping" in refused(["name", "x"])
    assert "an empty file" in refused(None)


def test_spread_of_one_vm_is_refused():
    assert "spread a job of 1 VM" in refused(job(vms=1, constraints=[{"type": "spread"}]), "constraints")


HOSTILE = ["it's \"quoted\"", "two words", "{{ lookup('pipe', 'id') }}", "{% raw %}x", "$(id) `id`; rm -rf ~", "a|b&c>d"]


@pytest.mark.parametrize("text", HOSTILE)
def test_names_with_quotes_spaces_or_templates_are_kept_literally(text, tmp_path):
    """Through YAML and the schema, a job name, owner, command or share path stays the exact string written."""
    data = job(name=text, owner=text, command=text, share="/home/" + text)
    path = tmp_path / "job.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    parsed = load_job_file(str(path))
    assert (parsed.name, parsed.owner, parsed.command, parsed.share) == (text, text, text, "/home/" + text)
    assert parsed.vm_names()[0] == text + "-1"


def test_yaml_errors_and_unreadable_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\nowner: alice\n", encoding="utf-8")
    with pytest.raises(JobError) as caught:
        load_job_file(str(bad))
    assert "is not valid YAML at line" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(JobError) as caught:
        load_job_file(str(tmp_path / "nope.yml"))
    assert "cannot be read" in str(caught.value)
    tagged = tmp_path / "tagged.yml"
    tagged.write_text("name: !!python/object/apply:os.system ['id']\n", encoding="utf-8")
    with pytest.raises(JobError) as caught:
        load_job_file(str(tagged))
    assert "is not valid YAML" in str(caught.value)
    unquoted = tmp_path / "yes.yml"
    unquoted.write_text(yaml.safe_dump(job()).replace("owner: alice", "owner: yes"), encoding="utf-8")
    with pytest.raises(JobError) as caught:
        load_job_file(str(unquoted))
    assert "field 'owner' must be a string, got bool True: quote it" in str(caught.value)


def cluster(hosts=3, memory=320, cpu=2, used=((0, 128),)):
    """A placement model: ``hosts`` online hosts, ``used`` (host index, MiB) running VMs."""
    return {"version": 1,
            "hosts": [{"name": "hv%d" % (i + 1), "cpu": cpu, "memory_mib": memory} for i in range(hosts)],
            "vms": [{"name": "vm%d" % n, "host": "hv%d" % (h + 1), "memory_mib": mib, "cpu": 0.1} for n, (h, mib) in enumerate(used)]}


def test_a_job_larger_than_the_cluster_is_refused_with_the_numbers():
    figures = check_room(parse_job(job(vms=3, memory_mib=64)), cluster())
    assert figures["needs_memory_mib"] == 192 and figures["free_memory_mib"] == 960 - 128
    with pytest.raises(JobError) as caught:
        check_room(parse_job(job(vms=14, memory_mib=64)), cluster())
    message = str(caught.value)
    assert "needs 896 MiB (14 VMs x 64 MiB), 832 MiB free on 3 online hosts (960 MiB in all)" in message, message
    assert caught.value.field == "memory_mib"


def test_one_vm_larger_than_any_host_and_cpu_and_spread_limits():
    with pytest.raises(JobError, match="each VM needs 400 MiB, the largest online host has 320 MiB"):
        check_room(parse_job(job(vms=1, memory_mib=400)), cluster())
    with pytest.raises(JobError, match=r"needs 6 cores \(6 VMs x 1\), 5.9 cores free"):
        check_room(parse_job(job(vms=6, cpu=1)), cluster())
    with pytest.raises(JobError, match="spread 4 VMs over distinct hosts, the cluster has 3 online hosts"):
        check_room(parse_job(job(vms=4, constraints=[{"type": "spread"}])), cluster())
    with pytest.raises(JobError, match="gather 384 MiB on one host, the largest online host has 320 MiB"):
        check_room(parse_job(job(vms=6, constraints=[{"type": "gather"}])), cluster())
    with pytest.raises(JobError, match="names host 'hv9', which is not in the cluster"):
        check_room(parse_job(job(constraints=[{"type": "among", "groups": [["hv1"], ["hv9"]]}])), cluster())
    offline = cluster()
    for host in offline["hosts"]:
        host["state"] = "offline"
    with pytest.raises(JobError, match="no online host"):
        check_room(parse_job(job()), offline)


def test_documented_entry_entropy_job_check(tmp_path):
    """docs/jobs.md: `.venv/bin/python tools/entropy_job.py check job.yml [--model model.json]` prints the job, or one line
    naming the field and exits 2."""
    tool = os.path.join(os.path.dirname(__file__), *([os.pardir] * 5), "tools", "entropy_job.py")
    good = tmp_path / "job.yml"
    good.write_text(yaml.safe_dump(job(name="it's {{ x }}")), encoding="utf-8")
    model = tmp_path / "model.json"
    model.write_text(json.dumps(cluster()), encoding="utf-8")
    out = subprocess.run([sys.executable, tool, "check", str(good), "--model", str(model)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["vm_names"] == ["it's {{ x }}-1", "it's {{ x }}-2", "it's {{ x }}-3"]
    assert shown["room"]["needs_memory_mib"] == 192
    big = tmp_path / "big.yml"
    big.write_text(yaml.safe_dump(job(vms=20)), encoding="utf-8")
    out = subprocess.run([sys.executable, tool, "check", str(big), "--model", str(model)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "needs 1280 MiB (20 VMs x 64 MiB), 832 MiB free" in out.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(job(memory_mib="64M")), encoding="utf-8")
    out = subprocess.run([sys.executable, tool, "check", str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 2 and "field 'memory_mib' must be an integer" in out.stderr and "Traceback" not in out.stderr
