"""A NUL character anywhere a client can put one is a 400, never a 500 (PostgreSQL refuses NUL in text)."""
import pytest

from models import ScimRequestLog, User


@pytest.fixture
def scim_headers(app):
    from models import ScimToken, db
    with app.app_context():
        _, secret = ScimToken.issue("nul test")
        db.session.commit()
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/scim+json"}


def test_nul_in_a_filter_is_an_invalid_filter(client, scim_headers):
    response = client.get('/api/scim/v2/Users?filter=userName eq "a\\u0000b"', headers=scim_headers)
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidFilter"


def test_nul_in_a_body_value_is_an_invalid_value(app, client, scim_headers):
    body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"nul\\u0000user@example.com"}'
    response = client.post("/api/scim/v2/Users", data=body, headers=scim_headers)
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    with app.app_context():
        assert User.query.count() == 0


def test_nul_in_an_id_is_a_400_and_still_logged(app, client, scim_headers):
    response = client.get("/api/scim/v2/Users/abc%00def", headers=scim_headers)
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    with app.app_context():
        assert ScimRequestLog.query.filter(ScimRequestLog.path.contains("%00")).count() == 1


# A lone UTF-16 surrogate (half of a pair, spelled as a JSON escape) is not a character: no
# database can store it. Refused with a 400 like a NUL, and the refused request is still logged.

@pytest.mark.parametrize("filter_text", ['userName eq "sur\\ud800"', 'userName eq "\\udc00"', 'title co "\\udfff"',
                                         'emails[value sw "\\ud83d"]'])
def test_a_lone_surrogate_in_a_filter_is_an_invalid_filter(app, client, scim_headers, filter_text):
    response = client.get("/api/scim/v2/Users", query_string={"filter": filter_text, "count": "0"},
                          headers=scim_headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["scimType"] == "invalidFilter" and "surrogate" in response.get_json()["detail"]


@pytest.mark.parametrize("path,body", [
    ("Users", '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"sur\\ud800"}'),
    ("Groups", '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"x\\uDC00"}'),
    ("Users", '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ok@example.com",'
              '"name":{"\\ud800key":"v"}}'),
])
def test_a_lone_surrogate_in_a_body_is_an_invalid_value_and_still_logged(app, client, scim_headers, path, body):
    response = client.post(f"/api/scim/v2/{path}", data=body, headers=scim_headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["scimType"] == "invalidValue" and "surrogate" in response.get_json()["detail"]
    with app.app_context():
        assert User.query.count() == 0
        logged = ScimRequestLog.query.filter_by(status=400).one()
        assert "\\ud" in logged.request_body.lower()  # kept escaped


def test_a_proper_surrogate_pair_is_a_character_and_is_stored(app, client, scim_headers):
    body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"rocket\\ud83d\\ude80@example.com"}'
    response = client.post("/api/scim/v2/Users", data=body, headers=scim_headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["userName"] == "rocket\U0001F680@example.com"
    found = client.get("/api/scim/v2/Users", query_string={"filter": 'userName eq "rocket\\ud83d\\ude80@example.com"'},
                       headers=scim_headers)
    assert found.get_json()["totalResults"] == 1


def test_a_lone_surrogate_in_a_userName_lookup_with_a_wrong_token_is_still_a_401(client):
    """The userName lookup rides on the token check: it must not reach the database either."""
    response = client.get("/api/scim/v2/Users", query_string={"filter": 'userName eq "\\ud800"'},
                          headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


# --- raw bytes that are not UTF-8 ---------------------------------------------------------------
# A query string arrives as bytes; percent-encoded ones (%FF) decode, raw ones that are not UTF-8
# do not. Refused with a 400 that says so, and still logged (never a 500).

@pytest.mark.parametrize("query", ["count=1&\xff=1", 'filter=userName eq "\xe9"', "attributes=\xc3"])
def test_a_query_string_that_is_not_utf8_is_a_400_and_is_logged(app, client, scim_headers, query):
    response = client.get("/api/scim/v2/Users", headers=scim_headers, environ_overrides={"QUERY_STRING": query})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/scim+json" and "not valid UTF-8" in response.get_json()["detail"]
    with app.app_context():
        logged = ScimRequestLog.query.filter_by(status=400).one()
        assert logged.path.startswith("/api/scim/v2/Users?") and "\ufffd" in logged.path
        assert "not valid UTF-8" in logged.error and logged.duration_ms is None


def test_percent_encoded_bytes_that_are_not_utf8_are_still_read(client, scim_headers):
    response = client.get('/api/scim/v2/Users?filter=userName%20eq%20%22%FF%22', headers=scim_headers)
    assert response.status_code == 200 and response.get_json()["totalResults"] == 0
