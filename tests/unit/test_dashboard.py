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
import threading
import time
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
    node1.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>"
                     "<memory>8388608</memory>%s</node>" % domains)
    node2 = tmp_path / "node2.xml"
    node2.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>"
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


def _app(cluster, runner=None, playbooks=None, **config):
    kwargs = {"runner": runner} if runner else {}
    if playbooks:
        kwargs["playbooks"] = playbooks
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
    assert set(posts) == {"/login", "/logout", "/vm/{name}/{action}", "/host/{name}/{action}", "/plan", "/plan/{plan}/apply"}
    for path in ("/logout", "/vm/web01/suspend", "/vm/web01/migrate", "/vm/web01/save", "/vm/web01/snapshot", "/host/hv2/evacuate",
                 "/plan", "/plan/0123456789ab/apply"):
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


# ---------------------------------------------------------------------------------------------- save, snapshot, evacuate, plans
def _stub(calls):
    return lambda v: calls.append(v) or {"ok": True, "changed": True, "message": "done"}


def _stub_playbooks(calls):
    def run(playbook, variables, inventory=None, event_handler=None):
        calls.append((os.path.basename(playbook), variables, inventory))
        return {"ok": True, "changed": True, "message": "done"}
    return run


def _wait_job(app, job_id, timeout=300):
    job = app.state.jobs.get(job_id)
    assert job is not None, job_id
    assert job.done.wait(timeout), "job %s still running" % job_id
    return job


def _job_id(response):
    return re.search(r'data-job="([0-9a-f]{12})"', response.text).group(1)


def _operator_app(cluster, **kwargs):
    config = dict(inventory_file=str(cluster["dir"] / "cluster.libvirt_cluster.yml"), plan_dir=str(cluster["dir"] / "plans"))
    config.update(kwargs.pop("config", {}))
    return _app(cluster, **kwargs, **config)


@pytest.mark.parametrize("path, data", [("/vm/web01/save", {}), ("/vm/web01/snapshot", {"snapshot": "s1"}),
                                        ("/host/hv2/evacuate", {}), ("/plan", {"objective": "consolidate"})])
