# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The web dashboard in a real browser (Debian's chromium driven by Playwright) against the lab's real daemons,
started as users start it: ``bash tools/run.sh dashboard``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")

from conftest import LAB_DIR, LAB_TOOL, ROOT  # noqa: E402  pylint: disable=wrong-import-position

HOSTILE = "<img src=x onerror=alert(1)>"
PASSWORD = "lab operator pw"
SHOTS = os.path.join(ROOT, "docs", "images")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(name="dashboard")
def fixture_dashboard(lab_reset):
    lab = lab_reset
    users = os.path.join(LAB_DIR, "dashboard-users.json")
    if os.path.exists(users):
        os.unlink(users)
    env = dict(os.environ, ENTROPY_DASHBOARD_PASSWORD=PASSWORD)
    subprocess.run([sys.executable, "-m", "dashboard", "adduser", "--users", users, "vera", "--role", "viewer"], cwd=ROOT, env=env, check=True)
    # the hostile VM, defined (shut off) on hv1: its name must show as text
    conn = lab.connect("hv1")
    try:
        conn.defineXML(LAB_TOOL.domain_xml({"name": "hostile", "memory_mib": LAB_TOOL.VM_MEMORY_MIB,
                                            "disk": os.path.join(lab.dir, "images", "hostile.qcow2")}).replace(
            "<name>hostile</name>", "<name>&lt;img src=x onerror=alert(1)&gt;</name>"))
    finally:
        conn.close()
    port = _free_port()
    log = open(os.path.join(LAB_DIR, "dashboard-test.log"), "w", encoding="utf-8")  # pylint: disable=consider-using-with
    # users exists (vera): run.sh adds no admin then; add the operator ourselves
    subprocess.run([sys.executable, "-m", "dashboard", "adduser", "--users", users, "admin", "--role", "operator"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(["bash", os.path.join(ROOT, "tools", "run.sh"), "dashboard", "--refresh", "5"], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, env=dict(env, ENTROPY_DASHBOARD_PORT=str(port)), start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/login", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                os.killpg(server.pid, signal.SIGTERM)
                pytest.fail("the dashboard did not start: " + open(log.name, encoding="utf-8").read()[-3000:])
            time.sleep(0.5)
    try:
        yield {"url": url, "lab": lab}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        lab.remove_vm(HOSTILE)


@pytest.fixture(name="browser")
def fixture_browser():
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _login(page, url: str, user: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".columns")


def _hosts_of(page, vm: str) -> list:
    """The hosts whose column shows ``vm`` (two while a migration ends: the source's copy until libvirt undefines it)."""
    return [e.get_attribute("data-host") for e in page.locator('.host:has(.vm[data-vm="%s"])' % vm).all()]


def _state(page, vm: str) -> str:
    return page.locator('.vm[data-vm="%s"]' % vm).first.get_attribute("data-state")


def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError("%s: not seen within %s s" % (what, timeout))


def _open_panel(page, vm: str, badge: str) -> None:
    """Click the VM's block until its panel shows ``badge`` (the map is redrawn on every change: a click may land on a
    block being replaced)."""
    for _attempt in range(5):
        page.click('#map .vm[data-vm="%s"]' % vm)
        try:
            page.wait_for_selector('.vmpanel[data-vm="%s"] .badge >> text=%s' % (vm, badge), timeout=4000)
            return
        except playwright_sync.TimeoutError:
            continue
    raise AssertionError("the panel of %s never showed %s" % (vm, badge))


def test_dashboard_in_a_browser(dashboard, browser):
    url, lab = dashboard["url"], dashboard["lab"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    alerts = []
    page.on("dialog", lambda d: (alerts.append(d.message), d.accept()))
    _login(page, url, "admin")
    os.makedirs(SHOTS, exist_ok=True)

    # every lab VM on the host where libvirt runs it
    placement = lab.placement()
    for vm in lab.vms:
        running = [h for h, s in placement[vm] if s in ("running", "paused")]
        assert _hosts_of(page, vm) == running, vm
    # the hostile name shows as text: no element made of it, no alert
    assert page.locator('.vm[data-vm="%s"] .vmname' % HOSTILE).inner_text() == HOSTILE
    assert page.locator("main img").count() == 0
    page.screenshot(path=os.path.join(SHOTS, "dashboard-map.png"), full_page=True)

    # suspend then resume vm1: the state changes on the page without a reload
    vm = "vm1"
    page.evaluate("window.__noReload = true")
    page.click('.vm[data-vm="%s"]' % vm)
    page.wait_for_selector(".vmpanel .act-suspend")
    page.screenshot(path=os.path.join(SHOTS, "dashboard-vm-panel.png"))
    page.click(".vmpanel .act-suspend")
    _wait(lambda: _state(page, vm) == "paused", 20, "vm1 paused")
    page.wait_for_selector("#result .result.ok", timeout=60000)
    assert page.locator("#result").inner_text().startswith("suspend vm1: done")
    page.click(".vmpanel .act-resume")
    _wait(lambda: _state(page, vm) == "running", 20, "vm1 running again")
    page.wait_for_selector("#result .result.ok >> text=resume vm1", timeout=60000)
    assert page.evaluate("window.__noReload") is True, "the page was reloaded"

    # a state change made outside the dashboard shows within 2 s (libvirt event -> SSE -> htmx)
    source = lab.running_on("vm2")[0]
    conn = lab.connect(source)
    try:
        conn.lookupByName("vm2").suspend()
        seen = _wait(lambda: _state(page, "vm2") == "paused", 5, "vm2 paused by virsh")
        conn.lookupByName("vm2").resume()
    finally:
        conn.close()
    assert seen <= 2.0, "shown after %.2f s" % seen

    # migrate vm1: drag its block onto another host's column, confirm, and see it move
    before = _hosts_of(page, vm)
    target = [h.get_attribute("data-host") for h in page.locator("#map .host").all() if h.get_attribute("data-host") not in before][0]
    page.drag_and_drop('#map .vm[data-vm="%s"]' % vm, '#map .host[data-host="%s"] .stack' % target)
    _wait(lambda: _hosts_of(page, vm) == [target], 240, "vm1 on %s" % target)
    page.wait_for_selector("#panel .result.ok >> text=migrate vm1", timeout=240000)
    assert lab.running_on(vm) == [target] and before != [target]

    # save vm3 to the lab's shared save directory (vm_image), then resume it: both seen without a reload
    page.click('.vm[data-vm="vm3"]')
    page.wait_for_selector('.vmpanel[data-vm="vm3"] .act-save')
    page.click(".vmpanel .act-save")
    saved = _wait(lambda: _state(page, "vm3") == "saved", 60, "vm3 saved")
    page.wait_for_selector("#result .result.ok >> text=save vm3: done", timeout=60000)
    _open_panel(page, "vm3", "saved")
    page.click(".vmpanel .act-resume")
    _wait(lambda: _state(page, "vm3") == "running", 60, "vm3 running again")
    page.wait_for_selector("#result .result.ok >> text=resume vm3: done", timeout=60000)
    assert page.evaluate("window.__noReload") is True, "the page was reloaded"
    assert lab.running_on("vm3") and len(lab.running_on("vm3")) == 1

    page.goto(url + "/audit")
    audit = page.locator("#audit").inner_text()
    assert "migrate" in audit and "admin" in audit and "changed" in audit and "save" in audit
    page.screenshot(path=os.path.join(SHOTS, "dashboard-audit.png"))
    page.goto(url + "/host/" + target)
    page.screenshot(path=os.path.join(SHOTS, "dashboard-host.png"), full_page=True)
    assert alerts == ["Suspend vm1?", "Resume vm1?", "Migrate vm1 to %s?" % target, "Save vm3 to disk (it stops until resumed)?",
                      "Resume vm3?"], alerts

    # a viewer's action is refused by the server (the request sent by hand: the viewer has no button)
    viewer = browser.new_page()
    _login(viewer, url, "vera")
    viewer.click('.vm[data-vm="vm3"]')
    viewer.wait_for_selector(".vmpanel")
    assert viewer.locator(".vmpanel .act-suspend").count() == 0
    token = viewer.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    status = viewer.evaluate("""t => fetch('/vm/vm3/suspend', {method: 'POST', headers: {'X-CSRF-Token': t}}).then(r => r.status)""", token)
    assert status == 403
    # a POST without the CSRF token is refused, even from the operator
    status = page.evaluate("() => fetch('/vm/vm3/suspend', {method: 'POST'}).then(r => r.status)")
    assert status == 403
    placement = lab.placement()
    assert [s for h, s in placement["vm3"] if s in ("running", "paused")] == ["running"], placement["vm3"]

    # the plan view: the solver run from the page (objective chosen there) shows the before/after maps and the steps
    page.goto(url + "/plan")
    page.select_option("select.objective", "consolidate")
    page.click(".act-plan")
    page.wait_for_selector("#plan-job .plan .plan-after", timeout=120000)
    assert page.locator("#plan-job .plan-before .vm").count() == page.locator("#plan-job .plan-after .vm").count() >= len(lab.vms)
    steps = page.locator("#plan-job .plansteps tr").count() - 1
    assert steps > 0 and page.locator("#plan-job .act-apply").count() == 1, "lab after the moves above: consolidation has work"
    page.screenshot(path=os.path.join(SHOTS, "dashboard-plan.png"), full_page=True)
    print(json.dumps({"state_change_seen_s": round(seen, 2), "save_seen_s": round(saved, 2), "plan_steps": steps}))
