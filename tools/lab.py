# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local lab: several real libvirtd "hypervisors" on one machine, with tiny TCG VMs.

Each hypervisor is a real libvirtd in its own mount + UTS namespace, with private
/etc/libvirt, /run/libvirt, /var/lib|cache|log/libvirt, its own host UUID, hostname,
loopback address (127.0.S.2, .3, ...) and migration ports, so live migration between
them is real. Every daemon of a lab runs inside the lab's own network namespace (named after the
lab directory, `ip netns list`), which holds the bridge every lab VM NIC sits on and the servers
the guests need (dnsmasq for DHCP/DNS, its pidfile and leases in <lab>/net/). The controller
reaches each daemon through its unix socket (the `uri` of lab.json and of the inventories);
migrations between the daemons use their loopback addresses inside the namespace. Nothing is added
to the machine's own network namespace. VM disks sit in one lab directory every host sees (shared storage
that libvirt cannot recognise as shared: migrations pass VIR_MIGRATE_UNSAFE, which the
generated group_vars set). A libvirt dir pool "entropy-cluster" over <lab>/store, defined on every host,
is the cluster store (run lock, maintenance marks): the generated inventory and group_vars name it.

  lab.py up [--hosts N] [--vms-per-host K] [--subnet 127.0.S]   create or repair, idempotent
  lab.py reset                                                   VMs back to their unbalanced start
  lab.py status [--json]
  lab.py guest [--host hv1] [--remove]                          a small Linux VM with traffic and balloon stats
  lab.py down                                                    destroy VMs, stop our daemons, remove all
  lab.py monitoring up|down|status [--json]                      Prometheus + libvirt exporters on 127.0.S.1 (lab_monitoring.py)

The lab directory is $ENTROPY_LAB_DIR (default /var/tmp/entropy-lab). It holds lab.json
(the state, read by tests), lab.libvirt_cluster.yml (inventory for entropy.cluster.libvirt_cluster),
lab.ini (a static inventory of the hypervisors) and group_vars/.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

LAB_VERSION = 2  # 2: the lab's network namespace, bridge and dnsmasq; unix-socket URIs (1: SLIRP NICs, TCP URIs)
BRIDGE = "entropy0"
# The guests' subnet, inside the lab's network namespace only (every lab has its own namespace).
GUEST_NET = "10.77.0"
DEFAULT_DIR = "/var/tmp/entropy-lab"
VM_MEMORY_MIB = 64
# The lab's simulated host size: what the solver sees as capacity (every lab daemon
# really reports this whole machine). Room for 5 tiny VMs, 1 vCPU-worth of CPU each.
HOST_CPU = 2
HOST_MEMORY_MIB = 320
# CPU demand given to some VMs (fraction of a core, approximate: TCG speed varies). Small on purpose: the lab's VMs
# burn it for as long as the lab is up (at 0.15, the 6 loaded VMs of the test suite's two labs took 0.6 of the 2 cores).
LOADED_VM_SHARE = 0.08
SPIN_PER_TICK_AT_FULL = 9_000_000  # busy-loop iterations per 55 ms timer tick for ~100 % of a core (measured, TCG)
DIRTY_PAGES_PER_TICK = 128  # 512 KiB x 18.2 ticks/s: about 9 MiB/s of dirty memory on loaded VMs
# Physical address of the 32-bit tick counter every lab VM keeps (boot_sector): it grows by 18.2 per second
# from boot and does not wrap for years, so a test can tell a VM that kept its memory (save/restore, migration)
# from one that booted again.
TICK_COUNTER_ADDRESS = 0x500
PASSWD_EXTRA = ["libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin"]
GROUP_EXTRA = ["kvm:x:64054:", "libvirt-qemu:x:64055:", "libvirt:x:64056:"]


class LabError(Exception):
    """A problem the operator can fix; printed without a traceback."""


# --------------------------------------------------------------------------- paths and state

def lab_dir() -> str:
    return os.path.abspath(os.environ.get("ENTROPY_LAB_DIR") or DEFAULT_DIR)


def state_path(base: str) -> str:
    return os.path.join(base, "lab.json")


def load_state(base: str) -> dict | None:
    try:
        with open(state_path(base), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def save_state(base: str, state: dict) -> None:
    tmp = state_path(base) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, state_path(base))


def new_state(base: str, hosts: int, vms_per_host: int, subnet: str) -> dict:
    octets = subnet.split(".")
    if len(octets) != 3 or octets[0] != "127" or not all(o.isdigit() and 0 <= int(o) <= 255 for o in octets):
        raise LabError("--subnet must be three octets of the loopback range, like 127.0.0 (got %r)" % subnet)
    if not 1 <= hosts <= 8:
        raise LabError("--hosts must be between 1 and 8 (got %d)" % hosts)
    if not 0 <= vms_per_host <= 5:
        raise LabError("--vms-per-host must be between 0 and 5 (got %d)" % vms_per_host)
    # Migration ports: a distinct block of 10 per host and per lab, so two labs never collide.
    port_base = 49152 + (int(octets[1]) * 256 + int(octets[2])) % 160 * 80
    host_list = []
    for i in range(hosts):
        name = "hv%d" % (i + 1)
        address = "%s.%d" % (subnet, i + 2)
        hdir = os.path.join(base, "hosts", name)
        host_list.append({
            "name": name,
            "address": address,
            # the daemon listens on its loopback address inside the lab's network namespace only:
            # the controller, in the machine's namespace, uses the unix socket
            "uri": "qemu+unix:///system?socket=%s/run/libvirt/libvirt-sock" % hdir,
            "dir": hdir,
            "netns": netns_name(base),
            "host_uuid": str(uuid.uuid4()),
            "migration_ports": [port_base + i * 10, port_base + i * 10 + 9],
            "cpu": HOST_CPU,
            "memory_mib": HOST_MEMORY_MIB,
            "pid": None,
        })
    vm_list = []
    n = 0
    for host in host_list:
        for _slot in range(vms_per_host):
            n += 1
            # Every other VM gets some CPU load, so measured demand is not all zero.
            vm_list.append({"name": "vm%d" % n, "home": host["name"], "memory_mib": VM_MEMORY_MIB,
                            "load": LOADED_VM_SHARE if n % 2 == 1 else 0.0,
                            "disk": os.path.join(base, "images", "vm%d.qcow2" % n)})
    return {"version": LAB_VERSION, "dir": base, "subnet": subnet, "hosts": host_list, "vms": vm_list,
            "network": {"netns": netns_name(base), "bridge": BRIDGE, "address": GUEST_NET + ".1/24",
                        "dhcp_range": [GUEST_NET + ".10", GUEST_NET + ".%d" % (JOB_STATIC_FIRST - 1)]}}


# --------------------------------------------------------------------------- the lab's network namespace

def netns_name(base: str) -> str:
    """The lab's network namespace: named after the lab directory (several labs coexist), at most 40 characters."""
    import hashlib  # pylint: disable=import-outside-toplevel

    tail = "".join(c if c.isalnum() or c in "-_" else "-" for c in os.path.basename(base.rstrip("/")))[:24]
    return "%s-%s" % (tail or "entropy-lab", hashlib.sha256(base.encode()).hexdigest()[:8])


def netns_path(name: str) -> str:
    return os.path.join("/run/netns", name)


def net_dir(state: dict) -> str:
    return os.path.join(state["dir"], "net")


