# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The unit suite's own rule: a skip it did not expect fails the run (tests/unit/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))


def run_pytest(tmp_path, tests: str) -> subprocess.CompletedProcess:
    """Run pytest on `tests` with the hooks of tests/unit/conftest.py loaded, in a fresh process."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("unit_conftest", {os.path.join(HERE, "conftest.py")!r})
        unit = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(unit)
        pytest_runtest_makereport = unit.pytest_runtest_makereport
        pytest_make_collect_report = unit.pytest_make_collect_report
    """))
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(tests))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)


def test_a_skipped_test_fails_the_run(tmp_path):
    res = run_pytest(tmp_path, """
        import pytest

        def test_passes():
            pass

        def test_skips():
            pytest.skip("data not found in /somewhere/else")

        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_expected_failure():
            assert False
    """)
    assert res.returncode == 1, res.stdout
    assert "1 failed, 1 passed, 1 xfailed" in res.stdout
    assert "unexpected skip (data not found in /somewhere/else)" in res.stdout


def test_a_module_skipped_at_import_fails_the_run(tmp_path):
    res = run_pytest(tmp_path, """
        import pytest

        pytest.importorskip("no_such_module_entropy")

        def test_never_runs():
            pass
    """)
    assert res.returncode != 0, res.stdout
    assert "unexpected skip (could not import 'no_such_module_entropy'" in res.stdout
    assert "skipped" not in res.stdout.splitlines()[-1]
