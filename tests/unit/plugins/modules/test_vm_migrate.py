# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_migrate against the libvirt test driver: pre-flight checks, check mode, refusals.

The test driver cannot migrate at all, so real migrations are covered by
tests/integration/test_modules_migrate.py on the lab; here every refusal and the report of
where the VM is are checked.
"""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI, UNREACHABLE_URI, libvirt  # noqa: E402  pylint: disable=wrong-import-position

OTHER_HOST_XML = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active></cpu>
  <memory>4194304</memory>
  <domain type="test">
    <name>small</name>
    <uuid>22222222-3333-4444-5555-666666666666</uuid>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
  %s
</node>
"""
CLASHING_TEST_VM = """<domain type="test">
    <name>test</name>
    <uuid>33333333-4444-5555-6666-777777777777</uuid>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>"""


SAME_TEST_VM = """<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>test</name>
    <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
    <memory>65536</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>%d</test:runstate>
  </domain>"""


def host_with_copy(tmp_path, runstate):
    """Another test-driver host where the VM 'test' (same UUID) is defined, running (1) or shut off (5)."""
    path = tmp_path / ("copy%d.xml" % runstate)
    path.write_text(OTHER_HOST_XML % (SAME_TEST_VM % runstate))
    return "test://%s" % path


@pytest.fixture()
def other_host(tmp_path):
    """A second test-driver "host" (a custom node file): another URI, the VM 'small' running there."""
    path = tmp_path / "other.xml"
    path.write_text(OTHER_HOST_XML % "")
    return "test://%s" % path


@pytest.fixture()
def clashing_host(tmp_path):
    path = tmp_path / "clash.xml"
    path.write_text(OTHER_HOST_XML % CLASHING_TEST_VM)
    return "test://%s" % path


def migrate(run, dest, check=False, name="test", uri=TEST_URI, **extra):
    return run("vm_migrate", dict(uri=uri, destination_uri=dest, name=name, **extra), check=check, diff=True)


def test_check_mode_predicts_a_live_migration_and_moves_nothing(hv, run, other_host):
    result = migrate(run, other_host, check=True, unsafe=True, bandwidth_mib_s=50)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["location"] == "source" and result["defined_on"] == ["source"]
    assert result["migration"]["kind"] == "live" and result["migration"]["mode"] == "direct"
    assert result["migration"]["flags"] == ["LIVE", "PERSIST_DEST", "UNDEFINE_SOURCE", "UNSAFE"]
    assert result["migration"]["parameters"] == {"bandwidth": 50}
    assert result["diff"]["before"]["uri"] == TEST_URI and result["diff"]["after"]["uri"] == other_host
    assert result["job"] == {} and result["timed_out"] is False
    assert hv.lookupByName("test").isActive()


def test_check_mode_flags_for_peer2peer_copy_storage_and_offline(hv, run, other_host):
    result = migrate(run, other_host, check=True, mode="peer2peer", copy_storage="all", auto_converge=True, live=False, persistent=False)
    assert result["migration"]["kind"] == "suspended"
    assert result["migration"]["flags"] == ["UNDEFINE_SOURCE", "PEER2PEER", "AUTO_CONVERGE", "NON_SHARED_DISK"]
    hv.lookupByName("test").destroy()
    offline = migrate(run, other_host, check=True)
    assert offline["migration"]["kind"] == "offline"
    assert offline["migration"]["flags"] == ["OFFLINE", "PERSIST_DEST", "UNDEFINE_SOURCE"]
    assert offline["location"] == "none" and offline["defined_on"] == ["source"]


def test_test_driver_cannot_migrate_and_says_so(hv, run, other_host):
    result = migrate(run, other_host, unsafe=True)
    assert result["failed"] and result["error_kind"] == "unsupported", result
    assert "cannot migrate" in result["msg"] and "test driver" in result["msg"]
    assert result["location"] == "source" and "runs on the source" in result["msg"]
    p2p = migrate(run, other_host, unsafe=True, mode="peer2peer")
    assert p2p["failed"] and p2p["error_kind"] == "unsupported", p2p
    assert p2p["location"] == "source"
    assert hv.lookupByName("test").isActive()


def test_same_host_is_refused(hv, run):
    result = migrate(run, TEST_URI)
    assert result["failed"] and result["error_kind"] == "same_host"
    assert "same host" in result["msg"] and result["location"] == "source"


def test_vm_with_snapshots_is_refused_with_the_fix(hv, run, other_host):
    hv.lookupByName("test").snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
    for check in (True, False):
        result = migrate(run, other_host, check=check)
        assert result["failed"] and result["error_kind"] == "snapshots", result
        assert "1 snapshot" in result["msg"] and "vm_snapshot" in result["msg"] and "all: true" in result["msg"]
        assert result["location"] == "source"


def test_vm_already_on_destination_is_unchanged(hv, run, other_host):
    result = migrate(run, other_host, name="small", uri=TEST_URI)
    assert not result.get("failed"), result
    assert result["changed"] is False and result["location"] == "destination" and result["defined_on"] == ["destination"]
    assert result["diff"]["before"] == result["diff"]["after"]


