"""The web console under /console/: server-rendered pages over the same views as /api/v1.

Who may do what is the API's rule, unchanged: a bearer token (controller.api.tokens) and its
role. The browser hands the token over once, on the login form; the cookie then carries a
server-side session id (controller.api.console_sessions says why not the token). Each request
re-authenticates the session's token, so revocation and expiry apply at once. Viewers read;
the write forms (twin set/unset, app delete) are shown to operators and above only, and the
server refuses them below operator (403) whatever the browser sends. Every form that writes
carries the session's CSRF token, checked here; the cookie is also SameSite=Strict.

Pages read through the API's own functions (controller.api.views, apps, the DeviceGateway
port, the event stream), so the console never shows what the API would not. Templates are
Jinja2 with autoescape on: nothing from the store or a device reaches the page unescaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from controller.api import apps, events, views
from controller.api.auth import Principal, context
from controller.api.console_sessions import ConsoleSessions, Session
from controller.api.errors import ApiError
from controller.api.ports import DeviceGateway, NodeStates, PortError
from controller.api.tokens import role_rank
from controller.kube import resources

PREFIX = "/console"
COOKIE = "mlsysops_console"
NO_BRIDGE = "no far-edge bridge configured (start the API with --bridge-socket PATH)"
_HERE = Path(__file__).parent

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.PackageLoader("controller.api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error in the tests, not a blank
    )
)
router = APIRouter(prefix=PREFIX, include_in_schema=False)


class LoginNeeded(Exception):
    """No session, or its token no longer authenticates."""


class PageError(Exception):
    """A refusal shown as an HTML page with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def sessions(request: Request) -> ConsoleSessions:
    found: ConsoleSessions = request.app.state.console_sessions
    return found


def signed_in(request: Request) -> tuple[Session, Principal]:
    session = sessions(request).find(request.cookies.get(COOKIE))
    if session is None:
        raise LoginNeeded
    record = context(request).tokens.authenticate(session.token)
    if record is None:  # revoked or expired since login
        sessions(request).close(session.id)
        raise LoginNeeded
    return session, Principal(record.name, record.role)


def may_write(principal: Principal) -> bool:
    return role_rank(principal.role) >= role_rank("operator")


async def write_form(request: Request) -> dict[str, str]:
    """The form of a write: signed in, operator or above, the session's CSRF token (in that
    order: a viewer's forged POST is 403 whatever it carries)."""
    session, principal = signed_in(request)
    if not may_write(principal):
        raise PageError(403, f"{principal.name} has role {principal.role}; this needs operator or above")
    form = await form_of(request)
    check_csrf(session, form)
    return form


