"""Mangled Responses: always a recorded refusal, never a 500 and never a sign-in."""
import base64

from hypothesis import HealthCheck, given, settings, strategies as st

from models import AuditEvent, SamlResponseLog

from ..saml_idp import TestIdP, configure_saml, make_key_pair, okta_attributes, post_response, start_login

IDP = TestIdP(keys=make_key_pair())
EXPECTED_ATTRIBUTES = {name: [value] for name, value in okta_attributes().items()}


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mangled_responses_are_refused(app, admin, data):
    configure_saml(app, IDP)
    # Every example is refused, all from one address: past the per-address limit the ACS would stop
    # reading them (tested in test_rejections.py), and this test is about reading them.
    app.config["SAML_MAX_REFUSALS_PER_ADDRESS"] = 0
    client = app.test_client()
    request = start_login(client)
    raw = bytearray(IDP.response(request.id).encode())
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    if how == "flip":
        raw[at] = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != raw[at]))
    elif how == "truncate":
        del raw[at:]
    elif how == "insert":
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=40))
    else:
        del raw[at:at + data.draw(st.integers(min_value=1, max_value=200))]
    reply = post_response(client, None, request.relay_state, raw=base64.b64encode(bytes(raw)).decode())
    assert reply.status_code == 303
    location = reply.headers["Location"]
    with app.app_context():
        row = SamlResponseLog.query.order_by(SamlResponseLog.id.desc()).first()
        event = AuditEvent.query.filter_by(action="auth.login").order_by(AuditEvent.id.desc()).first()
    assert row.reference == event.reference
    if location == "/":
        # Only bytes the signature does not cover (the unsigned Response envelope, whitespace) may
        # change and still pass; what the signed assertion says must arrive exactly as signed.
        assert row.verdict == "accepted" and event.outcome == "success"
        assert row.name_id == "00u1erinlobbytest"
        assert row.attributes == EXPECTED_ATTRIBUTES
    else:
        assert "/saml2/failed" in location
        assert row.verdict == "rejected" and event.outcome == "failure"
        assert "could not be checked" not in event.reason, event.reason
