# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The web dashboard (dashboard/) with Starlette's TestClient over libvirt's test driver (a node XML file).

Login, roles, CSRF, escaping of tenant names, the login rate limit, /metrics; one action runs for real through
ansible-runner and dashboard/playbooks/vm_action.yml against the test driver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import quote

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402  pylint: disable=wrong-import-position

from dashboard import auth  # noqa: E402  pylint: disable=wrong-import-position
from dashboard.app import Config, create_app  # noqa: E402  pylint: disable=wrong-import-position
from dashboard.collector import Collector, load_inventory_file  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOSTILE = "<img src=x onerror=alert(1)>"
TEMPLATED = "{{ 7 * 191 }}"  # templated, it would name VM 1337, which does not exist: the action would fail
QUOTED = 'q"uote\\vm'
PASSWORD = "correct horse"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _domain(name: str, memory_kib: int) -> str:
    return ('<domain type="test"><name>%s</name><memory>%d</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>'
            % (_xml(name), memory_kib))


@pytest.fixture(name="cluster")
def fixture_cluster(tmp_path):
    """Two test-driver hypervisors from node XML files, one unreachable; an inventory file; users."""
    node1 = tmp_path / "node1.xml"
    domains = _domain("web01", 524288) + _domain(HOSTILE, 262144) + _domain(TEMPLATED, 262144) + _domain(QUOTED, 131072)
    node1.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
                     "<memory>8388608</memory>%s</node>" % domains)
    node2 = tmp_path / "node2.xml"
    node2.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
                     "<memory>8388608</memory>%s</node>" % _domain("db01", 1048576))
    inventory = tmp_path / "cluster.libvirt_cluster.yml"
    inventory.write_text(json.dumps({"plugin": "entropy.cluster.libvirt_cluster", "sampling_interval": 0.1, "hypervisors": [
        {"name": "hv1", "uri": "test://%s" % node1}, {"name": "hv2", "uri": "test://%s" % node2},
        {"name": "hv3", "uri": "test+unix:///default?socket=%s" % (tmp_path / "no-such.sock")}]}))
    users = tmp_path / "users.json"
    auth.add_user(str(users), "olga", PASSWORD, "operator")
    auth.add_user(str(users), "victor", PASSWORD, "viewer")
    collector = Collector(load_inventory_file(str(inventory)), refresh=3600, events=False)
    collector.start()
    yield {"collector": collector, "users": str(users), "dir": tmp_path}
    collector.stop()


def _app(cluster, runner=None, **config):
    kwargs = {"runner": runner} if runner else {}
    return create_app(cluster["collector"], Config(users_file=cluster["users"], audit_file=str(cluster["dir"] / "audit.log"), **config), **kwargs)


