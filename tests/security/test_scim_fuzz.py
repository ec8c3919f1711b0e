"""Property-based fuzzing of the SCIM API through the Flask test client.

Whatever an IdP (or an attacker holding a token) sends - a filter, a PATCH, a resource
body, query options - Lobby answers with a success or a valid RFC 7644 §3.12 error:
never a 5xx, never a traceback, never an error body a SCIM client cannot parse.

Hypothesis runs derandomized (a fixed seed, no example database), so CI sees the same
examples on every run; counts are small enough for the file to take well under a
minute per database. The examples accumulate in one database per test (rows are wiped
only after the test), which is deliberate: later requests meet users and groups that
earlier, odd requests created.
"""
from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from tests.scim.conftest import ENTERPRISE, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA, ScimClient, issue_token

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
# RFC 7644 Table 9: the scimType values a 400 may carry (409 is uniqueness).
SCIM_TYPES = {"invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath",
              "noTarget", "invalidValue", "invalidVers", "sensitive"}

# No explain phase: it re-runs failures many times and printed blank arguments here.
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def check(response, allowed=(200, 201, 204, 400, 404, 409, 412)):
    """The response is an allowed status; an error is a well-formed SCIM error."""
    text = response.get_data(as_text=True)
    sent = getattr(response, "request", None)  # what was sent goes in the message: the failing example, reproducible
    where = (sent.method, sent.full_path) if sent is not None else None
    assert response.status_code < 500, (response.status_code, text[:500], where)
    assert response.status_code in allowed, (response.status_code, text[:500], where)
    assert "Traceback" not in text
    if response.status_code == 204:
        assert text == ""
        return None
    assert response.mimetype == "application/scim+json", (response.status_code, response.mimetype, text[:200])
    body = json.loads(text)
    if response.status_code < 400:
        return body
    assert body["schemas"] == [ERROR_SCHEMA], body
    # RFC 7644 §3.12: "status" is the HTTP status code as a string.
    assert body["status"] == str(response.status_code), body
    assert isinstance(body.get("detail", ""), str)
    if "scimType" in body:
        assert body["scimType"] in SCIM_TYPES, body
    if response.status_code == 409:
        assert body.get("scimType") == "uniqueness", body
    return body


@pytest.fixture
def seeded(app):
    """A few users in a group, so filters, PATCHes and PUTs have something to hit."""
    scim = ScimClient(app.test_client(), issue_token(app, "fuzz"))
    users = [scim.create_user(f"seed{i}@example.com", name={"givenName": "Seed", "familyName": str(i)},
                              emails=[{"value": f"seed{i}@example.com", "type": "work", "primary": True}],
                              externalId=f"ext-{i}") for i in range(3)]
    group = scim.create_group("Seeded", members=[u["id"] for u in users], externalId="g-ext")
    return scim, users, group


# --- filters ---------------------------------------------------------------------------------

USER_ATTRS = ["userName", "displayName", "name.givenName", "name.familyName", "name.formatted", "emails",
              "emails.value", "emails.type", "emails.primary", "active", "externalId", "id", "title",
              "meta.created", "meta.lastModified", "meta.resourceType", "nickName", "locale", "timezone",
              "phoneNumbers.value", "groups.value", "preferredLanguage", "userType",
              f"{ENTERPRISE}:department", f"{ENTERPRISE}:manager.value", f"{ENTERPRISE}:employeeNumber",
              f"{USER_SCHEMA}:userName", "USERNAME", "Emails.Value", "password", "x509Certificates.value",
              "unknownAttr", "name.nothing"]
GROUP_ATTRS = ["displayName", "members", "members.value", "members.display", "members.type", "externalId", "id",
               "meta.created", "meta.lastModified", f"{GROUP_SCHEMA}:displayName"]
OPS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Sw", "pr"]

# Values as they appear in a filter: JSON strings (with escapes), numbers, literals, dates.
json_strings = st.text(max_size=20).map(json.dumps)
values = st.one_of(
    json_strings,
    st.sampled_from(['"seed1@example.com"', '"SEED1@EXAMPLE.COM"', '"2026-01-01T00:00:00Z"', '"2026-13-99"',
                     '"work"', '""', '"\\u0000"', '"%"', '"_"', '"\\\\"']),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false", "null", "True", "NULL"]),
)