def test_new_actions_refuse_a_viewer_and_a_missing_csrf_token(cluster, path, data):
    calls, jobs = [], []
    app = _operator_app(cluster, runner=_stub(calls), playbooks=_stub_playbooks(jobs))
    client = TestClient(app)
    _login(client, "victor")
    refused = client.post(path, data=data, headers={"X-CSRF-Token": _session_token(client)})
    assert refused.status_code == 403 and "needs operator" in refused.text
    entry = json.loads(open(cluster["dir"] / "audit.log", encoding="utf-8").read().splitlines()[-1])
    assert entry["user"] == "victor" and entry["outcome"] == "refused"
    _login(client, "olga")
    assert client.post(path, data=data).status_code == 403, "no CSRF token"
    assert client.post(path, data=data, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert calls == [] and jobs == [] and not app.state.jobs.recent()


def test_save_and_snapshot_run_the_playbook(cluster):
    """Real runs of vm_action.yml on the test driver: a managed save (no save_dir in the inventory) and a snapshot."""
    client = TestClient(_operator_app(cluster))
    _login(client, "olga")
    headers = {"X-CSRF-Token": _session_token(client)}
    saved = client.post("/vm/web01/save", headers=headers)
    assert saved.status_code == 200 and "save web01: done" in saved.text, saved.text
    snap = client.post("/vm/%s/snapshot" % quote(TEMPLATED, safe=""), data={"snapshot": "before-upgrade"}, headers=headers)
    assert snap.status_code == 200 and "done" in snap.text, snap.text
    bad = client.post("/vm/web01/snapshot", data={"snapshot": "{{ lookup('pipe', 'id') }}"}, headers=headers)
    assert bad.status_code == 400 and "is not allowed" in bad.text
    entries = [json.loads(line) for line in open(cluster["dir"] / "audit.log", encoding="utf-8")]
    assert [(e["action"], e["outcome"]) for e in entries] == [("save", "changed"), ("snapshot", "changed"), ("snapshot", "refused")]
    assert entries[1]["vm"] == TEMPLATED and entries[1]["snapshot"] == "before-upgrade"


def test_save_and_resume_use_vm_image_with_a_save_dir(cluster, tmp_path):
    """With save_dir in the inventory file, save and resume go through vm_image there; a shut-off VM with an image shows saved."""
    inventory = cluster["dir"] / "cluster.libvirt_cluster.yml"
    data = json.loads(inventory.read_text())
    data["save_dir"] = str(tmp_path)
    inventory.write_text(json.dumps(data))
    calls = []
    app = _operator_app(cluster, runner=_stub(calls))
    client = TestClient(app)
    _login(client, "olga")
    headers = {"X-CSRF-Token": _session_token(client)}
    assert client.post("/vm/web01/save", headers=headers).status_code == 200
    assert calls[-1]["entropy_save_dir"] == str(tmp_path) and calls[-1]["entropy_image_saved"] is False
    view = cluster["collector"].snapshot()
    view["vms"]["db01"]["badge"] = "shutoff"  # as the collector shows a VM vm_image saved
    view.pop("images_checked", None)
    (tmp_path / "db01.save").write_bytes(b"image")
    assert 'data-vm="db01" data-state="saved"' in client.get("/partials/map").text
    assert client.post("/vm/db01/resume", headers=headers).status_code == 200
    assert calls[-1]["entropy_image_saved"] is True and len(calls[-1]["entropy_uris"]) == 3


def test_evacuate_runs_the_collection_playbook_as_a_job(cluster):
    """entropy.cluster.evacuate on the dashboard's inventory file, as a job whose progress (ansible-runner's events) streams
    over SSE, with the audit entries. The playbook runner is a stand-in that replays ansible-runner events (a real run on
    the test driver takes a minute and ends in the driver's "cannot migrate"; the plan test below runs ansible-runner for real)."""
    calls = []
    release = threading.Event()

    def playbooks(playbook, variables, inventory=None, event_handler=None):
        calls.append((os.path.basename(playbook), variables, inventory))
        event_handler({"event": "playbook_on_task_start", "event_data": {"task": "Compute the plan"}})
        event_handler({"event": "runner_on_ok", "event_data": {"task": "Compute the plan", "res": {"changed": False}}})
        event_handler({"event": "playbook_on_task_start", "event_data": {"task": "Say what the model left out"}})
        event_handler({"event": "runner_on_skipped", "event_data": {"task": "Say what the model left out"}})
        event_handler({"event": "playbook_on_task_start", "event_data": {"task": "Start the migrations of step 1/1"}})
        event_handler({"event": "runner_item_on_ok", "event_data": {"res": {"changed": True, "_ansible_item_label": "db01: hv2 -> hv1"}}})
        release.wait(30)
        return {"ok": True, "changed": True, "message": "done"}

    app = _operator_app(cluster, playbooks=playbooks)
    client = TestClient(app)
    _login(client, "olga")
    response = client.post("/host/hv2/evacuate", headers={"X-CSRF-Token": _session_token(client)})
    assert response.status_code == 200 and 'sse-connect="/jobs/' in response.text
    job = app.state.jobs.get(_job_id(response))
    _wait_for(lambda: len(job.view()["lines"]) == 3)
    running = client.get("/jobs/%s" % job.id).text
    assert "Compute the plan <b>ok</b>" in running and "Say what the model left out" not in running
    assert "db01: hv2 -&gt; hv1 <b>changed</b>" in running and 'data-status="running"' in running
    second = client.post("/plan", data={"objective": "consolidate"}, headers={"X-CSRF-Token": _session_token(client)})
    assert second.status_code == 409 and "evacuate hv2 (started by olga) is still running" in second.text
    release.set()
    _wait_job(app, job.id)
    assert calls == [("evacuate.yml", {"entropy_evacuate_hosts": ["hv2"]}, str(cluster["dir"] / "cluster.libvirt_cluster.yml"))]
    events = client.get("/jobs/%s/events" % job.id).text
    assert "event: progress" in events and events.rstrip().endswith("event: done\ndata: changed")
    entries = [json.loads(line) for line in open(cluster["dir"] / "audit.log", encoding="utf-8")]
    expected = [("evacuate", "hv2", "started", "olga"), ("evacuate", "hv2", "changed", "olga")]
    assert [(e["action"], e.get("host"), e["outcome"], e["user"]) for e in entries if e["outcome"] != "refused"] == expected
    assert "unknown action" in client.post("/host/hv2/reboot", headers={"X-CSRF-Token": _session_token(client)}).text
    assert "no hypervisor named hv9" in client.post("/host/hv9/evacuate", headers={"X-CSRF-Token": _session_token(client)}).text


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.02)