def _token(client: TestClient, path: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def _login(client: TestClient, user: str, password: str = PASSWORD):
    return client.post("/login", data={"username": user, "password": password, "csrf_token": _token(client)}, follow_redirects=False)


def _session_token(client: TestClient) -> str:
    return re.search(r'"X-CSRF-Token": "([^"]+)"', client.get("/").text).group(1)


def test_login_required_everywhere(cluster):
    client = TestClient(_app(cluster))
    for path in ("/", "/partials/map", "/host/hv1", "/vm/web01", "/partials/vm/web01", "/audit", "/events"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", path
    assert client.get("/metrics").status_code == 401
    assert client.post("/vm/web01/suspend", data={"csrf_token": _token(client)}).status_code == 401


def test_login_and_cookie_flags(cluster):
    client = TestClient(_app(cluster))
    assert _login(client, "olga", "wrong password").status_code == 401
    response = _login(client, "olga")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/").status_code == 200
    assert "olga (operator)" in client.get("/").text


def test_users_file_holds_salted_hashes_only(cluster):
    data = json.loads(open(cluster["users"], encoding="utf-8").read())
    hashes = [u["hash"] for u in data["users"].values()]
    assert all(h.startswith("scrypt$") for h in hashes) and PASSWORD not in json.dumps(data)
    assert hashes[0].split("$")[4] != hashes[1].split("$")[4], "each user has their own salt"
    assert auth.Users(cluster["users"]).authenticate("olga", PASSWORD) == "operator"
    assert auth.Users(cluster["users"]).authenticate("olga", PASSWORD + "x") is None


def test_adduser_command(tmp_path):
    users = tmp_path / "users.json"
    env = dict(os.environ, ENTROPY_DASHBOARD_PASSWORD="a long password")
    done = subprocess.run([sys.executable, "-m", "dashboard", "adduser", "--users", str(users), "ann", "--role", "operator"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert auth.Users(str(users)).authenticate("ann", "a long password") == "operator"
    assert oct(os.stat(users).st_mode & 0o777) == "0o600"
    short = subprocess.run([sys.executable, "-m", "dashboard", "adduser", "--users", str(users), "bob"], cwd=ROOT,
                           env=dict(os.environ, ENTROPY_DASHBOARD_PASSWORD="short"), capture_output=True, text=True, check=False)
    assert short.returncode == 2 and short.stderr.startswith("error: the password of bob is too short") and "Traceback" not in short.stderr


def test_serve_binds_loopback_by_default():
    from dashboard.__main__ import main  # pylint: disable=import-outside-toplevel
    import argparse  # pylint: disable=import-outside-toplevel

    seen = {}

    def fake_parse(self, args=None, namespace=None):  # pylint: disable=unused-argument
        seen["defaults"] = {a.dest: a.default for a in self._subparsers._group_actions[0].choices["serve"]._actions}  # pylint: disable=protected-access
        raise SystemExit(0)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = fake_parse
    try:
        with pytest.raises(SystemExit):
            main([])
    finally:
        argparse.ArgumentParser.parse_args = original
    assert seen["defaults"]["bind"] == "127.0.0.1" and seen["defaults"]["port"] == 8080


def test_login_rate_limited(cluster):
    client = TestClient(_app(cluster, login_limit=3, login_window=60))
    for _attempt in range(3):
        assert _login(client, "olga", "nope").status_code == 401
    refused = _login(client, "olga")  # the right password, but too many failures just before
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert _login(client, "victor").status_code == 429, "the limit holds per client address too"
    assert "Too many failed logins" in refused.text


def test_every_post_refuses_a_missing_or_wrong_csrf_token(cluster):
    calls = []
    app = _app(cluster, runner=lambda v: calls.append(v) or {"ok": True, "changed": True, "message": "done"})
    client = TestClient(app)
    assert client.post("/login", data={"username": "olga", "password": PASSWORD}).status_code == 403
    _login(client, "olga")
    token = _session_token(client)
    posts = [r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())]
    assert set(posts) == {"/login", "/logout", "/vm/{name}/{action}"}
    for path in ("/logout", "/vm/web01/suspend", "/vm/web01/migrate"):
        assert client.post(path, data={"destination": "hv2"}).status_code == 403, path
        assert client.post(path, data={"destination": "hv2", "csrf_token": token + "x"}).status_code == 403, path
        assert client.post(path, data={"destination": "hv2"}, headers={"X-CSRF-Token": "forged"}).status_code == 403, path
    assert calls == []
    assert client.get("/").status_code == 200, "still logged in: the refused logout did nothing"
    ok = client.post("/vm/web01/suspend", headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and len(calls) == 1


def test_viewer_refused_by_the_server(cluster):
    calls = []
    client = TestClient(_app(cluster, runner=lambda v: calls.append(v) or {"ok": True, "changed": True, "message": "done"}))
    _login(client, "victor")
    page = client.get("/partials/vm/web01").text
    assert "act-suspend" not in page, "no buttons for a viewer"
    response = client.post("/vm/web01/suspend", headers={"X-CSRF-Token": _session_token(client)})
    assert response.status_code == 403 and "needs operator" in response.text
    assert calls == []
    entry = json.loads(open(cluster["dir"] / "audit.log", encoding="utf-8").read().splitlines()[-1])
    assert entry["user"] == "victor" and entry["outcome"] == "refused" and entry["action"] == "suspend"


def test_bad_action_input_refused_with_a_message(cluster):
    calls = []
    client = TestClient(_app(cluster, runner=lambda v: calls.append(v) or {"ok": True}))
    _login(client, "olga")
    headers = {"X-CSRF-Token": _session_token(client)}
    assert "no VM named nosuch" in client.post("/vm/nosuch/suspend", headers=headers).text
    assert "unknown action reboot" in client.post("/vm/web01/reboot", headers=headers).text
    wrong = client.post("/vm/web01/migrate", data={"destination": "hv1"}, headers=headers)
    assert wrong.status_code == 400 and "choose a destination hypervisor other than hv1" in wrong.text
    assert calls == []


def test_tenant_names_escaped_everywhere(cluster):
    client = TestClient(_app(cluster))
    _login(client, "olga")
    for path in ("/", "/partials/map", "/host/hv1", "/vm/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E",
                 "/partials/vm/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"):
        text = client.get(path).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text, path
        assert "<img" not in text, path
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


def test_page_shows_hosts_vms_and_unreachable(cluster):
    client = TestClient(_app(cluster))
    _login(client, "olga")
    text = client.get("/").text
    for host in ("hv1", "hv2", "hv3"):
        assert 'data-host="%s"' % host in text
    assert re.search(r'class="host unreachable" data-host="hv3"', text)
    hv1 = text[text.index('data-host="hv1"'):text.index('data-host="hv2"')]
    assert 'data-vm="web01"' in hv1 and 'data-vm="db01"' not in hv1
    assert "hosts used <b>2</b> / 3 (1 unreachable)" in text


def test_metrics(cluster):
    app = _app(cluster, metrics_token="s3cret")
    client = TestClient(app)
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'entropy_host_reachable{host="hv3"} 0' in text
    assert 'entropy_vm_memory_mib{vm="web01",host="hv1"} 512' in text
    assert 'entropy_vm_memory_mib{vm="q\\"uote\\\\vm",host="hv1"} 128' in text
    assert 'entropy_vm_state{vm="db01",host="hv2",state="running"} 1' in text
    for line in text.splitlines():  # every line a comment or "name{labels} value"
        assert line.startswith("# ") or re.fullmatch(r'[a-z_]+(\{.*\})? -?[0-9.e+-]+', line), line


def test_action_runs_the_playbook_with_names_as_data(cluster):
    """A real run of vm_action.yml through ansible-runner on the test driver: a VM whose name is Jinja code is
    suspended under that exact name (the test driver re-reads its file in each process, so it finds it running)."""
    client = TestClient(_app(cluster))
    _login(client, "olga")
    response = client.post("/vm/%s/suspend" % quote(TEMPLATED, safe=""), headers={"X-CSRF-Token": _session_token(client)})
    assert response.status_code == 200, response.text
    assert "suspend" in response.text and "done" in response.text
    entry = json.loads(open(cluster["dir"] / "audit.log", encoding="utf-8").read().splitlines()[-1])
    assert entry["vm"] == TEMPLATED and entry["outcome"] == "changed" and entry["user"] == "olga"


def test_the_dashboard_benchmark_in_a_short_run():
    done = subprocess.run([sys.executable, "benchmarks/bench_dashboard.py", "--sizes", "4x20", "--repeat", "2"], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\| 4 \| 20 \| [0-9.]+ \| [0-9]+ \| [0-9]+ \| [0-9]+ \| [0-9]+ \|$", done.stdout, re.M), done.stdout


def test_audit_page_shows_refused_and_done_entries(cluster):
    client = TestClient(_app(cluster, runner=lambda v: {"ok": True, "changed": True, "message": "done"}))
    _login(client, "victor")
    client.post("/vm/web01/suspend", headers={"X-CSRF-Token": _session_token(client)})  # refused: no host in the entry
    _login(client, "olga")
    client.post("/vm/%s/suspend" % quote(HOSTILE, safe=""), headers={"X-CSRF-Token": _session_token(client)})
    page = client.get("/audit")
    assert page.status_code == 200 and "refused" in page.text and "changed" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and "<img" not in page.text
