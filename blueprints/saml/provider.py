"""Configuring the SAML provider: validate what an admin (or the CLI) gives, save it, audit the diff.

Shared by the admin page and ``flask saml import-metadata``; no Flask request in here.
"""
from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import requests

from models import db, record_event, settings, utcnow
from models.setting import DEFAULT_ATTRIBUTE_MAP

from .metadata import (CertificateInfo, IdpDescription, MetadataError, check_url, describe_certificate,
                       parse_idp_metadata, pem_body, split_pem_certificates)

METHODS = {"metadata_file": "Metadata File", "metadata_url": "Metadata URL", "manual": "Manual"}
FETCH_TIMEOUT_SECONDS = 10
FETCH_LIMIT_BYTES = 1024 * 1024
FETCH_MAX_REDIRECTS = 5
# AWS's instance metadata service on IPv6 sits in a unique-local range (fd00:ec2::/32), not link-local.
_CLOUD_METADATA_V6 = ipaddress.ip_network("fd00:ec2::/32")
# Changing any of these means "a different IdP": an admin must prove SSO works again
# before the password form may be switched off.
PROVIDER_FIELDS = ("idp_entity_id", "idp_sso_url", "idp_certificates")


class ProviderError(ValueError):
    """The settings cannot be saved; the message says exactly why."""

    def __init__(self, message: str, field_name: str | None = None):
        super().__init__(message)
        self.message = message
        self.field_name = field_name


@dataclass
class SaveResult:
    diff: dict
    warnings: list[str] = field(default_factory=list)
    certificates: list[CertificateInfo] = field(default_factory=list)


def _refuse_unfit_host(url: str) -> None:
    """Refuse a URL whose host resolves to an address no IdP publishes metadata on.

    Link-local addresses (169.254.0.0/16, fe80::/10) are where cloud machines keep their
    instance metadata and credentials, and unspecified, multicast and reserved ones reach no
    IdP; fetching them would only let the form probe what the server itself can reach.
    Private and loopback addresses stay allowed: an office IdP (ADFS, Keycloak) often lives
    on the local network.
    """
    if requests.utils.get_environ_proxies(url):
        # Fetched through a proxy (HTTPS_PROXY, ...): the proxy resolves and connects, so this
        # machine's DNS and addresses say nothing about where the request goes.
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ProviderError("The metadata URL has a port that is not a number from 0 to 65535.",
                            "metadata_url") from None
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ProviderError(f"The metadata URL's host {host!r} could not be found (DNS). Check the address.",
                            "metadata_url") from None
    for _family, _type, _proto, _name, address in found:
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        kind = _unfit_kind(ip)
        if kind:
            where = f"points at {ip}" if host.strip("[]") == str(ip) else f"names {host!r}, which is at {ip}"
            raise ProviderError(f"The metadata URL {where}, {kind}; no IdP publishes metadata there, and Lobby "
                                f"does not fetch from it.", "metadata_url")


def _unfit_kind(ip) -> str | None:
    if ip.is_loopback:  # ::1 counts as "reserved" (::/8) too, but is this machine, as 127.0.0.1 is
        return None
    if ip.is_link_local:
        return "a link-local address (where cloud machines serve their instance metadata and credentials)"
    if ip.version == 6 and ip in _CLOUD_METADATA_V6:
        return "AWS's instance metadata address range"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    return None


def fetch_metadata(url: str) -> bytes:
    """GET the metadata URL: bounded in time and size, errors in words.

    Redirects are followed by hand, at most ``FETCH_MAX_REDIRECTS``, each target checked as the
    first URL is (scheme, and the addresses its host resolves to)."""
    deadline = time.monotonic() + 2 * FETCH_TIMEOUT_SECONDS  # the timeout is per read; this is overall
    try:
        for _hop in range(FETCH_MAX_REDIRECTS + 1):
            try:
                check_url(url, "The metadata URL")
            except MetadataError as error:
                raise ProviderError(str(error), "metadata_url") from None
            _refuse_unfit_host(url)
            with requests.get(url, timeout=FETCH_TIMEOUT_SECONDS, stream=True, allow_redirects=False,
                              headers={"Accept": "application/samlmetadata+xml, application/xml, text/xml"}) as reply:
                if reply.is_redirect:
                    url = urljoin(url, reply.headers["Location"])
                    continue
                if reply.status_code != 200:
                    raise ProviderError(f"Fetching the metadata URL answered HTTP {reply.status_code}, not 200.",
                                        "metadata_url")
                body = bytearray()
                for chunk in reply.iter_content(64 * 1024):
                    body.extend(chunk)
                    if time.monotonic() > deadline:
                        raise requests.Timeout()
                    if len(body) > FETCH_LIMIT_BYTES:
                        raise ProviderError(f"The metadata URL sent more than {FETCH_LIMIT_BYTES // 1024} KB; "
                                            f"that is not IdP metadata.", "metadata_url")
                return bytes(body)
        raise ProviderError(f"The metadata URL redirected more than {FETCH_MAX_REDIRECTS} times; give the final "
                            f"address.", "metadata_url")
    except requests.Timeout:
        raise ProviderError(f"The metadata URL did not answer in time ({FETCH_TIMEOUT_SECONDS} s per read, "
                            f"{2 * FETCH_TIMEOUT_SECONDS} s in all).",
                            "metadata_url") from None
    except requests.RequestException as error:
        raise ProviderError(f"The metadata URL could not be fetched ({type(error).__name__}). Check the address "
                            f"and that this server can reach it.", "metadata_url") from None


