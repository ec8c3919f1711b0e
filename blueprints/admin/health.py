"""What the dashboard checks: each function returns plain values for one status card.

Levels, worst last: "off" (not in use), "ok", "warn" (look at it soon), "bad"
(people cannot sign in or soon will not).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import func

from models import AuditEvent, Group, SamlResponseLog, ScimRequestLog, ScimToken, User, db, settings, utcnow

LEVELS = ("off", "ok", "warn", "bad")
CERT_WARN_DAYS = (30, 7, 1)  # warn from 30 days out, louder from 7 and from 1
STALE_TOKEN_DAYS = 90
DRIFT_SAMPLE = 20


def worst(*levels: str) -> str:
    return max(levels, key=LEVELS.index, default="ok")


@dataclass
class Notice:
    level: str
    text: str
    endpoint: str
    link_text: str
    args: dict = field(default_factory=dict)


@dataclass
class Certificate:
    subject: str
    expires: datetime | None
    days_left: int | None
    level: str
    problem: str | None = None


def read_certificate(pem: str, now: datetime) -> Certificate:
    text = (pem or "").strip()
    if "BEGIN CERTIFICATE" not in text:
        # Admins paste the bare base64 from the IdP as often as a full PEM.
        text = "-----BEGIN CERTIFICATE-----\n" + text + "\n-----END CERTIFICATE-----"
    try:
        cert = x509.load_pem_x509_certificate(text.encode("ascii", "replace"))
    except ValueError:
        return Certificate(subject="(unreadable)", expires=None, days_left=None, level="bad",
                           problem="This certificate cannot be read; paste it again in Authentication.")
    expires = cert.not_valid_after_utc.replace(tzinfo=None)
    days_left = int((expires - now).total_seconds() // 86400)
    if expires <= now:
        level = "bad"
    elif days_left < CERT_WARN_DAYS[1]:
        level = "bad"
    elif days_left < CERT_WARN_DAYS[0]:
        level = "warn"
    else:
        level = "ok"
    return Certificate(subject=cert.subject.rfc4514_string() or "(no subject)", expires=expires,
                       days_left=days_left, level=level)


def certificate_notice(cert: Certificate) -> str:
    if cert.problem:
        return cert.problem
    if cert.days_left is None:
        return ""
    if cert.expires is not None and cert.days_left < 0:
        return f"The IdP signing certificate expired on {cert.expires:%d %b %Y}: SSO sign-ins are refused."
    if cert.days_left < CERT_WARN_DAYS[2]:
        return "The IdP signing certificate expires within a day: add its replacement now."
    return (f"The IdP signing certificate expires in {cert.days_left} days ({cert.expires:%d %b %Y}): "
            "add the new one from your IdP before then.")


SIGN_IN_ACTIONS = ("auth.login", "saml.login")


def _latest_sign_in(outcome: str, sso_only: bool = False) -> AuditEvent | None:
    """The newest sign-in event with this outcome; SSO ones are auth.login with method "saml"."""
    query = AuditEvent.query.filter(AuditEvent.action.in_(SIGN_IN_ACTIONS), AuditEvent.outcome == outcome)
    if sso_only:
        query = query.filter(db.or_(AuditEvent.action == "saml.login",
                                    AuditEvent.details["method"].as_string() == "saml"))
    return query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).first()


def sign_in_method(event: AuditEvent | None) -> str:
    if event is None:
        return ""
    if event.action == "saml.login" or (event.details or {}).get("method") == "saml":
        return "SSO"
    return "password"


def sso_status(now: datetime) -> dict:
    saml = settings.section("saml")
    certs = [read_certificate(pem, now) for pem in saml["idp_certificates"]]
    notices: list[Notice] = []
    level = "ok" if saml["active"] else "off"
    if saml["active"]:
        if not certs:
            notices.append(Notice("bad", "SSO is on but no IdP signing certificate is trusted.",
                                  "admin.authentication", "Add the certificate"))
        else:
            # During a rollover the newest certificate is the one that keeps SSO working.
            best = max(certs, key=lambda c: c.expires or datetime.min)
            if best.level in ("warn", "bad"):
                notices.append(Notice(best.level, certificate_notice(best), "admin.authentication",
                                      "Update the certificate"))
    drift = clock_drift()
    if saml["active"] and drift and drift["level"] in ("warn", "bad"):
        notices.append(Notice(drift["level"], drift["text"], "admin.flight", "See the Responses"))
    last_success = _latest_sign_in("success", sso_only=True)
    last_failure = _latest_sign_in("failure")
    for notice in notices:
        level = worst(level, notice.level)
    return {"active": saml["active"], "entity_id": saml["idp_entity_id"], "label": saml["label"],
            "certificates": certs, "drift": drift, "last_success": last_success, "last_failure": last_failure,
            "notices": notices, "level": level}


def clock_drift() -> dict | None:
    """How far apart the IdP's clock (IssueInstant) and ours were, over the last Responses.

    The SAML code stores our clock minus IssueInstant at arrival, so a positive
    value means the IdP's clock is behind ours (plus network time, a second or so).
    """
    samples = [row[0] for row in db.session.query(SamlResponseLog.issue_instant_skew_seconds)
               .filter(SamlResponseLog.issue_instant_skew_seconds.isnot(None))
               .order_by(SamlResponseLog.created_at.desc(), SamlResponseLog.id.desc()).limit(DRIFT_SAMPLE)]
    if not samples:
        return None
    allowed = settings.get("saml", "clock_skew_seconds")
    latest = samples[0]
    largest = max(samples, key=abs)
    if abs(latest) > allowed:
        level = "bad"
        text = (f"The IdP's clock and this server's are {describe_skew(latest)}: more than the {allowed} s allowed, "
                "so sign-ins are refused. Fix the server's time (NTP).")
    elif abs(largest) > allowed / 2:
        level = "warn"
        text = (f"The IdP's clock and this server's were up to {describe_skew(largest)} in the last "
                f"{len(samples)} sign-ins; {allowed} s is allowed. Check the server's time (NTP).")
    else:
        level = "ok"
        text = f"Clocks agree within {abs(largest):.0f} s."
    return {"latest": latest, "largest": largest, "samples": len(samples), "allowed": allowed,
            "level": level, "text": text}


def describe_skew(seconds: float) -> str:
    amount = abs(seconds)
    unit = f"{amount:.0f} s" if amount < 120 else f"{amount / 60:.1f} min"
    if amount < 1:
        return "in step"
    return f"{unit} apart (the IdP is {'behind' if seconds > 0 else 'ahead'})"


def provisioning_status(now: datetime) -> dict:
    enabled = settings.get("scim", "enabled")
    day_ago = now - timedelta(hours=24)
    last_request = db.session.query(func.max(ScimRequestLog.created_at)).scalar()
    last_token_use = db.session.query(func.max(ScimToken.last_used_at)).scalar()
    last_seen = max((t for t in (last_request, last_token_use) if t is not None), default=None)
    errors = (db.session.query(func.count(ScimRequestLog.id))
              .filter(ScimRequestLog.created_at >= day_ago, ScimRequestLog.status >= 400).scalar())
    live = ScimToken.query.filter(ScimToken.revoked_at.is_(None)).all()
    stale_before = now - timedelta(days=STALE_TOKEN_DAYS)
    stale = [t for t in live if (t.last_used_at or t.created_at) < stale_before]
    notices: list[Notice] = []
    # Not a warning: SCIM is on by default, and an office without provisioning is not broken.
    hint = ("No token yet, so no identity provider can provision users. Create one when you connect yours."
            if enabled and not live else None)
    if enabled:
        if errors:
            notices.append(Notice("warn", f"{errors} SCIM request{'s' if errors != 1 else ''} failed in the last 24 hours.",
                                  "admin.flight_scim", "See the failed requests", {"outcome": "errors"}))
    if stale:
        names = ", ".join(t.name for t in stale[:3]) + ("…" if len(stale) > 3 else "")
        notices.append(Notice("warn", f"{len(stale)} SCIM token{'s' if len(stale) != 1 else ''} unused for "
                                      f"{STALE_TOKEN_DAYS} days ({names}): revoke what you no longer use.",
                              "admin.provisioning", "Review tokens"))
    level = "ok" if enabled else "off"
    for notice in notices:
        level = worst(level, notice.level)
    return {"enabled": enabled, "hint": hint, "last_seen": last_seen, "errors_24h": errors, "live_tokens": len(live),
            "stale_tokens": stale, "notices": notices, "level": level}


def password_login_status(sso_active: bool) -> dict:
    allowed = settings.get("auth", "password_login")
    notices = []
    if sso_active and allowed:
        notices.append(Notice("warn", "Email + password sign-in is still allowed although SSO is on. Once SSO works "
                                      "for everyone, switch passwords off so the IdP decides who gets in.",
                              "admin.authentication", "Review sign-in options"))
    return {"allowed": allowed, "notices": notices, "level": "warn" if notices else "ok"}


def directory_counts() -> dict:
    # One pass over the users table for every count (it may hold 100,000 rows).
    by_state: dict[bool, int] = {}
    by_source: dict[str, int] = {}
    admins = 0
    rows = db.session.query(User.active, User.source, User.is_admin, func.count()).group_by(
        User.active, User.source, User.is_admin)
    for active, source, is_admin, count in rows:
        by_state[bool(active)] = by_state.get(bool(active), 0) + count
        by_source[source] = by_source.get(source, 0) + count
        if active and is_admin:
            admins += count
    groups_by_source = dict(db.session.query(Group.source, func.count()).group_by(Group.source).all())
    return {"active_users": by_state.get(True, 0), "inactive_users": by_state.get(False, 0),
            "users_by_source": by_source, "admins": admins,
            "groups": sum(groups_by_source.values()), "groups_by_source": groups_by_source}


def dashboard() -> dict:
    now = utcnow()
    sso = sso_status(now)
    scim = provisioning_status(now)
    password = password_login_status(sso["active"])
    from .directory import conflicting_names
    conflicts = conflicting_names()
    local_conflicts = (Group.query.filter(Group.display_name_key.in_(list(conflicts)), Group.source == "local",
                                          Group.adopted_by_idp.is_(False)).count() if conflicts else 0)
    group_notices = []
    if local_conflicts:
        group_notices.append(Notice("warn", f"{local_conflicts} local group{'s share' if local_conflicts != 1 else ' shares'} "
                                            "a name with a group your IdP tried to push.",
                                    "admin.groups", "Choose what to do"))
    attention = sorted(sso["notices"] + scim["notices"] + password["notices"] + group_notices,
                       key=lambda n: -LEVELS.index(n.level))
    return {"sso": sso, "scim": scim, "password": password, "counts": directory_counts(),
            "group_notices": group_notices, "attention": attention, "now": now}
