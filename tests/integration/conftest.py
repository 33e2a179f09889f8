# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the integration tests: the real libvirt lab (tools/lab.py) and ansible-playbook.

The lab is the one in $ENTROPY_LAB_DIR (default /var/tmp/entropy-lab); `bash tools/run.sh
integration` brings it up first. Tests that move VMs leave them where they found them or ask
for ``lab_reset``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
LAB_DIR = os.path.abspath(os.environ.get("ENTROPY_LAB_DIR") or "/var/tmp/entropy-lab")


def _lab_of_this_worker() -> None:
    """Under pytest-xdist (`run.sh integration` runs two workers), each worker after the first gets a lab of its
    own: $ENTROPY_LAB_DIR-gwN on its own loopback /24, so two tests never share a hypervisor or a VM. Set in the
    environment too, so tools/lab.py, ansible-playbook and every command a test runs see the same lab."""
    global LAB_DIR  # pylint: disable=global-statement
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if number:
        octets = (os.environ.get("ENTROPY_LAB_SUBNET") or "127.0.0").split(".")
        LAB_DIR = "%s-%s" % (LAB_DIR, worker)
        os.environ["ENTROPY_LAB_SUBNET"] = "%s.%s.%d" % (octets[0], octets[1], (int(octets[2]) + 50 * number) % 250)
    os.environ["ENTROPY_LAB_DIR"] = LAB_DIR


_lab_of_this_worker()
PLAYBOOKS = os.path.join(os.path.dirname(__file__), "playbooks")

libvirt = pytest.importorskip("libvirt")


def _lab_tool():
    """tools/lab.py as a module (its boot sectors and domain XML), loaded by path: it is no package."""
    spec = importlib.util.spec_from_file_location("entropy_lab_tool", os.path.join(ROOT, "tools", "lab.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAB_TOOL = _lab_tool()
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def lab_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "lab.py"), *args], capture_output=True, text=True, check=False,
                          env=dict(os.environ, ENTROPY_LAB_DIR=LAB_DIR))


