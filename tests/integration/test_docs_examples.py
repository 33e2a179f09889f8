# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The examples of README.md run as written on the lab, with only the site-specific values
replaced: hypervisor URIs, VM names, and `unsafe: true` for the lab's shared disk directory
(which libvirt cannot recognise as shared storage)."""

from __future__ import annotations

import os
import re

import pytest

from conftest import ROOT, lab_cmd


def readme_block(after: str, language: str = "yaml") -> str:
    """The first fenced code block of README.md that follows the line containing ``after``."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(after)
    match = re.compile(r"^```%s\n(.*?)^```" % language, re.S | re.M).search(text, start)
    assert match, "no ```%s block after %r in README.md" % (language, after)
    return match.group(1)


@pytest.fixture()
def lab_back_home(lab_reset):
    yield lab_reset
    assert lab_cmd("reset").returncode == 0


def test_the_module_defaults_example_runs_to_its_end(lab_back_home, playbook, tmp_path):
    lab = lab_back_home
    hv01, hv02 = sorted(lab.hosts)[:2]
    web01, web02 = sorted(vm for vm, where in lab.placement().items() if where[0][0] == hv01)[:2]
    example = readme_block("`module_defaults` sets the connection once")
    assert "qemu+ssh://root@hv01/system" in example and "web01" in example and "web02" in example
    lab_example = (example.replace("qemu+ssh://root@hv01/system", lab.uri(hv01)).replace("qemu+ssh://root@hv02/system", lab.uri(hv02))
                   .replace("web01", web01).replace("web02", web02)
                   .replace('destination_uri: "%s"}' % lab.uri(hv02), 'destination_uri: "%s", unsafe: true}' % lab.uri(hv02)))
    assert "unsafe: true" in lab_example
    path = tmp_path / "example.yml"
    path.write_text(lab_example, encoding="utf-8")
    result = playbook(str(path))
    assert result.returncode == 0, result.stdout[-4000:]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=4\s+unreachable=0\s+failed=0", result.stdout), result.stdout[-3000:]
    placement = lab.placement()
    assert placement[web01] == [(hv02, "running")]
    assert placement[web02] == [(hv01, "shutoff")]
    conn = lab.connect(hv01)
    try:
        assert conn.lookupByName(web02).hasManagedSaveImage(0) == 1
    finally:
        conn.close()
    conn = lab.connect(hv02)
    try:
        assert conn.lookupByName(web01).snapshotNum(0) == 0
    finally:
        conn.close()
    lab.assert_each_vm_once(stopped=(web02,))