def test_unknown_vm_lists_what_is_on_the_source(hv, run, other_host):
    result = migrate(run, other_host, name="ghost")
    assert result["failed"] and result["error_kind"] == "no_domain"
    assert "'ghost'" in result["msg"] and "'test'" in result["msg"] and result["location"] == "none"


def test_name_clash_on_destination(hv, run, clashing_host):
    result = migrate(run, clashing_host)
    assert result["failed"] and result["error_kind"] == "name_clash"
    assert "different VM with the same name" in result["msg"]


def test_unreachable_destination_keeps_the_vm_on_the_source(hv, run):
    result = migrate(run, UNREACHABLE_URI)
    assert result["failed"] and result["error_kind"] == "unreachable"
    assert "destination is unreachable" in result["msg"] and UNREACHABLE_URI in result["msg"]
    assert result["location"] == "source"


def test_unreachable_source(run, other_host):
    result = migrate(run, other_host, uri=UNREACHABLE_URI)
    assert result["failed"] and result["error_kind"] == "unreachable"
    assert "source is unreachable" in result["msg"] and result["location"] == "unknown"


BAD_PARAMETERS = [
    (dict(bandwidth_mib_s=0), "bandwidth_mib_s=0 is out of range (allowed: 1 to 8796093022207)"),
    (dict(bandwidth_mib_s=8796093022208), "bandwidth_mib_s=8796093022208 is out of range (allowed: 1 to 8796093022207)"),
    (dict(max_downtime_ms=0), "max_downtime_ms=0 is out of range (allowed: 1 to 2000000)"),
    (dict(max_downtime_ms=99999999999999999999), "max_downtime_ms=99999999999999999999 is out of range (allowed: 1 to 2000000)"),
    (dict(timeout=-1), "timeout=-1 is out of range (allowed: 0 to 604800)"),
    (dict(timeout=10 ** 400), "is out of range (allowed: 0 to 604800)"),
    (dict(destination_uri=""), "destination_uri is empty (give the destination's libvirt URI"),
    (dict(destination_uri="  "), "destination_uri is empty"),
    (dict(uri=""), "uri is empty (give the source's libvirt URI, or leave uri unset"),
    (dict(name=""), "name is empty (give the VM's name)"),
]


@pytest.mark.parametrize("check", [False, True], ids=["real", "check_mode"])
@pytest.mark.parametrize("bad,message", BAD_PARAMETERS, ids=[next(iter(b)) + "=" + str(next(iter(b.values())))[:12] for b, _m in BAD_PARAMETERS])
def test_bad_parameters_are_refused_before_anything_is_done(hv, run, other_host, bad, message, check):
    args = dict(uri=TEST_URI, destination_uri=other_host, name="test", unsafe=True)
    args.update(bad)
    result = run("vm_migrate", args, check=check)
    assert result["failed"] and result["error_kind"] == "invalid_argument", result
    assert message in result["msg"] and "Nothing was done" in result["msg"], result["msg"]
    assert "\n" not in result["msg"] and "Traceback" not in result["msg"]
    assert result["changed"] is False and "migration" not in result
    assert hv.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_every_bad_parameter_is_named_at_once(hv, run, other_host):
    result = migrate(run, other_host, bandwidth_mib_s=-3, max_downtime_ms=2000001, timeout=-5)
    assert result["failed"] and result["error_kind"] == "invalid_argument"
    for name in ("bandwidth_mib_s=-3", "max_downtime_ms=2000001", "timeout=-5"):
        assert name in result["msg"], result["msg"]


def test_the_largest_accepted_values_pass_the_checks(hv, run, other_host):
    result = migrate(run, other_host, check=True, unsafe=True, bandwidth_mib_s=8796093022207, max_downtime_ms=2000000, timeout=604800)
    assert not result.get("failed") and result["changed"] is True, result


def test_check_mode_says_a_paused_vm_moves_paused(hv, run, other_host):
    hv.lookupByName("test").suspend()
    result = migrate(run, other_host, check=True, unsafe=True)
    assert not result.get("failed"), result
    assert result["migration"]["paused"] is True and result["reactivated_disks"] is False
    assert hv.lookupByName("test").state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]


def test_vm_active_on_both_hosts_is_reported_as_such(hv, run, tmp_path):
    result = migrate(run, host_with_copy(tmp_path, 1))
    assert result["failed"] and result["error_kind"] == "defined_on_both"
    assert result["location"] == "both" and "BOTH" in result["msg"]


def test_vm_defined_on_both_running_on_neither(hv, run, tmp_path):
    hv.lookupByName("test").destroy()
    result = migrate(run, host_with_copy(tmp_path, 5))
    assert result["failed"] and result["error_kind"] == "defined_on_both"
    assert result["location"] == "none" and result["defined_on"] == ["source", "destination"]
    assert "Undefine the stale one" in result["msg"]