def attr_expressions(attrs):
    compare = st.tuples(st.sampled_from(attrs), st.sampled_from(OPS), values).map(
        lambda t: f"{t[0]} pr" if t[1] == "pr" else f"{t[0]} {t[1]} {t[2]}")
    # valuePath: emails[type eq "work" and value co "@"]
    value_path = st.tuples(st.sampled_from(["emails", "members", "phoneNumbers", "addresses", "name"]),
                           st.sampled_from(["value", "type", "primary", "display"]),
                           st.sampled_from(OPS), values).map(
        lambda t: f"{t[0]}[{t[1]} {t[2]} {t[3]}]" if t[2] != "pr" else f"{t[0]}[{t[1]} pr]")
    return st.one_of(compare, value_path)


def filters(attrs):
    """Well-formed filters (RFC 7644 §3.4.2.2 grammar) with and/or/not and brackets, to some depth."""
    return st.recursive(
        attr_expressions(attrs),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or"]), inner).map(" ".join),
            inner.map(lambda f: f"({f})"),
            inner.map(lambda f: f"not ({f})"),
        ),
        max_leaves=6,
    )


def mangled(attrs):
    """A well-formed filter with a slice cut, a character dropped in, or two pasted together."""
    noise = st.sampled_from(list('()[]"\\ .:') + ["and", "or", "not", "eq", "pr", "\x00", "\u202e", "é", "'"])
    return st.tuples(filters(attrs), st.integers(0, 200), st.integers(0, 20), noise).map(
        lambda t: t[0][:t[1]] + t[3] + t[0][t[1] + t[2]:])


def any_filter(attrs):
    return st.one_of(filters(attrs), mangled(attrs), st.text(max_size=60),
                     st.text(alphabet=string.printable, max_size=60))


@FUZZ
@given(text=any_filter(USER_ATTRS))
def test_user_filters_answer_results_or_invalid_filter(seeded, text):
    scim, _users, _group = seeded
    response = scim.client.get("/api/scim/v2/Users", query_string={"filter": text},
                               headers={"Authorization": f"Bearer {scim.token}"})
    body = check(response, allowed=(200, 400))
    if response.status_code == 200:
        assert body["totalResults"] == len(body["Resources"]) or body["itemsPerPage"] == len(body["Resources"])
    else:
        # A bad filter is the client's fault and says so in the RFC's words.
        assert body["scimType"] in {"invalidFilter", "invalidValue"}, body


@FUZZ
@given(text=any_filter(GROUP_ATTRS), excluded=st.booleans())
def test_group_filters_answer_results_or_invalid_filter(seeded, text, excluded):
    scim, _users, _group = seeded
    query = {"filter": text}
    if excluded:
        query["excludedAttributes"] = "members"
    response = scim.client.get("/api/scim/v2/Groups", query_string=query,
                               headers={"Authorization": f"Bearer {scim.token}"})
    body = check(response, allowed=(200, 400))
    if response.status_code == 400:
        assert body["scimType"] in {"invalidFilter", "invalidValue"}, body


string_filters = st.recursive(
    st.tuples(st.sampled_from(["userName", "externalId", "emails.value", "name.familyName", "displayName",
                               "name.givenName"]),
              st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "le"]), json_strings).map(" ".join),
    lambda inner: st.one_of(st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
                            inner.map(lambda f: f"not ({f})"), inner.map(lambda f: f"({f})")),
    max_leaves=5,
)


@settings(FUZZ, max_examples=40)
@given(filter_text=string_filters)
def test_well_formed_string_filters_are_answered(seeded, filter_text):
    """The generators are not only noise: a well-formed filter comparing string attributes with
    any JSON string (quotes, backslashes, emoji, LIKE wildcards) is answered 200, not refused.
    The one exception is a string holding NUL, which no attribute can hold: that is a 400
    invalidFilter that says so (tests/scim/test_nul_characters.py)."""
    scim, _users, _group = seeded
    response = scim.client.get("/api/scim/v2/Users", query_string={"filter": filter_text},
                               headers={"Authorization": f"Bearer {scim.token}"})
    if any("\x00" in json.loads(quoted) for quoted in re.findall(r'"(?:[^"\\]|\\.)*"', filter_text)):
        body = check(response, allowed=(400,))
        assert body["scimType"] == "invalidFilter" and "NUL" in body["detail"], body
        return
    body = check(response, allowed=(200,))
    assert all(user["userName"] for user in body["Resources"])


query_words = st.one_of(st.text(max_size=15), st.sampled_from(
    ["userName", "emails.value", "members", "meta.lastModified", "name.givenName", "-1", "0", "1", "1000", "1001",
     "99999999999999999999", "1.5", "ascending", "descending", "ASCENDING", "", " ", "urn:x:y"]))


