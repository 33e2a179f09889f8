# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Starlette application: pages, htmx partials, server-sent events, actions, /metrics.

Security: every page but /login needs a session (signed cookie, HttpOnly, SameSite=Strict); every POST carries the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``) or is refused with 403; actions need the
role ``operator``, checked here on the server; failed logins are rate-limited per client address and per user name;
templates autoescape everything (VM and host names are tenant data), and the Content-Security-Policy allows no
inline script.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import os
import re
import secrets
import time
import typing as t

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import HERE
from .actions import ACTIONS, COLLECTION_PLAYBOOKS, HOST_ACTIONS, AuditLog, inventory_options, run_action, run_playbook
from .jobs import Job, Jobs, runner_progress
from .auth import RateLimiter, Users, csrf_ok, new_csrf_token
from .metrics import render_metrics

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class Config(t.NamedTuple):
    users_file: str
    audit_file: str | None = None
    secret_key: str | None = None
    https_only: bool = False
    migrate_unsafe: bool = False
    metrics_token: str | None = None
    login_limit: int = 5
    login_window: float = 60.0
    sse_poll: float = 0.2
    inventory_file: str | None = None   # the cluster's inventory file: evacuate and plans run the playbooks on it
    plan_dir: str | None = None         # where plans are written (default: plans/ beside the users file)
    checkpoint_dir: str | None = None   # entropy.cluster.checkpoint's directory: a VM's page lists its checkpoints