def in_netns(state: dict, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command inside the lab's network namespace (never in the machine's own)."""
    return subprocess.run(["nsenter", "--net=%s" % netns_path(state["network"]["netns"]), "--", *argv],
                          capture_output=True, text=True, check=check)


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pid_in_netns(pid: int, state: dict) -> bool:
    own = _ns_inode(netns_path(state["network"]["netns"]))
    return own is not None and _ns_inode("/proc/%d/ns/net" % pid) == own


def dnsmasq_pid(state: dict) -> int | None:
    """The PID of the lab's dnsmasq from its pidfile, when that process is a dnsmasq inside the lab's namespace."""
    try:
        with open(os.path.join(net_dir(state), "dnsmasq.pid"), encoding="utf-8") as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            program = os.path.basename(handle.read().split(b"\0")[0].decode())
    except (OSError, ValueError):
        return None
    return pid if program == "dnsmasq" and process_running(pid) and pid_in_netns(pid, state) else None


def ensure_network(state: dict) -> list[str]:
    """The lab's network namespace with loopback up (the daemons' addresses), the bridge and dnsmasq;
    what was missing is created (idempotent). Returns what it created."""
    net = state["network"]
    created = []
    if not os.path.exists(netns_path(net["netns"])):
        subprocess.run(["ip", "netns", "add", net["netns"]], capture_output=True, text=True, check=True)
        created.append("namespace %s" % net["netns"])
    in_netns(state, "ip", "link", "set", "lo", "up")
    if in_netns(state, "ip", "link", "show", net["bridge"], check=False).returncode != 0:
        in_netns(state, "ip", "link", "add", net["bridge"], "type", "bridge", "stp_state", "0", "forward_delay", "0")
        created.append("bridge %s" % net["bridge"])
    if net["address"] not in in_netns(state, "ip", "-o", "addr", "show", "dev", net["bridge"]).stdout:
        in_netns(state, "ip", "addr", "add", net["address"], "dev", net["bridge"])
    in_netns(state, "ip", "link", "set", net["bridge"], "up")
    if dnsmasq_pid(state) is None:
        start_dnsmasq(state)
        created.append("dnsmasq")
    if nfs_pid(state) is None:
        start_nfs(state)
        created.append("NFS server")
    return created


def start_dnsmasq(state: dict) -> None:
    net = state["network"]
    ndir = net_dir(state)
    os.makedirs(ndir, exist_ok=True)
    pidfile = os.path.join(ndir, "dnsmasq.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    address = net["address"].split("/")[0]
    in_netns(state, shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "/usr/sbin/dnsmasq",
             "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
             "--interface=%s" % net["bridge"], "--except-interface=lo", "--listen-address=%s" % address,
             "--dhcp-range=%s,%s,255.255.255.0,1h" % tuple(net["dhcp_range"]), "--dhcp-authoritative",
             "--domain=lab", "--local=/lab/", "--user=root", "--group=root",
             "--pid-file=%s" % pidfile, "--dhcp-leasefile=%s" % os.path.join(ndir, "dnsmasq.leases"),
             "--log-facility=%s" % os.path.join(ndir, "dnsmasq.log"), "--log-dhcp")
    for _tick in range(50):
        if dnsmasq_pid(state):
            return
        time.sleep(0.1)
    raise LabError("dnsmasq did not start in the lab's namespace %s; see %s/dnsmasq.log" % (net["netns"], ndir))


# --------------------------------------------------------------------------- the lab's NFS server

# NFS-Ganesha (a user-space NFS server) from Debian's packages, downloaded and extracted, never installed: its
# package would pull in rpcbind and dbus services that listen on the machine's own network. Its libraries
# (libntirpc4.3, liburcu8, libwbclient0, libnfsidmap1: libraries only, no service) are in tests/bindep.txt.
NFS_PACKAGES = ("nfs-ganesha", "nfs-ganesha-vfs")
NFS_PORT = 2049
# Files written over NFS belong to this user on the machine, whoever wrote them in the guest (all_squash).
NFS_ANON_ID = 65534


def shares_dir(state: dict) -> str:
    """The directory the lab's NFS server exports (to the lab bridge's subnet only): job shares are directories in it."""
    return os.path.join(state["dir"], "shares")


def nfs_address(state: dict) -> str:
    return state["network"]["address"].split("/")[0]


# The lab's address plan: the bridge (and NFS server) .1, DHCP leases .10-.199, static job addresses .200-.254 (a
# warm clone told its address in its seed does not wait for a lease).
JOB_STATIC_FIRST, JOB_STATIC_LAST = 200, 254


def static_address(state: dict, index: int) -> str:
    """The static address (with its prefix) of job VM number ``index`` (0, 1, ...) on the lab's guest network."""
    net = state["network"]
    if int(net["dhcp_range"][1].rsplit(".", 1)[1]) >= JOB_STATIC_FIRST:
        raise LabError("this lab's DHCP range reaches .%d, where static job addresses start: bring it down and up again" % JOB_STATIC_FIRST)
    if not 0 <= index <= JOB_STATIC_LAST - JOB_STATIC_FIRST:
        raise LabError("static job address %d is outside the lab's plan (0-%d)" % (index, JOB_STATIC_LAST - JOB_STATIC_FIRST))
    address, prefix = net["address"].split("/")
    return "%s.%d/%s" % (address.rsplit(".", 1)[0], JOB_STATIC_FIRST + index, prefix)


def build_nfs_server(base: str) -> str:
    """NFS-Ganesha's files extracted from its Debian packages into <lab>/nfs/ganesha (cached); returns that root."""
    root = os.path.join(base, "nfs", "ganesha")
    if os.path.exists(os.path.join(root, "usr", "bin", "ganesha.nfsd")):
        return root
    work = root + ".build"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    _apt_download(list(NFS_PACKAGES), work)
    for deb in os.listdir(work):
        if deb.endswith(".deb"):
            subprocess.run(["dpkg-deb", "-x", os.path.join(work, deb), os.path.join(work, "x")], check=True)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(os.path.join(work, "x"), root)
    shutil.rmtree(work, ignore_errors=True)
    return root


def nfs_config(state: dict, root: str) -> str:
    """Ganesha's configuration: NFS 4.1+ over TCP on the bridge address only, one export (the shares directory)
    read-write to the lab bridge's subnet and to nothing else, every client user mapped to NFS_ANON_ID."""
    ndir = os.path.join(state["dir"], "nfs")
    subnet = state["network"]["address"].rsplit(".", 1)[0] + ".0/" + state["network"]["address"].split("/")[1]
    return "\n".join([
        "NFS_CORE_PARAM {",
        "  Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false;",
        "  Bind_addr = %s; NFS_Port = %d;" % (nfs_address(state), NFS_PORT),
        '  Plugins_Dir = "%s";' % os.path.join(root, "usr", "lib", "x86_64-linux-gnu", "ganesha"),
        "}",
        'NFSV4 { Graceless = true; Lease_Lifetime = 10; Allow_Numeric_Owners = true; Only_Numeric_Owners = true;',
        '        RecoveryBackend = fs; RecoveryRoot = "%s"; }' % os.path.join(ndir, "recovery"),
        "NFS_KRB5 { Active_krb5 = false; }",
        "EXPORT {",
        '  Export_Id = 1; Path = "%s"; Pseudo = "%s";' % (shares_dir(state), shares_dir(state)),
        "  Access_Type = None; Squash = All_Squash; Anonymous_Uid = %d; Anonymous_Gid = %d;" % (NFS_ANON_ID, NFS_ANON_ID),
        "  Protocols = 4; Transports = TCP; SecType = sys;",
        "  CLIENT { Clients = %s; Access_Type = RW; }" % subnet,
        "  FSAL { Name = VFS; }",
        "}", ""])


def nfs_pid(state: dict) -> int | None:
    """The PID of the lab's NFS server from its pidfile, when that process is a ganesha.nfsd inside the lab's namespace."""
    pid = _pidfile_pid(os.path.join(state["dir"], "nfs", "ganesha.pid"))
    if pid is None or _exe_name(pid) != "ganesha.nfsd" or not process_running(pid) or not pid_in_netns(pid, state):
        return None
    return pid


def start_nfs(state: dict) -> None:
    """Start the lab's NFS server inside the lab's network namespace, listening on the bridge address only."""
    root = build_nfs_server(state["dir"])
    ndir = os.path.join(state["dir"], "nfs")
    os.makedirs(os.path.join(ndir, "recovery"), exist_ok=True)
    os.makedirs(shares_dir(state), exist_ok=True)
    os.chown(shares_dir(state), NFS_ANON_ID, NFS_ANON_ID)
    conf = os.path.join(ndir, "ganesha.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(nfs_config(state, root))
    pidfile, log = os.path.join(ndir, "ganesha.pid"), os.path.join(ndir, "ganesha.log")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    out = open(os.path.join(ndir, "ganesha.stdout.log"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        ["nsenter", "--net=%s" % netns_path(state["network"]["netns"]), "--",
         os.path.join(root, "usr", "bin", "ganesha.nfsd"), "-F", "-f", conf, "-L", log, "-p", pidfile, "-N", "NIV_EVENT"],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True,
        env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "usr", "lib", "ganesha")))
    out.close()
    address = "%s:%d" % (nfs_address(state), NFS_PORT)
    for _tick in range(100):
        if proc.poll() is not None:
            break
        listening = in_netns(state, "ss", "-Hltn", "src", nfs_address(state), check=False).stdout
        if nfs_address(state) in listening and ":%d " % NFS_PORT in listening + " " and nfs_pid(state):
            return
        time.sleep(0.1)
    raise LabError("the lab's NFS server (ganesha.nfsd) did not start listening on %s in the namespace %s; see %s "
                   "(its libraries: tests/bindep.txt)" % (address, state["network"]["netns"], log))


