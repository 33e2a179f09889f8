# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_store: record names and encoding (pure). Creating, reading and racing records needs a real storage
pool with volume upload, which the test driver lacks: see tests/integration/test_cluster_store.py."""

from __future__ import annotations

import pytest

from ansible_collections.entropy.cluster.plugins.module_utils import cluster_store as cs


@pytest.mark.parametrize("key", ["hv1", "hv-01.example.org", "x-looks-encoded", "../etc/passwd", "a b", "ä/ö", "{{ x }}", ".hidden"])
def test_any_key_gives_a_plain_volume_name_and_comes_back(key):
    name = cs.volume_name("maintenance", key)
    assert "/" not in name and " " not in name and "{" not in name
    assert name.startswith("entropy.maintenance.")
    assert cs.key_of(name) == ("maintenance", key)


def test_keys_of_other_kinds_and_foreign_volumes_are_not_records():
    assert cs.key_of("entropy.lock.run") == ("lock", "run")
    assert cs.key_of("disk.qcow2") is None
    assert cs.key_of("entropy.nope.x") is None
    assert cs.key_of("entropy.lock.x-zz") is None
    with pytest.raises(ValueError):
        cs.volume_name("nope", "x")


def test_records_decode_only_for_their_own_kind_and_key():
    raw = cs.encode("lock", "run", {"owner": "a"})
    assert cs.decode("lock", "run", raw) == {"owner": "a"}
    assert cs.decode("lock", "run", b"\0" * 40) is None  # created, not yet written
    with pytest.raises(ValueError):
        cs.decode("maintenance", "run", raw)
    with pytest.raises(ValueError):
        cs.decode("lock", "run", b"not json")
