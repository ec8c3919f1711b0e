"""A test identity provider shaped like Okta, for SAML tests anywhere in the suite.

It makes a fresh RSA key and self-signed certificate, publishes Okta-shaped
metadata, and issues Responses really signed (with the xmlsec1 binary, as an
IdP would) over the Response, the Assertion or both. Every part of a Response
can be overridden, and two hooks let a test tamper with the XML before or
after signing.

    idp = TestIdP()
    configure_saml(app, idp)                        # settings as the admin page would save them
    request = start_login(client, next_path="/x")   # SP-initiated: GET .../saml2/login
    xml = idp.response(request.id, name_id="00u1", attributes={...})
    reply = post_response(client, xml, request.relay_state)
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

XMLSEC = shutil.which("xmlsec1") or "/usr/bin/xmlsec1"
BASE_URL = "https://lobby.test"  # TestConfig's BASE_URL
SP_ENTITY_ID = BASE_URL + "/auth/saml2"
ACS_URL = BASE_URL + "/internal-api/auth/integrations/saml2/callback"
LOGIN_PATH = "/internal-api/auth/integrations/saml2/login"
ACS_PATH = "/internal-api/auth/integrations/saml2/callback"
FINISH_PATH = "/internal-api/auth/integrations/saml2/finish"

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
BASIC_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
GIVEN_NAME = CLAIMS + "givenname"
SURNAME = CLAIMS + "surname"
EMAIL = CLAIMS + "emailaddress"
UPN = CLAIMS + "upn"
NAME = CLAIMS + "name"


def okta_attributes(*, first="Erin", last="Employee", email="erin@example.com", login=None,
                    display=None, department="Sales", title="Account manager", **extra) -> dict:
    """The guide's attribute statements, with values for one person."""
    attributes = {GIVEN_NAME: first, SURNAME: last, EMAIL: email, UPN: login or email, NAME: display or "",
                  "department": department, "jobtitle": title}
    attributes.update(extra)
    return {name: value for name, value in attributes.items() if value is not None}


# --- keys -------------------------------------------------------------------------------

@dataclass
class KeyPair:
    key_pem: bytes
    cert_pem: str

    @property
    def cert_body(self) -> str:
        """The base64 of the certificate on one line (as metadata and Okta's box show it)."""
        return "".join(self.cert_pem.strip().splitlines()[1:-1])


_KEY_CACHE: dict = {}


def make_key_pair(common_name: str = "lobby-test-idp", *, days: int = 3650, not_before_days: int = -1,
                  tls_server: bool = False, cache: bool = True) -> KeyPair:
    """A fresh RSA key and self-signed certificate (cached per arguments: RSA keys are slow to make)."""
    cache_key = (common_name, days, not_before_days, tls_server)
    if cache and cache_key in _KEY_CACHE:
        return _KEY_CACHE[cache_key]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Okta")])
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + timedelta(days=not_before_days))
               .not_valid_after(now + timedelta(days=days)))
    if tls_server:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("idp.example.com")]),
                                        critical=False)
    cert = builder.sign(key, hashes.SHA256())
    pair = KeyPair(
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
    )
    if cache:
        _KEY_CACHE[cache_key] = pair
    return pair


# --- time --------------------------------------------------------------------------------

def saml_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- signing ----------------------------------------------------------------------------------

def signature_template(reference_id: str) -> str:
    """An enveloped-signature template as Okta makes them (exc-c14n, RSA-SHA256, cert in KeyInfo)."""
    return (
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        f'<ds:Reference URI="#{reference_id}"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>'
        '</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>'
    )


def xmlsec_sign(xml: str, keys: KeyPair, node_name: str, node_id: str) -> str:
    """Fill in the signature template inside the element with ID ``node_id`` (xmlsec1 --sign)."""
    with tempfile.TemporaryDirectory() as folder:
        key_file, cert_file = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
        source, output = os.path.join(folder, "in.xml"), os.path.join(folder, "out.xml")
        with open(key_file, "wb") as handle:
            handle.write(keys.key_pem)
        with open(cert_file, "w") as handle:
            handle.write(keys.cert_pem)
        with open(source, "w", encoding="utf-8") as handle:
            handle.write(xml)
        command = [XMLSEC, "--sign", "--privkey-pem", f"{key_file},{cert_file}", "--id-attr:ID", node_name,
                   "--node-id", node_id, "--output", output, source]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"xmlsec1 could not sign: {done.stderr}")
        with open(output, encoding="utf-8") as handle:
            return handle.read()


# --- the IdP ------------------------------------------------------------------------------------

