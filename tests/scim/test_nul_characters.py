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