class Lab:
    """The running lab as the tests see it: hosts, VMs, and where each VM runs right now."""

    def __init__(self, state: dict) -> None:
        self.state = state
        self.dir = state["dir"]
        self.hosts = {h["name"]: h for h in state["hosts"]}
        self.vms = {v["name"]: v for v in state["vms"]}
        self.inventory = os.path.join(self.dir, "lab.libvirt_cluster.yml")
        self.static_inventory = os.path.join(self.dir, "lab.ini")

    def uri(self, host: str) -> str:
        return self.hosts[host]["uri"]

    def connect(self, host: str):
        return libvirt.open(self.uri(host))

    def placement(self) -> dict[str, list[tuple[str, str]]]:
        """vm name -> [(host, state)] for every lab host where the VM is defined."""
        seen: dict[str, list[tuple[str, str]]] = {}
        for name in self.hosts:
            conn = self.connect(name)
            try:
                for dom in conn.listAllDomains():
                    state = {1: "running", 3: "paused", 5: "shutoff"}.get(dom.state()[0], str(dom.state()[0]))
                    seen.setdefault(dom.name(), []).append((name, state))
            finally:
                conn.close()
        return seen

    def stopped_vms(self) -> tuple[str, ...]:
        """VMs shut off (or saved) wherever they are defined."""
        return tuple(vm for vm, where in self.placement().items() if not any(s in ("running", "paused") for _h, s in where))

    def running_on(self, vm: str) -> list[str]:
        """Hosts where ``vm`` is active (running or paused): the invariant is exactly one."""
        return [h for h, s in self.placement().get(vm, []) if s in ("running", "paused")]

    def vm_problems(self, extra: tuple[str, ...] = (), stopped: tuple[str, ...] = ()) -> list[str]:
        """Every way the lab breaks "never lose a VM, never run two", judged against the FULL set of lab
        VMs (plus ``extra``, VMs a test added): a VM defined on no host is lost, one shut off has stopped
        running (unless named in ``stopped``: a test shut it off on purpose), one defined on several hosts
        runs twice. VMs outside that set (a test's own, unnamed) are judged only for duplicates."""
        placement = self.placement()
        problems = []
        for vm in sorted(set(self.vms) | set(extra)):
            where = placement.get(vm, [])
            if not where:
                problems.append("VM %s is lost: defined on no lab host" % vm)
            elif vm not in stopped and not any(s in ("running", "paused") for _h, s in where):
                problems.append("VM %s stopped running: %s" % (vm, where))
        for vm, where in sorted(placement.items()):
            if len(where) > 1:
                problems.append("VM %s defined on several hosts: %s" % (vm, where))
        return problems

    def assert_each_vm_once(self, extra: tuple[str, ...] = (), stopped: tuple[str, ...] = ()) -> None:
        """Every lab VM (and each of ``extra``) is defined on exactly one host and active there (or shut
        off, for the VMs named in ``stopped``)."""
        problems = self.vm_problems(extra, stopped)
        assert not problems, "; ".join(problems)

    def remove_vm(self, name: str, timeout: float = 60) -> None:
        """Destroy and undefine a VM a test added, on every lab host that answers (transient copies go with the
        destroy; managed save, snapshot and checkpoint metadata with the undefine). Retried while libvirt refuses
        (a migration job still ending), then an error: a VM left behind would enter every later test's model."""
        deadline = time.monotonic() + timeout
        while True:
            refused = []
            for host in self.hosts:
                try:
                    conn = self.connect(host)
                except libvirt.libvirtError:
                    continue
                try:
                    LAB_TOOL.remove_domain(conn, name)
                except libvirt.libvirtError as exc:
                    refused.append("%s: %s" % (host, exc))
                finally:
                    conn.close()
            if not refused:
                return
            if time.monotonic() > deadline:
                raise AssertionError("test VM %s could not be removed: %s" % (name, "; ".join(refused)))
            time.sleep(1)

    def held_locks(self, lock_file=None) -> list[str]:
        """The run locks held now: records in the lab's cluster store (what the lab's playbook runs take) and
        ``lock_file`` if it exists (the file backend)."""
        store = os.path.join(self.dir, "store")
        held = sorted(name for name in os.listdir(store) if name.startswith("entropy.lock.")) if os.path.isdir(store) else []
        return held + ([str(lock_file)] if lock_file is not None and os.path.exists(lock_file) else [])

    def leave_shut_off_copy(self, vm: str, persist: bool = True) -> tuple[str, str]:
        """Live-migrate ``vm`` to another host keeping its source definition (what a source daemon killed in a
        migration's last phase leaves): (source, destination). With ``persist=False`` the destination copy is transient."""
        source = self.running_on(vm)[0]
        destination = next(h for h in sorted(self.hosts) if h != source)
        src, dst = self.connect(source), self.connect(destination)
        try:
            flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_UNSAFE | (libvirt.VIR_MIGRATE_PERSIST_DEST if persist else 0)
            src.lookupByName(vm).migrate3(dst, {}, flags)
        finally:
            src.close()
            dst.close()
        assert sorted(self.placement()[vm]) == sorted([(source, "shutoff"), (destination, "running")])
        return source, destination

    def add_vm(self, name: str, host: str, sector: bytes, disk: str | None = None) -> str:
        """Define and start a test's own 64 MiB VM on ``host`` that boots ``sector`` (a tools/lab.py boot
        sector) from a new disk, by default in the lab's shared image directory; returns the disk's path
        as the hypervisor sees it. Remove it with remove_vm."""
        disk = disk or os.path.join(self.dir, "images", name + ".qcow2")
        LAB_TOOL.write_boot_disk(self.host_path(host, disk), sector)
        conn = self.connect(host)
        try:
            conn.defineXML(LAB_TOOL.domain_xml({"name": name, "memory_mib": LAB_TOOL.VM_MEMORY_MIB, "disk": disk})).create()
        finally:
            conn.close()
        return disk

    def host_path(self, host: str, path: str) -> str:
        """Where a path inside ``host``'s namespace is on this machine: its own /var/lib/libvirt (and the
        other bind mounts of tools/lab.py) live in the host's directory; the rest is shared."""
        if path.startswith("/var/lib/libvirt/"):
            return os.path.join(self.hosts[host]["dir"], path.lstrip("/"))
        return path

    def host_uuid(self, host: str) -> str:
        conn = self.connect(host)
        try:
            return ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
        finally:
            conn.close()


