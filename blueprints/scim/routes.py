"""SCIM 2.0 over HTTP: authentication, content types, errors, ETags. The work is in service.py."""
from __future__ import annotations

import json
import re
import time

from flask import Response, current_app, g, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed as WerkzeugMethodNotAllowed

from blueprints.security import request_path_for_log
from models import db, reads_only
from models.scim_token import TOKEN_PREFIX

from . import PREFIX, bp
from . import recorder, service
from .filters import has_lone_surrogate
from .errors import (Forbidden, InvalidSyntax, MethodNotAllowed, NotFound, NotImplementedFeature, PayloadTooLarge,
                     InvalidValue, RateLimited, ScimError, Unauthorized)
from .schemas import SCHEMAS, resource_types, service_provider_config

SCIM_JSON = "application/scim+json"


def base_url() -> str:
    # From configuration, never from the Host header: meta.location must not be spoofable.
    return current_app.config["BASE_URL"] + PREFIX


def scim_response(body, status: int = 200, headers: dict | None = None) -> Response:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body is not None else ""
    response = Response(payload, status=status, mimetype=SCIM_JSON)
    response.headers["Content-Type"] = f"{SCIM_JSON}; charset=utf-8"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_response(error: ScimError) -> Response:
    g.scim_error = error.detail
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="Lobby SCIM"')
    return scim_response(error.to_dict(), error.status, headers)


# --- request pipeline ------------------------------------------------------------------

@bp.before_app_request
def unmatched_scim_urls():
    """URLs under the SCIM base that match no route still answer in SCIM's error format.

    A base URL pasted with a trailing slash makes IdPs call ``.../v2//Users``, and some
    send ``/Users/``: those are served as the route they mean rather than redirected
    (a redirect would drop a POST body in some clients).
    """
    if request.url_rule is not None or not request.path.startswith(PREFIX):
        return None
    g.scim_started = time.perf_counter()
    exc = request.routing_exception
    normalised = re.sub(r"/{2,}", "/", request.path).rstrip("/")
    if normalised != request.path:
        adapter = current_app.url_map.bind_to_environ(request.environ)
        try:
            rule, args = adapter.match(normalised, method=request.method, return_rule=True)
        except HTTPException:
            pass
        else:
            if rule.endpoint.startswith("scim."):
                request.url_rule, request.view_args, request.routing_exception = rule, args, None
                # The blueprint's own before_request was not scheduled for an unmatched URL.
                return authenticate()
    if isinstance(exc, WerkzeugMethodNotAllowed):
        error = MethodNotAllowed(f"{request.method} is not supported on {request.path}.",
                                 headers={"Allow": ", ".join(sorted(exc.valid_methods or []))})
    else:
        error = NotFound(f"There is no SCIM endpoint at {request.path}.")
    return error_response(error)


@bp.before_request
def authenticate():
    g.scim_started = time.perf_counter()
    g.scim_token = None
    if request.method in ("GET", "HEAD"):
        reads_only()  # a read need not wait for SQLite's write lock
    length = request.content_length
    if length is not None and length > current_app.config.get("MAX_CONTENT_LENGTH", 2 * 1024 * 1024):
        raise PayloadTooLarge(f"The body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes.")
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise Unauthorized('No token: send the header "Authorization: Bearer <token>".')
    scheme, _, credential = header.partition(" ")
    limit = current_app.config.get("SCIM_RATE_LIMIT_PER_MINUTE", 0)
    if scheme.lower() != "bearer":
        if header.startswith(TOKEN_PREFIX) or recorder.check_gate(header, limit).token is not None:
            raise Unauthorized(
                'The Authorization header holds the token without its "Bearer " prefix: prefix it with "Bearer ". '
                "In Okta's SCIM 2.0 Test App (Header Auth) paste \"Bearer <token>\" into API Token.")
        raise Unauthorized(f'Lobby takes a bearer token: "Authorization: Bearer <token>", not {scheme!r}.')
    credential = credential.strip()
    doubled, _, inner = credential.partition(" ")
    if doubled.lower() == "bearer" and inner.strip():
        # "Bearer Bearer <token>": "Bearer <token>" pasted where the client adds "Bearer " itself.
        raise Unauthorized('The Authorization header says "Bearer" twice. Where the client adds "Bearer " itself '
                           "(Okta's custom app, HTTP Header option), paste the token alone; only Okta's SCIM 2.0 "
                           'Test App (Header Auth) takes "Bearer <token>" in API Token.')
    gate = recorder.check_gate(credential, limit, _first_read())
    if gate.token is None:
        raise Unauthorized("The token is not valid (mistyped, or revoked). Make a new one on Lobby's "
                           "Admin > Provisioning page.")
    g.scim_token = gate.token
    g.scim_found = gate.along
    if not gate.enabled:
        raise Forbidden("SCIM provisioning is switched off in Lobby (Admin > Provisioning).")
    if gate.retry_after is not None:
        raise RateLimited(f"Too many requests with this token; try again in {gate.retry_after} seconds.",
                          headers={"Retry-After": str(gate.retry_after)})
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
        # An id or query value with a NUL can match nothing (PostgreSQL refuses it in text).
        raise InvalidValue("The URL contains a NUL character (%00), which no id or attribute can hold.")
    return None


