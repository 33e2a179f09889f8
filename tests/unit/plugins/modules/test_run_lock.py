# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.run_lock: the real module main() on real lock files in tmp_path, and races between processes.

Self-contained (the conftest next to this file is about libvirt): ``run()`` below calls main() with
ansible.module_utils.testing.patch_module_args and parses the JSON the module prints.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest


from ansible.module_utils.testing import patch_module_args

from ansible_collections.entropy.cluster.plugins.module_utils import _run_lock
from ansible_collections.entropy.cluster.plugins.modules import run_lock

MODULE_FILE = run_lock.__file__
# the directory that holds ansible_collections/, for the module run as a separate process
COLLECTIONS = MODULE_FILE.split(os.sep + "ansible_collections" + os.sep, maxsplit=1)[0]


def run(capsys, check: bool = False, diff: bool = True, **args) -> dict:
    """Run the module's main() once; the parsed result (``failed`` true when the module failed)."""
    module_args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    capsys.readouterr()
    with patch_module_args(module_args):
        with pytest.raises(SystemExit) as exit_info:
            run_lock.main()
    text = capsys.readouterr().out
    try:
        result = json.loads(text)
    except ValueError:
        raise AssertionError("run_lock printed no JSON (exit %s): %r" % (exit_info.value.code, text)) from None
    assert bool(exit_info.value.code) == bool(result.get("failed")), result
    return result