def test_plan_view_computes_shows_and_applies_a_plan(cluster):
    """entropy.cluster.plan through ansible-runner (the objective from the form): the plan file, before/after maps and
    the steps; apply runs entropy.cluster.apply on that same file."""
    app = _operator_app(cluster)
    client = TestClient(app)
    _login(client, "olga")
    headers = {"X-CSRF-Token": _session_token(client)}
    page = client.get("/plan").text
    assert 'option value="balance"' in page and "act-plan" in page
    assert client.post("/plan", data={"objective": "nonsense"}, headers=headers).status_code == 400
    job = _wait_job(app, _job_id(client.post("/plan", data={"objective": "consolidate"}, headers=headers)))
    assert job.status == "ok", job.result
    plan_id = job.result["plan"]
    path = app.state.plans[plan_id]
    plan = json.loads(open(path, encoding="utf-8").read())
    assert plan["objective"] == "consolidate" and os.path.dirname(path) == str(cluster["dir"] / "plans")
    shown = client.get("/plan/%s" % plan_id).text
    assert 'class="planmap plan-before"' in shown and 'class="planmap plan-after"' in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown and "<img" not in shown
    steps = [a for step in plan["steps"] for a in step]
    assert steps and 'class="act-apply"' in shown, plan
    for action in steps:
        assert "<td>%s</td>" % action["vm"] in shown
    calls = []
    app2 = _operator_app(cluster, playbooks=_stub_playbooks(calls))
    app2.state.plans[plan_id] = path
    client2 = TestClient(app2)
    _login(client2, "olga")
    applied = client2.post("/plan/%s/apply" % plan_id, headers={"X-CSRF-Token": _session_token(client2)})
    _wait_job(app2, _job_id(applied))
    assert calls == [("apply.yml", {"entropy_plan_file": path}, str(cluster["dir"] / "cluster.libvirt_cluster.yml"))]
    viewer = TestClient(app)
    _login(viewer, "victor")
    assert "act-apply" not in viewer.get("/plan/%s" % plan_id).text
    assert viewer.post("/plan/%s/apply" % plan_id, headers={"X-CSRF-Token": _session_token(viewer)}).status_code == 403


def test_only_an_operator_can_drag_a_vm(cluster):
    """Drag-and-drop (dashboard.js) posts to the Migrate button's URL: only an operator's map has draggable blocks, and
    the server refuses a viewer's migration whatever the page offers."""
    calls = []
    client = TestClient(_app(cluster, runner=_stub(calls)))
    _login(client, "olga")
    assert 'data-vm="web01" data-state="running" draggable="true"' in client.get("/partials/map").text
    _login(client, "victor")
    assert 'draggable="true"' not in client.get("/partials/map").text
    refused = client.post("/vm/web01/migrate", data={"destination": "hv2", "csrf_token": _session_token(client)})
    assert refused.status_code == 403 and calls == []