class TestIdP:
    """An Okta-like IdP. ``response()`` makes a signed SAML Response for an AuthnRequest."""

    __test__ = False  # not a test class

    def __init__(self, entity_id: str = "http://www.okta.com/exk1lobbytest0001",
                 sso_url: str = "https://lobby-test.okta.com/app/lobby-test_lobby_1/exk1lobbytest0001/sso/saml",
                 keys: KeyPair | None = None):
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.keys = keys or make_key_pair()

    # metadata -----------------------------------------------------------------------------
    def metadata_xml(self, *, certificates: list[KeyPair] | None = None, sso_url: str | None = None) -> str:
        """What Okta shows under "Provide the following IDP metadata to your SP provider"."""
        keys = "".join(
            '<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
            f"<ds:X509Data><ds:X509Certificate>{pair.cert_body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
            "</md:KeyDescriptor>"
            for pair in (certificates or [self.keys]))
        location = quoteattr(sso_url or self.sso_url)
        return (
            '<?xml version="1.0" encoding="UTF-8"?><md:EntityDescriptor '
            f'xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID={quoteattr(self.entity_id)}>'
            '<md:IDPSSODescriptor WantAuthnRequestsSigned="false" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f"{keys}"
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>"
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>"
            f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location={location}/>'
            f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
            f"Location={location}/>"
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    # responses ----------------------------------------------------------------------------------
    def response(self, in_response_to: str | None, *, name_id: str = "00u1erinlobbytest",
                 attributes: dict | None = None, sign: str = "assertion",
                 signing_keys: KeyPair | None = None, issuer: str | None = None,
                 assertion_issuer: str | None = None, audience: str | None = SP_ENTITY_ID,
                 destination: str | None = ACS_URL, recipient: str | None = ACS_URL,
                 name_id_format: str = PERSISTENT, status: str = SUCCESS, shift: timedelta = timedelta(0),
                 issue_instant: datetime | None = None, not_before: datetime | None = None,
                 not_on_or_after: datetime | None = None, assertion_id: str | None = None,
                 response_id: str | None = None, subject_in_response_to: str | None = "same",
                 before_signing: Callable[[str], str] | None = None,
                 after_signing: Callable[[str], str] | None = None) -> str:
        """A SAML Response (XML text) answering ``in_response_to``.

        ``sign``: "assertion" (Okta's default), "response", "both" or "none".
        ``signing_keys``: sign with another key (its certificate goes in KeyInfo, as an attacker would).
        ``shift`` moves every time in the Response; the explicit times override single values.
        ``before_signing`` / ``after_signing`` get the XML text and return it changed.
        """
        now = _now() + shift
        issue_instant = issue_instant or now
        not_before = not_before or (now - timedelta(minutes=5))
        not_on_or_after = not_on_or_after or (now + timedelta(minutes=5))
        response_id = response_id or "id" + uuid.uuid4().hex
        assertion_id = assertion_id or "id" + uuid.uuid4().hex
        issuer = self.entity_id if issuer is None else issuer
        assertion_issuer = issuer if assertion_issuer is None else assertion_issuer
        subject_irt = in_response_to if subject_in_response_to == "same" else subject_in_response_to
        attributes = okta_attributes() if attributes is None else attributes

        def attr(name, values):
            values = values if isinstance(values, (list, tuple)) else [values]
            name_format = URI_FORMAT if "://" in name else BASIC_FORMAT
            body = "".join(
                '<saml2:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                f'xsi:type="xs:string">{escape(str(value))}</saml2:AttributeValue>' for value in values)
            return f"<saml2:Attribute Name={quoteattr(name)} NameFormat=\"{name_format}\">{body}</saml2:Attribute>"

        statement = ""
        if attributes:
            statement = ("<saml2:AttributeStatement>" + "".join(attr(n, v) for n, v in attributes.items())
                         + "</saml2:AttributeStatement>")
        irt_attr = f" InResponseTo={quoteattr(in_response_to)}" if in_response_to else ""
        subject_irt_attr = f" InResponseTo={quoteattr(subject_irt)}" if subject_irt else ""
        destination_attr = f" Destination={quoteattr(destination)}" if destination else ""
        recipient_attr = f" Recipient={quoteattr(recipient)}" if recipient else ""
        audience_xml = (f"<saml2:AudienceRestriction><saml2:Audience>{escape(audience)}</saml2:Audience>"
                        "</saml2:AudienceRestriction>") if audience else ""
        response_sig = signature_template(response_id) if sign in ("response", "both") else ""
        assertion_sig = signature_template(assertion_id) if sign in ("assertion", "both") else ""
        entity_format = 'Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity"'

        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol"'
            f'{destination_attr} ID="{response_id}"{irt_attr} IssueInstant="{saml_time(issue_instant)}" Version="2.0">'
            f'<saml2:Issuer xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" {entity_format}>{escape(issuer)}'
            f"</saml2:Issuer>{response_sig}"
            f'<saml2p:Status><saml2p:StatusCode Value="{status}"/></saml2p:Status>'
            '<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"'
            f' ID="{assertion_id}" IssueInstant="{saml_time(issue_instant)}" Version="2.0">'
            f"<saml2:Issuer {entity_format}>{escape(assertion_issuer)}</saml2:Issuer>{assertion_sig}"
            f'<saml2:Subject><saml2:NameID Format="{name_id_format}">{escape(name_id)}</saml2:NameID>'
            '<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml2:SubjectConfirmationData{subject_irt_attr} NotOnOrAfter="{saml_time(not_on_or_after)}"'
            f"{recipient_attr}/></saml2:SubjectConfirmation></saml2:Subject>"
            f'<saml2:Conditions NotBefore="{saml_time(not_before)}" NotOnOrAfter="{saml_time(not_on_or_after)}">'
            f"{audience_xml}</saml2:Conditions>"
            f'<saml2:AuthnStatement AuthnInstant="{saml_time(now)}" SessionIndex="{response_id}">'
            "<saml2:AuthnContext><saml2:AuthnContextClassRef>"
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
            "</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>"
            f"{statement}</saml2:Assertion></saml2p:Response>"
        )
        if before_signing:
            xml = before_signing(xml)
        keys = signing_keys or self.keys
        if assertion_sig:
            xml = xmlsec_sign(xml, keys, "urn:oasis:names:tc:SAML:2.0:assertion:Assertion", assertion_id)
        if response_sig:
            xml = xmlsec_sign(xml, keys, "urn:oasis:names:tc:SAML:2.0:protocol:Response", response_id)
        if after_signing:
            xml = after_signing(xml)
        return xml


# --- driving Lobby ------------------------------------------------------------------------------

@dataclass
class AuthnRequestInfo:
    id: str
    relay_state: str
    location: str
    xml: str


def read_authn_request(location: str) -> AuthnRequestInfo:
    """The AuthnRequest in an HTTP-Redirect binding URL (what the browser carries to the IdP)."""
    query = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode("utf-8")
    root = SafeET.fromstring(xml)
    return AuthnRequestInfo(id=root.get("ID"), relay_state=query.get("RelayState", [""])[0],
                            location=location, xml=xml)


def start_login(client, next_path: str | None = None) -> AuthnRequestInfo:
    """GET Lobby's SP-initiated login and read the AuthnRequest it redirects to."""
    url = LOGIN_PATH + (f"?next={next_path}" if next_path else "")
    reply = client.get(url)
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return read_authn_request(reply.headers["Location"])


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode("utf-8")).decode()