def test_running_on_destination_with_a_stale_definition_on_the_source(hv, run, tmp_path):
    """What a source daemon that died before the last phase of a migration leaves: the shut-off copy is removed."""
    hv.lookupByName("test").destroy()
    result = migrate(run, host_with_copy(tmp_path, 1))
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True and result["source_definition_removed"] is True
    assert result["location"] == "destination" and result["defined_on"] == ["destination"]
    assert "test" not in [dom.name() for dom in hv.listAllDomains()]
    assert result["diff"]["before"]["also_defined_shut_off_on"]["uri"] == TEST_URI
    assert "also_defined_shut_off_on" not in result["diff"]["after"]


def test_check_mode_says_the_stale_definition_would_be_removed(hv, run, tmp_path):
    hv.lookupByName("test").destroy()
    result = migrate(run, host_with_copy(tmp_path, 1), check=True)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True and result["source_definition_removed"] is True
    assert hv.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_SHUTOFF  # still there


@pytest.mark.parametrize("prepare, reason", [
    (lambda dom: dom.snapshotCreateXML("<domainsnapshot><name>before</name></domainsnapshot>"), "1 snapshot(s)"),
    (lambda dom: dom.managedSave(), "managed save image"),
])
def test_a_stale_definition_holding_more_than_a_definition_is_kept(hv, run, tmp_path, prepare, reason):
    dom = hv.lookupByName("test")
    prepare(dom)
    if dom.isActive():
        dom.destroy()
    result = migrate(run, host_with_copy(tmp_path, 1))
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False and result["source_definition_removed"] is False
    assert reason in result["source_definition_kept"]
    assert result["defined_on"] == ["source", "destination"]
    assert hv.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def test_a_stale_definition_is_kept_when_undefine_source_is_false(hv, run, tmp_path):
    hv.lookupByName("test").destroy()
    result = migrate(run, host_with_copy(tmp_path, 1), undefine_source=False)
    assert result["changed"] is False and result["source_definition_removed"] is False
    assert "undefine_source=false" in result["source_definition_kept"]
    assert result["defined_on"] == ["source", "destination"]


def test_running_vm_onto_an_inactive_copy_goes_to_libvirt(hv, run, tmp_path):
    """Same UUID, inactive on the destination: libvirt may migrate onto it, so no pre-flight refusal."""
    result = migrate(run, host_with_copy(tmp_path, 5), check=True)
    assert not result.get("failed") and result["changed"] is True, result
    assert result["defined_on"] == ["source", "destination"] and result["location"] == "source"


# Failures of the migration call that the lab cannot produce for real (its hosts share one CPU and one
# QEMU; the pre-flight checks refuse snapshots, the same host and a full destination before libvirt is
# asked), as libvirt words them: each gets its class and its fix. The ones the lab can produce
# (unsafe, aborted, destination_storage, name_clash, timeout) are tested for real in
# tests/integration/test_modules_migrate.py and test_migrate_paths.py.
LIBVIRT_REFUSALS = [
    ("the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f", "cpu_incompatible",
     "virsh hypervisor-cpu-baseline"),
    ("Requested operation is not valid: cannot migrate domain with 1 snapshots", "snapshots", "all: true"),
    ("internal error: Attempt to migrate guest to the same host 0c1b7e4e-0000-0000-0000-000000000001", "same_host",
     "pick another destination_uri"),
    ("internal error: qemu unexpectedly closed the monitor: cannot set up guest memory 'pc.ram': Cannot allocate memory",
     "destination_full", "free memory there"),
    ("operation failed: domain 'web01-old' is already defined with uuid 6695eb01-f6a4-8304-79aa-97f2502e193f", "name_clash",
     "undefine the stale copy"),
    ("Path '/var/lib/libvirt/images/web01.qcow2' is not accessible: No such file or directory", "destination_storage",
     "copy_storage: all"),
    # what libvirt sometimes reports for a job aborted by another client (seen on the lab, not reproducible at will)
    ("internal error: qemu unexpectedly closed the monitor: 2026-12-02T13:52:36.745756Z qemu-system-x86_64: check_section_footer: "
     "Read section footer failed: -5 2026-12-02T13:52:36.746986Z qemu-system-x86_64: load of migration failed: Invalid argument",
     "interrupted", "the job was aborted on the source"),
]


@pytest.mark.parametrize("text,kind,fix", LIBVIRT_REFUSALS, ids=[k for _t, k, _f in LIBVIRT_REFUSALS])
def test_libvirt_refusals_are_classified_with_their_fix(text, kind, fix):
    from ansible_collections.entropy.cluster.plugins.module_utils._migration import explain_migration_error  # pylint: disable=import-outside-toplevel

    message, got = explain_migration_error(libvirt.libvirtError(text), "migrating VM 'web01' from A to B", "A", "QEMU")
    assert got == kind, message
    assert message.startswith("migrating VM 'web01' from A to B failed: ") and text.rstrip(".") in message
    assert fix in message and "\n" not in message
