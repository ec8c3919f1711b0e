"""Every Response Lobby must refuse, each with its own recorded reason, and never a 500."""
import base64
import re
import zlib
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest

from models import AuditEvent, SamlResponseLog, User, db

from ..saml_idp import (ACS_URL, FINISH_PATH, SP_ENTITY_ID, TestIdP, encode, make_key_pair, post_response,
                        start_login)


def refused(app, reply, reason_part):
    """The ACS answered with the failure page, and the audit event and flight row name the reason."""
    assert reply.status_code == 303, reply.get_data(as_text=True)
    location = reply.headers["Location"]
    assert location.startswith("/internal-api/auth/integrations/saml2/failed?"), location
    reference = re.search(r"ref=([A-Z0-9]{8})", location).group(1)
    with app.app_context():
        event = AuditEvent.query.filter_by(action="auth.login", reference=reference).one()
        assert event.outcome == "failure"
        assert reason_part in event.reason, event.reason
        row = SamlResponseLog.query.filter_by(reference=reference).one()
        assert row.verdict == "rejected" and row.reason == event.reason
        # Nobody was signed in or created by a refused Response.
        assert User.query.filter_by(user_name_key="erin@example.com").count() == 0
    return reference


def assert_not_signed_in(client):
    assert client.get("/").status_code == 302


def cut_signature(xml):
    return re.sub(r"<ds:Signature .*?</ds:Signature>", "", xml, flags=re.S)


