"""SAML 2.0 service provider: the protocol, apart from HTTP.

Takes plain values (the posted form fields, the base URL, the client's
address), reads and writes the database, and returns plain values or raises
``SamlError`` with a reason in plain words. It never looks at Flask's request
or session: the IdP's cross-site POST arrives without the session cookie, so
nothing the ACS needs may live there.

pysaml2 does the signature and protocol checks (with the xmlsec1 binary, never
the XMLSecurity backend). Lobby adds what pysaml2 leaves out or only logs:
a database-backed store of outstanding AuthnRequests consumed on use, a replay
cache shared by all processes, a refusal of DTDs before any parser sees the
document, and checks that name the exact reason a Response was refused.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import re
import secrets
import shutil
import threading
import traceback
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import quoteattr

import defusedxml.ElementTree as SafeET
import defusedxml.minidom
from defusedxml import DefusedXmlException
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2 import time_util
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.response import IncorrectlySigned, StatusError, UnsolicitedResponse, VerificationError
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT
from saml2.sigver import CryptoBackendXmlSec1, MissingKey, SignatureError, SigverError
from saml2.validate import ResponseLifetimeExceed, ToEarly
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from models import (Group, Identity, Membership, SamlOutstandingRequest, SamlPendingSignIn, SamlResponseLog,
                    SamlSeenAssertion, User, db, record_event, settings, utcnow)
from models.user import UserEmail, fold

from .metadata import IdpDescription, idp_metadata_xml

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

# Paths fixed by the customer guide (see SPEC.md).
ENTITY_PATH = "/auth/saml2"
ACS_PATH = "/internal-api/auth/integrations/saml2/callback"
LOGIN_PATH = "/internal-api/auth/integrations/saml2/login"
# Where the ACS sends the browser on, to finish an accepted sign-in with its session cookie.
FINISH_PATH = "/internal-api/auth/integrations/saml2/finish"

# The Default RelayState the guide has admins type into Okta: the dashboard tile.
IDP_INITIATED_RELAY_STATE = "initiate-sp-login"

# An Okta Response with a dozen attributes is 6-12 KB; anything near this is not a sign-in.
MAX_RESPONSE_BYTES = 256 * 1024
MAX_RELAY_STATE = 512
OUTSTANDING_LIFETIME = timedelta(minutes=15)
# From the ACS's redirect to the browser's GET of the finish URL: one round trip.
PENDING_LIFETIME = timedelta(minutes=2)
FLIGHT_XML_LIMIT = 64 * 1024
# The audit event of a refused Response keeps a shorter copy: anyone can post junk to the ACS,
# and audit events are kept far longer than the flight recorder's last few rows.
AUDIT_XML_LIMIT = 16 * 1024

_DOCTYPE_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.I)
_ENCODING_DECL_RE = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


# --- errors and results -------------------------------------------------------------------

@dataclass
class Capture:
    """What was learnt about a Response so far: the flight recorder's row."""

    relay_state: str | None = None
    response_xml: str | None = None
    issuer: str | None = None
    name_id: str | None = None
    in_response_to: str | None = None
    issue_instant_skew_seconds: float | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    mapped: dict[str, Any] = field(default_factory=dict)
    purpose: str | None = None
    user_id: str | None = None


