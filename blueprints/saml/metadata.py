"""Reading an IdP's metadata and certificates into plain values, with messages an admin can act on.

Nothing here touches the database or Flask: it takes text, returns values or
raises ``MetadataError`` whose message is shown to the admin as is.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import quoteattr

import defusedxml.ElementTree as SafeET
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from defusedxml import DefusedXmlException

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

MAX_METADATA_BYTES = 1024 * 1024
EXPIRY_WARNING_DAYS = 30

PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


class MetadataError(ValueError):
    """What is wrong with the metadata or certificate, in words for the admin."""


@dataclass
class CertificateInfo:
    pem: str
    subject: str
    issuer: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    self_signed: bool
    problems: list[str] = field(default_factory=list)  # refuse to save
    warnings: list[str] = field(default_factory=list)  # save, but tell the admin

    @property
    def expires(self) -> str:
        return self.not_after.strftime("%Y-%m-%d")


@dataclass
class IdpDescription:
    entity_id: str
    sso_url: str
    certificates: list[str]  # PEM


def _b64_body(text: str) -> bytes:
    cleaned = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise MetadataError("A certificate is not valid base64 (PEM) text.") from None


def to_pem(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def pem_body(pem: str) -> str:
    """The base64 of a PEM certificate on one line, as metadata carries it."""
    match = PEM_RE.search(pem)
    return re.sub(r"\s+", "", match.group(1) if match else pem)


def load_certificate(text: str) -> x509.Certificate:
    match = PEM_RE.search(text)
    der = _b64_body(match.group(1) if match else text)
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise MetadataError("A certificate could not be read: it is not an X.509 certificate.") from None


def split_pem_certificates(text: str) -> list[str]:
    """Every certificate in a PEM text box (one or more), normalised to PEM."""
    text = (text or "").strip()
    if not text:
        return []
    blocks = PEM_RE.findall(text)
    if not blocks:
        if "-----BEGIN" in text:
            raise MetadataError("The certificate box holds PEM text that is not a certificate "
                                "(expected -----BEGIN CERTIFICATE-----).")
        blocks = [text]  # a bare base64 body, as some IdPs show it
    pems = []
    for block in blocks:
        cert = load_certificate(block)
        pems.append(to_pem(cert.public_bytes(Encoding.DER)))
    return pems


def _name(name: x509.Name) -> str:
    # In the order the certificate lists them (CN first, as admins see it in their IdP).
    parts = [f"{attribute.rfc4514_attribute_name}={attribute.value}" for attribute in name]
    return ", ".join(parts) or "(empty)"


def describe_certificate(pem: str, now: datetime | None = None) -> CertificateInfo:
    """Subject, fingerprint and expiry of a signing certificate, and what is wrong with it."""
    cert = load_certificate(pem)
    now = now or datetime.now(timezone.utc)
    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    info = CertificateInfo(
        pem=pem, subject=_name(cert.subject), issuer=_name(cert.issuer),
        fingerprint_sha256=":".join(fingerprint[i:i + 2] for i in range(0, len(fingerprint), 2)),
        not_before=not_before, not_after=not_after, self_signed=cert.subject == cert.issuer,
    )
    label = f"The certificate {info.subject}"
    if not_after <= now:
        info.problems.append(f"{label} expired on {info.expires}. Download the current signing "
                             f"certificate from the IdP.")
    elif not_after - now <= timedelta(days=EXPIRY_WARNING_DAYS):
        days = (not_after - now).days
        info.warnings.append(f"{label} expires on {info.expires} (in {days} days). Add the IdP's next "
                             f"signing certificate before then, or sign-in will stop working.")
    if not_before > now + timedelta(days=1):
        info.warnings.append(f"{label} is not valid before {not_before:%Y-%m-%d}.")
    if _looks_like_tls_server(cert):
        info.problems.append(f"{label} looks like a TLS server (website) certificate, not the IdP's SAML "
                             f"signing certificate. Use the signing certificate from the IdP's SAML set-up "
                             f"instructions.")
    return info


def _looks_like_tls_server(cert: x509.Certificate) -> bool:
    """A website's certificate: made for serverAuth, or naming DNS hosts. IdP signing certs are neither."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH in usages:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if names.get_values_for_type(x509.DNSName):
            return True
    except x509.ExtensionNotFound:
        pass
    return False