def _first_read():
    """The read this request will make once admitted, when it is known up front: the
    ``userName eq`` lookup (before every push), which then joins the token check's round trip."""
    if request.method != "GET" or request.endpoint != "scim.list_users":
        return None
    try:
        query = g.scim_query = service.build_query(request.args)
    except ScimError:
        return None  # refused by the view, after the token check, as any other bad query
    return service.user_name_lookup_plan(query)


@bp.after_app_request
def keep_record(response: Response):
    started = g.pop("scim_started", None)
    if not request.path.startswith(PREFIX):
        return response
    # No start time: an app-wide check refused the request before the SCIM hooks ran (such as a
    # query string that is not UTF-8). It is still logged, its duration unknown.
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else None
    error = g.pop("scim_error", None)
    if response.status_code >= 400 and error is None:
        error = f"HTTP {response.status_code}"
    try:
        recorder.record(
            token=g.get("scim_token"), method=request.method,
            path=request_path_for_log().replace("\x00", "%00"),
            status=response.status_code, duration_ms=duration_ms, error=error,
            request_body=request.get_data(cache=True) if request.method in ("POST", "PUT", "PATCH") else None,
            # A successful read's answer is the data itself; logging it costs time and shows nothing new.
            response_body=(response.get_data() if not response.direct_passthrough and
                           (request.method != "GET" or response.status_code >= 400) else None),
        )
    except Exception:  # the log must never turn a served request into an error
        db.session.rollback()
        current_app.logger.exception("could not write the SCIM request log")
    return response


@bp.errorhandler(ScimError)
def scim_error(error: ScimError):
    db.session.rollback()
    return error_response(error)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    db.session.rollback()
    code = error.code or 500
    if code == 413:
        return error_response(PayloadTooLarge("The body is too large."))
    if code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not supported on {request.path}."))
    if code == 404:
        return error_response(NotFound(f"There is no SCIM endpoint at {request.path}."))
    return error_response(ScimError(error.description or "The request failed.", status=code))


@bp.errorhandler(Exception)
def unexpected_error(error: Exception):
    db.session.rollback()
    if isinstance(error, OperationalError):
        current_app.logger.error("SCIM: database unavailable: %s", type(error.orig).__name__)
        return error_response(ScimError("Lobby cannot reach its database right now; try again shortly.", status=503))
    current_app.logger.exception("SCIM: unhandled error")
    return error_response(ScimError("Lobby hit an internal error; it has been logged.", status=500))


# --- helpers ---------------------------------------------------------------------------

def body():
    raw = request.get_data(cache=True)
    if not raw:
        raise InvalidSyntax("The request has no body; send a JSON object.")
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidSyntax("The body is not valid JSON.") from None
    except RecursionError:  # [[[[...]]]] thousands deep: the parser gives up; a client error, not a 500
        raise InvalidSyntax("The body nests arrays or objects too deeply.") from None
    if (b"\\u0000" in raw or b"\x00" in raw) and _holds(parsed, lambda text: "\x00" in text):
        # No attribute can hold a NUL, and PostgreSQL refuses one in text: say so instead of failing.
        raise InvalidValue("A value in the body contains a NUL character (\\u0000), which no attribute can hold.")
    if (b"\\ud" in raw or b"\\uD" in raw) and _holds(parsed, has_lone_surrogate):
        # Half of a UTF-16 pair is not a character: neither database can store it.
        raise InvalidValue("A value in the body contains a lone UTF-16 surrogate (such as \\ud800), which is not "
                           "a character; send the whole pair or the character itself.")
    return parsed


def _holds(value, found) -> bool:
    """Whether ``found`` is true of any string (key or value) in a parsed JSON body."""
    if isinstance(value, str):
        return found(value)
    if isinstance(value, dict):
        return any(_holds(k, found) or _holds(v, found) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds(item, found) for item in value)
    return False


def context() -> service.Context:
    from blueprints.security import client_address
    token = g.scim_token
    return service.Context(base_url=base_url(), actor=f"scim:{token.name}", ip_address=client_address())


def query_options() -> service.Query:
    parsed = g.pop("scim_query", None)  # parsed already by the token check (_first_read)
    return parsed if parsed is not None else service.build_query(request.args)


def resource_response(resource: dict, version: int, status: int = 200, location: str | None = None) -> Response:
    headers = {"ETag": service.etag(version)}
    if location:
        headers["Location"] = location
    return scim_response(resource, status, headers)


def not_modified(version: int) -> bool:
    tags = request.headers.get("If-None-Match")
    if not tags:
        return False
    current = service.etag(version)
    values = [t.strip() for t in tags.split(",")]
    return "*" in values or current in values or current[2:] in values


# --- discovery -------------------------------------------------------------------------

def _docs_url() -> str:
    return current_app.config["BASE_URL"] + "/admin/provisioning"


@bp.get("/ServiceProviderConfig")
def get_service_provider_config():
    return scim_response(service_provider_config(base_url(), _docs_url()))