class SamlError(Exception):
    """A refused SAML sign-in. ``reason`` is for the audit log; ``kind`` picks the page the person sees."""

    def __init__(self, reason: str, kind: str = "error", capture: Capture | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # error | deactivated | no_account | not_configured | other_browser
        self.capture = capture or Capture()


@dataclass
class SignIn:
    user: User
    next_path: str
    purpose: str
    created: bool
    capture: Capture
    binding_hash: str | None = None  # of the browser that started the login
    details: dict = field(default_factory=dict)  # for the audit event, once the sign-in completes


@dataclass
class RestartLogin:
    """An IdP-initiated Response (the Okta tile): answered by a fresh SP-initiated login."""

    capture: Capture


# --- configuration -----------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceProvider:
    base_url: str

    @property
    def entity_id(self) -> str:
        return self.base_url + ENTITY_PATH

    @property
    def acs_url(self) -> str:
        return self.base_url + ACS_PATH

    @property
    def login_url(self) -> str:
        return self.base_url + LOGIN_PATH


@dataclass(frozen=True)
class Provider:
    """The IdP as configured in the settings, plus how Lobby treats what it sends."""

    active: bool
    label: str
    idp: IdpDescription | None
    clock_skew_seconds: int
    jit_create: bool
    group_attribute: str
    attribute_map: dict
    flight_recorder_size: int

    @property
    def ready(self) -> bool:
        return self.active and self.idp is not None


def load_provider() -> Provider:
    values = settings.section("saml")
    idp = None
    if values["idp_entity_id"] and values["idp_sso_url"] and values["idp_certificates"]:
        idp = IdpDescription(values["idp_entity_id"], values["idp_sso_url"], list(values["idp_certificates"]))
    return Provider(
        active=values["active"], label=values["label"] or "SSO Login", idp=idp,
        clock_skew_seconds=max(0, values["clock_skew_seconds"]), jit_create=values["jit_create"],
        group_attribute=(values["group_attribute"] or "").strip(), attribute_map=dict(values["attribute_map"]),
        flight_recorder_size=max(1, values["flight_recorder_size"]),
    )


_XMLSEC = shutil.which("xmlsec1") or "/usr/bin/xmlsec1"
_clients: OrderedDict[str, Saml2Client] = OrderedDict()
_clients_lock = threading.Lock()


class _XmlSec1(CryptoBackendXmlSec1):
    """pysaml2's xmlsec1 backend, without starting ``xmlsec1 --version`` twice per signature check.

    The version decides a command-line flag; the binary does not change while Lobby runs.
    """

    _versions: dict[str, str] = {}

    @property
    def version(self):
        if self.xmlsec not in self._versions:
            self._versions[self.xmlsec] = CryptoBackendXmlSec1.version.fget(self)
        return self._versions[self.xmlsec]


class _NoPopulation:
    """pysaml2 keeps every signed-in person's attributes in process memory; Lobby keeps none there."""

    def add_information_about_person(self, session_info):
        return None


def sp_config_dict(sp: ServiceProvider, provider: Provider) -> dict:
    return {
        "entityid": sp.entity_id,
        # The xmlsec1 backend verifies the signature of the element pysaml2 then reads. The
        # XMLSecurity backend accepts a document when any signature in it is valid: never that.
        "crypto_backend": "xmlsec1",
        "xmlsec_binary": _XMLSEC,
        # Only the certificates in the (Lobby-built) IdP metadata verify a signature; a key or
        # certificate carried inside the message is never trusted.
        "only_use_keys_in_metadata": True,
        # Okta's attributes are claim URIs pysaml2 has no map for; keep them.
        "allow_unknown_attributes": True,
        "accepted_time_diff": provider.clock_skew_seconds,
        "metadata": {"inline": [idp_metadata_xml(provider.idp)]},
        "service": {
            "sp": {
                "endpoints": {"assertion_consumer_service": [(sp.acs_url, BINDING_HTTP_POST)]},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                "name_id_policy_format": NAMEID_FORMAT_PERSISTENT,
                "allow_unsolicited": False,
                "authn_requests_signed": False,
                "want_response_signed": False,
                "want_assertions_signed": False,
                # A signed Response or a signed Assertion: Okta signs one or both.
                "want_assertions_or_response_signed": True,
            }
        },
    }


def client_for(sp: ServiceProvider, provider: Provider) -> Saml2Client:
    """A pysaml2 client for these settings, built once per distinct configuration and process."""
    key = hashlib.sha256(repr(sorted(sp_config_dict(sp, provider).items(), key=lambda kv: kv[0])).encode()).hexdigest()
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
    config = SPConfig()
    config.load(sp_config_dict(sp, provider))
    client = Saml2Client(config=config)
    client.users = _NoPopulation()
    client.sec.crypto = _XmlSec1(client.sec.crypto.xmlsec, delete_tmpfiles=client.sec.crypto.delete_tmpfiles)
    with _clients_lock:
        _clients[key] = client
        while len(_clients) > 8:
            _clients.popitem(last=False)
    return client


def sp_metadata_xml(sp: ServiceProvider) -> str:
    """Lobby's SP metadata: entity ID, persistent NameID, ACS with the HTTP-POST binding."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID={quoteattr(sp.entity_id)}>\n'
        '  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
        f"    <md:NameIDFormat>{NAMEID_FORMAT_PERSISTENT}</md:NameIDFormat>\n"
        f'    <md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location={quoteattr(sp.acs_url)} '
        'index="0" isDefault="true"/>\n'
        "  </md:SPSSODescriptor>\n"
        "</md:EntityDescriptor>\n"
    )


# --- SP-initiated login --------------------------------------------------------------------

def start_login(sp: ServiceProvider, *, binding: str, next_path: str = "/", purpose: str = "login",
                provider: Provider | None = None) -> str:
    """Store a new outstanding AuthnRequest and return the IdP URL to redirect the browser to.

    ``binding``: the secret the starting browser keeps in its session (``browser_binding``); the
    sign-in completes only where it is presented again (``finish_sign_in``).
    """
    if not binding:
        raise ValueError("a login is started for a browser: its binding secret is required")
    provider = provider or load_provider()
    if not provider.ready:
        raise SamlError("SAML sign-in is not activated or the IdP is not configured", kind="not_configured")
    forget_expired()
    client = client_for(sp, provider)
    handle = secrets.token_urlsafe(24)
    request_id, info = client.prepare_for_authenticate(
        entityid=provider.idp.entity_id, relay_state=handle, binding=BINDING_HTTP_REDIRECT,
        nameid_format=NAMEID_FORMAT_PERSISTENT)
    location = dict(info["headers"])["Location"]
    now = utcnow()
    db.session.add(SamlOutstandingRequest(id=request_id, relay_state=handle, next_path=next_path,
                                          purpose=purpose, binding_hash=_digest(binding), created_at=now,
                                          expires_at=now + OUTSTANDING_LIFETIME))
    return location


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def forget_expired() -> None:
    now = utcnow()
    db.session.execute(delete(SamlOutstandingRequest).where(SamlOutstandingRequest.expires_at < now))
    db.session.execute(delete(SamlPendingSignIn).where(SamlPendingSignIn.expires_at < now))
    db.session.execute(delete(SamlSeenAssertion).where(SamlSeenAssertion.expires_at < now))


# --- the ACS ------------------------------------------------------------------------------

def consume_response(sp: ServiceProvider, saml_response: str | None, relay_state: str | None, *,
                     reference: str | None = None, remote_addr: str | None = None,
                     provider: Provider | None = None) -> SignIn | RestartLogin:
    """Check a posted Response from end to end; return who signs in, or raise SamlError.

    The caller commits on success (the outstanding request, replay cache entry, user
    changes, audit event and flight-recorder row go together) and rolls back on failure,
    then records the failure with ``record_rejection``.
    """
    capture = Capture(relay_state=_printable((relay_state or "")[:MAX_RELAY_STATE]) or None)

    def fail(reason: str, kind: str = "error"):
        raise SamlError(reason, kind=kind, capture=capture)

    provider = provider or load_provider()
    if saml_response is None or not saml_response.strip():
        fail("The POST carried no SAMLResponse field")
    if len(saml_response) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
        fail(f"The SAMLResponse is larger than {MAX_RESPONSE_BYTES // 1024} KB")
    if relay_state is not None and len(relay_state) > MAX_RELAY_STATE:
        fail(f"The RelayState is longer than {MAX_RELAY_STATE} characters")

    if relay_state == IDP_INITIATED_RELAY_STATE:
        # The Okta tile: never a login by itself. Whatever it carries, a fresh SP-initiated
        # login follows, which the IdP completes at once for a person already signed in there.
        try:
            _peek(_decode(saml_response, capture, fail), capture)
        except SamlError:
            pass  # kept only for the flight recorder; nothing in it is used
        return RestartLogin(capture=capture)
    raw = _decode(saml_response, capture, fail)
    if not provider.ready:
        fail("SAML sign-in is not activated or the IdP is not configured", kind="not_configured")

    doc = _peek(raw, capture)
    if doc is None:
        fail("The SAMLResponse is not well-formed XML")
    outstanding = db.session.get(SamlOutstandingRequest, capture.in_response_to) if capture.in_response_to else None
    if outstanding is not None:
        capture.purpose = outstanding.purpose  # a Test sign-in reports its failure back to the admin page
    _precheck(doc, sp, provider, capture, fail)

    if outstanding is None or outstanding.expires_at < utcnow():
        fail(f"InResponseTo {capture.in_response_to!r} does not name an AuthnRequest this Lobby sent and still "
             f"awaits (unknown, expired or already used)")

    client = client_for(sp, provider)
    # pysaml2 decodes the base64 itself; hand it exactly the bytes that were checked above.
    checked = base64.b64encode(raw).decode()
    conv_info = {"remote_addr": remote_addr or "0.0.0.0"}  # non-empty: pysaml2 then checks Recipient
    try:
        try:
            result = client.parse_authn_request_response(
                checked, BINDING_HTTP_POST, outstanding={outstanding.id: outstanding.next_path},
                conv_info=conv_info)
        except Exception as error:
            _release_frames(error)
            raise
    except (MissingKey, SignatureError, SigverError, IncorrectlySigned) as error:
        fail(_signature_reason(doc, error))
    except UnsolicitedResponse:
        fail(f"InResponseTo {capture.in_response_to!r} does not match the AuthnRequest in every assertion")
    except ResponseLifetimeExceed:
        fail("The assertion has expired (NotOnOrAfter is in the past, beyond the clock skew)")
    except ToEarly:
        fail("The assertion is not valid yet (NotBefore is in the future, beyond the clock skew)")
    except StatusError as error:
        fail(f"The IdP reported a failure: {_short(error)}")
    except VerificationError as error:
        fail(f"The assertion failed verification: {_short(error)}")
    except Exception as error:  # pysaml2 raises bare Exceptions for several checks
        fail(f"The Response was refused by the SAML library: {type(error).__name__}: {_short(error)}")
    if result is None or result.assertion is None:
        fail("The Response holds no valid assertion (rejected by the SAML library)")

    assertion = result.assertion
    _postcheck(result, assertion, provider, capture, fail)

    # Consume the AuthnRequest: the row is deleted in this transaction; of two concurrent
    # uses exactly one deletes it.
    consumed = db.session.execute(
        delete(SamlOutstandingRequest).where(SamlOutstandingRequest.id == outstanding.id)).rowcount
    if consumed != 1:
        fail(f"InResponseTo {capture.in_response_to!r} was already used by another Response")
    _remember_assertion(assertion, provider, fail)

    next_path = outstanding.next_path or "/"
    if capture.relay_state != outstanding.relay_state:
        # Signed and answering our request, but the handle is not the one we sent with it.
        next_path = "/"

    user, created = provision_user(provider, capture, fail)
    capture.user_id = user.id
    _record_flight(provider, capture, verdict="accepted", reason=None, reference=reference)
    return SignIn(user=user, next_path=next_path, purpose=outstanding.purpose, created=created, capture=capture,
                  binding_hash=outstanding.binding_hash,
                  details={"method": "saml", "idp": provider.idp.entity_id, "name_id": capture.name_id,
                           "created": created, "purpose": outstanding.purpose})


# --- finishing in the browser that started -------------------------------------------------

@dataclass
class Finished:
    user: User
    next_path: str
    purpose: str
    reference: str | None


def hold_sign_in(sign_in: SignIn, reference: str | None) -> str:
    """Keep an accepted sign-in for the finish URL; return its one-time ticket (the caller commits)."""
    ticket = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(SamlPendingSignIn(
        ticket_hash=_digest(ticket), user_id=sign_in.user.id, binding_hash=sign_in.binding_hash,
        next_path=sign_in.next_path, purpose=sign_in.purpose, reference=reference, details=sign_in.details,
        created_at=now, expires_at=now + PENDING_LIFETIME))
    return ticket


def finish_sign_in(ticket: str | None, binding: str | None) -> Finished:
    """Complete a held sign-in in the browser presenting ``binding``, or raise SamlError.

    The ticket is used up by a completed sign-in. The caller commits, then starts the session.
    """
    capture = Capture()

    def fail(reason: str, kind: str = "error"):
        raise SamlError(reason, kind=kind, capture=capture)

    if not ticket or len(ticket) > 128:
        fail("The sign-in link carries no valid ticket")
    held = db.session.get(SamlPendingSignIn, _digest(ticket))
    if held is None:
        fail("The sign-in link is unknown or was already used (sign in again)")
    capture.purpose, capture.user_id = held.purpose, held.user_id
    capture.name_id = (held.details or {}).get("name_id")
    if held.expires_at < utcnow():
        fail(f"The sign-in link expired: it is valid for {int(PENDING_LIFETIME.total_seconds())} seconds "
             f"after the IdP's answer (sign in again)")
    if not binding or held.binding_hash is None or not hmac.compare_digest(held.binding_hash, _digest(binding)):
        fail("The sign-in was started in another browser: a Response is accepted only in the browser that "
             "asked for it (a sign-in relayed from elsewhere is refused; sign in again from this browser)",
             kind="other_browser")
    # Of two concurrent uses of one ticket, exactly one deletes the row.
    used = db.session.execute(delete(SamlPendingSignIn).where(SamlPendingSignIn.ticket_hash == held.ticket_hash))
    if used.rowcount != 1:
        fail("The sign-in link was already used")
    user = db.session.get(User, held.user_id)
    if user is None:
        fail("The account was deleted before the sign-in completed", kind="no_account")
    if not user.active:
        fail("The account was deactivated before the sign-in completed", kind="deactivated")
    record_event("auth.login", actor=user.user_name, target=user.user_name, reference=held.reference,
                 details=held.details or {})
    if user.is_admin:
        settings.set("saml", "admin_sso_verified_at", utcnow().isoformat())
    return Finished(user=user, next_path=held.next_path or "/", purpose=held.purpose, reference=held.reference)


def record_unfinished(error: SamlError, reference: str | None) -> None:
    """Audit event for a sign-in refused at the finish URL (call after rolling back)."""
    capture = error.capture
    record_event("auth.login", actor="anonymous", target=capture.name_id, outcome="failure", reason=error.reason,
                 reference=reference, details={"method": "saml", "step": "finish", "purpose": capture.purpose,
                                               "user_id": capture.user_id})


def _release_frames(error: BaseException) -> None:
    """Drop the locals of the frames a pysaml2 exception went through.

    Its signature check keeps certificates in temporary files; held by a failed check's
    traceback, they would be closed by some later garbage collection (with a warning)
    instead of now.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _decode(saml_response: str, capture: Capture, fail) -> bytes:
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", saml_response), validate=True)
    except (binascii.Error, ValueError):
        fail("The SAMLResponse is not valid base64")
    if len(raw) > MAX_RESPONSE_BYTES:
        fail(f"The decoded Response is larger than {MAX_RESPONSE_BYTES // 1024} KB")
    capture.response_xml = _printable(raw[:FLIGHT_XML_LIMIT].decode("utf-8", "replace"))
    # The POST binding carries plain base64. pysaml2 would first try to inflate it (as on the
    # redirect binding), unbounded; refuse anything that inflates so it never does.
    if _inflates(raw):
        fail("The SAMLResponse is deflate-compressed; the HTTP-POST binding sends it uncompressed")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw:
        fail("The Response is not UTF-8 text")
    declared = _ENCODING_DECL_RE.match(raw)
    if declared and declared.group(1).decode().lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
        fail(f"The Response declares encoding {declared.group(1).decode()!r}; only UTF-8 is accepted")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        fail("The Response is not UTF-8 text")
    # Checked on the decoded bytes, before any XML parser sees them.
    if _DOCTYPE_RE.search(raw):
        fail("The Response contains a DOCTYPE or entity declaration; SAML never uses one (refused as an "
             "XML entity attack)")
    # Exclusive canonicalization leaves comments out of what is signed, so one put inside a signed
    # value after signing (admin@corp.example<!---->.evil.example) goes unnoticed by the signature
    # check while some XML readers stop at it. IdPs do not send comments: refuse any.
    if b"<!--" in raw:
        fail("The Response contains an XML comment; comments are not covered by the signature and IdPs do "
             "not send them (refused as comment injection)")
    return raw


def _inflates(raw: bytes) -> bool:
    """Would ``zlib.decompress(raw, -15)`` (what pysaml2 tries first) succeed, or run on and on?"""
    inflater = zlib.decompressobj(-15)
    try:
        inflater.decompress(raw, 64 * 1024)
    except zlib.error:
        return False
    # A complete stream inflates; so might one that still has input left after 64 KB of output.
    # One that merely ran out of input is "incomplete" to zlib.decompress, which then fails.
    return inflater.eof or bool(inflater.unconsumed_tail)


def _peek(raw: bytes, capture: Capture):
    """Parse (safely) for the checks and the flight recorder; None when it is not XML."""
    try:
        doc = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError):
        return None
    try:
        pretty = defusedxml.minidom.parseString(raw, forbid_dtd=True).toprettyxml(indent="  ")
        capture.response_xml = "\n".join(line for line in pretty.splitlines() if line.strip())[:FLIGHT_XML_LIMIT]
    except Exception:  # the pretty copy is a convenience; the raw text is already kept
        pass
    capture.in_response_to = doc.get("InResponseTo")
    issuer = doc.find(f"{{{SAML}}}Issuer")
    assertion = doc.find(f"{{{SAML}}}Assertion")
    if issuer is None and assertion is not None:
        issuer = assertion.find(f"{{{SAML}}}Issuer")
    capture.issuer = _text(issuer)
    if assertion is not None:
        capture.name_id = _text(assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID"))
        capture.attributes = _attributes(assertion)
    instant = _parse_time(doc.get("IssueInstant"))
    if instant is not None:
        capture.issue_instant_skew_seconds = round((utcnow() - instant).total_seconds(), 3)
    return doc


def _precheck(doc, sp: ServiceProvider, provider: Provider, capture: Capture, fail) -> None:
    """Checks on the document as received, each with its own reason.

    None of these accepts anything: pysaml2 still verifies the signed document after them,
    and ``_postcheck`` repeats the decisive ones on what pysaml2 verified.
    """
    if doc.tag != f"{{{SAMLP}}}Response":
        fail(f"The document is not a SAML Response (root element {_local(doc.tag)})")
    if doc.get("Version") != "2.0":
        fail(f"The Response is not SAML 2.0 (Version {doc.get('Version')!r})")
    status = doc.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    code = status.get("Value") if status is not None else None
    if code != STATUS_SUCCESS:
        inner = status.find(f"{{{SAMLP}}}StatusCode") if status is not None else None
        message = _text(doc.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusMessage"))
        fail(f"The IdP reported a failure: {code}"
             + (f" / {inner.get('Value')}" if inner is not None else "") + (f": {message}" if message else ""))

    expected = provider.idp.entity_id
    response_issuer = doc.find(f"{{{SAML}}}Issuer")
    if response_issuer is not None and _text(response_issuer) != expected:
        fail(f"Wrong Issuer: the Response was issued by {_text(response_issuer)!r}, not the configured IdP "
             f"{expected!r}")
    destination = doc.get("Destination")
    if not destination:
        fail("The Response has no Destination; a signed Response must name this Lobby's ACS URL")
    if destination != sp.acs_url:
        fail(f"Wrong Destination: {destination!r} is not this Lobby's ACS URL {sp.acs_url!r}")

    if doc.find(f"{{{SAML}}}EncryptedAssertion") is not None:
        fail("The assertion is encrypted; Lobby has no encryption key. Turn off assertion encryption at the IdP")
    assertions = doc.findall(f"{{{SAML}}}Assertion")
    if len(assertions) != 1:
        fail(f"The Response holds {len(assertions)} assertions; exactly one is accepted")
    assertion = assertions[0]
    assertion_issuer = _text(assertion.find(f"{{{SAML}}}Issuer"))
    if assertion_issuer != expected:
        fail(f"Wrong Issuer: the assertion was issued by {assertion_issuer!r}, not the configured IdP {expected!r}")
    if capture.issuer is None:
        capture.issuer = assertion_issuer

    if doc.find(f".//{{{DSIG}}}Signature") is None:
        fail("Missing signature: neither the Response nor the assertion is signed")

    assertion_id = assertion.get("ID")
    if assertion_id and db.session.get(SamlSeenAssertion, assertion_id) is not None:
        fail(f"Replay: assertion {assertion_id!r} was already accepted once")

    if not capture.in_response_to:
        fail("The Response answers no AuthnRequest (no InResponseTo): an IdP-initiated sign-in is only "
             "accepted as the Default RelayState initiate-sp-login, which starts a fresh SP-initiated login")

    _check_times(doc, assertion, provider.clock_skew_seconds, fail)

    audiences = [_text(a) for a in assertion.iterfind(
        f"{{{SAML}}}Conditions/{{{SAML}}}AudienceRestriction/{{{SAML}}}Audience")]
    if sp.entity_id not in audiences:
        fail(f"Wrong Audience: the assertion is meant for {', '.join(repr(a) for a in audiences) or 'no audience'}, "
             f"not this Lobby's entity ID {sp.entity_id!r}")
    recipients = [data.get("Recipient") for data in assertion.iterfind(
        f"{{{SAML}}}Subject/{{{SAML}}}SubjectConfirmation/{{{SAML}}}SubjectConfirmationData")]
    if not recipients or any(recipient != sp.acs_url for recipient in recipients):
        fail(f"Wrong Recipient: the subject confirmation names {', '.join(repr(r) for r in recipients) or 'none'}, "
             f"not this Lobby's ACS URL {sp.acs_url!r}")


def _check_times(doc, assertion, skew: int, fail) -> None:
    now = utcnow()
    slack = timedelta(seconds=skew)

    def when(value, what):
        if value is None:
            return None
        parsed = _parse_time(value)
        if parsed is None:
            fail(f"The {what} {value!r} is not a valid time")
        return parsed

    issued = when(doc.get("IssueInstant"), "Response IssueInstant")
    if issued is None:
        fail("The Response has no IssueInstant")
    if issued > now + slack:
        fail(f"Outside the time window: the Response was issued {int((issued - now).total_seconds())} s in the "
             f"future (clock skew allowed: {skew} s)")
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    if conditions is not None:
        not_before = when(conditions.get("NotBefore"), "Conditions NotBefore")
        not_after = when(conditions.get("NotOnOrAfter"), "Conditions NotOnOrAfter")
        if not_before is not None and not_before > now + slack:
            fail(f"Outside the time window: the assertion is valid only from {not_before:%Y-%m-%d %H:%M:%S} UTC "
                 f"(now {now:%H:%M:%S}, clock skew allowed: {skew} s)")
        if not_after is not None and not_after <= now - slack:
            fail(f"Outside the time window: the assertion expired at {not_after:%Y-%m-%d %H:%M:%S} UTC "
                 f"(now {now:%H:%M:%S}, clock skew allowed: {skew} s)")
    for data in assertion.iterfind(f"{{{SAML}}}Subject/{{{SAML}}}SubjectConfirmation/{{{SAML}}}SubjectConfirmationData"):
        not_after = when(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter")
        if not_after is not None and not_after <= now - slack:
            fail(f"Outside the time window: the subject confirmation expired at {not_after:%Y-%m-%d %H:%M:%S} UTC "
                 f"(clock skew allowed: {skew} s)")


def _postcheck(result, assertion, provider: Provider, capture: Capture, fail) -> None:
    """The decisive checks again, on the objects pysaml2 verified (not on the raw document)."""
    expected = provider.idp.entity_id
    if result.response.issuer is not None and (result.response.issuer.text or "").strip() != expected:
        fail("Wrong Issuer on the verified Response")
    if assertion.issuer is None or (assertion.issuer.text or "").strip() != expected:
        fail("Wrong Issuer on the verified assertion")
    if result.in_response_to != capture.in_response_to:
        fail("The verified Response answers a different AuthnRequest than the one looked up")
    name_id = result.name_id
    if name_id is None or not (name_id.text or "").strip():
        fail("The assertion has no NameID")
    if name_id.format == NAMEID_FORMAT_TRANSIENT:
        fail("The NameID is transient (different at every sign-in); set Name ID format to Persistent at the IdP")
    capture.name_id = name_id.text.strip()
    capture.attributes = _attributes_from_object(assertion)


def _remember_assertion(assertion, provider: Provider, fail) -> None:
    """The replay cache: an assertion ID is accepted once, whichever process sees it."""
    now = utcnow()
    ends = [now + OUTSTANDING_LIFETIME]
    if assertion.conditions is not None and assertion.conditions.not_on_or_after:
        ends.append(_parse_time(assertion.conditions.not_on_or_after) or now)
    keep_until = max(ends) + timedelta(seconds=provider.clock_skew_seconds)
    limit = SamlSeenAssertion.__table__.c.assertion_id.type.length
    if len(assertion.id or "") > limit:  # it could not be remembered, so it could be replayed
        fail(f"The Assertion ID is {len(assertion.id)} characters long; Lobby can remember at most {limit} "
             f"to refuse a replay")
    try:
        with db.session.begin_nested():
            db.session.add(SamlSeenAssertion(assertion_id=assertion.id, issuer=provider.idp.entity_id,
                                             created_at=now, expires_at=keep_until))
    except IntegrityError:
        fail(f"Replay: assertion {assertion.id!r} was already accepted once")


def _signature_reason(doc, error) -> str:
    if isinstance(error, MissingKey):
        return "Invalid signature: no configured IdP certificate applies to this Issuer"
    text = str(error)
    if "Neither the response nor the assertions are signed" in text or doc.find(f".//{{{DSIG}}}Signature") is None:
        return "Missing signature: neither the Response nor the assertion is signed"
    return ("Invalid signature: the signature does not verify with the configured IdP certificate(s) "
            "(signed by another key, or changed after signing)")


# --- users ------------------------------------------------------------------------------

PROFILE_FIELDS = ("given_name", "family_name", "display_name", "title", "department")


def map_attributes(attribute_map: dict, attributes: dict[str, list[str]]) -> dict[str, str | None]:
    """The user's fields from the attributes, as named by the admin's mapping.

    A field is present in the result only when its attribute was sent: an attribute the
    IdP leaves out never clears what Lobby has; one sent empty does.
    """
    mapped: dict[str, str | None] = {}
    for field_name, attribute_name in attribute_map.items():
        if not attribute_name or attribute_name not in attributes:
            continue
        values = [v.strip() for v in attributes[attribute_name] if v and v.strip()]
        mapped[field_name] = values[0] if values else None
    if not mapped.get("display_name"):
        full = " ".join(p for p in (mapped.get("given_name"), mapped.get("family_name")) if p)
        if full:
            mapped["display_name"] = full
    return mapped


# What each mapped field is stored in: a value longer than its column cannot be kept whole.
_FIELD_LIMITS = {name: User.__table__.c[name].type.length for name in ("user_name", *PROFILE_FIELDS)}
_FIELD_LIMITS["email"] = UserEmail.__table__.c.value.type.length
_NAME_ID_LIMIT = Identity.__table__.c.identifier.type.length


def _refuse_or_skip_overlong(provider: Provider, mapped: dict, capture: Capture, fail) -> None:
    """A sign-in name too long to store (or to compare: names are compared folded) refuses the
    Response, saying so; a profile field too long is left as it was, and the flight recorder says why.
    Nothing is cut short."""
    if capture.name_id and len(capture.name_id) > _NAME_ID_LIMIT:
        fail(f"The NameID is {len(capture.name_id)} characters long; Lobby stores at most {_NAME_ID_LIMIT}",
             kind="no_account")
    for name, value in list(mapped.items()):
        limit = _FIELD_LIMITS.get(name)
        if value is None or limit is None:
            continue
        length = max(len(value), len(fold(value)) if name in ("user_name", "email") else 0)
        if length <= limit:
            continue
        if name in ("user_name", "email"):
            fail(f"The {name} attribute ({provider.attribute_map.get(name)!r}) is {length} characters long; "
                 f"Lobby stores at most {limit}", kind="no_account")
        del mapped[name]
        capture.mapped[f"{name}_skipped"] = f"{len(value)} characters long; Lobby stores at most {limit}"


def provision_user(provider: Provider, capture: Capture, fail) -> tuple[User, bool]:
    """Find (or create) the user this NameID signs in as, and bring the profile up to date."""
    idp_id = provider.idp.entity_id
    mapped = map_attributes(provider.attribute_map, capture.attributes)
    capture.mapped = dict(mapped)
    _refuse_or_skip_overlong(provider, mapped, capture, fail)
    identity = Identity.query.filter_by(provider=idp_id, identifier=capture.name_id).one_or_none()
    created = False
    if identity is not None:
        user = identity.user
    else:
        user = None
        for login in (mapped.get("user_name"), mapped.get("email")):
            if login:
                user = User.find_by_login(login)
                if user is not None:
                    break
        if user is not None:
            other = Identity.query.filter_by(provider=idp_id, user_id=user.id).first()
            if other is not None:
                fail(f"The user {user.user_name} is already linked to another NameID ({other.identifier!r}) from "
                     f"this IdP; refusing to link NameID {capture.name_id!r} as well", kind="no_account")
        elif provider.jit_create:
            login = mapped.get("user_name") or mapped.get("email")
            if not login:
                fail("No user matches and none can be created: the assertion has neither the userName (upn) nor "
                     "the email attribute", kind="no_account")
            user = User(user_name=login, source="saml", active=True)
            if mapped.get("email"):
                user.set_primary_email(mapped["email"])
            db.session.add(user)
            created = True
        else:
            fail(f"No Lobby user matches NameID {capture.name_id!r} (userName {mapped.get('user_name')!r}, email "
                 f"{mapped.get('email')!r}) and just-in-time creation is off", kind="no_account")
        identity = Identity(provider=idp_id, identifier=capture.name_id, user=user)
        db.session.add(identity)
    if not user.active:
        fail(f"The user {user.user_name} is deactivated", kind="deactivated")
    identity.last_used_at = utcnow()

    if user.source != "scim" and not created:
        _update_profile(user, mapped, capture)
    elif created:
        for name in PROFILE_FIELDS:
            if name in mapped:
                setattr(user, name, mapped[name])
    if provider.group_attribute:
        capture.mapped["groups"] = _sync_groups(user, capture.attributes.get(provider.group_attribute, []))
    db.session.flush()
    return user, created


def _update_profile(user: User, mapped: dict, capture: Capture) -> None:
    changed = False
    for name in PROFILE_FIELDS:
        if name in mapped and getattr(user, name) != mapped[name]:
            setattr(user, name, mapped[name])
            changed = True
    if mapped.get("email") and fold(user.email) != fold(mapped["email"]):
        user.set_primary_email(mapped["email"])
        changed = True
    new_login = mapped.get("user_name")
    if new_login and user.user_name != new_login:
        holder = User.query.filter_by(user_name_key=fold(new_login)).one_or_none()
        if holder is None or holder.id == user.id:
            user.user_name = new_login
            changed = True
        else:
            capture.mapped["user_name_skipped"] = f"{new_login} belongs to another user"
    if changed:
        user.touch()


def _sync_groups(user: User, names: list[str]) -> dict:
    """Replace the user's SAML-sourced memberships by the attribute's values.

    Only groups whose source is saml are created, joined or left; a group SCIM or an
    admin owns is never touched, even when its name comes in the attribute.
    """
    wanted = {}
    for name in names:
        name = (name or "").strip()
        key = fold(name)
        if name and len(name) <= 255 and len(key) <= 255:  # the name and its key fit their columns
            wanted.setdefault(key, name)
    skipped, joined, left = [], [], []
    current = {m.group_id: m for m in Membership.query.filter_by(user_id=user.id)}
    keep = set()
    for key, name in wanted.items():
        group = Group.query.filter_by(display_name_key=key).one_or_none()
        if group is None:
            group = Group(display_name=name, source="saml")
            db.session.add(group)
            db.session.flush()
        if group.source != "saml":
            skipped.append(group.display_name)
            continue
        keep.add(group.id)
        if group.id not in current:
            db.session.add(Membership(group_id=group.id, user_id=user.id, source="saml"))
            group.touch()
            joined.append(group.display_name)
    for group_id, membership in current.items():
        if membership.source == "saml" and group_id not in keep and membership.group.source == "saml":
            left.append(membership.group.display_name)
            membership.group.touch()
            db.session.delete(membership)
    return {"joined": sorted(joined), "left": sorted(left), "skipped_not_saml_groups": sorted(skipped)}


# --- recording ------------------------------------------------------------------------------

def record_rejection(error: SamlError, reference: str, provider: Provider | None = None) -> None:
    """Audit event and flight-recorder row for a refused Response (call after rolling back)."""
    provider = provider or load_provider()
    capture = error.capture
    record_event("auth.login", actor="anonymous", target=(capture.mapped.get("user_name") or capture.name_id
                                                          or None),
                 outcome="failure", reason=error.reason, reference=reference,
                 details={"method": "saml", "issuer": capture.issuer, "name_id": capture.name_id,
                          "in_response_to": capture.in_response_to, "relay_state": capture.relay_state,
                          "purpose": capture.purpose, "response_xml": _audit_copy(capture.response_xml)})
    _record_flight(provider, capture, verdict="rejected", reason=error.reason, reference=reference)


def _audit_copy(xml: str | None) -> str | None:
    if xml is None or len(xml) <= AUDIT_XML_LIMIT:
        return xml
    return xml[:AUDIT_XML_LIMIT] + f"\n[… {len(xml) - AUDIT_XML_LIMIT} more characters in the flight recorder]"


def record_restart(capture: Capture, reference: str, provider: Provider | None = None) -> None:
    _record_flight(provider or load_provider(), capture, verdict="rejected", reference=reference,
                   reason="IdP-initiated Response (RelayState initiate-sp-login) is never accepted as a login; "
                          "a fresh SP-initiated login was started")


def _record_flight(provider: Provider, capture: Capture, *, verdict: str, reason: str | None,
                   reference: str | None) -> None:
    db.session.add(SamlResponseLog(
        created_at=utcnow(), reference=reference, verdict=verdict, reason=reason,
        issuer=_clip(capture.issuer, 1024), name_id=_clip(capture.name_id, 1024),
        in_response_to=_clip(capture.in_response_to, 255), relay_state=_clip(capture.relay_state, 512),
        user_id=capture.user_id, response_xml=capture.response_xml,
        attributes=_clip_attributes(capture.attributes), mapped=_jsonable(capture.mapped),
        issue_instant_skew_seconds=capture.issue_instant_skew_seconds,
    ))
    db.session.flush()
    newest = (db.session.query(SamlResponseLog.id).order_by(SamlResponseLog.id.desc())
              .offset(provider.flight_recorder_size - 1).limit(1).scalar())
    if newest is not None:
        db.session.execute(delete(SamlResponseLog).where(SamlResponseLog.id < newest))


# --- small helpers ----------------------------------------------------------------------

def _text(element) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        seconds = calendar.timegm(time_util.str_to_time(value))
        return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)
    except (ValueError, TypeError, OverflowError, AttributeError):  # pysaml2 raises AttributeError on junk
        return None


def _attributes(assertion) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for attribute in assertion.iterfind(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute"):
        name = attribute.get("Name")
        if name:
            found.setdefault(name, []).extend(
                (value.text or "").strip() for value in attribute.findall(f"{{{SAML}}}AttributeValue"))
    return found


def _attributes_from_object(assertion) -> dict[str, list[str]]:
    """Attributes by their exact Name, read from the verified assertion (no pysaml2 name mapping)."""
    found: dict[str, list[str]] = {}
    for statement in assertion.attribute_statement:
        for attribute in statement.attribute:
            if attribute.name:
                found.setdefault(attribute.name, []).extend(
                    (value.text or "").strip() for value in attribute.attribute_value)
    return found


def _clip(value: str | None, limit: int) -> str | None:
    return _printable(value[:limit]) if value else value


def _printable(text: str) -> str:
    """Text a database column (PostgreSQL refuses NUL) and a log reader can take."""
    return text.replace("\x00", "\\x00")


def _clip_attributes(attributes: dict[str, list[str]]) -> dict:
    return {name[:256]: [v[:1024] for v in values[:50]] for name, values in list(attributes.items())[:100]}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