def write_lock(path, age: float, owner: str = "old run", token: str = "old-token", **extra) -> dict:
    created = time.time() - age
    record = dict(kind="entropy.cluster.run_lock", owner=owner, token=token, pid=4711, host="ctl01",
                  created=created, created_iso=_run_lock.iso(created), **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def on_disk(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture()
def lock(tmp_path):
    return tmp_path / "var" / "lock" / "entropy-cluster" / "prod.lock"


def test_acquire_creates_dirs_and_record(capsys, lock):
    result = run(capsys, path=str(lock), owner="awx job 42")
    assert result["changed"] is True and not result.get("failed"), result
    assert result["path"] == str(lock)
    assert result["owner"] == "awx job 42"
    assert len(result["token"]) == 32 and int(result["token"], 16) >= 0
    assert result["stale_taken_over"] is False and result["previous_holder"] is None
    record = on_disk(lock)
    assert record["owner"] == "awx job 42" and record["token"] == result["token"]
    assert record["pid"] == os.getppid() and record["host"]
    assert record["created"] == result["created"] and abs(record["created"] - time.time()) < 60
    assert record["created_iso"] == result["created_iso"] and result["created_iso"].endswith("+00:00")
    assert result["diff"]["before"] == {"state": "absent"}
    assert result["diff"]["after"] == {"state": "present", "owner": "awx job 42", "since": result["created_iso"]}
    # the file facts AnsibleModule adds for a returned path must not replace the lock's owner
    assert "uid" not in result and "mode" not in result


def test_default_owner_names_user_host_and_pid(capsys, lock):
    result = run(capsys, path=str(lock))
    assert result["changed"] is True
    assert "@" in result["owner"] and result["owner"].endswith(" pid %d" % os.getppid()), result["owner"]


def test_reacquire_with_same_token_is_idempotent(capsys, lock):
    first = run(capsys, path=str(lock), token="awx-job-42", owner="awx job 42")
    assert first["changed"] is True and first["token"] == "awx-job-42"
    before = lock.read_bytes()
    again = run(capsys, path=str(lock), token="awx-job-42", owner="awx job 42")
    assert again["changed"] is False and not again.get("failed"), again
    assert again["token"] == "awx-job-42" and again["created"] == first["created"]
    assert again["diff"]["before"] == again["diff"]["after"]
    assert lock.read_bytes() == before


@pytest.mark.parametrize("token", [None, "another-token"])
def test_held_by_another_run_fails_naming_holder(capsys, lock, token):
    first = run(capsys, path=str(lock), owner="cron on ctl01")
    before = lock.read_bytes()
    args = dict(path=str(lock), owner="awx job 43")
    if token:
        args["token"] = token
    result = run(capsys, **args)
    assert result["failed"] is True and result["changed"] is False
    msg = result["msg"]
    assert msg.startswith("another entropy.cluster run holds %s since %s" % (lock, first["created_iso"])), msg
    assert "'cron on ctl01'" in msg and "wait for it" in msg and "remove the file" in msg and "ttl=7200" in msg
    assert result["held_by"]["owner"] == "cron on ctl01" and "token" not in result["held_by"]
    assert lock.read_bytes() == before


def test_stale_lock_is_taken_over(capsys, lock):
    write_lock(lock, age=120, owner="dead run")
    result = run(capsys, path=str(lock), ttl=60, owner="awx job 44")
    assert result["changed"] is True and not result.get("failed"), result
    assert result["stale_taken_over"] is True
    previous = result["previous_holder"]
    assert previous["owner"] == "dead run" and previous["host"] == "ctl01" and previous["pid"] == 4711
    assert 119 <= previous["age"] <= 180 and "token" not in previous
    record = on_disk(lock)
    assert record["owner"] == "awx job 44" and record["token"] == result["token"] != "old-token"
    assert result["diff"]["before"]["owner"] == "dead run" and result["diff"]["after"]["owner"] == "awx job 44"


def test_young_lock_with_small_ttl_is_not_stale(capsys, lock):
    write_lock(lock, age=5, owner="live run")
    result = run(capsys, path=str(lock), ttl=60)
    assert result["failed"] is True and "'live run'" in result["msg"]
    assert on_disk(lock)["owner"] == "live run"


@pytest.fixture()
def child():
    """A real process to own a lock; killed (and reaped) at the end if the test did not."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_live_owner_blocks_and_a_dead_one_is_taken_over_at_once(capsys, lock, child):
    first = run(capsys, path=str(lock), owner="run A", owner_pid=child.pid)
    assert first["changed"] is True and not first.get("failed"), first
    record = on_disk(lock)
    assert record["pid"] == child.pid and record["pid_start"] == _run_lock.process_start(child.pid)
    assert record["boot_id"] == open("/proc/sys/kernel/random/boot_id").read().strip()
    assert record["pid_ns"] == os.readlink("/proc/self/ns/pid") and record["host"]

    # the owner runs: refused, even with a ttl the lock is far past
    time.sleep(1.1)
    held = run(capsys, path=str(lock), owner="run B", ttl=1)
    assert held["failed"] is True and "'run A'" in held["msg"] and "pid %d, still running" % child.pid in held["msg"], held
    assert held["held_by"]["owner_alive"] is True
    assert on_disk(lock)["token"] == first["token"]

    child.kill()
    child.wait()
    taken = run(capsys, path=str(lock), owner="run B")  # ttl 7200: the lock is 1 s old
    assert taken["changed"] is True and not taken.get("failed"), taken
    assert taken["stale_taken_over"] is True
    assert taken["stale_reason"] == "its owner process, pid %d on %s, is gone" % (child.pid, record["host"]), taken
    # the warning saying so is checked under ansible-playbook (tests/integration/test_runs_that_die.py): in this
    # process it goes to the result or to the controller's display depending on what other tests imported
    assert taken["previous_holder"]["owner"] == "run A" and taken["previous_holder"]["owner_alive"] is False
    assert on_disk(lock)["owner"] == "run B"


def test_a_killed_owner_not_yet_reaped_is_gone(capsys, lock, child):
    run(capsys, path=str(lock), owner="run A", owner_pid=child.pid)
    child.kill()
    deadline = time.time() + 30
    while _run_lock.read_text("/proc/%d/stat" % child.pid).split(") ")[1][0] != "Z":  # a zombie until wait()
        assert time.time() < deadline
        time.sleep(0.05)
    taken = run(capsys, path=str(lock), owner="run B")
    assert taken["stale_taken_over"] is True and "pid %d" % child.pid in taken["stale_reason"], taken


def test_pid_reuse_is_told_by_the_start_time(capsys, lock, child):
    run(capsys, path=str(lock), owner="run A", owner_pid=child.pid)
    record = on_disk(lock)
    # the same pid, now a process started later than the owner: the owner is gone
    record["pid_start"] -= 1
    lock.write_text(json.dumps(record))
    taken = run(capsys, path=str(lock), owner="run B")
    assert taken["stale_taken_over"] is True, taken
    assert taken["stale_reason"].endswith("is gone (pid %d now belongs to a process started later)" % child.pid), taken


@pytest.mark.parametrize("key,value", [("host", "ctl99"), ("boot_id", "another-boot"), ("pid_ns", "pid:[1]"),
                                       ("pid_start", None)])
def test_an_owner_that_cannot_be_checked_keeps_the_ttl_rule(capsys, lock, child, key, value):
    run(capsys, path=str(lock), owner="run A", owner_pid=child.pid)
    record = on_disk(lock)
    record[key] = value
    lock.write_text(json.dumps(record))
    child.kill()
    child.wait()
    held = run(capsys, path=str(lock), owner="run B", ttl=3600)
    assert held["failed"] is True and "'run A'" in held["msg"] and held["held_by"]["owner_alive"] is None, held
    time.sleep(1.1)
    taken = run(capsys, path=str(lock), owner="run B", ttl=1)
    assert taken["stale_taken_over"] is True and "older than ttl=1 s" in taken["stale_reason"], taken


def test_owner_pid_must_be_a_running_process(capsys, lock, child):
    child.kill()
    child.wait()
    result = run(capsys, path=str(lock), owner_pid=child.pid)
    assert result["failed"] is True and "owner_pid %d is not a running process" % child.pid in result["msg"], result
    assert not lock.exists()


def test_release_with_wrong_token_fails_and_keeps_lock(capsys, lock):
    write_lock(lock, age=10, owner="run that took over", token="theirs")
    result = run(capsys, path=str(lock), state="absent", token="mine")
    assert result["failed"] is True and result["changed"] is False
    assert "is not held by this run" in result["msg"] and "'run that took over'" in result["msg"], result["msg"]
    assert "nothing was removed" in result["msg"]
    assert result["held_by"]["owner"] == "run that took over"
    assert on_disk(lock)["token"] == "theirs"


def test_release_with_token_then_again(capsys, lock):
    taken = run(capsys, path=str(lock), owner="awx job 45")
    released = run(capsys, path=str(lock), state="absent", token=taken["token"])
    assert released["changed"] is True and not released.get("failed"), released
    assert released["previous_holder"]["owner"] == "awx job 45"
    assert released["diff"] == {"before": {"state": "present", "owner": "awx job 45", "since": taken["created_iso"]},
                                "after": {"state": "absent"}}
    assert not lock.exists()
    again = run(capsys, path=str(lock), state="absent", token=taken["token"])
    assert again["changed"] is False and not again.get("failed") and again["previous_holder"] is None
    missing_dir = run(capsys, path=str(lock.parent / "nowhere" / "x.lock"), state="absent")
    assert missing_dir["changed"] is False and not missing_dir.get("failed")


def test_release_without_token_removes_whoever_holds_it(capsys, lock):
    write_lock(lock, age=10, owner="someone")
    result = run(capsys, path=str(lock), state="absent")
    assert result["changed"] is True and result["previous_holder"]["owner"] == "someone"
    assert not lock.exists()


def test_check_mode_touches_nothing(capsys, lock):
    would = run(capsys, check=True, path=str(lock), owner="awx job 46")
    assert would["changed"] is True and not would.get("failed") and would["stale_taken_over"] is False
    assert would["token"] and would["diff"]["after"]["owner"] == "awx job 46"
    assert not lock.parent.exists(), "check mode must not create the directory"

    write_lock(lock, age=10, owner="holder")
    before = lock.read_bytes()
    held = run(capsys, check=True, path=str(lock))
    assert held["failed"] is True and "'holder'" in held["msg"]

    stale = run(capsys, check=True, path=str(lock), ttl=5)
    assert stale["changed"] is True and stale["stale_taken_over"] is True
    assert stale["previous_holder"]["owner"] == "holder"

    release = run(capsys, check=True, path=str(lock), state="absent", token="old-token")
    assert release["changed"] is True and release["previous_holder"]["owner"] == "holder"
    wrong = run(capsys, check=True, path=str(lock), state="absent", token="nope")
    assert wrong["failed"] is True
    assert lock.read_bytes() == before


@pytest.mark.parametrize("content,reason", [
    (b"", "it is empty"),
    (b"{not json", "it is not JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"owner": "x", "token": "t"}', "'created' is missing"),
    (b'{"owner": "x", "token": 5, "created": 1.0}', "'token' is missing or not a str"),
])
def test_corrupt_lock_file_fails_naming_file_and_fix(capsys, lock, content, reason):
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    for args in (dict(), dict(state="absent", token="t")):
        result = run(capsys, path=str(lock), **args)
        assert result["failed"] is True, result
        msg = result["msg"]
        assert msg.startswith("the lock file %s is not an entropy.cluster run lock (" % lock), msg
        assert reason in msg and "remove it (rm %s" % lock in msg, msg
    assert lock.read_bytes() == content
    # the fix the message names: state=absent without a token removes it
    removed = run(capsys, path=str(lock), state="absent")
    assert removed["changed"] is True and not lock.exists()


def test_directory_at_lock_path_fails(capsys, lock):
    lock.mkdir(parents=True)
    for args in (dict(), dict(state="absent")):
        result = run(capsys, path=str(lock), **args)
        assert result["failed"] is True and "it is a directory" in result["msg"], result
    assert lock.is_dir()


def test_ttl_must_be_positive(capsys, lock):
    result = run(capsys, path=str(lock), ttl=0)
    assert result["failed"] is True and "ttl must be at least 1" in result["msg"]
    assert not lock.exists()


def contend(path: str, idx: int, barrier: threading.Barrier, wins: list[int]) -> None:
    record = _run_lock.new_record("thread %d" % idx, "token-%d" % idx, os.getpid(), None)
    barrier.wait()
    if _run_lock.acquire(path, record):
        wins.append(idx)


def test_acquire_helper_race_between_threads(tmp_path):
    """acquire() from 8 threads released at once: exactly one creates the file, and it holds its record."""
    path = str(tmp_path / "race.lock")
    for round_no in range(20):
        barrier = threading.Barrier(8)
        wins = []

        threads = [threading.Thread(target=contend, args=(path, idx, barrier, wins)) for idx in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1, (round_no, wins)
        assert json.loads(open(path).read())["token"] == "token-%d" % wins[0]
        os.unlink(path)


RACER = textwrap.dedent("""
    import runpy, sys, time
    import ansible.module_utils.basic  # import before the start signal, so all processes start together
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    sys.argv = [sys.argv[0], sys.argv[1]]
    entered = time.time()
    try:
        runpy.run_path(%r, run_name="__main__")
    finally:  # the module exits with SystemExit: say when this racer was inside it
        sys.stderr.write("racer window %%r %%r\\n" %% (entered, time.time()))
""") % MODULE_FILE


def race_module(args_list: list[dict]) -> list[tuple[int, dict]]:
    """Run the module file in one process per args, all released at the same instant; [(rc, result)].
    Fails unless at least half of the processes were inside the module at one same moment (else no race was tested)."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    start = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, json.dumps({"ANSIBLE_MODULE_ARGS": args}), repr(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        for args in args_list
    ]
    results, windows = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        text = out.decode()
        try:
            results.append((proc.returncode, json.loads(text[text.index("{"):])))
        except ValueError:
            raise AssertionError("no JSON from a racer (rc %s): %r %r" % (proc.returncode, out, err)) from None
        entered, left = re.search(r"racer window (\S+) (\S+)", err.decode()).groups()
        windows.append((float(entered), float(left)))
    # The most racers inside the module at one moment (a sweep over entries and exits).
    events = sorted([(entered, 1) for entered, _left in windows] + [(left, -1) for _entered, left in windows])
    inside = most_inside = 0
    for _moment, step in events:
        inside += step
        most_inside = max(most_inside, inside)
    assert most_inside >= len(windows) // 2, "only %d racers were in the module at once: no real race was tested: %s" % (most_inside, windows)
    return results


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_module_race_between_processes(tmp_path, stale):
    """8 ansible module processes take the same lock at once (free, or stale): exactly one gets it."""
    lock = tmp_path / "cluster.lock"
    if stale:
        write_lock(lock, age=3600, owner="dead run")
    results = race_module([dict(path=str(lock), owner="racer %d" % idx, ttl=600) for idx in range(8)])
    winners = [result for rc, result in results if rc == 0]
    losers = [result for rc, result in results if rc != 0]
    assert len(winners) == 1, results
    assert winners[0]["changed"] is True and winners[0]["stale_taken_over"] is stale
    for result in losers:
        assert result["failed"] is True and result["msg"].startswith("another entropy.cluster run holds"), result
        assert result["held_by"]["owner"] == winners[0]["owner"], result
    record = on_disk(lock)
    assert record["owner"] == winners[0]["owner"] and record["token"] == winners[0]["token"]


def test_force_breaks_a_lock_held_by_a_live_run(capsys, lock):
    first = run(capsys, path=str(lock), owner="cron on ctl01")
    refused = run(capsys, path=str(lock), owner="operator")
    assert refused["failed"] is True
    forced = run(capsys, path=str(lock), owner="operator", force=True)
    assert forced["changed"] is True and not forced.get("failed"), forced
    assert forced["stale_taken_over"] is True and forced["stale_reason"] == "it was broken with force=true"
    assert forced["previous_holder"]["owner"] == "cron on ctl01"
    assert on_disk(lock)["token"] == forced["token"] != first["token"]


@pytest.mark.parametrize(("args", "missing"), [({"backend": "file"}, "path"), ({"backend": "cluster"}, "uris")])
def test_each_backend_names_what_it_needs(capsys, args, missing):
    result = run(capsys, **args)
    assert result["failed"] is True and missing in result["msg"], result


def test_the_cluster_backend_without_any_answering_hypervisor_fails_naming_the_pool(capsys):
    result = run(capsys, backend="cluster", uris=["qemu+tcp://127.0.0.9:1/system"], pool="entropy-test")
    assert result["failed"] is True and result["error_kind"] == "unreachable", result
    assert "storage pool 'entropy-test'" in result["msg"] and "127.0.0.9:1" in result["msg"], result
    assert "Traceback" not in result["msg"]