def parse_idp_metadata(raw: bytes | str) -> IdpDescription:
    """The IdP's entity ID, SSO URL and signing certificates from a metadata document."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_METADATA_BYTES:
        raise MetadataError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KB; that is not IdP metadata.")
    # Text copied out of a web page often starts with a byte-order mark or blank lines.
    raw = raw.lstrip(b"\xef\xbb\xbf").strip()
    if not raw:
        raise MetadataError("The metadata file is empty.")
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException:
        raise MetadataError("The metadata is not accepted: it contains a DOCTYPE or entity declaration.") from None
    except ParseError as error:
        line, column = error.position
        raise MetadataError(f"The metadata is not valid XML (line {line}, column {column}). "
                            f"Copy the whole XML box from the IdP again.") from None

    if root.tag == f"{{{MD}}}EntityDescriptor":
        entities = [root]
    elif root.tag == f"{{{MD}}}EntitiesDescriptor":
        entities = list(root.iter(f"{{{MD}}}EntityDescriptor"))
    else:
        raise MetadataError("The XML is not SAML metadata: it has no EntityDescriptor.")
    idps = [(entity, entity.find(f"{{{MD}}}IDPSSODescriptor")) for entity in entities]
    idps = [(entity, descriptor) for entity, descriptor in idps if descriptor is not None]
    if not idps:
        raise MetadataError("The metadata has no IdP descriptor (IDPSSODescriptor). Is this the identity "
                            "provider's metadata, and not a service provider's?")
    if len(idps) > 1:
        raise MetadataError(f"The metadata describes {len(idps)} identity providers; use the metadata of one.")
    entity, descriptor = idps[0]
    entity_id = (entity.get("entityID") or "").strip()
    if not entity_id:
        raise MetadataError("The metadata's EntityDescriptor has no entityID.")

    locations = {}
    for service in descriptor.findall(f"{{{MD}}}SingleSignOnService"):
        binding, location = service.get("Binding"), (service.get("Location") or "").strip()
        if location and binding not in locations:
            locations[binding] = location
    sso_url = locations.get(BINDING_REDIRECT) or locations.get(BINDING_POST)
    if not sso_url:
        raise MetadataError("The metadata has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding.")
    check_url(sso_url, "The SingleSignOnService Location")

    certificates = []
    for key in descriptor.findall(f"{{{MD}}}KeyDescriptor"):
        if key.get("use") not in (None, "", "signing"):
            continue  # encryption keys do not sign anything
        for element in key.iter(f"{{{DS}}}X509Certificate"):
            if element.text and element.text.strip():
                pem = to_pem(load_certificate(element.text).public_bytes(Encoding.DER))
                if pem not in certificates:
                    certificates.append(pem)
    if not certificates:
        raise MetadataError("The metadata has no signing certificate (a KeyDescriptor with use=\"signing\" "
                            "and an X509Certificate).")
    return IdpDescription(entity_id=entity_id, sso_url=sso_url, certificates=certificates)


def check_url(url: str, what: str) -> None:
    if not re.match(r"^https?://[^\s/?#]+", url or "") or any(ch.isspace() for ch in url):
        raise MetadataError(f"{what} is not a web address (https://...): {url!r}.")


def idp_metadata_xml(idp: IdpDescription) -> str:
    """Metadata for pysaml2 built from the parsed values only: nothing else from an upload is trusted."""
    keys = "".join(
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{pem_body(pem)}'
        f"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for pem in idp.certificates
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID={quoteattr(idp.entity_id)}>'
        f'<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}'
        f'<md:SingleSignOnService Binding="{BINDING_REDIRECT}" Location={quoteattr(idp.sso_url)}/>'
        f"</md:IDPSSODescriptor></md:EntityDescriptor>"
    )