def no_content() -> Response:
    """204: no body, so no Content-Type either."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def _list_response(items: list[dict]) -> Response:
    from .schemas import LIST_SCHEMA
    if "filter" in request.args:
        # RFC 7644 §4: discovery endpoints take no filter, and say so with a 403.
        raise Forbidden(f"{request.path.rsplit('/', 1)[-1]} cannot be filtered (RFC 7644 §4); "
                        "GET it without ?filter=.")
    return scim_response({"schemas": [LIST_SCHEMA], "totalResults": len(items), "startIndex": 1,
                          "itemsPerPage": len(items), "Resources": items})


@bp.get("/Schemas")
def list_schemas():
    return _list_response([s.to_dict(base_url()) for s in SCHEMAS.values()])


@bp.get("/Schemas/<path:schema_id>")
def get_schema(schema_id: str):
    schema = SCHEMAS.get(schema_id.lower())
    if schema is None:
        raise NotFound(f"No schema {schema_id}.")
    return scim_response(schema.to_dict(base_url()))


@bp.get("/ResourceTypes")
def list_resource_types():
    return _list_response(resource_types(base_url()))


@bp.get("/ResourceTypes/<name>")
def get_resource_type(name: str):
    match = next((r for r in resource_types(base_url()) if r["id"].lower() == name.lower()), None)
    if match is None:
        raise NotFound(f"No resource type {name}.")
    return scim_response(match)


@bp.route("/Bulk", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def bulk():
    raise NotImplementedFeature("Lobby does not support /Bulk (ServiceProviderConfig says bulk.supported: false).")


@bp.post("/.search")
def search_everything():
    raise NotImplementedFeature("Lobby does not search several resource types at once; "
                                "use GET /Users?filter=... or GET /Groups?filter=...")


@bp.route("/Me", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def me():
    raise NotImplementedFeature("Lobby does not support /Me: a SCIM token belongs to an IdP, not a user.")


# --- Users -----------------------------------------------------------------------------

@bp.get("/Users")
def list_users():
    return scim_response(service.list_users(query_options(), context(), g.pop("scim_found", None)))


@bp.post("/Users/.search")
def search_users():
    raise NotImplementedFeature("Lobby does not support POST .search; use GET /Users?filter=...")


@bp.post("/Users")
def create_user():
    options = query_options()
    ctx = context()
    _user, resource, version = service.create_user(body(), ctx, options)
    return resource_response(resource, version, 201, resource["meta"]["location"] if "meta" in resource
                             else f"{base_url()}/Users/{resource['id']}")


@bp.get("/Users/<user_id>")
def get_user(user_id: str):
    options = query_options()
    user = service.get_user(user_id)
    if not_modified(user.version):
        return Response(status=304, headers={"ETag": service.etag(user.version)})
    return resource_response(service.render_user(user, context(), options), user.version)


@bp.put("/Users/<user_id>")
def replace_user(user_id: str):
    options = query_options()
    user = service.replace_user(user_id, body(), context(), request.headers.get("If-Match"))
    return resource_response(service.render_user(user, context(), options), user.version)


@bp.patch("/Users/<user_id>")
def patch_user(user_id: str):
    options = query_options()
    user = service.patch_user(user_id, body(), context(), request.headers.get("If-Match"))
    return resource_response(service.render_user(user, context(), options), user.version)


@bp.delete("/Users/<user_id>")
def delete_user(user_id: str):
    service.delete_user(user_id, context(), request.headers.get("If-Match"))
    return no_content()


# --- Groups ----------------------------------------------------------------------------

@bp.get("/Groups")
def list_groups():
    return scim_response(service.list_groups(query_options(), context()))


@bp.post("/Groups/.search")
def search_groups():
    raise NotImplementedFeature("Lobby does not support POST .search; use GET /Groups?filter=...")


@bp.post("/Groups")
def create_group():
    options = query_options()
    # An adopted local group is new to the IdP: 201 as for a created one.
    group, _created = service.create_group(body(), context())
    return resource_response(service.render_group(group, context(), options), group.version,
                             201, f"{base_url()}/Groups/{group.id}")


@bp.get("/Groups/<group_id>")
def get_group(group_id: str):
    options = query_options()
    group = service.get_group(group_id)
    if not_modified(group.version):
        return Response(status=304, headers={"ETag": service.etag(group.version)})
    return resource_response(service.render_group(group, context(), options), group.version)


@bp.put("/Groups/<group_id>")
def replace_group(group_id: str):
    options = query_options()
    group = service.replace_group(group_id, body(), context(), request.headers.get("If-Match"))
    return resource_response(service.render_group(group, context(), options), group.version)


@bp.patch("/Groups/<group_id>")
def patch_group(group_id: str):
    options = query_options()
    group = service.patch_group(group_id, body(), context(), request.headers.get("If-Match"))
    return resource_response(service.render_group(group, context(), options), group.version)


@bp.delete("/Groups/<group_id>")
def delete_group(group_id: str):
    service.delete_group(group_id, context(), request.headers.get("If-Match"))
    return no_content()