CASES = {
    # name: (response options, expected reason)
    "unsigned": (dict(sign="none"), "Missing signature"),
    "signature removed after signing": (dict(after_signing=cut_signature), "Missing signature"),
    "signed by another key with its certificate embedded": (
        dict(signing_keys=make_key_pair("attacker")), "Invalid signature"),
    "response signed by another key": (dict(sign="response", signing_keys=make_key_pair("attacker")),
                                       "Invalid signature"),
    "attribute changed after signing": (
        dict(after_signing=lambda x: x.replace(">Sales<", ">Executive board<")), "Invalid signature"),
    "NameID changed after signing": (
        dict(after_signing=lambda x: x.replace("00u1erinlobbytest", "00u1adminlobbytest")), "Invalid signature"),
    "signed response, assertion changed after signing": (
        dict(sign="response", after_signing=lambda x: x.replace(">Erin<", ">Mallory<")), "Invalid signature"),
    "wrong issuer": (dict(issuer="http://www.okta.com/exkEVIL"), "Wrong Issuer"),
    "wrong assertion issuer": (dict(assertion_issuer="http://www.okta.com/exkEVIL"), "Wrong Issuer"),
    "wrong audience": (dict(audience="https://other-app.example/saml"), "Wrong Audience"),
    "no audience": (dict(audience=None), "Wrong Audience"),
    "wrong destination": (dict(destination="https://evil.example/acs"), "Wrong Destination"),
    "no destination": (dict(destination=None), "no Destination"),
    "wrong recipient": (dict(recipient="https://evil.example/acs"), "Wrong Recipient"),
    "no recipient": (dict(recipient=None), "Wrong Recipient"),
    "expired": (dict(shift=-timedelta(minutes=10)), "Outside the time window"),
    "not yet valid": (dict(shift=timedelta(minutes=10)), "Outside the time window"),
    "issued in the future": (dict(issue_instant=None, shift=timedelta(minutes=3),
                                  not_before=None), "Outside the time window"),
    "transient NameID": (dict(name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient"),
                         "transient"),
    "IdP failure status": (dict(status="urn:oasis:names:tc:SAML:2.0:status:Responder"),
                           "The IdP reported a failure"),
    "subject confirmation answers another request": (dict(subject_in_response_to="id-other-request"),
                                                     "InResponseTo"),
    "encrypted assertion (no SP key to decrypt it)": (dict(sign="response", after_signing=lambda x: re.sub(
        r"<saml2:Assertion .*</saml2:Assertion>", '<saml2:EncryptedAssertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData '
        'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml2:EncryptedAssertion>', x, flags=re.S)),
        "The assertion is encrypted"),
    "no assertion at all": (dict(sign="response", after_signing=lambda x: re.sub(
        r"<saml2:Assertion .*</saml2:Assertion>", "", x, flags=re.S)), "holds 0 assertions"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused(app, client, saml, case):
    options, reason = CASES[case]
    request = start_login(client)
    reply = post_response(client, saml.response(request.id, **options), request.relay_state)
    refused(app, reply, reason)
    assert_not_signed_in(client)


def test_expiry_respects_clock_skew_setting(app, client, saml):
    from ..saml_idp import configure_saml
    # Expired 60 s ago: accepted with the default 120 s skew ...
    request = start_login(client)
    xml = saml.response(request.id, shift=-timedelta(minutes=6))
    assert post_response(client, xml, request.relay_state).headers["Location"] == "/"
    # ... refused once the admin sets the skew to 10 s.
    configure_saml(app, saml, clock_skew_seconds=10)
    other = app.test_client()
    request = start_login(other)
    reply = post_response(other, saml.response(request.id, shift=-timedelta(minutes=6)), request.relay_state)
    assert "Outside the time window" in refused_reason(app, reply)


def refused_reason(app, reply):
    reference = re.search(r"ref=([A-Z0-9]{8})", reply.headers["Location"]).group(1)
    with app.app_context():
        return AuditEvent.query.filter_by(reference=reference).one().reason


def test_unknown_in_response_to(app, client, saml):
    start_login(client)
    reply = post_response(client, saml.response("id-never-sent"), "whatever")
    refused(app, reply, "InResponseTo 'id-never-sent' does not name an AuthnRequest")


def test_no_in_response_to_is_unsolicited(app, client, saml):
    reply = post_response(client, saml.response(None), "")
    refused(app, reply, "answers no AuthnRequest")


def test_expired_authn_request(app, client, saml):
    from models import SamlOutstandingRequest, utcnow
    request = start_login(client)
    with app.app_context():
        db.session.get(SamlOutstandingRequest, request.id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    refused(app, post_response(client, saml.response(request.id), request.relay_state), "expired")


def test_issuer_of_another_configured_looking_idp(app, client, saml):
    """A real IdP, with its own valid signature, but not the one configured."""
    other = TestIdP(entity_id="http://www.okta.com/exkOTHER", keys=make_key_pair("other-idp"))
    request = start_login(client)
    refused(app, post_response(client, other.response(request.id), request.relay_state), "Wrong Issuer")


def wrap_signed_assertion_in_unsigned(xml):
    """Signature wrapping: keep the signed assertion (hidden in the unsigned one), show an evil one."""
    signed = re.search(r"<saml2:Assertion .*?</saml2:Assertion>", xml, re.S).group(0)
    evil = re.sub(r"<ds:Signature .*?</ds:Signature>", "", signed, flags=re.S)
    evil = evil.replace("00u1erinlobbytest", "00u1adminlobbytest").replace('ID="id', 'ID="evil')
    # The signed original moves inside the evil assertion's Advice (schema-valid place for it).
    evil = evil.replace("</saml2:Conditions>", "</saml2:Conditions><saml2:Advice>" + signed + "</saml2:Advice>", 1)
    return xml.replace(signed, evil)


def wrap_evil_before_signed(xml):
    """Signature wrapping: an unsigned evil assertion first, the signed one after it."""
    signed = re.search(r"<saml2:Assertion .*?</saml2:Assertion>", xml, re.S).group(0)
    evil = re.sub(r"<ds:Signature .*?</ds:Signature>", "", signed, flags=re.S)
    evil = evil.replace("00u1erinlobbytest", "00u1adminlobbytest").replace('ID="id', 'ID="evil')
    return xml.replace(signed, evil + signed)


def wrap_same_id(xml):
    """Signature wrapping: the evil assertion takes the signed one's ID; the signed one hides in Extensions."""
    signed = re.search(r"<saml2:Assertion .*?</saml2:Assertion>", xml, re.S).group(0)
    evil = re.sub(r"<ds:Signature .*?</ds:Signature>", "", signed, flags=re.S)
    evil = evil.replace("00u1erinlobbytest", "00u1adminlobbytest")
    hidden = "<saml2p:Extensions>" + signed + "</saml2p:Extensions>"
    xml = xml.replace(signed, evil)
    return xml.replace("<saml2p:Status>", hidden + "<saml2p:Status>", 1)


def wrap_signed_response(xml):
    """Signature wrapping of a signed Response: a new unsigned Response carries the signed one."""
    inner = xml.split("?>", 1)[1]
    evil = re.sub(r"<ds:Signature .*?</ds:Signature>", "", inner, flags=re.S)
    evil = evil.replace("00u1erinlobbytest", "00u1adminlobbytest").replace('ID="id', 'ID="evil', 1)
    return evil.replace("<saml2p:Status>", "<saml2p:Extensions>" + inner + "</saml2p:Extensions><saml2p:Status>", 1)


@pytest.mark.parametrize("wrap, sign", [
    (wrap_signed_assertion_in_unsigned, "assertion"),
    (wrap_evil_before_signed, "assertion"),
    (wrap_same_id, "assertion"),
    (wrap_signed_response, "response"),
])
def test_signature_wrapping_is_refused(app, client, saml, make_user, wrap, sign):
    make_user("victim-admin@example.com", admin=True)
    request = start_login(client)
    xml = saml.response(request.id, sign=sign, after_signing=wrap)
    reply = post_response(client, xml, request.relay_state)
    assert reply.status_code == 303
    assert "/saml2/failed" in reply.headers["Location"]
    with app.app_context():
        from models import Identity
        assert Identity.query.count() == 0
        event = AuditEvent.query.filter_by(action="auth.login").one()
        assert event.outcome == "failure"
    assert_not_signed_in(client)


DTD_ATTACKS = [
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>',
    '<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://attacker.example/x.dtd"><r/>',
    '<?xml version="1.0"?><!doctype r><r/>',
]


@pytest.mark.parametrize("document", DTD_ATTACKS)
def test_doctype_and_entities_are_refused_before_parsing(app, client, saml, document):
    request = start_login(client)
    refused(app, post_response(client, document, request.relay_state), "DOCTYPE or entity declaration")


def test_doctype_inside_a_real_response(app, client, saml):
    request = start_login(client)
    xml = saml.response(request.id, after_signing=lambda x: x.replace(
        "?>", '?><!DOCTYPE saml2p:Response [<!ENTITY e "Sales">]>', 1))
    refused(app, post_response(client, xml, request.relay_state), "DOCTYPE or entity declaration")


@pytest.mark.parametrize("raw, reason", [
    ("", "no SAMLResponse"),
    ("!!!not base64!!!", "not valid base64"),
    (base64.b64encode(b"\xff\xfe<\x00r\x00/\x00>\x00").decode(), "not UTF-8"),
    (base64.b64encode(b"plain text, not xml").decode(), "not well-formed XML"),
    (base64.b64encode(b"<r>unclosed").decode(), "not well-formed XML"),
    (base64.b64encode(b"<foo/>").decode(), "not a SAML Response"),
    (base64.b64encode(zlib.compress(b"<samlp:Response/>")[2:-4]).decode(), "deflate"),
    (base64.b64encode(b'<?xml version="1.0" encoding="ISO-8859-1"?><r/>').decode(), "only UTF-8"),
])
def test_garbage_never_causes_an_error_page(app, client, saml, raw, reason):
    request = start_login(client)
    refused(app, post_response(client, None, request.relay_state, raw=raw), reason)


def test_missing_form_field(app, client, saml):
    refused(app, client.post("/internal-api/auth/integrations/saml2/callback", data={}), "no SAMLResponse")


def test_oversized_response(app, client, saml):
    request = start_login(client)
    padding = "<!-- " + "x" * (300 * 1024) + " -->"
    xml = saml.response(request.id, after_signing=lambda x: x.replace("?>", "?>" + padding, 1))
    refused(app, post_response(client, xml, request.relay_state), "larger than")


def test_oversized_post_body_is_refused_unread(app, client, saml):
    reply = client.post("/internal-api/auth/integrations/saml2/callback",
                        data={"SAMLResponse": "A" * (600 * 1024)})
    refused(app, reply, "larger than any sign-in")


def test_failure_page_shows_reference_not_reason(app, client, saml):
    request = start_login(client)
    reply = post_response(client, saml.response(request.id, audience="https://x.example"), request.relay_state)
    reference = refused(app, reply, "Wrong Audience")
    page = client.get(reply.headers["Location"])
    text = page.get_data(as_text=True)
    assert page.status_code == 401
    assert reference in text and "Sign-in did not work" in text
    assert "Audience" not in text  # the reason is for the admin, not the employee


def test_flight_recorder_keeps_the_decoded_response(app, client, saml):
    request = start_login(client)
    reply = post_response(client, saml.response(request.id, audience="https://x.example"), request.relay_state)
    reference = refused(app, reply, "Wrong Audience")
    with app.app_context():
        row = SamlResponseLog.query.filter_by(reference=reference).one()
        assert "<saml2:Audience>https://x.example</saml2:Audience>" in row.response_xml
        assert "\n" in row.response_xml  # pretty-printed for reading
        assert row.in_response_to == request.id and row.issuer == saml.entity_id
        assert row.name_id == "00u1erinlobbytest"
        assert abs(row.issue_instant_skew_seconds) < 60
        event = AuditEvent.query.filter_by(reference=reference).one()
        assert "https://x.example" in event.details["response_xml"]


def test_flight_recorder_keeps_only_the_last_responses(app, client, saml):
    from ..saml_idp import configure_saml
    configure_saml(app, saml, flight_recorder_size=3)
    for _ in range(5):
        post_response(client, None, raw="bad")
    with app.app_context():
        assert SamlResponseLog.query.count() == 3


def test_acs_does_not_need_csrf_or_session(app, saml):
    """The IdP's cross-site POST carries no CSRF token and (SameSite=Lax) no session cookie: the
    ACS accepts it without either, and the browser that started the login is signed in at the
    finish URL, a same-site GET that carries its cookie."""
    browser = app.test_client()
    request = start_login(browser)
    cookieless = app.test_client()  # what the ACS sees of the browser's cross-site POST
    reply = post_response(cookieless, saml.response(request.id), request.relay_state, finish=False)
    assert reply.status_code == 303 and urlsplit(reply.headers["Location"]).path == FINISH_PATH
    finished = browser.get(reply.headers["Location"])
    assert finished.status_code == 303 and finished.headers["Location"] == "/"
    assert browser.get("/").status_code == 200


def test_a_response_relayed_into_another_browser_signs_nobody_in(app, saml):
    """Login CSRF: an attacker starts a login, gets a Response for their own account and makes
    a victim's browser post it. The ACS accepts the Response, but the victim's browser does not
    hold the secret of the browser that asked for it, so the finish URL refuses."""
    attacker = app.test_client()
    request = start_login(attacker)
    victim = app.test_client()
    victim.get("/login")  # the victim has a session of their own
    reply = post_response(victim, saml.response(request.id), request.relay_state)
    assert reply.status_code == 303 and "/saml2/failed?kind=other_browser" in reply.headers["Location"]
    page = victim.get(reply.headers["Location"])
    assert page.status_code == 401 and "started in another browser" in page.get_data(as_text=True)
    assert re.search(r"ref=[A-Z0-9]{8}", reply.headers["Location"])
    assert victim.get("/").status_code == 302  # still signed out
    with app.app_context():
        refused = AuditEvent.query.filter_by(action="auth.login", outcome="failure").one()
        assert "started in another browser" in refused.reason
        assert AuditEvent.query.filter_by(action="auth.login", outcome="success").count() == 0


def test_the_finish_url_is_used_once_and_expires(app, saml, monkeypatch):
    browser = app.test_client()
    request = start_login(browser)
    reply = post_response(browser, saml.response(request.id), request.relay_state, finish=False)
    finish_url = reply.headers["Location"]
    assert browser.get(finish_url).headers["Location"] == "/"
    again = browser.get(finish_url)
    assert again.status_code == 303 and "kind=error" in again.headers["Location"]
    with app.app_context():
        reasons = [e.reason for e in AuditEvent.query.filter_by(action="auth.login", outcome="failure")]
        assert any("unknown or was already used" in r for r in reasons)
    # A second login, finished too late.
    later = app.test_client()
    request = start_login(later)
    reply = post_response(later, saml.response(request.id), request.relay_state, finish=False)
    import blueprints.saml.service as service
    monkeypatch.setattr(service, "utcnow", lambda: datetime.utcnow() + timedelta(minutes=3))
    late = later.get(reply.headers["Location"])
    assert late.status_code == 303 and "kind=error" in late.headers["Location"]
    monkeypatch.undo()
    assert later.get("/").status_code == 302
    with app.app_context():
        assert any("expired" in (e.reason or "") for e in AuditEvent.query.filter_by(outcome="failure"))


def test_a_user_deactivated_before_the_finish_is_not_signed_in(app, saml):
    browser = app.test_client()
    request = start_login(browser)
    reply = post_response(browser, saml.response(request.id), request.relay_state, finish=False)
    with app.app_context():
        user = User.query.filter(User.user_name_key == "erin@example.com").one()
        user.active = False
        db.session.commit()
    finished = browser.get(reply.headers["Location"])
    assert finished.status_code == 303 and "kind=deactivated" in finished.headers["Location"]
    assert browser.get("/").status_code == 302


def test_unconfigured_saml_refuses(app, client, admin, idp):
    reply = post_response(client, idp.response("id-x"), "x")
    assert reply.status_code == 303 and "kind=not_configured" in reply.headers["Location"]


def test_comment_inside_the_nameid_does_not_truncate_it(app, client, saml):
    """Comments are outside the signed canonical form; reading the NameID must not stop at one."""
    request = start_login(client)
    xml = saml.response(request.id, name_id="00u1erin.lobbytest.evil",
                        after_signing=lambda x: x.replace("00u1erin.lobbytest.evil", "00u1erin<!---->.lobbytest.evil"))
    reply = post_response(client, xml, request.relay_state)
    with app.app_context():
        from models import Identity
        identities = [i.identifier for i in Identity.query.all()]
    # Either refused, or signed in as exactly the NameID that was signed: never the truncated "00u1erin".
    assert identities in ([], ["00u1erin.lobbytest.evil"]), identities
    if identities:
        assert reply.headers["Location"] == "/"


def test_overlong_relay_state(app, client, saml):
    request = start_login(client)
    refused(app, post_response(client, saml.response(request.id), "x" * 600), "RelayState is longer than")


def test_a_large_refused_post_keeps_a_bounded_copy_in_the_audit_log(app, client, saml):
    """Anyone can post junk to the ACS: its audit event keeps 16 KB of it, the flight recorder more."""
    from blueprints.saml.service import AUDIT_XML_LIMIT
    junk = "<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'>" + "<x>junk</x>" * 6000
    reply = post_response(client, junk)
    reference = re.search(r"ref=([A-Z0-9]{8})", reply.headers["Location"]).group(1)
    with app.app_context():
        kept = AuditEvent.query.filter_by(reference=reference).one().details["response_xml"]
        assert AUDIT_XML_LIMIT < len(kept) < AUDIT_XML_LIMIT + 100 and "in the flight recorder" in kept
        assert len(SamlResponseLog.query.filter_by(reference=reference).one().response_xml) > AUDIT_XML_LIMIT


# --- refusals from one address are throttled ------------------------------------------------------

def _refusal_rows(app, address):
    from models import LoginFailure
    with app.app_context():
        return LoginFailure.query.filter_by(key=f"saml-acs:{address}").count()


def _counts(app):
    with app.app_context():
        return AuditEvent.query.filter_by(action="auth.login").count(), SamlResponseLog.query.count()


def test_refused_responses_from_one_address_are_throttled(app, client, saml):
    app.config.update(SAML_MAX_REFUSALS_PER_ADDRESS=3, SAML_REFUSAL_WINDOW_SECONDS=60)
    for _ in range(3):
        refused(app, post_response(client, None, None, raw="!!!not base64!!!"), "not valid base64")
    assert _refusal_rows(app, "127.0.0.1") == 3
    before = _counts(app)
    # Past the limit nothing from that address is read or recorded, not even a good Response.
    request = start_login(client)
    reply = post_response(client, saml.response(request.id), request.relay_state)
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "60"
    assert "within a minute. Wait a minute" in reply.get_data(as_text=True)
    assert _counts(app) == before and _refusal_rows(app, "127.0.0.1") == 3
    assert_not_signed_in(client)
    # Another address is read as usual.
    other = app.test_client()
    reply = other.post("/internal-api/auth/integrations/saml2/callback", data={"SAMLResponse": "!!!"},
                       environ_base={"REMOTE_ADDR": "192.0.2.7"})
    refused(app, reply, "not valid base64")
    assert _refusal_rows(app, "192.0.2.7") == 1


def test_refusal_throttle_forgets_after_its_window(app, client, saml):
    from models import LoginFailure
    app.config.update(SAML_MAX_REFUSALS_PER_ADDRESS=2, SAML_REFUSAL_WINDOW_SECONDS=60)
    for _ in range(2):
        refused(app, post_response(client, None, None, raw="!!!"), "not valid base64")
    app.config["SAML_REFUSAL_WINDOW_SECONDS"] = 90
    reply = post_response(client, None, None, raw="!!!")
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "90"
    assert "within 90 seconds. Wait 90 seconds" in reply.get_data(as_text=True)
    app.config["SAML_REFUSAL_WINDOW_SECONDS"] = 60
    with app.app_context():  # the window passes
        for row in LoginFailure.query.all():
            row.created_at -= timedelta(seconds=61)
        db.session.commit()
    request = start_login(client)
    reply = post_response(client, saml.response(request.id), request.relay_state)
    assert (reply.status_code, reply.headers["Location"]) == (303, "/")  # the finish URL signed the browser in
    assert client.get("/").status_code == 200
    # The next refusal clears the address's rows older than the window: one row, not three.
    assert post_response(client, None, None, raw="!!!").status_code == 303
    assert _refusal_rows(app, "127.0.0.1") == 1


def test_refusal_throttle_can_be_switched_off(app, client, saml):
    app.config.update(SAML_MAX_REFUSALS_PER_ADDRESS=0)
    for _ in range(35):
        reply = post_response(client, None, None, raw="!!!")
        assert reply.status_code == 303


def test_a_nul_in_relay_state_is_a_recorded_refusal_not_a_bare_400(app, client, saml):
    """The app-wide NUL check leaves the ACS alone: anything it cannot use is a refused sign-in,
    recorded with a reference, as every other refusal is."""
    reply = client.post("/internal-api/auth/integrations/saml2/callback",
                        data={"SAMLResponse": "!!!", "RelayState": "a\x00b"})
    assert reply.status_code == 303 and "ref=" in reply.headers["Location"]