@FUZZ
# Found by this test: an integer beyond 64 bits reached the database driver (500 on both databases).
@example(resource="Users", options={"startIndex": "99999999999999999999"})
@example(resource="Groups", options={"count": "-99999999999999999999", "startIndex": "-5"})
@given(resource=st.sampled_from(["Users", "Groups"]),
       options=st.dictionaries(st.sampled_from(["startIndex", "count", "sortBy", "sortOrder", "attributes",
                                                "excludedAttributes", "filter"]), query_words, max_size=5))
def test_list_options_never_break(seeded, resource, options):
    scim, _users, _group = seeded
    response = scim.client.get(f"/api/scim/v2/{resource}", query_string=options,
                               headers={"Authorization": f"Bearer {scim.token}"})
    body = check(response, allowed=(200, 400))
    if response.status_code == 200:
        assert isinstance(body["Resources"], list) and body["totalResults"] >= 0


# --- PATCH -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)

USER_PATHS = ["userName", "active", "displayName", "name.givenName", "name", "emails", 'emails[type eq "work"].value',
              'emails[type eq "work"]', "emails[primary eq true].value", "title", "externalId", "id", "meta.created",
              "groups", "password", f"{ENTERPRISE}:department", f"{ENTERPRISE}:manager", "phoneNumbers",
              'phoneNumbers[type eq "mobile"].value', "addresses[type eq \"work\"].locality", "nickName",
              "emails[", "emails[type eq]", "name..givenName", "urn:nope:attr", "", "x" * 300]
GROUP_PATHS = ["members", "displayName", "externalId", "id", 'members[value eq "{member}"]',
               'members[value eq "not-a-uuid"]', "members[value pr]", "members.value", "members[", "meta"]

user_like_values = st.one_of(
    json_values,
    st.sampled_from([True, False, "True", "false", "", [], {}, None, "x" * 5000,
                     {"active": False}, {"userName": "seed0@example.com"}, {"name": {"givenName": 7}},
                     [{"value": "a@example.com", "type": "work", "primary": True}],
                     [{"value": "a@example.com", "primary": True}, {"value": "b@example.com", "primary": True}],
                     {f"{ENTERPRISE}:department": "Sales"}, {f"{ENTERPRISE}:manager": {"value": "nobody"}}]),
)


def operations(paths, values):
    op = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "replace", "remove", "Add", "REPLACE", "Remove", "move", "", "copy"])},
        optional={"path": st.one_of(st.sampled_from(paths), st.text(max_size=30)), "value": values,
                  "extra": json_values})
    return st.one_of(st.lists(op, max_size=4), json_values)


def patch_bodies(paths, values):
    return st.one_of(
        operations(paths, values).map(lambda ops: {"schemas": [PATCH_SCHEMA], "Operations": ops}),
        st.fixed_dictionaries({}, optional={"schemas": st.one_of(st.just([PATCH_SCHEMA]), json_values),
                                             "Operations": operations(paths, values)}),
        json_values,
    )


@settings(FUZZ, max_examples=60)
@given(body=patch_bodies(USER_PATHS, user_like_values), target=st.sampled_from([0, 1, "missing"]))
def test_user_patch_never_breaks(seeded, body, target):
    scim, users, _group = seeded
    user_id = users[target]["id"] if target != "missing" else "00000000-0000-0000-0000-000000000000"
    response = scim.patch(f"Users/{user_id}", body)
    check(response)
    if target == "missing":
        assert response.status_code in (400, 404)
    # Whatever happened, the user still reads back as a valid resource (nothing half-written).
    if target != "missing":
        again = check(scim.get(f"Users/{user_id}"), allowed=(200, 404))
        if again is not None and "userName" in again:
            assert isinstance(again["userName"], str) and again["userName"]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_group_patch_never_breaks(seeded, data):
    scim, users, group = seeded
    member_values = st.one_of(
        st.sampled_from([[{"value": users[0]["id"]}], [{"value": users[2]["id"]}, {"value": users[2]["id"]}],
                         [{"value": "not-a-uuid"}], [{"value": "00000000-0000-0000-0000-000000000000"}],
                         [{"display": "no value"}], [{"value": group["id"]}], {"value": users[1]["id"]},
                         [{"value": 5}], "Renamed", {"displayName": "Renamed"}, {"members": []}]),
        json_values)
    paths = [p.replace("{member}", users[1]["id"]) for p in GROUP_PATHS]
    body = data.draw(patch_bodies(paths, member_values))
    response = scim.patch(f"Groups/{group['id']}?excludedAttributes=members", body)
    check(response)
    # The group is still readable and its members are still users.
    again = check(scim.get(f"Groups/{group['id']}"), allowed=(200, 404))
    if again is not None:
        known = {u["id"] for u in users}
        assert {m["value"] for m in again.get("members", [])} <= known


# --- resource bodies -------------------------------------------------------------------------