def check_certificates(pems: list[str], field_name: str) -> tuple[list[CertificateInfo], list[str]]:
    infos, warnings = [], []
    for pem in pems:
        try:
            info = describe_certificate(pem)
        except MetadataError as error:
            raise ProviderError(str(error), field_name) from None
        if info.problems:
            raise ProviderError(" ".join(info.problems), field_name)
        warnings.extend(info.warnings)
        infos.append(info)
    return infos, warnings


def resolve_idp(method: str, *, metadata_bytes: bytes | None = None, metadata_url: str = "",
                entity_id: str = "", sso_url: str = "", certificates_pem: str = "",
                current: dict | None = None) -> tuple[IdpDescription, dict]:
    """The IdP described by the chosen method, plus the settings that record where it came from."""
    current = current or {}
    source: dict = {"method": method}
    try:
        if method == "metadata_file":
            if not metadata_bytes:
                if current.get("method") == "metadata_file" and current.get("metadata_xml"):
                    metadata_bytes = current["metadata_xml"].encode("utf-8")  # keep the file uploaded before
                else:
                    raise ProviderError("Choose the metadata XML file to upload.", "metadata_file")
            idp = _parse(metadata_bytes, "metadata_file")
            source["metadata_xml"] = metadata_bytes.decode("utf-8", "replace")
        elif method == "metadata_url":
            url = (metadata_url or "").strip()
            if not url:
                raise ProviderError("Enter the metadata URL.", "metadata_url")
            raw = fetch_metadata(url)
            idp = _parse(raw, "metadata_url")
            source.update(metadata_url=url, metadata_xml=raw.decode("utf-8", "replace"),
                          metadata_fetched_at=utcnow().isoformat(timespec="seconds"))
        elif method == "manual":
            entity_id, sso_url = (entity_id or "").strip(), (sso_url or "").strip()
            if not entity_id:
                raise ProviderError("Enter the IdP entity ID (Okta: \"Identity Provider Issuer\").", "idp_entity_id")
            if not sso_url:
                raise ProviderError("Enter the IdP single sign-on URL.", "idp_sso_url")
            try:
                check_url(sso_url, "The single sign-on URL")
            except MetadataError as error:
                raise ProviderError(str(error), "idp_sso_url") from None
            try:
                pems = split_pem_certificates(certificates_pem)
            except MetadataError as error:
                raise ProviderError(str(error), "idp_certificates") from None
            if not pems:
                raise ProviderError("Paste at least one signing certificate (PEM, -----BEGIN CERTIFICATE-----).",
                                    "idp_certificates")
            idp = IdpDescription(entity_id=entity_id, sso_url=sso_url, certificates=pems)
        else:
            raise ProviderError(f"Unknown configuration method {method!r}.", "method")
    except MetadataError as error:
        raise ProviderError(str(error), "metadata_file" if method == "metadata_file" else "metadata_url") from None
    return idp, source


def _parse(raw: bytes, field_name: str) -> IdpDescription:
    try:
        return parse_idp_metadata(raw)
    except MetadataError as error:
        raise ProviderError(str(error), field_name) from None


