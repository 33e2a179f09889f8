# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/inventory_file.py: an inventory file read as the inventory plugin reads it, for the dashboard and the EDA source."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

# tests/unit/conftest.py puts the collection of this checkout on sys.path.
# pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.plugin_utils import inventory_file, prometheus_load  # noqa: E402

HEAD = "plugin: entropy.cluster.libvirt_cluster\nhypervisors:\n  - {name: hv1, uri: 'test:///default'}\n"


def _file(tmp_path, text):
    path = tmp_path / "c.libvirt_cluster.yml"
    path.write_text(HEAD + text)
    return str(path)


def test_options_fall_back_to_the_documented_environment_variables_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTROPY_LIBVIRT_USERNAME", "ops")
    monkeypatch.setenv("ENTROPY_LIBVIRT_PASSWORD", "s3cret")
    monkeypatch.setenv("ENTROPY_PROMETHEUS_URL", "http://127.0.0.1:1")
    cluster = inventory_file.load(_file(tmp_path, "load_source: prometheus\n"))
    assert (cluster.username, cluster.password) == ("ops", "s3cret")
    assert cluster.prometheus.url == "http://127.0.0.1:1" and cluster.prometheus.window == "2m"   # the documented default
    assert (cluster.sampling_interval, cluster.parallelism, cluster.dirty_rate) == (1.0, 8, False)
    assert inventory_file.load(_file(tmp_path, "auth_username: file-user\n")).username == "file-user"   # the file wins


@pytest.mark.parametrize("text, expected", [
    ("load_source: prometheus\n", "load_source: prometheus needs prometheus_url (or env ENTROPY_PROMETHEUS_URL)"),
    ("load_source: snmp\n", "'load_source' must be libvirt or prometheus, got 'snmp'"),
    ("dirty_rate: true\nsampling_interval: 0.5\n", "set 'sampling_interval' to 1 or more"),
    ("dirty_rate: maybe\n", "'dirty_rate' must be true or false, got 'maybe'"),
    ("parallelism: many\n", "'parallelism' must be an integer, got 'many'"),
])
def test_bad_options_name_the_file_and_the_fix(tmp_path, monkeypatch, text, expected):
    monkeypatch.delenv("ENTROPY_PROMETHEUS_URL", raising=False)
    path = _file(tmp_path, text)
    with pytest.raises(ValueError) as err:
        inventory_file.load(path)
    assert str(err.value).startswith(path + ": ") and expected in str(err.value) and "\n" not in str(err.value)


def test_not_an_inventory_file(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("plugin: other\n")
    with pytest.raises(ValueError, match="not a libvirt_cluster inventory file"):
        inventory_file.load(str(path))


def test_read_goes_through_the_inventory_and_prometheus_when_asked(tmp_path):
    """One read as the inventory: libvirt sampling gives the VMs; with load_source: prometheus an unreachable server is an
    error naming it (the dashboard keeps its last figures, the EDA source skips the sample)."""
    raw, hypervisors, copies = inventory_file.read(inventory_file.load(_file(tmp_path, "sampling_interval: 0\n")))
    assert hypervisors["hv1"]["entropy_reachable"] and [copy[0] for copy in copies] == ["test"] and "prometheus" not in raw
    cluster = inventory_file.load(_file(tmp_path, "sampling_interval: 0\nload_source: prometheus\nprometheus_url: http://127.0.0.1:1\n"))
    with pytest.raises(prometheus_load.PrometheusError, match="127.0.0.1:1"):
        inventory_file.read(cluster)