def stop_nfs(state: dict) -> None:
    pid = nfs_pid(state)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _tick in range(100):
            if not process_running(pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def remove_network(state: dict) -> None:
    """Stop the lab's NFS server and dnsmasq (by their pidfiles) and delete the lab's network namespace (its bridge
    and taps go with it)."""
    stop_nfs(state)
    pid = dnsmasq_pid(state)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _tick in range(50):
            if not process_running(pid):
                break
            time.sleep(0.1)
    name = state["network"]["netns"]
    if os.path.exists(netns_path(name)):
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------- preflight

def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it starts libvirtd in mount namespaces (run: sudo bash tools/run.sh lab-up)")
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [b for b in ("libvirtd", "qemu-system-x86_64", "qemu-img", "unshare", "nsenter", "ip", "dnsmasq") if not shutil.which(b, path=search)]
    if missing:
        raise LabError("missing programs: %s. Install the Debian packages of bindep.txt and tests/bindep.txt (bash tools/run.sh setup)." % ", ".join(missing))
    probe = subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise LabError("unshare --mount --uts is not permitted here (%s). The lab needs a machine or container that allows "
                       "mount and UTS namespaces (e.g. a privileged container)." % probe.stderr.strip())
    try:
        import libvirt  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError as exc:
        raise LabError("the Python module libvirt is missing (%s): run the lab with the project venv (bash tools/run.sh lab-up)" % exc) from None


def libvirtd_path() -> str:
    return shutil.which("libvirtd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "/usr/sbin/libvirtd"


# --------------------------------------------------------------------------- daemons

def write_host_files(host: dict) -> None:
    hdir = host["dir"]
    for sub in ("etc/libvirt/qemu", "run/libvirt", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt"):
        os.makedirs(os.path.join(hdir, sub), exist_ok=True)
    low, high = host["migration_ports"]
    files = {
        "etc/libvirt/libvirtd.conf": "\n".join([
            'listen_tls = 0', 'listen_tcp = 1', 'listen_addr = "%s"' % host["address"],
            'auth_tcp = "none"', 'auth_unix_rw = "none"', 'auth_unix_ro = "none"',
            'host_uuid = "%s"' % host["host_uuid"],
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"', ""]),
        "etc/libvirt/qemu.conf": "\n".join([
            'user = "root"', 'group = "root"', 'dynamic_ownership = 0', 'remember_owner = 0',
            'security_driver = "none"', 'stdio_handler = "file"',
            'migration_address = "%s"' % host["address"], 'migration_host = "%s"' % host["address"],
            'migration_port_min = %d' % low, 'migration_port_max = %d' % high, ""]),
        "etc/hosts": "127.0.0.1 localhost\n%s %s\n" % (host["address"], host["name"]),
    }
    with open("/etc/passwd", encoding="utf-8") as handle:
        passwd = handle.read()
    with open("/etc/group", encoding="utf-8") as handle:
        group = handle.read()
    files["etc/passwd"] = passwd + "".join(line + "\n" for line in PASSWD_EXTRA if line.split(":", maxsplit=1)[0] + ":" not in passwd)
    files["etc/group"] = group + "".join(line + "\n" for line in GROUP_EXTRA if line.split(":", maxsplit=1)[0] + ":" not in group)
    for rel, text in files.items():
        with open(os.path.join(hdir, rel), "w", encoding="utf-8") as handle:
            handle.write(text)


def daemon_alive(host: dict) -> bool:
    pid = host.get("pid")
    if not pid:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except OSError:
        return False
    # Only a libvirtd we started: same PID, libvirtd binary, running in this host's namespace.
    if host.get("netns") and _ns_inode("/proc/%d/ns/net" % pid) != _ns_inode(netns_path(host["netns"])):
        return False  # not in the lab's network namespace (a PID reused, or a namespace made again)
    return bool(cmdline) and os.path.basename(cmdline[0].decode()) == "libvirtd" and _ns_hostname(pid) == host["name"]


def process_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (our own child is not reaped until we exit)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _ns_hostname(pid: int) -> str | None:
    try:
        out = subprocess.run(["nsenter", "-t", str(pid), "--uts", "hostname"], capture_output=True, text=True, check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def start_daemon(host: dict) -> int:
    hdir = host["dir"]
    binds = [("etc/libvirt", "/etc/libvirt"), ("run/libvirt", "/run/libvirt"), ("var/lib/libvirt", "/var/lib/libvirt"),
             ("var/cache/libvirt", "/var/cache/libvirt"), ("var/log/libvirt", "/var/log/libvirt"),
             ("etc/passwd", "/etc/passwd"), ("etc/group", "/etc/group"), ("etc/hosts", "/etc/hosts")]
    lines = ["set -e", "hostname %s" % host["name"]]
    for src, dst in binds:
        if not dst.startswith("/etc/") or dst == "/etc/libvirt":
            lines.append("mkdir -p %s" % dst)
        lines.append("mount --bind %s %s" % (os.path.join(hdir, src), dst))
    # The default pid file /run/libvirtd.pid would be shared by every lab host.
    lines.append("exec %s --listen --pid-file /run/libvirt/libvirtd.pid" % libvirtd_path())
    log = open(os.path.join(hdir, "libvirtd.stdout.log"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        ["nsenter", "--net=%s" % netns_path(host["netns"]), "--",
         "unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(lines)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    log.close()
    return proc.pid  # nsenter, unshare and sh exec in place: this is libvirtd's PID


def wait_ready(host: dict, timeout: float = 90.0) -> None:
    import libvirt  # pylint: disable=import-outside-toplevel

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if host.get("pid") and not process_running(host["pid"]):
            raise LabError("libvirtd of %s exited at start; see %s/libvirtd.stdout.log and var/log/libvirt/libvirtd.log" % (host["name"], host["dir"]))
        try:
            conn = libvirt.open(host["uri"])
            conn.close()
            return
        except libvirt.libvirtError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise LabError("libvirtd of %s did not answer on %s within %ds: %s" % (host["name"], host["uri"], timeout, last))


def seed_capabilities(state: dict, host: dict) -> None:
    # A cold daemon probes QEMU for ~8 s; a copy of another host's cache makes it instant.
    target = os.path.join(host["dir"], "var/cache/libvirt/qemu/capabilities")
    if os.path.isdir(target) and os.listdir(target):
        return
    for other in state["hosts"]:
        source = os.path.join(other["dir"], "var/cache/libvirt/qemu/capabilities")
        if other is not host and os.path.isdir(source) and os.listdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)
            return


def stop_daemon(host: dict) -> None:
    pid = host.get("pid")
    if not daemon_alive(host):
        host["pid"] = None
        return
    os.kill(pid, signal.SIGTERM)
    for _tick in range(150):
        if not process_running(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    host["pid"] = None


# --------------------------------------------------------------------------- VMs

def boot_sector(load: float) -> bytes:
    """A 512-byte MBR that, at every timer tick, counts the tick in a 32-bit counter at physical address 0x500
    (TICK_COUNTER_ADDRESS: 18.2 ticks/s since boot, read by read_tick_counter), spins ``load`` of the tick, dirties
    128 pages of memory when loaded, then halts: a VM with a steady, measurable CPU demand and no operating system.
    (Under QEMU 7.2's TCG a migration sees those 128 pages dirty only once, so it converges even at
    1 MiB/s: dirtier_boot_sector makes a VM that really does not converge.)"""
    spins = max(1, int(load * SPIN_PER_TICK_AT_FULL))
    pages = DIRTY_PAGES_PER_TICK if load > 0 else 0
    code = bytes([0x31, 0xC0, 0x8E, 0xD8])                     # 0: xor ax, ax; mov ds, ax (the counter's segment)
    code += bytes([0xFB])                                      # 4: sti
    top = len(code)
    code += bytes([0x66, 0xFF, 0x06]) + TICK_COUNTER_ADDRESS.to_bytes(2, "little")  # 5: top: inc dword [0x500]
    code += bytes([0x66, 0xB9]) + spins.to_bytes(4, "little")  # mov ecx, spins
    code += bytes([0x66, 0x49, 0x75, 0xFC])                    # spin: dec ecx; jnz spin
    code += bytes([0xB9]) + pages.to_bytes(2, "little")        # mov cx, pages
    code += bytes([0xE3, 0x0F])                                # jcxz done
    code += bytes([0xB8, 0x00, 0x10])                          # mov ax, 0x1000 (64 KiB and up: free memory)
    code += bytes([0x8E, 0xC0])                                # dirty: mov es, ax
    code += bytes([0x26, 0xFE, 0x06, 0x00, 0x00])              # inc byte [es:0]
    code += bytes([0x05, 0x00, 0x01])                          # add ax, 0x100 (next 4 KiB page)
    code += bytes([0xE2, 0xF4])                                # loop dirty
    code += bytes([0xF4, 0xEB, (top - len(code) - 3) & 0xFF])  # done: hlt; jmp top
    return code + bytes(510 - len(code)) + b"\x55\xAA"


def dirtier_boot_sector(dirty_mib: int, first_mib: int = 1) -> bytes:
    """A 512-byte MBR that writes one byte in each 4 KiB page of ``dirty_mib`` MiB (from ``first_mib``
    MiB up) at every timer tick (18.2 per second), then halts: a VM whose memory changes faster than
    a bandwidth-capped migration can send it, so pre-copy does not converge (post-copy or an abort ends
    it; measured at 4 MiB/s for 16 MiB: each pass finds nearly all of it dirty again) while it costs
    about 1.5 % of a core.

    Why the switch to protected mode and back before every pass: it flushes QEMU's TCG TLB. QEMU 7.2
    (before 9.0's "physmem: Fix migration dirty bitmap coherency with TCG memory access") does not
    reset the TLB's not-dirty marks when migration syncs its dirty bitmap, so writes to pages whose
    TLB entries survive are not seen as dirty: the lab's loaded VMs (boot_sector, 128 pages) converge
    even at 1 MiB/s and 1 ms downtime, and without the flush so does this one. The same switch loads
    FS with a flat 4 GiB segment ("unreal mode"), so the loop reaches memory above 1 MiB."""
    base = 0x7C00
    code = bytes([0xFA, 0x31, 0xC0, 0x8E, 0xD8])                       # 0: cli; xor ax,ax; mov ds,ax
    code += bytes([0xE4, 0x92, 0x0C, 0x02, 0xE6, 0x92])                 # 5: in al,0x92; or al,2; out 0x92,al (A20 on)
    lgdt_at = len(code)
    code += bytes([0x0F, 0x01, 0x16, 0x00, 0x00])                       # 11: lgdt [gdtr] (address patched below)
    top = len(code)
    code += bytes([0xFA, 0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0])  # top: cli; mov eax,cr0; or al,1; mov cr0,eax
    code += bytes([0xEB, 0x00])                                         # jmp $+2 (protected mode)
    code += bytes([0xBB, 0x08, 0x00, 0x8E, 0xE3])                       # mov bx,8; mov fs,bx (flat 4 GiB data segment)
    code += bytes([0x24, 0xFE, 0x0F, 0x22, 0xC0])                       # and al,0xfe; mov cr0,eax (real mode, TLB flushed)
    code += bytes([0x31, 0xDB, 0x8E, 0xE3, 0xFB])                       # xor bx,bx; mov fs,bx (limit stays); sti
    code += bytes([0x66, 0xFF, 0x06, 0x00, 0x05])                       # inc dword [0x500]: passes so far
    code += bytes([0x66, 0xBF]) + (first_mib << 20).to_bytes(4, "little")  # mov edi, first byte
    code += bytes([0x66, 0xB9]) + (dirty_mib * 256).to_bytes(4, "little")   # mov ecx, pages
    loop = len(code)
    code += bytes([0x64, 0x67, 0xFE, 0x07])                             # loop: inc byte [fs:edi]
    code += bytes([0x66, 0x81, 0xC7, 0x00, 0x10, 0x00, 0x00])           # add edi, 4096
    code += bytes([0x66, 0x49])                                         # dec ecx
    code += bytes([0x75, (loop - len(code) - 2) & 0xFF])                # jnz loop
    code += bytes([0xF4])                                               # hlt (until the next timer tick)
    code += bytes([0xEB, (top - len(code) - 2) & 0xFF])                 # jmp top
    code += bytes(-len(code) % 8)
    gdt = len(code)
    code += bytes(8) + bytes([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00])  # null; data: base 0, limit 4 GiB, writable
    gdtr = len(code)
    code += (15).to_bytes(2, "little") + (base + gdt).to_bytes(4, "little")
    code = code[:lgdt_at + 3] + (base + gdtr).to_bytes(2, "little") + code[lgdt_at + 5:]
    return code + bytes(510 - len(code)) + b"\x55\xAA"


def rate_dirtier_boot_sector(pages_per_tick: int, first_mib: int = 1, region_mib: int = 62) -> bytes:
    """A 512-byte MBR that first writes one byte in every 4 KiB page of ``region_mib`` MiB (from ``first_mib`` MiB
    up: the whole memory is then in use, as in a real guest, not zero pages QEMU sends as a flag), then at every
    timer tick (18.2 per second) writes ``pages_per_tick`` further pages, cycling through the region: memory
    dirtied at a steady rate of pages_per_tick x 4 KiB x 18.2 per second (0: none), a new page each time, the
    rate a pre-copy migration model assumes. Each pass flushes QEMU's TCG TLB as dirtier_boot_sector explains."""
    base = 0x7C00
    first, end = first_mib << 20, (first_mib + region_mib) << 20
    code = bytes([0xFA, 0x31, 0xC0, 0x8E, 0xD8])                       # 0: cli; xor ax,ax; mov ds,ax
    code += bytes([0xE4, 0x92, 0x0C, 0x02, 0xE6, 0x92])                 # in al,0x92; or al,2; out 0x92,al (A20 on)
    lgdt_at = len(code)
    code += bytes([0x0F, 0x01, 0x16, 0x00, 0x00])                       # lgdt [gdtr] (address patched below)
    code += bytes([0x66, 0xBF]) + first.to_bytes(4, "little")           # mov edi, first byte (the cursor)
    code += bytes([0x66, 0xB9]) + (region_mib * 256).to_bytes(4, "little")  # mov ecx, pages (first pass: all)
    top = len(code)
    code += bytes([0xFA, 0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0])  # top: cli; mov eax,cr0; or al,1; mov cr0,eax
    code += bytes([0xEB, 0x00])                                         # jmp $+2 (protected mode)
    code += bytes([0xBB, 0x08, 0x00, 0x8E, 0xE3])                       # mov bx,8; mov fs,bx (flat 4 GiB data segment)
    code += bytes([0x24, 0xFE, 0x0F, 0x22, 0xC0])                       # and al,0xfe; mov cr0,eax (real mode, TLB flushed)
    code += bytes([0x31, 0xDB, 0x8E, 0xE3, 0xFB])                       # xor bx,bx; mov fs,bx (limit stays); sti
    code += bytes([0x66, 0xFF, 0x06, 0x00, 0x05])                       # inc dword [0x500]: passes so far
    code += bytes([0x66, 0x85, 0xC9])                                   # test ecx, ecx
    jz_at = len(code)
    code += bytes([0x74, 0x00])                                         # jz done (patched)
    loop = len(code)
    code += bytes([0x64, 0x67, 0xFE, 0x07])                             # loop: inc byte [fs:edi]
    code += bytes([0x66, 0x81, 0xC7, 0x00, 0x10, 0x00, 0x00])           # add edi, 4096
    code += bytes([0x66, 0x81, 0xFF]) + end.to_bytes(4, "little")       # cmp edi, end
    code += bytes([0x72, 0x06])                                         # jb skip
    code += bytes([0x66, 0xBF]) + first.to_bytes(4, "little")           # mov edi, first (wrap)
    code += bytes([0x66, 0x49])                                         # skip: dec ecx
    code += bytes([0x75, (loop - len(code) - 2) & 0xFF])                # jnz loop
    done = len(code)
    code = code[:jz_at + 1] + bytes([done - jz_at - 2]) + code[jz_at + 2:]
    code += bytes([0x66, 0xB9]) + pages_per_tick.to_bytes(4, "little")  # done: mov ecx, pages per tick
    code += bytes([0xF4])                                               # hlt (until the next timer tick)
    code += bytes([0xEB, (top - len(code) - 2) & 0xFF])                 # jmp top
    code += bytes(-len(code) % 8)
    gdt = len(code)
    code += bytes(8) + bytes([0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00])  # null; data: base 0, limit 4 GiB, writable
    gdtr = len(code)
    code += (15).to_bytes(2, "little") + (base + gdt).to_bytes(4, "little")
    code = code[:lgdt_at + 3] + (base + gdtr).to_bytes(2, "little") + code[lgdt_at + 5:]
    return code + bytes(510 - len(code)) + b"\x55\xAA"


def write_boot_disk(path: str, sector: bytes) -> None:
    """A 64 MiB qcow2 image that boots ``sector``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    raw = path + ".raw"
    with open(raw, "wb") as handle:
        handle.write(sector)
        handle.truncate(64 * 1024 * 1024)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path], check=True)
    os.unlink(raw)


def read_tick_counter(dom) -> int:
    """The 32-bit tick counter of a running or paused lab VM (boot_sector), read from its guest memory."""
    import libvirt  # pylint: disable=import-outside-toplevel

    return int.from_bytes(dom.memoryPeek(TICK_COUNTER_ADDRESS, 4, libvirt.VIR_MEMORY_PHYSICAL), "little")


def make_disk(vm: dict) -> None:
    if os.path.exists(vm["disk"]):
        return
    write_boot_disk(vm["disk"], boot_sector(vm["load"]))


def domain_xml(vm: dict) -> str:
    return """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <currentMemory unit='MiB'>{mem}</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><tcg><tb-cache unit='MiB'>32</tb-cache></tcg></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <interface type='bridge'>
      <source bridge='{bridge}'/>
      <model type='e1000'/>
      <rom enabled='no'/>
    </interface>
    <memballoon model='virtio'/>
  </devices>
</domain>
""".format(name=vm["name"], mem=vm["memory_mib"], disk=vm["disk"], bridge=BRIDGE)


def connect(host: dict):
    import libvirt  # pylint: disable=import-outside-toplevel

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    return libvirt.open(host["uri"])


def remove_domain(conn, name: str) -> None:
    """Destroy and undefine ``name`` on one host, with its managed save and metadata. A transient copy goes away
    with its destroy, and a copy that vanished meanwhile is fine; any other refusal raises libvirt's error."""
    import libvirt  # pylint: disable=import-outside-toplevel

    try:
        dom = conn.lookupByName(name)
        persistent = dom.isPersistent()
        if dom.isActive():
            dom.destroy()
        if persistent:
            flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                     | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def where_defined(state: dict, conns: dict) -> dict:
    placement: dict[str, list] = {vm["name"]: [] for vm in state["vms"]}
    for host in state["hosts"]:
        for dom in conns[host["name"]].listAllDomains():
            if dom.name() in placement:
                placement[dom.name()].append(host["name"])
    return placement


def is_pristine(conns: dict, vm: dict) -> bool:
    """Running on its home host only, persistent, with no snapshot and no managed save."""
    import libvirt  # pylint: disable=import-outside-toplevel

    for name, conn in conns.items():
        try:
            dom = conn.lookupByName(vm["name"])
        except libvirt.libvirtError:
            continue
        if name != vm["home"] or dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING or not dom.isPersistent():
            return False
        if dom.snapshotNum() or dom.hasManagedSaveImage():
            return False
        xml = dom.XMLDesc(0)  # a checkpoint's external overlay leaves the VM on another disk file, over its own
        if "<source file='%s'" % vm["disk"] not in xml or "<backingStore type=" in xml:
            return False
    try:
        return conns[vm["home"]].lookupByName(vm["name"]) is not None
    except libvirt.libvirtError:
        return False


STORE_POOL = "entropy-cluster"


def store_dir(state: dict) -> str:
    return os.path.join(state["dir"], "store")


def saves_dir(state: dict) -> str:
    """Where VMs are saved (entropy.cluster.vm_image): one directory every lab host sees, like images/ and store/."""
    return os.path.join(state["dir"], "saves")


def clear_saves(state: dict) -> int:
    """Remove the saved memory images (a reset starts every VM fresh: an old image would be a second copy)."""
    removed = 0
    directory = saves_dir(state)
    os.makedirs(directory, exist_ok=True)
    for entry in os.listdir(directory):
        os.unlink(os.path.join(directory, entry))
        removed += 1
    return removed


def ensure_store_pool(state: dict, conn) -> None:
    """The cluster store: a dir pool of the same name on every host over one directory (the lab's shared storage)."""
    import libvirt  # pylint: disable=import-outside-toplevel

    os.makedirs(store_dir(state), exist_ok=True)
    try:
        pool = conn.storagePoolLookupByName(STORE_POOL)
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
                                         % (STORE_POOL, store_dir(state)), 0)
    pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)


JOB_POOL = "entropy-images"


def ensure_job_pool(state: dict, conn) -> None:
    """The pool of the job VMs' linked clones and of their base images (entropy.cluster.submit): a dir pool of the same
    name on every host over the lab's shared image directory."""
    import libvirt  # pylint: disable=import-outside-toplevel

    directory = os.path.join(state["dir"], "images")
    os.makedirs(directory, exist_ok=True)
    try:
        pool = conn.storagePoolLookupByName(JOB_POOL)
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
                                         % (JOB_POOL, directory), 0)
    pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)


def clear_job_overlays(state: dict) -> int:
    """Remove the overlays of job VMs (entropy.cluster.job_vm) a test left: reset has removed their VMs already."""
    directory = os.path.join(state["dir"], "images")
    names = [n for n in os.listdir(directory) if n.startswith("entropy-job-")] if os.path.isdir(directory) else []
    for name in names:
        os.unlink(os.path.join(directory, name))
    return len(names)


def clear_store(state: dict, conns: dict) -> int:
    """Remove every record of the cluster store (locks and maintenance marks left by earlier tests)."""
    removed = 0
    for i, conn in enumerate(conns.values()):
        ensure_store_pool(state, conn)
        pool = conn.storagePoolLookupByName(STORE_POOL)
        pool.refresh(0)
        if i == 0:  # one directory behind every host's pool
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
                removed += 1
            pool.refresh(0)
    return removed


def create_vm(state: dict, conns: dict, vm: dict) -> None:
    make_disk(vm)
    conn = conns[vm["home"]]
    dom = conn.defineXML(domain_xml(vm))
    dom.create()


# --------------------------------------------------------------------------- commands

class Locked:
    """One lab command at a time per lab directory."""

    def __init__(self, base: str) -> None:
        os.makedirs(base, exist_ok=True)
        self.handle = open(os.path.join(base, ".lock"), "w", encoding="utf-8")  # pylint: disable=consider-using-with

    def __enter__(self):
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def cmd_up(args) -> int:
    preflight()
    base = lab_dir()
    old = load_state(base)
    if old is not None and old.get("version") != LAB_VERSION:
        # a lab of test VMs only: rebuilt rather than upgraded in place
        print("lab: the lab in %s was made by an older lab.py (VM NICs on SLIRP, daemons reached over TCP): taking it down "
              "and building it again" % base)
        cmd_down(args)
    with Locked(base):
        state = load_state(base)
        if state is None:
            state = new_state(base, args.hosts, args.vms_per_host, args.subnet)
        elif args.hosts_given and args.hosts != len(state["hosts"]):
            raise LabError("the lab in %s has %d hosts; run 'lab.py down' first to change its size" % (base, len(state["hosts"])))
        save_state(base, state)
        made = ensure_network(state)
        if made:
            print("lab network: created %s" % ", ".join(made))
        started = 0
        for host in state["hosts"]:
            if daemon_alive(host):
                continue
            write_host_files(host)
            seed_capabilities(state, host)
            host["pid"] = start_daemon(host)
            save_state(base, state)
            wait_ready(host)
            started += 1
        conns = {h["name"]: connect(h) for h in state["hosts"]}
        os.makedirs(saves_dir(state), exist_ok=True)
        try:
            for conn in conns.values():
                ensure_store_pool(state, conn)
                ensure_job_pool(state, conn)
            created = 0
            defined = where_defined(state, conns)  # one listing per host, not one per VM
            for vm in state["vms"]:
                if not defined[vm["name"]]:
                    create_vm(state, conns, vm)
                    created += 1
        finally:
            for conn in conns.values():
                conn.close()
        write_inventories(state)
        save_state(base, state)
        if getattr(args, "monitoring", False) or (state.get("monitoring") or {}).get("enabled"):
            _monitoring().up(state)   # asked for, or running before: started again where it is down
            save_state(base, state)
    print("lab up in %s: %d hosts (%d started), %d VMs (%d created)" % (base, len(state["hosts"]), started, len(state["vms"]), created))
    return 0


def remove_stale_copies(state: dict, conns: dict) -> tuple[list, dict]:
    """Remove every copy of each lab VM that is not fresh at home: (the VMs to create again, host -> why a
    copy there could not be removed). The copies away from home go first: an unfinished incoming copy
    elsewhere must not outlive the home copy it came from."""
    import libvirt  # pylint: disable=import-outside-toplevel

    to_create, broken = [], {}
    for vm in state["vms"]:
        if is_pristine(conns, vm):
            continue  # already fresh at home: keep it, resets stay cheap
        to_create.append(vm)
        for name in sorted(conns, key=lambda host: host == vm["home"]):
            try:
                remove_domain(conns[name], vm["name"])
            except libvirt.libvirtError as exc:
                broken.setdefault(name, "%s: %s" % (vm["name"], exc))
    return to_create, broken


def remove_foreign_domains(state: dict, conns: dict) -> tuple[list, dict]:
    """Remove every domain that is not a lab VM (what a test added and failed to remove, or the OS guest):
    (the names removed, host -> why one could not be removed). A leftover there enters every later model."""
    import libvirt  # pylint: disable=import-outside-toplevel

    own = {vm["name"] for vm in state["vms"]}
    removed, broken = [], {}
    for name, conn in conns.items():
        for dom in conn.listAllDomains():
            if dom.name() in own:
                continue
            try:
                remove_domain(conn, dom.name())
                removed.append("%s on %s" % (dom.name(), name))
            except libvirt.libvirtError as exc:
                broken.setdefault(name, "%s: %s" % (dom.name(), exc))
    return removed, broken


def kill_host_qemu(base: str, host: dict) -> None:
    """Kill the QEMU processes a host's daemon started (they run in its namespace, named after the host)."""
    kill_leftover_qemu(base, lambda pid: _ns_hostname(pid) == host["name"])


def rebuild_host(state: dict, host: dict) -> None:
    """A host whose daemon cannot remove a VM (seen: an incoming copy whose destination daemon died mid-migration,
    with no QEMU, waiting forever on its state change lock, restored by every restart): stop the daemon and its
    QEMUs, forget every VM it knew (definitions, status, saves, snapshots), start it again empty."""
    stop_daemon(host)
    kill_host_qemu(state["dir"], host)
    hdir = host["dir"]
    for sub in ("run/libvirt", "var/lib/libvirt/qemu"):
        shutil.rmtree(os.path.join(hdir, sub), ignore_errors=True)
    defs = os.path.join(hdir, "etc/libvirt/qemu")
    for entry in os.listdir(defs) if os.path.isdir(defs) else []:
        path = os.path.join(defs, entry)
        if entry.endswith(".xml") and os.path.isfile(path):
            os.unlink(path)
    shutil.rmtree(os.path.join(defs, "autostart"), ignore_errors=True)
    write_host_files(host)
    host["pid"] = start_daemon(host)
    save_state(state["dir"], state)
    wait_ready(host)


def cmd_reset(_args) -> int:
    base = lab_dir()
    state = require_state(base)
    with Locked(base):
        if not all(daemon_alive(h) for h in state["hosts"]):
            raise LabError("not every lab daemon runs: run 'lab.py up' first")
        rebuilt, foreign = [], []
        for attempt in (1, 2):
            conns = {h["name"]: connect(h) for h in state["hosts"]}
            try:
                removed, broken = remove_foreign_domains(state, conns)
                foreign += removed
                to_create, stale_broken = remove_stale_copies(state, conns)
                broken = dict(stale_broken, **broken)
                if not broken:
                    for vm in to_create:
                        if os.path.exists(vm["disk"]):
                            os.unlink(vm["disk"])  # a fresh disk drops internal snapshots too
                        create_vm(state, conns, vm)
                    break
            finally:
                for conn in conns.values():
                    conn.close()
            if attempt == 2:
                raise LabError("libvirt still refuses to remove a VM after the host was rebuilt: %s" % "; ".join(broken.values()))
            for name, why in sorted(broken.items()):
                print("lab reset: libvirt on %s cannot remove a VM (%s): rebuilding that host" % (name, why), file=sys.stderr)
                rebuild_host(state, next(h for h in state["hosts"] if h["name"] == name))
                rebuilt.append(name)
        conns = {h["name"]: connect(h) for h in state["hosts"]}
        try:
            cleared = clear_store(state, conns) + clear_saves(state) + clear_job_overlays(state)
        finally:
            for conn in conns.values():
                conn.close()
    print("lab reset: %d VMs on their home hosts (%d recreated%s), %d store records, saved images and job overlays removed%s" % (
        len(state["vms"]), len(to_create), ", hosts rebuilt: %s" % ", ".join(rebuilt) if rebuilt else "", cleared,
        "; removed what is not a lab VM: %s" % ", ".join(foreign) if foreign else ""))
    return 0


def cmd_down(_args) -> int:
    base = lab_dir()
    state = load_state(base)
    if state is None:
        print("no lab in %s" % base)
        return 0
    if os.geteuid() != 0:
        raise LabError("stopping the lab needs root (run: sudo bash tools/run.sh lab-down)")
    with Locked(base):
        for host in state["hosts"]:
            if daemon_alive(host):
                try:
                    conn = connect(host)
                    for dom in conn.listAllDomains():
                        remove_domain(conn, dom.name())
                    conn.close()
                except Exception as exc:  # pylint: disable=broad-except
                    print("warning: could not clean the VMs of %s: %s" % (host["name"], exc), file=sys.stderr)
            stop_daemon(host)
        kill_leftover_qemu(base)
        _monitoring().down(state)
        if state.get("network"):
            remove_network(state)
    shutil.rmtree(base, ignore_errors=True)
    print("lab down: daemons stopped, %s removed%s" % (
        base, ", network namespace %s deleted" % state["network"]["netns"] if state.get("network") else ""))
    return 0


def kill_leftover_qemu(base: str, belongs=lambda pid: True) -> None:
    # A QEMU outlives its libvirtd; ours are the ones whose disks or kernel sit in this lab.
    images = os.path.join(base, "")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and images in cmdline and belongs(int(pid)):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pidfile_pid(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _exe_name(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return os.path.basename(handle.read().split(b"\0", 1)[0].decode(errors="replace"))
    except OSError:
        return ""


def fence_host(base: str, host: dict) -> list[str]:
    """Kill a host's libvirtd, then its QEMUs, by the PIDs in that host's own pidfiles (never by process name): what
    a power-off does to a real hypervisor. Each PID is checked first (libvirtd or qemu-system, in the host's UTS
    namespace), so a stale pidfile whose PID was reused never kills another process. Returns what was killed."""
    run = os.path.join(host["dir"], "run", "libvirt")
    targets = []
    daemon = _pidfile_pid(os.path.join(run, "libvirtd.pid"))
    if daemon and _exe_name(daemon) == "libvirtd" and _ns_hostname(daemon) == host["name"]:
        targets.append(("libvirtd", daemon))
    qemu_dir = os.path.join(run, "qemu")
    for entry in sorted(os.listdir(qemu_dir)) if os.path.isdir(qemu_dir) else []:
        pid = _pidfile_pid(os.path.join(qemu_dir, entry)) if entry.endswith(".pid") and entry != "driver.pid" else None
        if pid and _exe_name(pid).startswith("qemu-system") and _ns_hostname(pid) == host["name"]:
            targets.append(("qemu %s" % entry[:-4], pid))
    killed = []
    for what, pid in targets:  # the daemon first, so it cannot act on its VMs' deaths
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append("%s (pid %d)" % (what, pid))
    for _what, pid in targets:
        for _tick in range(100):
            if not process_running(pid):
                break
            time.sleep(0.05)
    return killed


def cmd_fence(args) -> int:
    base = lab_dir()
    state = require_state(base)
    host = next((h for h in state["hosts"] if h["name"] == args.host), None)
    if host is None:
        raise LabError("no lab host %r (lab hosts: %s)" % (args.host, ", ".join(h["name"] for h in state["hosts"])))
    killed = fence_host(base, host)
    print("lab fence %s: killed %s; 'lab.py up' starts its daemon again (its VMs stay shut off)"
          % (host["name"], ", ".join(killed) if killed else "nothing (already down)"))
    return 0


def _monitoring():
    """tools/lab_monitoring.py (Prometheus and the libvirt exporters), loaded by path: lab.py is also loaded that way."""
    import importlib.util  # pylint: disable=import-outside-toplevel

    spec = importlib.util.spec_from_file_location("entropy_lab_monitoring", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                                         "lab_monitoring.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cmd_monitoring(args) -> int:
    monitoring = _monitoring()
    base = lab_dir()
    state = require_state(base)
    started = time.monotonic()
    with Locked(base):
        state = require_state(base)
        try:
            if args.action == "up":
                if not all(daemon_alive(h) for h in state["hosts"]):
                    raise LabError("not every lab daemon runs: run 'lab.py up' first")
                report = monitoring.up(state)
            elif args.action == "down":
                report = {"stopped": monitoring.down(state)}
            else:
                report = monitoring.status(state)
        except monitoring.MonitoringError as exc:
            save_state(base, state)
            raise LabError(str(exc)) from None
        if args.action != "status":
            save_state(base, state)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    elif args.action == "up":
        print("lab monitoring up in %.1f s: Prometheus %s (pid %s), exporters %s; inventory %s" % (
            time.monotonic() - started, report["prometheus_url"], report["prometheus_pid"],
            ", ".join("%s %s" % (name, e["address"]) for name, e in sorted(report["exporters"].items())), report["inventory"]))
    elif args.action == "down":
        print("lab monitoring down: stopped %s" % (", ".join(report["stopped"]) or "nothing (not running)"))
    else:
        print("lab monitoring: Prometheus %s pid %s; %s" % (report["prometheus_url"], report["prometheus_pid"] or "DOWN", ", ".join(
            "exporter of %s %s pid %s" % (name, e["address"], e["pid"] or "DOWN") for name, e in sorted(report["exporters"].items()))))
    return 0


def require_state(base: str) -> dict:
    state = load_state(base)
    if state is None:
        raise LabError("no lab in %s: run 'bash tools/run.sh lab-up' first" % base)
    return state


# --------------------------------------------------------------------------- a guest with an OS

GUEST_NAME = "osvm"
GUEST_MEMORY_MIB = 128
GUEST_MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                 "failover", "net_failover", "virtio_net", "virtio_balloon",
                 # a job VM's seed (an ISO 9660 volume on a virtio disk) and its NFS share (NFS 4.1 client)
                 "virtio_blk", "cdrom", "isofs", "sunrpc", "grace", "lockd", "netfs", "fscache", "nfs", "dns_resolver", "nfsv4")
# Dropbear (the SSH server a job VM's owner logs in with) and the shared libraries it needs, from Debian's packages.
GUEST_SSH_PACKAGES = ("dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10", "zlib1g", "libcrypt1", "libc6")
GUEST_SSH_LIBS = ("ld-linux-x86-64.so.2", "libc.so.6", "libcrypt.so.1", "libz.so.1", "libgmp.so.10", "libtommath.so.1", "libtomcrypt.so.1")
GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in %s; do insmod /lib/$m.ko; done
ip link set lo up
ip link set eth0 up
# An address from the lab's dnsmasq (inside the lab's network namespace), in the background, retried until it comes.
udhcpc -i eth0 -s /bin/dhcp-event -t 10 -T 3 -b -q >/dev/null 2>&1 &
echo "entropy lab guest up"
# A job VM's seed: the cloud-init NoCloud volume (label cidata) the collection builds; this guest has no
# cloud-init, so it reads the same values from the volume's entropy-job/ files (tools/lab.py, docs/lab.md).
# A warm clone (restored from a saved base, never booted) gets its seed hot-plugged after the restore: the
# watcher keeps looking, and then takes the clone's own MAC and a new lease first (bin/renew-nic).
/bin/seed-watch > /dev/console 2>&1 &
# Link-scoped traffic only (IPv6 all-nodes multicast on this link): it never leaves the tap.
while true; do ping -6 -q -c 20 -i 0.2 -s 1000 -I eth0 ff02::1 >/dev/null 2>&1; done &
echo $! > /ping-loop.pid
while true; do sleep 3600; done
"""


GUEST_DHCP_EVENT = """#!/bin/busybox sh
# udhcpc's event script: apply the lease (the variables are udhcpc's).
case "$1" in
  bound|renew) ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" ;;
esac
"""


GUEST_SEED_WATCH = """#!/bin/busybox sh
# Look for a seed volume at boot, then every 0.2 s (a seed hot-plugged into a warm clone). Each step is a line on the
# console (tools/bench_warm_clones.py times them from a console log).
mkdir -p /seed
first=1
echo "entropy seed watch: watching"
while true; do
  for dev in /dev/vd[a-z]; do
    [ -b "$dev" ] || continue
    if mount -t iso9660 -o ro "$dev" /seed 2>/dev/null; then
      if [ -f /seed/user-data ] && [ -f /seed/entropy-job/vm-name ]; then
        echo "entropy seed watch: seed found on $dev"
        # a job VM sends no test traffic: N clones pinging all nodes every 0.2 s would cost N x N replies
        kill "$(cat /ping-loop.pid)" 2>/dev/null
        for pid in $(pidof ping); do kill "$pid"; done
        /bin/renew-nic "$first" /seed
        exec /bin/job-seed /seed
      fi
      umount /seed
    fi
  done
  first=0
  sleep 0.2
done
"""

# The NIC for the seed's VM. $1 is 1 at boot (the NIC is the VM's own), else 0: a warm clone, whose NIC still
# carries the base's MAC and address. The clone's MAC in the seed (entropy-job/mac) is set on the NIC at once (the
# driver passes it to the device); without it the virtio NIC is probed again (it reads the clone's MAC from the
# device: slower). A static address in the seed (entropy-job/address) is set at once; without one, a lease of its own
# from the lab's DHCP server.
GUEST_RENEW_NIC = """#!/bin/busybox sh
address=$(cat "$2/entropy-job/address" 2>/dev/null)
mac=$(cat "$2/entropy-job/mac" 2>/dev/null)
[ "$1" = 1 ] && [ -z "$address" ] && exit 0
for pid in $(pidof udhcpc); do kill "$pid"; done
ip link set eth0 down
if [ "$1" != 1 ] && [ -n "$mac" ]; then
  ip link set eth0 address "$mac"
elif [ "$1" != 1 ]; then
  rmmod virtio_net
  insmod /lib/virtio_net.ko
  while ! ip link show eth0 >/dev/null 2>&1; do sleep 0.05; done
fi
ip addr flush dev eth0
ip link set eth0 up
if [ -n "$address" ]; then
  ip addr add "$address" dev eth0
else
  udhcpc -i eth0 -s /bin/dhcp-event -t 10 -T 3 -b -q >/dev/null 2>&1 &
fi
echo "entropy seed watch: NIC $(cat /sys/class/net/eth0/address), ${address:-DHCP}"
"""


# What a job VM does with its seed (the seed's files are data: every value is read into a quoted variable, never
# evaluated; only the job's command is run, by sh, as the job asks).
GUEST_JOB_SEED = """#!/bin/busybox sh
seed=$1
name=$(cat "$seed/entropy-job/vm-name")
hostname "$(cat "$seed/entropy-job/hostname")"
mkdir -p /root/.ssh /etc/dropbear /dev/pts /mnt/entropy-share /var/run /tmp
chmod 700 /root /root/.ssh
cp "$seed/entropy-job/authorized_keys" /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
mount -t devpts devpts /dev/pts
# the owner's key only: no password login (-s), host keys made at the first connection (-R)
/bin/dropbear -R -s -p 22
echo "entropy job seed: ssh up for $name"
until ip -4 addr show dev eth0 | grep -q inet; do sleep 0.1; done
echo "entropy job seed: address up"
server=$(cat "$seed/entropy-job/nfs-server")
path=$(cat "$seed/entropy-job/nfs-path")
tries=0
until mount -t nfs4 -o vers=4.1,addr="$server" "$server:$path" /mnt/entropy-share; do
  tries=$((tries + 1))
  if [ "$tries" -ge 300 ]; then echo "entropy job seed: cannot mount $server:$path"; exit 1; fi
  sleep 0.2
done
echo "entropy job seed: share mounted, running the command of $name"
share=/mnt/entropy-share
cd "$share" && {
  sh "$seed/entropy-job/command" > "$share/$name.out" 2>&1
  echo $? > "$share/.$name.exit.tmp"
  mv -f "$share/.$name.exit.tmp" "$share/$name.exit"
}
sync
echo "entropy job seed: command of $name ended"
"""


def _apt_download(names: list[str], into: str) -> None:
    for attempt in range(2):
        result = subprocess.run(["apt-get", "download", *names], cwd=into, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        if attempt == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
    raise LabError("apt-get download %s failed: %s" % (" ".join(names), result.stderr.strip()[-300:]))


def build_guest(base: str) -> dict:
    """Kernel + busybox initramfs of a small Linux guest, from Debian's linux-image-cloud-amd64 and
    busybox-static packages (downloaded, extracted, never installed). Cached in the lab directory."""
    gdir = os.path.join(base, "guest")
    import hashlib  # pylint: disable=import-outside-toplevel

    # the initrd's name follows its init scripts: a lab keeps no initrd built from an older init
    recipe = GUEST_INIT + GUEST_DHCP_EVENT + GUEST_JOB_SEED + GUEST_SEED_WATCH + GUEST_RENEW_NIC + repr(GUEST_MODULES + GUEST_SSH_PACKAGES)
    tag = hashlib.sha256(recipe.encode()).hexdigest()[:8]
    kernel, initrd = os.path.join(gdir, "vmlinuz"), os.path.join(gdir, "initrd-%s.gz" % tag)
    if os.path.exists(kernel) and os.path.exists(initrd):
        return {"kernel": kernel, "initrd": initrd}
    depends = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True, text=True, check=False).stdout
    image = next((line.split()[-1] for line in depends.splitlines() if line.strip().startswith("Depends: linux-image-")), None)
    if image is None:
        raise LabError("the OS guest needs Debian's linux-image-cloud-amd64 package, which apt does not know here")
    work = os.path.join(gdir, "build")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    _apt_download([image, "busybox-static", *GUEST_SSH_PACKAGES], work)
    for deb in os.listdir(work):
        if deb.endswith(".deb"):
            subprocess.run(["dpkg-deb", "-x", os.path.join(work, deb), os.path.join(work, "x")], check=True)
    extracted = os.path.join(work, "x")
    root = os.path.join(work, "root")
    for sub in ("bin", "lib", "proc", "sys", "dev"):
        os.makedirs(os.path.join(root, sub))
    busybox = os.path.join(extracted, "bin", "busybox")
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    found = {}
    for dirpath, _dirs, files in os.walk(os.path.join(extracted, "lib", "modules")):
        for name in files:
            if name.endswith(".ko") and name[:-3] in GUEST_MODULES:
                found[name[:-3]] = os.path.join(dirpath, name)
    missing = [m for m in GUEST_MODULES if m not in found]
    if missing:
        raise LabError("the guest kernel %s lacks the modules %s" % (image, ", ".join(missing)))
    for name, path in found.items():
        shutil.copy(path, os.path.join(root, "lib", name + ".ko"))
    with open(os.path.join(root, "init"), "w", encoding="utf-8") as handle:
        handle.write(GUEST_INIT % " ".join(GUEST_MODULES))
    os.chmod(os.path.join(root, "init"), 0o755)
    with open(os.path.join(root, "bin", "dhcp-event"), "w", encoding="utf-8") as handle:
        handle.write(GUEST_DHCP_EVENT)
    os.chmod(os.path.join(root, "bin", "dhcp-event"), 0o755)
    for script, text in (("job-seed", GUEST_JOB_SEED), ("seed-watch", GUEST_SEED_WATCH), ("renew-nic", GUEST_RENEW_NIC)):
        with open(os.path.join(root, "bin", script), "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(os.path.join(root, "bin", script), 0o755)
    # dropbear and its libraries (the dynamic loader in /lib64, the libraries in /lib, a trusted directory)
    shutil.copy(os.path.join(extracted, "usr", "sbin", "dropbear"), os.path.join(root, "bin", "dropbear"))
    os.makedirs(os.path.join(root, "lib64"))
    libs = {}
    for dirpath, _dirs, files in os.walk(extracted):
        for name in files + _dirs:
            if name in GUEST_SSH_LIBS and name not in libs and os.path.exists(os.path.join(dirpath, name)):
                libs[name] = os.path.realpath(os.path.join(dirpath, name))
    missing = [lib for lib in GUEST_SSH_LIBS if lib not in libs]
    if missing:
        raise LabError("the guest's SSH server lacks the libraries %s in the packages %s" % (", ".join(missing), ", ".join(GUEST_SSH_PACKAGES)))
    for name, path in libs.items():
        shutil.copy(path, os.path.join(root, "lib64" if name.startswith("ld-linux") else "lib", name))
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc", "passwd"), "w", encoding="utf-8") as handle:
        handle.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w", encoding="utf-8") as handle:
        handle.write("root:x:0:\n")
    listing = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True, check=True).stdout
    archive = subprocess.run([busybox, "cpio", "-o", "-H", "newc"], cwd=root, input=listing.encode(), capture_output=True, check=True).stdout
    with open(initrd + ".tmp", "wb") as handle:
        handle.write(gzip.compress(archive, compresslevel=1))
    boot = os.path.join(extracted, "boot")
    shutil.copy(os.path.join(boot, next(n for n in os.listdir(boot) if n.startswith("vmlinuz-"))), kernel)
    os.replace(initrd + ".tmp", initrd)
    shutil.rmtree(work, ignore_errors=True)
    return {"kernel": kernel, "initrd": initrd}


def guest_xml(files: dict) -> str:
    return """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd>
      <cmdline>console=ttyS0 quiet panic=-1 init_on_free=1</cmdline></os>
  <features><acpi/><tcg><tb-cache unit='MiB'>32</tb-cache></tcg></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/><rom enabled='no'/></interface>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
</domain>
""".format(name=GUEST_NAME, mem=GUEST_MEMORY_MIB, bridge=BRIDGE, **files)


def job_guest_xml(name: str, seed: str | None = None, memory_mib: int = GUEST_MEMORY_MIB, console_log: str | None = None) -> str:
    """A job VM of the lab: the OS guest's kernel and initrd, a NIC on the lab bridge and the job's seed volume
    (entropy.cluster.job_seed) as a read-only virtio disk, which the guest's init reads (any virtio disk holding a seed). Names and paths are
    escaped by ElementTree (a VM name may hold quotes or braces)."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    files = build_guest(lab_dir())
    root = ET.fromstring(guest_xml(files))
    root.find("name").text = name
    root.find("memory").text = str(memory_mib)
    devices = root.find("devices")
    if seed:  # else attached later (entropy.cluster.job_seed with its domain option)
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="raw")
        ET.SubElement(disk, "source", file=seed)
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
        ET.SubElement(disk, "readonly")
    if console_log:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=console_log)
        ET.SubElement(serial, "target", port="0")
    return ET.tostring(root, encoding="unicode")


def cmd_guest(args) -> int:
    """Start (or remove) the OS guest: a small Linux VM that sends link-local traffic on a tap and
    reports balloon statistics, for the measurements the firmware VMs cannot give."""
    base = lab_dir()
    state = require_state(base)
    host = next((h for h in state["hosts"] if h["name"] == args.host), None)
    if host is None or not daemon_alive(host):
        raise LabError("no running lab host %r (hosts: %s)" % (args.host, ", ".join(h["name"] for h in state["hosts"])))
    with Locked(base):
        conns = {h["name"]: connect(h) for h in state["hosts"] if daemon_alive(h)}
        try:
            for conn in conns.values():
                remove_domain(conn, GUEST_NAME)
            if args.remove:
                print("lab guest %s removed" % GUEST_NAME)
                return 0
            conns[host["name"]].defineXML(guest_xml(build_guest(base))).create()
        finally:
            for conn in conns.values():
                conn.close()
    print("lab guest %s started on %s" % (GUEST_NAME, host["name"]))
    return 0


def cmd_status(args) -> int:
    base = lab_dir()
    state = load_state(base)
    if state is None:
        if args.json:
            print(json.dumps({"up": False, "dir": base}))
        else:
            print("no lab in %s" % base)
        return 0 if not args.check else 1
    rows = []
    all_ok = True
    for host in state["hosts"]:
        row = {"host": host["name"], "uri": host["uri"], "pid": host.get("pid"), "alive": daemon_alive(host), "vms": {}}
        if row["alive"]:
            try:
                conn = connect(host)
                row["host_uuid"] = conn.getCapabilities().split("<uuid>")[1].split("</uuid>")[0]
                states = {1: "running", 3: "paused", 5: "shut off"}
                for dom in conn.listAllDomains():
                    row["vms"][dom.name()] = states.get(dom.state()[0], "state %d" % dom.state()[0])
                    if dom.hasManagedSaveImage():
                        row["vms"][dom.name()] = "saved"
                conn.close()
            except Exception as exc:  # pylint: disable=broad-except
                row["alive"] = False
                row["error"] = str(exc)
        all_ok = all_ok and row["alive"]
        rows.append(row)
    network = None
    if state.get("network"):
        network = dict(state["network"], namespace_exists=os.path.exists(netns_path(state["network"]["netns"])),
                       dnsmasq_pid=dnsmasq_pid(state), nfs_pid=nfs_pid(state),
                       nfs_export="%s:%s" % (nfs_address(state), shares_dir(state)))
        all_ok = all_ok and network["namespace_exists"] and network["dnsmasq_pid"] is not None and network["nfs_pid"] is not None
    if args.json:
        print(json.dumps({"up": all_ok, "dir": base, "hosts": rows, "network": network}, indent=2))
    else:
        print("lab %s (%s)" % (base, "up" if all_ok else "DEGRADED"))
        if network:
            print("  network namespace %s%s, bridge %s %s, dnsmasq pid %s" % (
                network["netns"], "" if network["namespace_exists"] else " (MISSING)", network["bridge"], network["address"],
                network["dnsmasq_pid"] or "DOWN"))
            print("  NFS server pid %s, export %s (to %s only)" % (network["nfs_pid"] or "DOWN", network["nfs_export"], network["address"]))
        for row in rows:
            load = " ".join("%s(%s)" % (n, s) for n, s in sorted(row["vms"].items())) or "-"
            print("  %-4s %-26s %-6s pid %-8s VMs: %s" % (row["host"], row["uri"], "up" if row["alive"] else "DOWN", row["pid"], load))
    return 0 if all_ok or not args.check else 1


def write_inventories(state: dict) -> None:
    base = state["dir"]
    lines = ["# Written by tools/lab.py: the lab's hypervisors for entropy.cluster.libvirt_cluster.",
             "plugin: entropy.cluster.libvirt_cluster", "hypervisors:"]
    for host in state["hosts"]:
        lines += ["  - name: %s" % host["name"], "    uri: %s" % host["uri"],
                  "    # the lab's simulated host size (every lab daemon reports the whole machine)",
                  "    cpu: %d" % host["cpu"], "    memory_mib: %d" % host["memory_mib"]]
    lines += ["sampling_interval: 1", "# the cluster store (run lock, maintenance marks) on the lab's shared storage",
              "store_pool: %s" % STORE_POOL,
              "# where entropy.cluster.vm_image saves VMs (a directory every lab host sees): saved VMs enter the model",
              "save_dir: %s" % saves_dir(state), ""]
    with open(os.path.join(base, "lab.libvirt_cluster.yml"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    ini = ["[hypervisors]"] + ["%s entropy_uri=%s entropy_cpu=%d entropy_memory_mib=%d" % (h["name"], h["uri"], h["cpu"], h["memory_mib"])
                               for h in state["hosts"]]
    ini += ["", "[hypervisors:vars]", "ansible_connection=local", ""]
    with open(os.path.join(base, "lab.ini"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(ini))
    os.makedirs(os.path.join(base, "group_vars"), exist_ok=True)
    with open(os.path.join(base, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
        handle.write("# Lab disks sit on a directory every lab host sees, which libvirt cannot detect as shared.\n"
                     "entropy_migrate_unsafe: true\n"
                     "# The run lock and the maintenance marks live in the cluster store, seen by every job.\n"
                     "entropy_store_pool: %s\n" % STORE_POOL)
        handle.write("# Jobs (entropy.cluster.submit): their VMs' linked clones in the shared image directory, TCG guests on the lab bridge.\n"
                     "entropy_job_pool: %s\nentropy_job_domain_type: qemu\nentropy_job_bridge: %s\n" % (JOB_POOL, BRIDGE))
        if state.get("network"):
            handle.write("# The NFS server of the job VMs' shares (the lab's, inside its namespace; shares are directories of %s).\n"
                         "entropy_job_nfs_server: %s\n" % (shares_dir(state), nfs_address(state)))
        # The fence role's hook for the lab: tools/lab_fence_hook.yml kills a host by the PIDs in its pidfiles.
        tools = os.path.dirname(os.path.abspath(__file__))
        handle.write("# The fencing hook of entropy.cluster.fence: kill a lab host by its pidfiles (tools/lab.py fence).\n"
                     "entropy_fence_hook: %s\nentropy_lab_tool: %s\nentropy_lab_dir: %s\n"
                     % (json.dumps(os.path.join(tools, "lab_fence_hook.yml")), json.dumps(os.path.join(tools, "lab.py")), json.dumps(base)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create the lab or restart what is missing (idempotent)")
    up.add_argument("--hosts", type=int, default=None, help="number of hypervisors (default 3)")
    up.add_argument("--vms-per-host", type=int, default=2, help="VMs placed on each host at creation (default 2)")
    up.add_argument("--monitoring", action="store_true",
                    help="also start Prometheus and the libvirt exporters (see: lab.py monitoring); kept on by later 'up's")
    up.add_argument("--subnet", default=os.environ.get("ENTROPY_LAB_SUBNET", "127.0.0"),
                    help="loopback /24 for the hosts' addresses, .2 upwards (default 127.0.0, env ENTROPY_LAB_SUBNET)")
    sub.add_parser("reset", help="put every VM back on its home host, fresh (no snapshots)")
    status = sub.add_parser("status", help="show hosts and VMs")
    status.add_argument("--json", action="store_true")
    status.add_argument("--check", action="store_true", help="exit 1 unless every daemon answers")
    guest = sub.add_parser("guest", help="start a small Linux VM with network traffic and balloon statistics (or --remove it)")
    guest.add_argument("--host", default="hv1", help="lab host to start it on (default hv1)")
    guest.add_argument("--remove", action="store_true", help="destroy and undefine it wherever it is")
    sub.add_parser("down", help="destroy the VMs, stop the daemons, remove the lab directory")
    fence = sub.add_parser("fence", help="kill one host's daemon and QEMUs by the PIDs in its own pidfiles (a power-off)")
    fence.add_argument("host", help="lab host name, for example hv2")
    monitoring = sub.add_parser("monitoring", help="Prometheus and one libvirt exporter per host, on the lab's loopback address 127.0.S.1")
    monitoring.add_argument("action", choices=("up", "down", "status"))
    monitoring.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "up":
        args.hosts_given = args.hosts is not None
        args.hosts = args.hosts if args.hosts is not None else 3
    handlers = {"up": cmd_up, "reset": cmd_reset, "status": cmd_status, "guest": cmd_guest, "down": cmd_down, "fence": cmd_fence,
                "monitoring": cmd_monitoring}
    try:
        return handlers[args.command](args)
    except LabError as exc:
        print("lab: error: %s" % exc, file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print("lab: error: %s failed with exit code %d" % (" ".join(exc.cmd), exc.returncode), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