user_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "schemas": st.one_of(st.just([USER_SCHEMA]), st.just([USER_SCHEMA, ENTERPRISE]), json_values),
        "userName": st.one_of(st.emails().map(str), st.text(max_size=30), json_values,
                              st.sampled_from(["seed1@example.com", "SEED1@example.com", " ", "\x00"])),
        "active": user_like_values,
        "name": user_like_values,
        "emails": user_like_values,
        "displayName": user_like_values,
        "externalId": user_like_values,
        "id": user_like_values,
        "meta": user_like_values,
        "password": user_like_values,
        "groups": user_like_values,
        ENTERPRISE: user_like_values,
        "phoneNumbers": user_like_values,
        "unknownAttribute": user_like_values,
    }),
)


@settings(FUZZ, max_examples=60)
@given(body=user_bodies, method=st.sampled_from(["POST", "PUT"]))
def test_user_bodies_never_break(seeded, body, method):
    scim, users, _group = seeded
    path = "Users" if method == "POST" else f"Users/{users[2]['id']}"
    response = scim.request(method, path, body)
    result = check(response)
    if response.status_code in (200, 201):
        # What was accepted is a real resource that reads back the same.
        stored = check(scim.get(f"Users/{result['id']}"))
        assert stored["userName"] == result["userName"]


group_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "schemas": st.one_of(st.just([GROUP_SCHEMA]), json_values),
        "displayName": st.one_of(st.text(max_size=30), json_values, st.just("Seeded"), st.just("SEEDED")),
        "members": st.one_of(json_values, st.lists(st.fixed_dictionaries(
            {"value": st.one_of(st.uuids().map(str), st.text(max_size=10), json_values)}), max_size=3)),
        "externalId": json_values,
        "id": json_values,
    }),
)


@settings(FUZZ, max_examples=60)
@given(body=group_bodies, method=st.sampled_from(["POST", "PUT"]))
def test_group_bodies_never_break(seeded, body, method):
    scim, _users, group = seeded
    path = "Groups" if method == "POST" else f"Groups/{group['id']}"
    result = check(scim.request(method, path, body))
    if result is not None and "id" in result:
        assert check(scim.get(f"Groups/{result['id']}"))["displayName"] == result["displayName"]


@FUZZ
# Found by this test: JSON nested thousands deep made json.loads raise RecursionError (a 500).
@example(raw=b"[" * 5000 + b"]" * 5000, method="POST Users", content_type="application/scim+json")
@example(raw=b'{"a":' * 3000 + b"1" + b"}" * 3000, method="PATCH Groups/{g}", content_type="application/json")
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda s: s.encode("utf-8")),
                     st.sampled_from([b"{", b"[]", b"null", b'{"schemas": [', b"\xff\xfe{}", b'"string"',
                                      b"{}" * 1000, b'{"a":' * 200 + b"1" + b"}" * 200,
                                      b"[" * 5000 + b"]" * 5000])),
       method=st.sampled_from(["POST Users", "PUT Users/{u}", "PATCH Users/{u}", "POST Groups",
                               "PATCH Groups/{g}", "PUT Groups/{g}"]),
       content_type=st.sampled_from(["application/scim+json", "application/json", "text/plain", "",
                                     "application/scim+json; charset=latin-1"]))
def test_raw_bodies_never_break(seeded, raw, method, content_type):
    scim, users, group = seeded
    verb, _, path = method.partition(" ")
    path = path.replace("{u}", users[0]["id"]).replace("{g}", group["id"])
    response = scim.request(verb, path, raw, headers={"Content-Type": content_type})
    check(response, allowed=(200, 201, 400, 409, 415))


def test_the_checker_itself_rejects_bad_error_bodies(app):
    """check() is the oracle of every test above: make sure it does fail on what it must."""
    from flask import Response
    with app.test_request_context():
        good = Response(json.dumps({"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter"}),
                        400, mimetype="application/scim+json")
        assert check(good)["scimType"] == "invalidFilter"
        bad = [
            Response("boom", 500, mimetype="text/html"),
            Response(json.dumps({"schemas": [ERROR_SCHEMA], "status": 400}), 400, mimetype="application/scim+json"),
            Response(json.dumps({"schemas": ["x"], "status": "400"}), 400, mimetype="application/scim+json"),
            Response(json.dumps({"schemas": [ERROR_SCHEMA], "status": "409"}), 409, mimetype="application/scim+json"),
            Response(json.dumps({"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "oops"}), 400,
                     mimetype="application/scim+json"),
            Response(json.dumps({"detail": "x"}), 400, mimetype="application/json"),
        ]
        for response in bad:
            with pytest.raises(AssertionError):
                check(response)
