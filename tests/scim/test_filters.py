"""SCIM filters: the parser on its own, then filters run as SQL against both databases,
checked against a small reference evaluator over the same data (property-based)."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blueprints.scim import filters as F
from blueprints.scim.errors import InvalidFilter, InvalidPath

# --- the parser ---------------------------------------------------------------------------


def test_and_binds_tighter_than_or():
    tree = F.parse_filter('a eq 1 or b eq 2 and c eq 3')
    assert isinstance(tree, F.Or)
    assert isinstance(tree.right, F.And)


def test_not_and_parentheses():
    tree = F.parse_filter('not (a eq 1 or b eq 2) and c pr')
    assert isinstance(tree, F.And)
    assert isinstance(tree.left, F.Not) and isinstance(tree.left.expr, F.Or)
    assert tree.right == F.Present(F.AttrRef(None, "c"))


def test_operators_and_keywords_are_case_insensitive():
    tree = F.parse_filter('userName EQ "Bjensen" AND active Eq TRUE')
    assert tree == F.And(F.Compare(F.AttrRef(None, "userName"), "eq", "Bjensen"),
                         F.Compare(F.AttrRef(None, "active"), "eq", True))


def test_values_are_json():
    tree = F.parse_filter(r'title eq "say \"hi\" \\ \u00e9" or x eq null or y gt 1.5e2 or z eq false')
    values = []
    node = tree
    while isinstance(node, F.Or):
        values.append(node.right.value)
        node = node.left
    values.append(node.value)
    assert sorted(map(repr, values)) == sorted(map(repr, ['say "hi" \\ é', None, 150.0, False]))


def test_urn_paths_and_sub_attributes():
    tree = F.parse_filter('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x"')
    assert tree.path == F.AttrRef("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "manager", "value")
    assert F.parse_filter('meta.lastModified gt "2011-05-13T04:42:34Z"').path == F.AttrRef(None, "meta", "lastModified")


def test_value_path():
    tree = F.parse_filter('emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp"]')
    assert isinstance(tree, F.Or)
    assert tree.left == F.ValuePath(F.AttrRef(None, "emails"), F.And(
        F.Compare(F.AttrRef(None, "type"), "eq", "work"), F.Compare(F.AttrRef(None, "value"), "co", "@example.com")))


@pytest.mark.parametrize("text,same_as", [
    ('emails[type eq "work"].value eq "x"', 'emails[type eq "work" and value eq "x"]'),
    ('emails[type eq "work"] eq "x"', 'emails[type eq "work" and value eq "x"]'),
    ('emails[type eq "work"].display pr', 'emails[type eq "work" and display pr]'),
    ('emails[type eq "work" or primary eq true].value co "@x"',
     'emails[(type eq "work" or primary eq true) and value co "@x"]'),
    ('not (emails[type eq "work"] sw "a") or userName pr and emails[type eq "home"].value ne null',
     'not (emails[type eq "work" and value sw "a"]) or (userName pr and emails[type eq "home" and value ne null])'),
])
def test_entra_value_path_then_sub_attribute_parses_as_one_value_filter(text, same_as):
    # Entra's form (and its older form without ".value"): one more condition on the same item.
    assert F.parse_filter(text) == F.parse_filter(same_as)


@pytest.mark.parametrize("text", [
    "", "   ", "userName", 'userName eq', 'userName regex "x"', 'userName eq "x" and', '(userName eq "x"',
    'userName eq "x")', 'userName eq x', 'emails[type eq "work"', 'emails[type[value eq "x"] eq "y"]',
    'userName eq "unterminated', 'not userName', "userName eq 'single'", '"x" eq userName',
    'name.givenName.extra eq "x"', 'and eq "x"', "a" * 5000,
    'emails[type eq "work"].value', 'emails[type eq "work"].value eq', 'emails[type eq "work"].value.type eq "x"',
    'emails[type eq "work"]value eq "x"', 'emails[type eq "work"] eq', 'emails[type eq "work"].value and x pr',
])
def test_malformed_filters_are_invalid_filter(text):
    with pytest.raises(InvalidFilter):
        F.parse_filter(text)


def test_patch_paths():
    assert F.parse_patch_path("name.givenName") == F.PatchPath(F.AttrRef(None, "name", "givenName"))
    path = F.parse_patch_path('emails[type eq "work"].value')
    assert path.attr == F.AttrRef(None, "emails") and path.sub == "value"
    assert path.value_filter == F.Compare(F.AttrRef(None, "type"), "eq", "work")
    path = F.parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
    assert path.attr.urn.endswith(":User") and path.attr.attr == "manager"
    path = F.parse_patch_path('members[value eq "2819c223-7f76-453a-919d-413861904646"]')
    assert path.value_filter.value == "2819c223-7f76-453a-919d-413861904646"


@pytest.mark.parametrize("text", ["", 'emails[type eq "work"', 'emails[type eq "work"]x', "a.b.c", 'emails[type eq]'])
def test_malformed_patch_paths_are_invalid_path(text):
    with pytest.raises(InvalidPath):
        F.parse_patch_path(text)


# --- the same filters as SQL, over HTTP ------------------------------------------------------

PEOPLE = [
    {"userName": "Alice@Example.com", "title": "Engineer", "externalId": "ext-A", "active": True,
     "emails": [{"value": "alice@example.com", "type": "work"}, {"value": "alice@home.org", "type": "home"}]},
    {"userName": "bob@example.com", "title": "engineering lead", "externalId": "ext-b", "active": False,
     "emails": [{"value": "Bob@Example.com", "type": "work"}]},
    {"userName": "carol@sample.org", "externalId": "EXT-C", "active": True,
     "emails": [{"value": "carol@sample.org", "type": "home"}]},
    {"userName": "dave_100%@example.com", "title": "Designer", "active": True},
    {"userName": "erin@example.com", "title": "", "externalId": "ext-e", "active": False,
     "emails": [{"value": "erin@other.net", "type": "other"}]},
]


@pytest.fixture
def people(scim):
    ids = {}
    for person in PEOPLE:
        body = {k: v for k, v in person.items() if v != "" and k != "userName"}
        ids[person["userName"]] = scim.create_user(person["userName"], **body)["id"]
    return ids


def names(scim, expression: str, resource="Users") -> set[str]:
    response = scim.get(f"{resource}?count=1000&filter={quote(expression)}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {r["userName"] for r in response.get_json()["Resources"]}


@pytest.mark.parametrize("expression,expected", [
    ('userName eq "alice@example.com"', {"Alice@Example.com"}),
    ('userName eq "ALICE@EXAMPLE.COM"', {"Alice@Example.com"}),
    ('userName sw "ALI"', {"Alice@Example.com"}),
    ('userName ew "@EXAMPLE.com"', {"Alice@Example.com", "bob@example.com", "dave_100%@example.com",
                                    "erin@example.com"}),
    ('userName co "100%"', {"dave_100%@example.com"}),  # % and _ are literal, not wildcards
    ('userName co "_"', {"dave_100%@example.com"}),
    ('externalId eq "ext-a"', set()),  # caseExact
    ('externalId eq "ext-A"', {"Alice@Example.com"}),
    ('externalId sw "ext"', {"Alice@Example.com", "bob@example.com", "erin@example.com"}),
    ('externalId co "XT"', {"carol@sample.org"}),
    ('title eq "engineer"', {"Alice@Example.com"}),
    ('title co "ENGINEER"', {"Alice@Example.com", "bob@example.com"}),
    ('title pr', {"Alice@Example.com", "bob@example.com", "dave_100%@example.com"}),
    ('not (title pr)', {"carol@sample.org", "erin@example.com"}),
    ('title ne "engineer"', {"bob@example.com", "carol@sample.org", "dave_100%@example.com", "erin@example.com"}),
    ('active eq false', {"bob@example.com", "erin@example.com"}),
    ('active eq true and title co "e"', {"Alice@Example.com", "dave_100%@example.com"}),
    ('emails co "example.com"', {"Alice@Example.com", "bob@example.com"}),
    ('emails.value eq "BOB@example.com"', {"bob@example.com"}),
    ('emails[type eq "work" and value co "@example.com"]', {"Alice@Example.com", "bob@example.com"}),
    ('emails[type eq "home" and value co "@example.com"]', set()),  # same item, not any item
    ('emails.type eq "home" and emails.value co "@example.com"', {"Alice@Example.com"}),
    ('emails pr', {"Alice@Example.com", "bob@example.com", "carol@sample.org", "erin@example.com"}),
    ('userName gt "c"', {"carol@sample.org", "dave_100%@example.com", "erin@example.com"}),
    ('userName le "bob@example.com"', {"Alice@Example.com", "bob@example.com"}),
    ('meta.created gt "2000-01-01T00:00:00Z"', {p["userName"] for p in PEOPLE}),
    ('meta.lastModified lt "2000-01-01T00:00:00+02:00"', set()),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "carol@sample.org"', {"carol@sample.org"}),
    ('userName eq "carol@sample.org" or userName eq "erin@example.com" and active eq true', {"carol@sample.org"}),
    ('(userName eq "carol@sample.org" or userName eq "erin@example.com") and active eq false', {"erin@example.com"}),
])
def test_filters_run_as_sql(scim, people, expression, expected):
    assert names(scim, expression) == expected


@pytest.mark.parametrize("expression", [
    'active gt true', 'active eq "yes"', 'meta.created co "2020"', 'meta.created gt "yesterday"',
    'phoneNumbers eq "1"', 'password eq "x"', 'userName eq true', 'urn:example:unknown:attr eq "x"',
])
def test_unfilterable_or_mistyped_comparisons_are_400(scim, people, expression):
    response = scim.get(f"Users?filter={quote(expression)}")
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidFilter"


def test_enterprise_and_extra_attributes_filter(scim):
    from .conftest import ENTERPRISE
    scim.create_user("x@example.com", nickName="Xavi", **{ENTERPRISE: {"department": "Sales", "costCenter": "CC-1"}})
    scim.create_user("y@example.com", **{ENTERPRISE: {"department": "sales ops"}})
    assert names(scim, f'{ENTERPRISE}:department eq "SALES"') == {"x@example.com"}
    assert names(scim, 'department sw "sales"') == {"x@example.com", "y@example.com"}
    assert names(scim, f'{ENTERPRISE}:costCenter eq "cc-1"') == {"x@example.com"}
    assert names(scim, 'nickName eq "xavi"') == {"x@example.com"}


def test_group_filters(scim):
    alice = scim.create_user("alice@example.com")["id"]
    team = scim.create_group("Team Rocket", [alice], externalId="g-1")
    scim.create_group("Other")

    def group_names(expression):
        response = scim.get(f"Groups?filter={quote(expression)}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return {g["displayName"] for g in response.get_json()["Resources"]}

    assert group_names('displayName eq "team rocket"') == {"Team Rocket"}
    assert group_names('displayName co "O"') == {"Team Rocket", "Other"}
    assert group_names(f'members[value eq "{alice}"]') == {"Team Rocket"}
    assert group_names(f'members eq "{alice}"') == {"Team Rocket"}
    assert group_names('members pr') == {"Team Rocket"}
    assert group_names('not (members pr)') == {"Other"}
    assert group_names('externalId eq "g-1"') == {"Team Rocket"}
    assert group_names(f'id eq "{team["id"]}"') == {"Team Rocket"}


@pytest.mark.parametrize("expression,expected", [
    ('emails[type eq "work"].value eq "alice@example.com"', {"Alice@Example.com"}),
    ('emails[type eq "work"].value eq "ALICE@home.org"', set()),  # Alice's home email is not her work email
    ('emails[type eq "work"] eq "bob@example.com"', {"bob@example.com"}),
    ('emails[type eq "home"] eq "alice@example.com"', set()),
    ('emails[type eq "work"].value co "@EXAMPLE.com"', {"Alice@Example.com", "bob@example.com"}),
    ('emails[type eq "home"].value pr', {"Alice@Example.com", "carol@sample.org"}),
    ('emails[type eq "work"].display pr', set()),
    ('emails[type eq "other" or type eq "home"].value ew ".org"', {"Alice@Example.com", "carol@sample.org"}),
    ('not (emails[type eq "work"].value sw "alice") and emails pr',
     {"bob@example.com", "carol@sample.org", "erin@example.com"}),
    ('userName eq "erin@example.com" or emails[type eq "work"] eq "bob@example.com" and active eq true',
     {"erin@example.com"}),
])
def test_entra_value_path_then_sub_attribute_filters(scim, people, expression, expected):
    assert names(scim, expression) == expected


def test_value_path_then_sub_attribute_on_groups_and_members(scim):
    alice = scim.create_user("alice@example.com", displayName="Alice")["id"]
    bob = scim.create_user("bob@example.com", displayName="Bob")["id"]
    team = scim.create_group("Team", [alice, bob])["id"]
    scim.create_group("Other", [bob])

    def found(resource, expression, key):
        response = scim.get(f"{resource}?filter={quote(expression)}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return {r[key] for r in response.get_json()["Resources"]}

    assert found("Groups", f'members[display eq "alice"].value eq "{alice}"', "displayName") == {"Team"}
    assert found("Groups", f'members[display eq "alice"] eq "{bob}"', "displayName") == set()
    assert found("Users", f'groups[display eq "team"].value eq "{team}"', "userName") == {
        "alice@example.com", "bob@example.com"}
    assert found("Users", f'groups[display eq "other"] eq "{team}"', "userName") == set()


def test_case_insensitive_filters_fold_non_ascii_letters(scim):
    # SQLite's lower() folds A-Z only; PostgreSQL's folds every letter. Both must agree.
    from .conftest import ENTERPRISE
    eric = scim.create_user("eric@example.com", displayName="Éric Straße", title="École 100%_Été",
                            name={"givenName": "Ørjan", "familyName": "Ñandú"}, nickName="ÀLA",
                            **{ENTERPRISE: {"department": "ÉTUDES"}})["id"]
    scim.create_user("erik@example.com", displayName="Erik Strasse", title="Ecole 100 Ete")
    scim.create_user("eva@example.com", displayName="Éva Zed")
    scim.create_user("ebene@example.com", displayName="ébène")
    scim.create_group("Équipe", [eric])
    assert names(scim, 'displayName eq "Éric Straße"') == {"eric@example.com"}
    assert names(scim, 'displayName eq "éric straße"') == {"eric@example.com"}
    assert names(scim, 'displayName sw "ÉRIC"') == {"eric@example.com"}
    assert names(scim, 'displayName ew "STRAßE"') == {"eric@example.com"}
    assert names(scim, 'displayName ne "éric straße"') == {"erik@example.com", "eva@example.com", "ebene@example.com"}
    assert names(scim, 'title co "école"') == {"eric@example.com"}
    assert names(scim, 'name.givenName eq "øRJAN"') == {"eric@example.com"}
    assert names(scim, 'name.familyName eq "ÑANDÚ"') == {"eric@example.com"}
    assert names(scim, 'nickName eq "àla"') == {"eric@example.com"}
    assert names(scim, 'department eq "études"') == {"eric@example.com"}
    assert names(scim, 'groups.display eq "équipe"') == {"eric@example.com"}
    # % and _ stay literal in co / sw / ew.
    assert names(scim, 'title co "100%_ÉTÉ"') == {"eric@example.com"}
    assert names(scim, 'title co "1_0"') == set()
    assert names(scim, 'title ew "%été"') == set()
    response = scim.get("Groups?filter=" + quote('members.display eq "ÉRIC STRAßE"'))
    assert [g["displayName"] for g in response.get_json()["Resources"]] == ["Équipe"]
    # sortBy lower-cases the same way: "ébène" < "éva zed" (uppercase É sorts apart from é otherwise).
    accented = 'userName sw "eric" or userName sw "eva" or userName sw "ebene"'
    response = scim.get("Users?sortBy=displayName&filter=" + quote(accented))
    assert [u["displayName"] for u in response.get_json()["Resources"]] == ["ébène", "Éric Straße", "Éva Zed"]


def test_datetime_filters_use_the_whole_seconds_lobby_returns(scim, app):
    from datetime import datetime

    from sqlalchemy import update

    from models import User, db

    stored = {"early@example.com": datetime(2026, 11, 29, 16, 28, 3, 999999),
              "within@example.com": datetime(2026, 11, 29, 16, 28, 4, 250000),
              "next@example.com": datetime(2026, 11, 29, 16, 28, 5)}
    ids = {name: scim.create_user(name)["id"] for name in stored}
    with app.app_context():
        for name, moment in stored.items():
            db.session.execute(update(User).where(User.id == ids[name]).values(created_at=moment, updated_at=moment))
        db.session.commit()
    own = scim.get(f"Users/{ids['within@example.com']}").get_json()["meta"]
    assert own["lastModified"] == own["created"] == "2026-11-29T16:28:04Z"
    within, early, after = {"within@example.com"}, {"early@example.com"}, {"next@example.com"}
    for attribute in ("meta.lastModified", "meta.created"):
        def found(op, value):
            return names(scim, f'{attribute} {op} "{value}"')

        second = own["lastModified"]
        assert found("eq", second) == within
        assert found("ne", second) == early | after
        assert found("gt", second) == after
        assert found("ge", second) == within | after
        assert found("lt", second) == early
        assert found("le", second) == early | within
        assert found("eq", "2026-11-29T17:28:04+01:00") == within  # the offset is applied first
        # With fractional seconds the comparison is exact.
        assert found("eq", "2026-11-29T16:28:04.25Z") == within
        assert found("eq", "2026-11-29T16:28:04.2Z") == set()
        assert found("gt", "2026-11-29T16:28:04.25Z") == after
        assert found("ge", "2026-11-29T16:28:04.250001Z") == after
        assert found("lt", "2026-11-29T16:28:04.25Z") == early
        assert found("le", "2026-11-29T16:28:04.25Z") == early | within
        assert found("ne", "2026-11-29T16:28:05.000Z") == early | within
        # The last second a dateTime can name still has an end.
        assert found("le", "9999-12-31T23:59:59Z") == early | within | after
        assert found("gt", "9999-12-31T23:59:59Z") == set()
    group = scim.create_group("Team")
    for attribute in ("created", "lastModified"):
        expression = f'meta.{attribute} eq "{group["meta"][attribute]}"'
        response = scim.get("Groups?filter=" + quote(expression))
        assert [g["id"] for g in response.get_json()["Resources"]] == [group["id"]]


# --- property-based: SQL agrees with a reference evaluator ------------------------------------

CI_ATTRS = ("userName", "title")
ALL_ATTRS = ("userName", "title", "externalId", "active", "emails.value", "emails.type")
STRING_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")
WORDS = st.text(alphabet="abcdeABCDE@.-", min_size=0, max_size=4)


@st.composite
def comparisons(draw):
    attr = draw(st.sampled_from(ALL_ATTRS))
    if draw(st.integers(0, 9)) == 0:
        return f"{attr} pr"
    if attr == "active":
        return f"active {draw(st.sampled_from(['eq', 'ne']))} {json.dumps(draw(st.booleans()))}"
    return f"{attr} {draw(st.sampled_from(STRING_OPS))} {json.dumps(draw(WORDS))}"


filters = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda f: f"not ({f})"),
    ),
    max_leaves=6,
)


def _compare(actual, op, expected, case_exact):
    if actual is None or actual == "":
        return op == "ne"
    if isinstance(expected, bool):
        return (actual == expected) if op == "eq" else (actual != expected)
    if not case_exact:
        actual, expected = actual.lower(), expected.lower()
    return {"eq": actual == expected, "ne": actual != expected, "co": expected in actual,
            "sw": actual.startswith(expected), "ew": actual.endswith(expected), "gt": actual > expected,
            "ge": actual >= expected, "lt": actual < expected, "le": actual <= expected}[op]


def reference(node, person) -> bool:
    if isinstance(node, F.And):
        return reference(node.left, person) and reference(node.right, person)
    if isinstance(node, F.Or):
        return reference(node.left, person) or reference(node.right, person)
    if isinstance(node, F.Not):
        return not reference(node.expr, person)
    name = node.path.attr + (f".{node.path.sub}" if node.path.sub else "")
    if name.startswith("emails."):
        values = [e.get(node.path.sub) for e in person.get("emails", [])]
        if isinstance(node, F.Present):
            return any(v not in (None, "") for v in values)
        # ne over a multi-valued attribute: some value differs (the item must exist).
        return any(_compare(v, node.op, node.value, False) if v not in (None, "") else node.op == "ne"
                   for v in values)
    value = person.get(name)
    if isinstance(node, F.Present):
        return value not in (None, "")
    return _compare(value, node.op, node.value, name not in CI_ATTRS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=filters)
def test_sql_agrees_with_reference(scim, people, expression):
    tree = F.parse_filter(expression)
    expected = {p["userName"] for p in PEOPLE if reference(tree, p)}
    assert names(scim, expression) == expected, expression


def test_empty_operand_matches_every_value(scim, people):
    # Found by the property test: "" is a prefix, suffix and substring of every string.
    everyone_with_external_id = {"Alice@Example.com", "bob@example.com", "carol@sample.org", "erin@example.com"}
    assert names(scim, 'externalId ew ""') == everyone_with_external_id
    assert names(scim, 'externalId sw ""') == everyone_with_external_id
    assert names(scim, 'externalId co ""') == everyone_with_external_id


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_datetime_whose_offset_leaves_the_calendar_is_an_invalid_filter(scim, value):
    response = scim.get("Users", query_string={"filter": f'meta.created gt "{value}"'})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["scimType"] == "invalidFilter" and "years 1 to 9999" in response.get_json()["detail"]