def post_response(client, xml: str | None, relay_state: str | None = None, *, raw: str | None = None,
                  finish: bool = True):
    """POST to the ACS as the browser does after the IdP's auto-submitting form.

    An accepted Response is answered with a redirect to the finish URL, where the browser that
    started the login is signed in; like a browser, this follows it (unless ``finish=False``)
    and returns the finish URL's answer.
    """
    data = {}
    if xml is not None or raw is not None:
        data["SAMLResponse"] = raw if raw is not None else encode(xml)
    if relay_state is not None:
        data["RelayState"] = relay_state
    reply = client.post(ACS_PATH, data=data)
    if finish and reply.status_code == 303 and urlsplit(reply.headers["Location"]).path == FINISH_PATH:
        return client.get(reply.headers["Location"])
    return reply


def same_browser(source, target):
    """Give ``target`` (a test client, maybe of another app process) the cookies of ``source``:
    the same browser, its next request reaching another process."""
    for cookie in source._cookies.values():
        target.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return target


def configure_saml(app, idp: TestIdP, **overrides) -> None:
    """Store the SAML settings directly (as a saved admin form would), SAML active."""
    from models import db, settings
    values = {"active": True, "method": "metadata_file", "label": "SSO Login",
              "metadata_xml": idp.metadata_xml(), "idp_entity_id": idp.entity_id, "idp_sso_url": idp.sso_url,
              "idp_certificates": [idp.keys.cert_pem]}
    values.update(overrides)
    with app.app_context():
        settings.update("saml", values)
        db.session.commit()


def sign_in(client, idp: TestIdP, next_path: str | None = None, **response_options):
    """The whole SP-initiated round trip; returns the ACS reply."""
    request = start_login(client, next_path)
    return post_response(client, idp.response(request.id, **response_options), request.relay_state)