def vm_checkpoints(directory: str | None, vm: str) -> list[dict] | None:
    """The checkpoints (entropy.cluster.checkpoint manifests in ``directory``) that hold ``vm``, newest first: name, when,
    the group's VMs, the memory image's size; None without a directory. Unreadable manifests are skipped."""
    if not directory:
        return None
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        if not name.endswith(".checkpoint.json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("vms"), dict) or vm not in data["vms"]:
            continue
        created = data.get("created") if isinstance(data.get("created"), (int, float)) else None
        entry = data["vms"][vm] if isinstance(data["vms"][vm], dict) else {}
        found.append({"checkpoint": str(data.get("checkpoint", name)), "created": created,
                      "when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if created else "?",
                      "group": sorted(str(v) for v in data["vms"]), "memory_bytes": entry.get("memory_bytes")})
    return sorted(found, key=lambda c: c["created"] or 0, reverse=True)


OBJECTIVES = ("consolidate", "repair", "balance", "schedule")
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["load_colour"] = load_colour
    env.filters["block_height"] = block_height
    env.filters["sparkline"] = sparkline
    return env


def load_colour(vm: dict) -> str:
    """A VM block's colour: green (idle) to red (every vCPU busy), grey when not running."""
    if vm.get("entropy_state") not in ("running", "blocked"):
        return "hsl(0, 0%, 75%)"
    demand, vcpus = vm.get("entropy_cpu_demand_cores") or 0.0, vm.get("entropy_vcpus") or 1
    load = max(0.0, min(1.0, float(demand) / float(vcpus)))
    return "hsl(%d, 70%%, 55%%)" % int(round(120 * (1.0 - load)))


def block_height(vm: dict, host: dict) -> int:
    """A VM block's height in pixels, proportional to its memory in its host's capacity (a column is 480 px)."""
    capacity = (host.get("entropy_memory_mib") or 0) or 1
    memory = vm.get("entropy_memory_mib") or 0
    return max(22, min(480, int(480.0 * memory / capacity)))


def sparkline(points: list, width: int = 300, height: int = 60) -> str:
    """SVG polyline points for a list of numbers (None skipped), scaled to the box; '' when fewer than two."""
    values = [float(v) for v in points if v is not None]
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    return " ".join("%.1f,%.1f" % (i * step, height - (v / top) * (height - 2) - 1) for i, v in enumerate(values))


def _sse(event: str, html: str) -> str:
    """One server-sent event carrying HTML (one data: line per line of it)."""
    return "event: %s\n%s\n\n" % (event, "\n".join("data: " + line for line in html.splitlines() or [""]))


def plan_maps(plan: dict, host_names: list) -> dict:
    """The plan's placement before and after, as host -> [{"name", "state"}], and its steps numbered."""
    from . import collector as _loader  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import placements_after_steps  # pylint: disable=import-outside-toplevel

    initial = plan.get("initial") or {}
    steps = plan.get("steps") or []
    after = placements_after_steps(initial, steps)[-1] if steps else initial
    hosts = list(host_names) + sorted({w.get("host") for w in list(initial.values()) + list(after.values())
                                       if w.get("host") and w.get("host") not in host_names})

    def columns(placement: dict) -> list:
        return [{"name": h, "vms": [{"name": vm, "state": placement[vm].get("state", "running")}
                                    for vm in sorted(placement) if placement[vm].get("host") == h]} for h in hosts]
    moved = {a.get("vm") for step in steps for a in step}
    return {"before": columns(initial), "after": columns(after), "moved": moved,
            "steps": [{"number": i + 1, "actions": step} for i, step in enumerate(steps)]}


def create_app(collector: t.Any, config: Config, runner: t.Callable[[dict], dict] = run_action,
               playbooks: t.Callable[..., dict] = run_playbook) -> Starlette:
    """The dashboard over a started (or startable) Collector. ``runner`` runs one VM action (vm_action.yml by default),
    ``playbooks`` one of the collection's playbooks for a job (evacuate, plan, apply; actions.run_playbook)."""
    templates = Jinja2Templates(env=_environment())
    users = Users(config.users_file)
    limiter = RateLimiter(config.login_limit, config.login_window)
    audit = AuditLog(config.audit_file)
    jobs = Jobs(audit)
    options = inventory_options(config.inventory_file)
    save_dir = options.get("save_dir", "")
    plan_dir = config.plan_dir or os.path.join(os.path.dirname(os.path.abspath(config.users_file)), "plans")
    plans: dict = {}  # plan id (the id of the job that computed it) -> its file

    def current_view() -> dict:
        """The collector's view; with a shared save directory, a shut-off VM whose image is there shows as saved
        (entropy.cluster.vm_image keeps its definition shut off on the host that saved it)."""
        view = collector.snapshot()
        if save_dir and not view.get("images_checked"):
            for host in view["hosts"]:
                for vm in host["vms"]:
                    if vm.get("badge") == "shutoff" and "/" not in vm["name"] and os.path.exists(os.path.join(save_dir, vm["name"] + ".save")):
                        vm["badge"] = "saved"
                        vm["image_saved"] = True
            view["images_checked"] = True
        return view
    counters = {"actions": {}, "logins_failed": 0, "logins_refused": 0, "csrf_refused": 0, "role_refused": 0}

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = new_csrf_token()
        return token

    def current_user(request: Request) -> tuple[str, str] | None:
        name = request.session.get("user")
        if not name:
            return None
        role = users.role(name)  # the file decides: a removed user or a changed role counts at once
        return (name, role) if role else None

    def render(request: Request, template: str, status: int = 200, **context: t.Any) -> HTMLResponse:
        user = current_user(request)
        context.update(request=request, user=user, csrf=csrf_token(request), operator=bool(user and user[1] == "operator"))
        context.setdefault("plans", plans)
        response = templates.TemplateResponse(request, template, context, status_code=status)
        return response

    def page(role: str = "viewer", post: bool = False, action: str | None = None):
        """Login (and for ``role='operator'`` the operator role) required; for ``post`` the CSRF token too.
        ``action`` names the action in the audit entry of a refusal (default: the route's {action})."""
        def wrap(handler):
            @functools.wraps(handler)
            async def inner(request: Request) -> Response:
                if post:
                    form = await request.form()
                    given = request.headers.get("x-csrf-token") or form.get("csrf_token")
                    if not csrf_ok(request.session.get("csrf"), given):
                        counters["csrf_refused"] += 1
                        return PlainTextResponse("refused: missing or wrong CSRF token (reload the page)", status_code=403)
                user = current_user(request)
                if user is None:
                    if post or request.headers.get("hx-request"):
                        return PlainTextResponse("log in first", status_code=401)
                    return RedirectResponse("/login", status_code=303)
                if role == "operator" and user[1] != "operator":
                    counters["role_refused"] += 1
                    if post:
                        target = {"host" if request.url.path.startswith("/host/") else "vm": request.path_params.get("name")}
                        if request.path_params.get("plan"):
                            target = {"plan": request.path_params["plan"]}
                        audit.write(user=user[0], role=user[1], action=action or request.path_params.get("action") or "post",
                                    outcome="refused", message="the operator role is needed", **target)
                    return PlainTextResponse("refused: user %s has the role %s; this needs operator" % (user[0], user[1]), status_code=403)
                return await handler(request)
            return inner
        return wrap

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", error=None)

    async def login(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session.get("csrf"), form.get("csrf_token")):
            counters["csrf_refused"] += 1
            return PlainTextResponse("refused: missing or wrong CSRF token (reload the login page)", status_code=403)
        name, password = str(form.get("username") or ""), str(form.get("password") or "")
        client = request.client.host if request.client else "?"
        keys = ("addr:" + client, "user:" + name)
        wait = limiter.blocked(*keys)
        if wait > 0:
            counters["logins_refused"] += 1
            response = render(request, "login.html", status=429, error="Too many failed logins: try again in %d s." % (int(wait) + 1))
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        role = await run_in_threadpool(users.authenticate, name, password)
        if role is None:
            limiter.failed(*keys)
            counters["logins_failed"] += 1
            return render(request, "login.html", status=401, error="Wrong user name or password.")
        request.session.clear()  # a new session (and CSRF token) after login: no fixation
        request.session["user"] = name
        request.session["csrf"] = new_csrf_token()
        return RedirectResponse("/", status_code=303)

    @page(post=True)
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @page()
    async def index(request: Request) -> Response:
        started = time.perf_counter()
        response = render(request, "cluster.html", view=current_view())
        response.headers["Server-Timing"] = "render;dur=%.1f" % ((time.perf_counter() - started) * 1000)
        return response

    @page()
    async def map_partial(request: Request) -> Response:
        return render(request, "_map.html", view=current_view())

    @page()
    async def host_page(request: Request) -> Response:
        view = current_view()
        name = request.path_params["name"]
        host = next((h for h in view["hosts"] if h["name"] == name), None)
        if host is None:
            return render(request, "error.html", status=404, message="no hypervisor named %s" % name)
        history = collector.host_history(name)
        return render(request, "host.html", view=view, host=host,
                      cpu=[h[0] if h else None for _ts, h in history], memory=[h[1] if h else None for _ts, h in history])

    def _vm_context(name: str) -> dict | None:
        view = current_view()
        vm = view["vms"].get(name)
        if vm is None:
            return None
        history = collector.vm_history(name)
        return {"view": view, "vm": vm, "checkpoints": vm_checkpoints(config.checkpoint_dir, name),
                "destinations": [h["name"] for h in view["hosts"] if h["name"] != vm["host"] and h.get("entropy_reachable")],
                "cpu": [h[0] if h else None for _ts, h in history], "memory": [h[1] if h else None for _ts, h in history],
                "rx": [h[2] if h else None for _ts, h in history], "tx": [h[3] if h else None for _ts, h in history]}

    @page()
    async def vm_page(request: Request) -> Response:
        context = _vm_context(request.path_params["name"])
        if context is None:
            return render(request, "error.html", status=404, message="no VM named %s" % request.path_params["name"])
        return render(request, "vm.html", **context)

    @page()
    async def vm_panel(request: Request) -> Response:
        context = _vm_context(request.path_params["name"])
        if context is None:
            return render(request, "_result.html", status=404, result={"ok": False, "message": "no VM named %s" % request.path_params["name"]})
        return render(request, "_vm_panel.html", **context)

    @page(role="operator", post=True)
    async def vm_action(request: Request) -> Response:
        user = current_user(request)
        name, action = request.path_params["name"], request.path_params["action"]
        form = await request.form()
        view = current_view()
        vm = view["vms"].get(name)
        hosts = {h["name"]: h for h in view["hosts"]}
        destination = str(form.get("destination") or "") or None
        snapshot = str(form.get("snapshot") or "").strip() or "dashboard-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        error = None
        if action not in ACTIONS:
            error = "unknown action %s: choose one of %s" % (action, ", ".join(ACTIONS))
        elif vm is None:
            error = "no VM named %s in the cluster (reload the page)" % name
        elif action == "migrate" and (destination not in hosts or destination == vm["host"]):
            error = "migrate %s: choose a destination hypervisor other than %s" % (name, vm["host"])
        elif action == "snapshot" and not SNAPSHOT_NAME.match(snapshot):
            error = "snapshot %s: the name %s is not allowed: use 1-64 letters, digits, '.', '_' or '-'" % (name, snapshot)
        if error:
            audit.write(user=user[0], role=user[1], action=action, vm=name, destination=destination, outcome="refused", message=error)
            return render(request, "_result.html", status=400, result={"ok": False, "message": error})
        variables = {"entropy_action": action, "entropy_vm": name, "entropy_uri": hosts[vm["host"]]["uri"],
                     "entropy_migrate_unsafe": config.migrate_unsafe}
        if action == "migrate":
            variables["entropy_destination_uri"] = hosts[destination]["uri"]
        if action == "snapshot":
            variables["entropy_snapshot"] = snapshot
            destination = None
        if action in ("save", "resume") and save_dir:
            variables.update(entropy_save_dir=save_dir, entropy_image_saved=bool(vm.get("image_saved")),
                             entropy_uris=[h["uri"] for h in view["hosts"]])
        result = await run_in_threadpool(runner, variables)
        outcome = ("changed" if result.get("changed") else "ok") if result["ok"] else "failed"
        counters["actions"][(action, outcome)] = counters["actions"].get((action, outcome), 0) + 1
        audit.write(user=user[0], role=user[1], action=action, vm=name, host=vm["host"], destination=destination, outcome=outcome,
                    message=result.get("message"), **({"snapshot": snapshot} if action == "snapshot" else {}))
        return render(request, "_result.html", status=200 if result["ok"] else 502, result=result, action=action, name=name)

    def playbook_vars(**variables: t.Any) -> dict:
        if config.migrate_unsafe:
            variables["entropy_migrate_unsafe"] = True
        return variables

    def start_job(user: tuple, kind: str, title: str, playbook: str, variables: dict, details: dict,
                  on_done: t.Callable[[Job], None] | None = None) -> Job:
        job = Job(kind, title, user[0], user[1], details)

        def work(running: Job) -> dict:
            return playbooks(playbook, variables, inventory=config.inventory_file, event_handler=runner_progress(running))
        return jobs.start(job, work, on_done)

    def no_inventory(action: str) -> str | None:
        if config.inventory_file:
            return None
        return "%s needs the cluster's inventory file: start the dashboard with -i <file>.libvirt_cluster.yml" % action

    def busy(action: str) -> str | None:
        """One job at a time (an evacuation, a plan, an apply): the cluster moves under one plan only."""
        running = [j for j in jobs.recent() if j.status == "running"]
        if not running:
            return None
        return "%s refused: %s (started by %s) is still running; wait for it to end" % (action, running[0].title, running[0].user)

    def refuse(request: Request, user: tuple, action: str, error: str, status: int = 400, **target: t.Any) -> Response:
        audit.write(user=user[0], role=user[1], action=action, outcome="refused", message=error, **target)
        return render(request, "_result.html", status=status, result={"ok": False, "message": error})

    @page(role="operator", post=True)
    async def host_action(request: Request) -> Response:
        user = current_user(request)
        name, action = request.path_params["name"], request.path_params["action"]
        view = current_view()
        host = next((h for h in view["hosts"] if h["name"] == name), None)
        error = None
        if action not in HOST_ACTIONS:
            error = "unknown action %s: choose one of %s" % (action, ", ".join(HOST_ACTIONS))
        elif host is None:
            error = "no hypervisor named %s in the cluster (reload the page)" % name
        else:
            error = no_inventory(action)
        if error:
            return refuse(request, user, action, error, host=name)
        if busy(action):
            return refuse(request, user, action, busy(action), status=409, host=name)
        job = start_job(user, "evacuate", "evacuate %s" % name, os.path.join(COLLECTION_PLAYBOOKS, "evacuate.yml"),
                        playbook_vars(entropy_evacuate_hosts=[name]), {"host": name})
        return render(request, "_job.html", job=job.view())

    def job_or_404(request: Request) -> Job | None:
        return jobs.get(request.path_params["job"])

    @page()
    async def job_partial(request: Request) -> Response:
        job = job_or_404(request)
        if job is None:
            return render(request, "_result.html", status=404, result={"ok": False, "message": "no such job (the dashboard was restarted?)"})
        return render(request, "_job.html" if request.headers.get("hx-request") else "job.html", job=job.view())

    @page()
    async def job_events(request: Request) -> Response:
        job = job_or_404(request)
        if job is None:
            return PlainTextResponse("no such job", status_code=404)
        csrf, user, operator = csrf_token(request), current_user(request), current_user(request)[1] == "operator"

        def body(view: dict) -> str:
            return templates.get_template("_job_body.html").render(job=view, csrf=csrf, user=user, operator=operator, plans=plans)

        async def stream():
            seen = None
            while True:
                if await request.is_disconnected():
                    return
                view = job.view()
                if view["version"] != seen:
                    seen = view["version"]
                    yield _sse("progress", body(view))
                if view["status"] != "running":
                    yield _sse("done", view["status"])
                    return
                await asyncio.sleep(config.sse_poll)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ plans
    def load_plan(plan_id: str) -> dict | None:
        path = plans.get(plan_id)
        if not path or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    @page()
    async def plan_page(request: Request) -> Response:
        return render(request, "plan.html", objectives=OBJECTIVES, jobs=[j.view() for j in jobs.recent("plan")][:10],
                      applies=[j.view() for j in jobs.recent("apply")][:10], plans=plans)

    @page(role="operator", post=True, action="plan")
    async def plan_compute(request: Request) -> Response:
        user = current_user(request)
        form = await request.form()
        objective = str(form.get("objective") or "consolidate")
        error = no_inventory("plan")
        if objective not in OBJECTIVES:
            error = "unknown objective %s: choose one of %s" % (objective, ", ".join(OBJECTIVES))
        if error:
            return refuse(request, user, "plan", error)
        if busy("plan"):
            return refuse(request, user, "plan", busy("plan"), status=409)
        os.makedirs(plan_dir, mode=0o700, exist_ok=True)
        job = Job("plan", "plan (%s)" % objective, user[0], user[1], {"objective": objective})
        path = os.path.join(plan_dir, "plan-%s.json" % job.id)

        def work(running: Job) -> dict:
            result = playbooks(os.path.join(COLLECTION_PLAYBOOKS, "plan.yml"),
                               playbook_vars(entropy_objective=objective, entropy_plan_file=path,
                                             entropy_plan_playbook_file=path[:-len(".json")] + ".yml",
                                             entropy_write_plan_files=True, entropy_publish_plan=False),
                               inventory=config.inventory_file, event_handler=runner_progress(running))
            if result.get("ok"):
                if not os.path.exists(path):
                    return {"ok": False, "changed": False, "message": "the plan playbook wrote no plan file %s" % path}
                plans[running.id] = path
                plan = load_plan(running.id) or {}
                stats = plan.get("stats") or {}
                result = {"ok": True, "changed": False, "plan": running.id,
                          "message": "plan %s: %d step(s), %d migration(s), hosts used %s -> %s" % (
                              plan.get("status", "?"), len(plan.get("steps") or []), stats.get("migrations", 0),
                              stats.get("hosts_used_before", "?"), stats.get("hosts_used_after", "?"))}
            return result
        jobs.start(job, work)
        return render(request, "_job.html", job=job.view())

    @page()
    async def plan_view(request: Request) -> Response:
        plan_id = request.path_params["plan"]
        plan = load_plan(plan_id)
        if plan is None:
            return render(request, "error.html", status=404, message="no plan %s (computed before the dashboard restarted?)" % plan_id)
        maps = plan_maps(plan, [h["name"] for h in current_view()["hosts"]])
        template = "_plan.html" if request.headers.get("hx-request") else "plan_view.html"
        return render(request, template, plan=plan, plan_id=plan_id, maps=maps)

    @page(role="operator", post=True, action="apply")
    async def plan_apply(request: Request) -> Response:
        user = current_user(request)
        plan_id = request.path_params["plan"]
        if load_plan(plan_id) is None:
            return refuse(request, user, "apply", "no plan %s: compute a new plan" % plan_id, plan=plan_id)
        if busy("apply"):
            return refuse(request, user, "apply", busy("apply"), status=409, plan=plan_id)
        job = start_job(user, "apply", "apply plan %s" % plan_id, os.path.join(COLLECTION_PLAYBOOKS, "apply.yml"),
                        playbook_vars(entropy_plan_file=plans[plan_id]), {"plan": plan_id})
        return render(request, "_job.html", job=job.view())

    @page()
    async def audit_page(request: Request) -> Response:
        return render(request, "audit.html", entries=list(reversed(audit.recent))[:200])

    @page()
    async def events(request: Request) -> Response:
        async def stream():
            seen = None
            last_ping = time.monotonic()
            while True:
                if await request.is_disconnected():
                    return
                version = collector.version
                if version != seen:
                    seen = version
                    yield "event: update\ndata: %d\n\n" % version
                elif time.monotonic() - last_ping > 15:
                    last_ping = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(config.sse_poll)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def metrics(request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        token_ok = bool(config.metrics_token) and secrets.compare_digest(authorization, "Bearer " + config.metrics_token)
        if not token_ok and current_user(request) is None:
            return PlainTextResponse("log in first, or send the metrics token (Authorization: Bearer ...)", status_code=401)
        return PlainTextResponse(render_metrics(collector, counters), media_type="text/plain; version=0.0.4")

    async def security_headers(scope, receive, send, app):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                            (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
                message = dict(message, headers=headers)
            await send(message)
        await app(scope, receive, send_with_headers)

    class SecurityHeaders:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            await security_headers(scope, receive, send, self.app)

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", index),
        Route("/partials/map", map_partial),
        Route("/host/{name}", host_page),
        Route("/vm/{name}", vm_page),
        Route("/partials/vm/{name}", vm_panel),
        Route("/vm/{name}/{action}", vm_action, methods=["POST"]),
        Route("/host/{name}/{action}", host_action, methods=["POST"]),
        Route("/jobs/{job}", job_partial),
        Route("/jobs/{job}/events", job_events),
        Route("/plan", plan_page, methods=["GET"]),
        Route("/plan", plan_compute, methods=["POST"]),
        Route("/plan/{plan}", plan_view),
        Route("/plan/{plan}/apply", plan_apply, methods=["POST"]),
        Route("/audit", audit_page),
        Route("/events", events),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=config.secret_key or secrets.token_urlsafe(32), session_cookie="entropy_dashboard",
                   max_age=8 * 3600, same_site="strict", https_only=config.https_only),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.collector = collector
    app.state.audit = audit
    app.state.limiter = limiter
    app.state.counters = counters
    app.state.jobs = jobs
    app.state.plans = plans
    return app