async def form_of(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, first value per name (parsed here: the
    console's forms are that small, python-multipart is not needed for them)."""
    return {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}


def check_csrf(session: Session, form: Mapping[str, str]) -> None:
    if not session.csrf_ok(form.get("csrf", "")):
        raise PageError(403, "the form's CSRF token does not match this session (reload the page)")


@contextmanager
def shown_as_page() -> Iterator[None]:
    """The API's refusals (ApiError, a port's PortError) as console pages with their status."""
    try:
        yield
    except (ApiError, PortError) as exc:
        raise PageError(exc.status, exc.message) from None


def page(request: Request, template: str, title: str, status: int = 200, **values: Any) -> HTMLResponse:
    who: tuple[Session, Principal] | None = values.pop("who", None)
    return templates.TemplateResponse(
        request,
        f"console/{template}",
        {
            "title": title,
            "principal": who[1] if who else None,
            "csrf": who[0].csrf if who else "",
            "can_write": bool(who and may_write(who[1])),
            **values,
        },
        status_code=status,
    )


def condition_status(conditions: list[Mapping[str, Any]], kind: str = "Ready") -> str:
    found = next((c for c in conditions if c.get("type") == kind), None)
    return str(found.get("status")) if found else "Unknown"


def setting_value(text: str) -> Any:
    """A value typed into the form: JSON when it parses (500, true, "x", [1]), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def twin_rows(twin: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per setting desired or reported, values as JSON (blank: not set on that side)."""
    desired, reported = twin.get("desired") or {}, twin.get("reported") or {}
    return [
        {
            "key": key,
            "desired": json.dumps(desired[key]) if key in desired else "",
            "reported": json.dumps(reported[key]) if key in reported else "",
        }
        for key in sorted(set(desired) | set(reported))
    ]


def gateway(request: Request) -> DeviceGateway:
    found = context(request).devices
    if found is None:
        raise PageError(503, NO_BRIDGE)
    return found


def _devices_or_none(request: Request) -> tuple[list[dict[str, Any]] | None, str]:
    """The devices, or None and why not (the overview shows the rest without them)."""
    if context(request).devices is None:
        return None, NO_BRIDGE
    try:
        return gateway(request).list_devices(), ""
    except PortError as exc:
        return None, exc.message


# ---------------------------------------------------------------------------- login


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", "Sign in", error="")


@router.post("/login")
async def login(request: Request) -> Response:
    token = (await form_of(request)).get("token", "").strip()
    if not token or context(request).tokens.authenticate(token) is None:
        return page(request, "login.html", "Sign in", 401, error="token refused: unknown, expired or revoked")
    session = sessions(request).open(token)
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(sessions(request).ttl),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session, _ = signed_in(request)
    check_csrf(session, await form_of(request))
    sessions(request).close(session.id)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


# ---------------------------------------------------------------------------- pages


@router.get("/")
def overview(request: Request) -> HTMLResponse:
    who = signed_in(request)
    ctx = context(request)
    clusters = [views.cluster_view(o) for o in ctx.store.list(resources.CLUSTER, ctx.settings.namespace)[0]]
    nodes = [views.node_view(o) for o in ctx.store.list(resources.NODE, ctx.settings.namespace)[0]]
    devices, devices_note = _devices_or_none(request)
    return page(
        request,
        "overview.html",
        "Overview",
        who=who,
        clusters=clusters,
        nodes=[{**n, "ready": condition_status(n["conditions"])} for n in nodes],
        devices=devices,
        devices_note=devices_note,
    )


@router.get("/apps")
def apps_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    rows = [
        {**views.app_summary(o), "ready": condition_status((o.get("status") or {}).get("conditions") or [])}
        for o in apps.listed(context(request))
    ]
    return page(request, "apps.html", "Apps", who=who, apps=rows)


@router.get("/apps/{name}")
def app_page(request: Request, name: str) -> HTMLResponse:
    who = signed_in(request)
    with shown_as_page():
        obj = apps.get(context(request), name)
    return page(
        request,
        "app.html",
        f"App {name}",
        who=who,
        app=views.app_status(obj),
        explanation=[
            {**row, "detail": json.dumps(row, indent=2, sort_keys=True)} for row in views.explanation(obj)
        ],
    )


@router.post("/apps/{name}/delete")
async def delete_app(request: Request, name: str) -> Response:
    await write_form(request)
    with shown_as_page():
        await run_in_threadpool(apps.delete, context(request), name)
    return RedirectResponse(f"{PREFIX}/apps", status_code=303)


@router.get("/nodes")
def nodes_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    ctx = context(request)
    nodes = [views.node_view(o) for o in ctx.store.list(resources.NODE, ctx.settings.namespace)[0]]
    for node in nodes:
        node["ready"] = condition_status(node["conditions"])
        node["settings_json"] = json.dumps(node["settings"], indent=2, sort_keys=True)
        node["knobs"], node["agent_error"] = _knobs(ctx.node_states, node["agent"])
    return page(request, "nodes.html", "Nodes", who=who, nodes=nodes)


def _knobs(states: NodeStates | None, target: str | None) -> tuple[list[dict[str, Any]] | None, str]:
    """The node's settings as its agent holds them (desired, actual, drifted), or why not."""
    if states is None or not target:
        return None, ""
    try:
        return states.knobs(target), ""
    except PortError as exc:
        return None, exc.message


@router.get("/devices")
def devices_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    devices, note = _devices_or_none(request)
    return page(request, "devices.html", "Devices", who=who, devices=devices, devices_note=note)


@router.get("/devices/{device}")
def device_page(request: Request, device: str) -> HTMLResponse:
    who = signed_in(request)
    with shown_as_page():
        shown = gateway(request).get_device(device)
    return page(
        request,
        "device.html",
        f"Device {device}",
        who=who,
        device=shown,
        rows=twin_rows(shown.get("twin") or {}),
        ota_json=json.dumps(shown.get("ota"), indent=2, sort_keys=True) if shown.get("ota") else "",
    )


async def _twin_change(
    request: Request, device: str, change: Callable[[DeviceGateway, str, dict[str, str]], object]
) -> Response:
    """A twin write from a form naming one setting (`key`); the bridge's answer runs in the
    threadpool (it is socket I/O), its refusal is shown as a page."""
    form = await write_form(request)
    key = form.get("key", "").strip()
    if not key:
        raise PageError(422, "name the setting")
    with shown_as_page():
        await run_in_threadpool(change, gateway(request), key, form)
    return RedirectResponse(f"{PREFIX}/devices/{device}", status_code=303)


@router.post("/devices/{device}/twin")
async def set_twin(request: Request, device: str) -> Response:
    def change(to: DeviceGateway, key: str, form: dict[str, str]) -> object:
        return to.set_twin(device, {key: setting_value(form.get("value", ""))})

    return await _twin_change(request, device, change)


@router.post("/devices/{device}/twin/unset")
async def unset_twin(request: Request, device: str) -> Response:
    return await _twin_change(request, device, lambda to, key, _: to.unset_twin(device, [key]))


@router.get("/events")
def events_page(request: Request) -> HTMLResponse:
    return page(request, "events.html", "Events", who=signed_in(request))


@router.get("/events/stream")
def event_stream(
    request: Request, last_event_id: Annotated[str | None, Header()] = None
) -> StreamingResponse:
    """/api/v1/events for the console's page: the same stream, authenticated by the session
    (an EventSource cannot send an Authorization header, and the cookie stays under /console)."""
    signed_in(request)
    return StreamingResponse(
        events.stream(context(request), last_event_id, None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


# ---------------------------------------------------------------------------- wiring


def install(app: FastAPI, console_sessions: ConsoleSessions | None = None) -> None:
    """The console's routes, its stylesheet and its two refusals (login, error page) on `app`."""
    app.state.console_sessions = console_sessions or ConsoleSessions()
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=_HERE / "static"), name="console-static")

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, _: LoginNeeded) -> Response:
        if request.method == "GET":
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        return page(request, "error.html", "Sign in needed", 401, message="sign in first", code=401)

    @app.exception_handler(PageError)
    async def refused(request: Request, exc: PageError) -> Response:
        title = "Not allowed" if exc.status == 403 else "Refused"
        return page(request, "error.html", title, exc.status, message=exc.message, code=exc.status)