# ---------------------------------------------------------------------------------------------- the role entropy.cluster.dashboard
ROLE_PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: entropy.cluster.dashboard
"""


def _apply_role(tmp_path, variables, check=False):
    play = tmp_path / "play.yml"
    play.write_text(ROLE_PLAY)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", str(play), "-e", json.dumps(variables)]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".tmp", "collections"), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    done = subprocess.run(cmd + (["--check", "--diff"] if check else []), capture_output=True, text=True, check=False, env=env, cwd=str(tmp_path))
    recap = re.search(r"localhost\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", done.stdout)
    assert done.returncode == 0 and recap, done.stdout[-4000:] + done.stderr[-2000:]
    return int(recap.group(2)), done.stdout


def test_dashboard_role_installs_a_hardened_service(tmp_path, cluster):
    """The role applied for real on localhost, every path in a temporary directory and the test venv as its virtualenv
    (no systemd runs here): check mode writes nothing, the run writes the unit, users, key and environment, a second run and
    a check-mode run change nothing; systemd-analyze verify accepts the unit, and its ExecStart serves /login."""
    import getpass  # pylint: disable=import-outside-toplevel
    import shlex  # pylint: disable=import-outside-toplevel
    import socket  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state, units = tmp_path / "state", tmp_path / "units"
    variables = {"entropy_dashboard_inventory": str(cluster["dir"] / "cluster.libvirt_cluster.yml"), "entropy_dashboard_venv": sys.prefix,
                 "entropy_dashboard_packages": [], "entropy_dashboard_create_user": False, "entropy_dashboard_service_user": getpass.getuser(),
                 "entropy_dashboard_manage_service": False, "entropy_dashboard_state_dir": str(state),
                 "entropy_dashboard_config_dir": str(tmp_path / "etc"), "entropy_dashboard_unit_dir": str(units),
                 "entropy_dashboard_port": port, "entropy_dashboard_metrics_token": "tok3n",
                 "entropy_dashboard_users": [{"name": "ops", "role": "operator", "password": PASSWORD}]}
    units.mkdir()  # /etc/systemd/system exists on a real host
    changed, out = _apply_role(tmp_path, variables, check=True)
    assert changed > 0 and not state.exists() and not list(units.iterdir()), out[-3000:]
    assert PASSWORD not in out
    changed, out = _apply_role(tmp_path, variables)
    assert changed > 0 and PASSWORD not in out
    unit = units / "entropy-dashboard.service"
    assert oct(os.stat(state / "users.json").st_mode & 0o777) == "0o600" and oct(os.stat(state / "secret").st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "etc" / "environment").st_mode & 0o777) == "0o600"
    assert 'ENTROPY_DASHBOARD_METRICS_TOKEN="tok3n"' in (tmp_path / "etc" / "environment").read_text()
    text = unit.read_text()
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "ReadWritePaths=%s" % state, "PrivateTmp=yes"):
        assert option in text, option
    assert "--bind 127.0.0.1" in text
    assert _apply_role(tmp_path, variables)[0] == 0, "a second run changes nothing"
    assert _apply_role(tmp_path, variables, check=True)[0] == 0, "check mode on the installed service changes nothing"
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the unit's own command, in its working directory with its environment
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    env = dict(os.environ, **dict(item.split("=", 1) for item in shlex.split(lines["Environment"])))
    server = subprocess.Popen(shlex.split(lines["ExecStart"]), cwd=lines["WorkingDirectory"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        url = "http://127.0.0.1:%d" % port
        deadline = time.monotonic() + 60
        while True:
            try:
                page = urllib.request.urlopen(url + "/login", timeout=2).read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() is not None else "timeout"
                time.sleep(0.3)
        assert 'name="csrf_token"' in page
        assert auth.Users(str(state / "users.json")).authenticate("ops", PASSWORD) == "operator"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_prometheus_that_cannot_answer_keeps_the_last_figures_and_says_why(cluster):
    """load_source: prometheus in the inventory file: the dashboard reads as the inventory does, and when the server does not
    answer it keeps the figures it has and shows why on the map."""
    collector = cluster["collector"]
    before = collector.snapshot()
    inventory = json.loads((cluster["dir"] / "cluster.libvirt_cluster.yml").read_text())
    inventory.update({"load_source": "prometheus", "prometheus_url": "http://127.0.0.1:1"})
    path = cluster["dir"] / "prom.libvirt_cluster.yml"
    path.write_text(json.dumps(inventory))
    collector.settings = load_inventory_file(str(path))
    collector.refresh()
    view = collector.snapshot()
    assert sorted(view["vms"]) == sorted(before["vms"])
    assert any("the last read failed" in w and "127.0.0.1:1" in w for w in view["warnings"]), view["warnings"]


def test_a_vms_job_priority_and_checkpoints_show_on_its_page_as_text(tmp_path):
    """Jobs, priorities and checkpoints where those features exist: a job VM's metadata (entropy.cluster.submit, vm_priority)
    on its panel, and the checkpoints of entropy.cluster.checkpoint's directory that hold it on its page; tenant names as text."""
    meta = ('<metadata><entropy:vm xmlns:entropy="urn:x-entropy-cluster:vm:1"><entropy:priority>7</entropy:priority>'
            '<entropy:job>%s</entropy:job><entropy:owner>%s</entropy:owner></entropy:vm></metadata>' % (_xml(HOSTILE), _xml(TEMPLATED)))
    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>"
                    "<memory>8388608</memory><domain type='test'><name>job-vm</name><memory>262144</memory><vcpu>1</vcpu>"
                    "<os><type>hvm</type></os>%s</domain></node>" % meta)
    inventory = tmp_path / "one.libvirt_cluster.yml"
    inventory.write_text(json.dumps({"plugin": "entropy.cluster.libvirt_cluster", "sampling_interval": 0,
                                     "hypervisors": [{"name": "hv1", "uri": "test://%s" % node}]}))
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "c1.checkpoint.json").write_text(json.dumps({"format": 1, "checkpoint": "c1", "created": 1796300000,
                                                                "vms": {"job-vm": {"memory_bytes": 3 * 1048576}, HOSTILE: {}}}))
    (checkpoints / "other.checkpoint.json").write_text(json.dumps({"checkpoint": "other", "created": 1, "vms": {"vm9": {}}}))
    (checkpoints / "broken.checkpoint.json").write_text("{")
    users = tmp_path / "users.json"
    auth.add_user(str(users), "victor", PASSWORD, "viewer")
    collector = Collector(load_inventory_file(str(inventory)), refresh=3600, events=False)
    collector.start()
    try:
        client = TestClient(create_app(collector, Config(users_file=str(users), checkpoint_dir=str(checkpoints))))
        _login(client, "victor")
        page = client.get("/vm/job-vm").text
    finally:
        collector.stop()
    assert "priority 7" in page and "job &lt;img src=x onerror=alert(1)&gt; of {{ 7 * 191 }}" in page and "<img src=x" not in page
    assert "<td>c1</td>" in page and "3.0 MiB" in page and "other" not in page
    assert ">7</td>" in page   # the facts table