class OneCopyWatch(threading.Thread):
    """"Every VM runs on at most one host at every step", watched while a test moves VMs: a poller thread reads every
    lab host's domain list (about every ``interval`` s, a few tens of ms per sweep) from ``with watch:`` to the end of the
    block and records in ``problems`` each VM of ``vms`` seen running on two hosts, or active (running or paused) on no
    host while it has no image in ``save_dir`` (outside a save: the image file exists from the start of a save until a
    restore removes it). The hosts are read one after the other, so a VM seen running on two hosts is confirmed by reading
    again the host read first (a migration that ended between the two reads is not a second copy). ``samples`` keeps
    (monotonic time, {vm: [(host, state)]}) per sweep, for the tests' timings."""

    def __init__(self, lab: Lab, vms, save_dir: str | None = None, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.lab, self.vms, self.save_dir, self.interval = lab, sorted(vms), save_dir, interval
        self.stop = threading.Event()
        self.samples: list[tuple[float, dict[str, list[tuple[str, str]]]]] = []
        self.problems: list[str] = []
        self.started = time.monotonic()

    def __enter__(self) -> "OneCopyWatch":
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.join()

    def _images(self) -> set[str]:
        if not self.save_dir:
            return set()
        return {vm for vm in self.vms if os.path.exists(os.path.join(self.save_dir, vm + ".save"))}

    @staticmethod
    def _states(conn) -> dict[str, str] | None:
        """vm -> state word on one host; None when the host could not be read whole (a domain vanished mid-read)."""
        try:
            return {dom.name(): {1: "running", 3: "paused", 5: "shutoff"}.get(dom.state()[0], str(dom.state()[0]))
                    for dom in conn.listAllDomains()}
        except libvirt.libvirtError:
            return None

    def _note(self, problem: str) -> None:
        self.problems.append("+%.1f s: %s" % (time.monotonic() - self.started, problem))

    def run(self) -> None:
        conns = {host: self.lab.connect(host) for host in sorted(self.lab.hosts)}
        try:
            while not self.stop.is_set():
                self._sweep(conns)
                self.stop.wait(self.interval)
            self._sweep(conns)   # the state the block ended in
        finally:
            for conn in conns.values():
                conn.close()

    def _sweep(self, conns: dict) -> None:
        images_before = self._images()
        now = time.monotonic()
        per_host = {host: self._states(conn) for host, conn in conns.items()}
        images_after = self._images()
        placement: dict[str, list[tuple[str, str]]] = {}
        for host, states in per_host.items():
            for vm, state in (states or {}).items():
                placement.setdefault(vm, []).append((host, state))
        self.samples.append((now, placement))
        whole = all(states is not None for states in per_host.values())
        for vm in self.vms:
            where = placement.get(vm, [])
            running = [h for h, s in where if s == "running"]
            if len(running) > 1:
                again = [h for h in running[:-1] if (self._states(conns[h]) or {}).get(vm) == "running"]
                if again:
                    self._note("VM %s runs on %s at once" % (vm, " and ".join(running)))
            if whole and not any(s in ("running", "paused") for _h, s in where) and vm not in images_before | images_after:
                self._note("VM %s is active on no host and has no saved image: %s" % (vm, where or "defined nowhere"))

    def first_seen(self, vm: str, test) -> float | None:
        """When ``test(where)`` first held for ``vm`` (its [(host, state)] in a sweep), None if never."""
        return next((t for t, placement in self.samples if test(placement.get(vm, []))), None)

    def check(self) -> None:
        assert len(self.samples) >= 2, "the watch read the lab %d times" % len(self.samples)
        assert not self.problems, "; ".join(self.problems[:10])


@pytest.fixture(scope="session")
def lab() -> Lab:
    result = lab_cmd("up")
    if result.returncode != 0:
        pytest.fail("the lab did not come up: %s%s" % (result.stdout, result.stderr))
    result = lab_cmd("reset")  # a lab kept from an earlier run may hold what its tests left
    if result.returncode != 0:
        pytest.fail("lab reset failed: %s%s" % (result.stdout, result.stderr))
    with open(os.path.join(LAB_DIR, "lab.json"), encoding="utf-8") as handle:
        return Lab(json.load(handle))


# The heaviest test files first (their call times in CI, 2026-12-03: 100-300 s each). pytest-xdist with --dist loadfile
# hands whole files to its workers in collection order, so a heavy file collected last keeps one worker busy while the
# other has nothing left; the other files keep their order.
HEAVY_FIRST = ("test_jobs.py", "test_job_guest.py", "test_recover.py", "test_consolidate.py", "test_vm_image.py", "test_context_switch.py",
               "test_awx_workflow.py", "test_cluster_store.py", "test_migrate_paths.py", "test_docs_commands.py", "test_warm_clone.py")


def pytest_collection_modifyitems(items):
    rank = {name: n for n, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))   # sort is stable


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_vms_may_stop: the test means to leave a lab VM shut off or missing "
                                       "(the after-test check of the lab is skipped)")


@pytest.fixture(autouse=True)
def lab_vms_intact_after(request):
    """After every test that used the lab: each lab VM still runs (or is paused) on exactly one host,
    so a test that loses or duplicates a VM fails even when its own assertions missed it."""
    yield
    if "lab" not in request.fixturenames or request.node.get_closest_marker("lab_vms_may_stop"):
        return
    problems = request.getfixturevalue("lab").vm_problems()
    if problems:
        pytest.fail("the test left the lab broken: " + "; ".join(problems), pytrace=False)


@pytest.fixture()
def lab_reset(lab: Lab) -> Lab:
    """The lab with every VM fresh on its home host (no snapshots, running)."""
    result = lab_cmd("reset")
    if result.returncode != 0:
        pytest.fail("lab reset failed: %s%s" % (result.stdout, result.stderr))
    return lab


def run_playbook(playbook: str, inventory: str | None = None, extra_vars: dict | None = None, check: bool = False,
                 extra_args: list[str] | None = None, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ansible-playbook with the collection from this checkout (in ``cwd``, default the checkout);
    returns the completed process (stdout + stderr in .stdout) so tests can assert on rc and output."""
    # "entropy.cluster.consolidate" (a collection playbook), an absolute path, or a file in tests/integration/playbooks
    path = playbook if os.path.isabs(playbook) or playbook.startswith("entropy.cluster.") else os.path.join(PLAYBOOKS, playbook)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), path]
    if inventory:
        cmd += ["-i", inventory]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd += ["--check", "--diff"]
    cmd += extra_args or []
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false",
                   ENTROPY_LAB_DIR=LAB_DIR, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   PYTHONFAULTHANDLER="1")  # a crash of ansible-playbook prints where each thread was
    run_env.update(env or {})
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, env=run_env, cwd=cwd or ROOT)


@pytest.fixture()
def playbook():
    return run_playbook