def save_provider(*, actor: str, active: bool, method: str, label: str, group_attribute: str, jit_create: bool,
                  clock_skew_seconds: int, attribute_map: dict, idp: IdpDescription | None,
                  source: dict | None) -> SaveResult:
    """Validate and store the SAML settings; write the audit event with the (redacted) diff."""
    label = (label or "").strip()
    if not label:
        raise ProviderError("Enter the SAML2 Label: the text of the sign-in button.", "label")
    if not 0 <= clock_skew_seconds <= 600:
        raise ProviderError("The clock skew must be between 0 and 600 seconds.", "clock_skew_seconds")
    current = settings.section("saml")
    if active and idp is None:
        raise ProviderError("Configure the identity provider before activating SAML2 SSO.", "active")
    if not active and current["active"] and not settings.get("auth", "password_login"):
        raise ProviderError("SAML2 SSO is the only way to sign in right now: turn on \"Allow email + password "
                            "sign-in\" before deactivating it.", "active")
    warnings: list[str] = []
    infos: list[CertificateInfo] = []
    values = {
        "active": bool(active), "method": method, "label": label[:100],
        "group_attribute": (group_attribute or "").strip()[:255], "jit_create": bool(jit_create),
        "clock_skew_seconds": int(clock_skew_seconds),
        "attribute_map": {key: (attribute_map.get(key) or "").strip()[:512] for key in DEFAULT_ATTRIBUTE_MAP},
    }
    if idp is not None:
        infos, warnings = check_certificates(idp.certificates, "idp_certificates")
        values.update(idp_entity_id=idp.entity_id, idp_sso_url=idp.sso_url, idp_certificates=list(idp.certificates))
        values.update({k: v for k, v in (source or {}).items() if k != "method"})
    if any(current[name] != values.get(name, current[name]) for name in PROVIDER_FIELDS):
        values["provider_changed_at"] = utcnow().isoformat()
    diff = settings.update("saml", values)
    if diff:
        record_event("settings.update", actor=actor, target="saml", details=audit_diff(diff))
    return SaveResult(diff=diff, warnings=warnings, certificates=infos)


def audit_diff(diff: dict) -> dict:
    """The settings diff for the audit log: secrets redacted, long documents summarised."""
    redacted = settings.redact("saml", diff)
    for name, change in redacted.items():
        if name == "metadata_xml":
            redacted[name] = {side: _digest(value) for side, value in change.items()}
        elif name == "idp_certificates":
            redacted[name] = {side: [_fingerprint(pem) for pem in (value or [])] for side, value in change.items()}
    return redacted


def _digest(text) -> str | None:
    if not text:
        return text
    data = text.encode("utf-8") if isinstance(text, str) else text
    return f"sha256:{hashlib.sha256(data).hexdigest()[:16]} ({len(data)} bytes)"


def _fingerprint(pem: str) -> str:
    try:
        return describe_certificate(pem).fingerprint_sha256
    except MetadataError:
        return "sha256:" + hashlib.sha256(pem_body(pem).encode()).hexdigest()[:16]


def refresh_metadata(actor: str) -> SaveResult:
    """Fetch the configured metadata URL again (the refresh action) and store what changed."""
    current = settings.section("saml")
    if current["method"] != "metadata_url" or not current["metadata_url"]:
        raise ProviderError("The configuration method is not Metadata URL.", "metadata_url")
    idp, source = resolve_idp("metadata_url", metadata_url=current["metadata_url"], current=current)
    return save_provider(actor=actor, active=current["active"], method="metadata_url", label=current["label"],
                         group_attribute=current["group_attribute"], jit_create=current["jit_create"],
                         clock_skew_seconds=current["clock_skew_seconds"], attribute_map=current["attribute_map"],
                         idp=idp, source=source)


# --- the password form switch --------------------------------------------------------------

def sso_verified_since_change() -> bool:
    """Has an admin completed a SAML sign-in since the provider was last changed?"""
    values = settings.section("saml")
    verified = _when(values["admin_sso_verified_at"])
    if verified is None:
        return False
    changed = _when(values["provider_changed_at"])
    return changed is None or verified >= changed


def set_password_login(enabled: bool, actor: str) -> bool:
    """Switch the email + password form; returns whether anything changed."""
    before = settings.get("auth", "password_login")
    if before == enabled:
        return False
    if not enabled:
        values = settings.section("saml")
        if not (values["active"] and values["idp_entity_id"] and values["idp_certificates"]):
            raise ProviderError("Email + password sign-in stays on: SAML2 SSO is not active, so nobody could sign "
                                "in without it.", "password_login")
        if not sso_verified_since_change():
            raise ProviderError("Email + password sign-in stays on: no admin has completed an SSO sign-in since "
                                "the SAML provider was last changed. Use \"Test sign-in\" with an admin account "
                                "first, then try again.", "password_login")
    settings.set("auth", "password_login", bool(enabled))
    record_event("settings.update", actor=actor, target="auth",
                 details={"password_login": {"old": before, "new": bool(enabled)}})
    return True


def _when(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
