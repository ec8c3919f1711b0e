"""Admin section: Audit log — filter, export as CSV, and keep it for a set number of days."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, time, timedelta

import click
from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func

from models import AuditEvent, db, record_event, settings, utcnow

from . import bp
from .forms import AuditFilterForm, RetentionForm
from .paging import keyset_page

EXPORT_BATCH = 1000
CSV_COLUMNS = ("id", "time_utc", "actor", "action", "target", "outcome", "reason", "reference", "ip_address",
               "details")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def filtered_events(filters: AuditFilterForm):
    """The audit events the filter form selects, unordered."""
    query = AuditEvent.query
    if filters.since.data:
        query = query.filter(AuditEvent.created_at >= datetime.combine(filters.since.data, time.min))
    if filters.until.data:
        query = query.filter(AuditEvent.created_at < datetime.combine(filters.until.data + timedelta(days=1), time.min))
    if filters.actor.data:
        query = query.filter(AuditEvent.actor.icontains(filters.actor.data.strip(), autoescape=True))
    if filters.action.data:
        action = filters.action.data.strip()
        # "saml." or "admin.user" means the whole family; a full name means just that action.
        query = query.filter(AuditEvent.action.startswith(action, autoescape=True))
    if filters.target.data:
        query = query.filter(AuditEvent.target.icontains(filters.target.data.strip(), autoescape=True))
    if filters.outcome.data:
        query = query.filter(AuditEvent.outcome == filters.outcome.data)
    if filters.reference.data:
        query = query.filter(AuditEvent.reference == filters.reference.data.strip().upper())
    return query


def _kept_args() -> dict:
    return {name: value for name, value in request.args.items() if name not in ("after", "before") and value}


def _page(retention_form=None, status=200):
    filters = AuditFilterForm(request.args)
    query = filtered_events(filters)

    def as_int(name):
        value = request.args.get(name, "")
        # ASCII digits only ("²" is a digit to str.isdigit), and within a 64-bit id.
        return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None

    # Ids grow with time, so (id) alone orders events newest first and pages by index.
    page = keyset_page(query, key=AuditEvent.id, id_column=AuditEvent.id, descending=True,
                       after=as_int("after"), before=as_int("before"))
    actions = [row[0] for row in db.session.query(AuditEvent.action).distinct().order_by(AuditEvent.action).limit(200)]
    form = retention_form or RetentionForm(formdata=None, retention_days=settings.get("audit", "retention_days"))
    return render_template("admin/audit/list.html", filters=filters, page=page, kept=_kept_args(),
                           actions=actions, retention_form=form), status


@bp.route("/audit")
def audit():
    return _page()


def csv_cell(value) -> str:
    """A value safe to open in a spreadsheet: formulas are quoted so they show as text."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def event_row(event: AuditEvent) -> list[str]:
    details = json.dumps(event.details, sort_keys=True, ensure_ascii=False, default=str) if event.details else ""
    return [csv_cell(v) for v in (event.id, event.created_at.isoformat(sep=" ", timespec="seconds"), event.actor,
                                  event.action, event.target, event.outcome, event.reason, event.reference,
                                  event.ip_address, details)]


@bp.route("/audit/export.csv")
def audit_export():
    filters = AuditFilterForm(request.args)
    # The export shows the log as it was when asked for: not its own audit event, nor later ones.
    newest = db.session.query(func.max(AuditEvent.id)).scalar() or 0
    query = filtered_events(filters).filter(AuditEvent.id <= newest)
    record_event("audit.export", target="audit log", details={"filters": _kept_args()})
    db.session.commit()

    # The generator runs after this view returns, where Flask-SQLAlchemy's scoped session may
    # already be another one: hold on to the session the query is bound to.
    session = db.session()

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        last_id = None
        try:
            while True:
                batch_query = query.with_session(session)
                if last_id is not None:
                    batch_query = batch_query.filter(AuditEvent.id < last_id)
                batch = batch_query.order_by(AuditEvent.id.desc()).limit(EXPORT_BATCH).all()
                for event in batch:
                    writer.writerow(event_row(event))
                done = len(batch) < EXPORT_BATCH
                last_id = batch[-1].id if batch else None
                # End the read transaction before handing data to a possibly slow client: on SQLite
                # every transaction holds the write lock, and nothing may wait on a download.
                session.rollback()
                session.expunge_all()  # nor may a long export keep every event in memory
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if done:
                    break
        finally:
            session.rollback()

    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="lobby-audit-{stamp}.csv"'})


def purge_expired_events(retention_days: int, actor: str | None = None) -> int:
    """Delete events older than the retention period; record how many went. The caller commits."""
    cutoff = utcnow() - timedelta(days=retention_days)
    deleted = AuditEvent.query.filter(AuditEvent.created_at < cutoff).delete(synchronize_session=False)
    if deleted:
        record_event("audit.purge", actor=actor, target="audit log",
                     details={"deleted": deleted, "older_than": cutoff.isoformat(sep=" ", timespec="seconds"),
                              "retention_days": retention_days})
    return deleted


@bp.route("/audit/retention", methods=["POST"])
def audit_retention():
    form = RetentionForm()
    if not form.validate_on_submit():
        return _page(retention_form=form, status=400)
    diff = settings.update("audit", {"retention_days": form.retention_days.data})
    if diff:
        record_event("settings.update", target="audit", details=settings.redact("audit", diff))
    deleted = purge_expired_events(form.retention_days.data)
    db.session.commit()
    message = f"Audit events are kept for {form.retention_days.data} days."
    if deleted:
        message += f" {deleted} older events were deleted."
    flash(message, "success")
    return redirect(url_for("admin.audit"))


audit_cli = AppGroup("audit", help="The audit log.")


@audit_cli.command("purge")
@with_appcontext
def purge_command():
    """Delete audit events older than the retention setting (run daily, e.g. from cron)."""
    days = settings.get("audit", "retention_days")
    deleted = purge_expired_events(days, actor="cli")
    db.session.commit()
    click.echo(f"Deleted {deleted} audit events older than {days} days.")


@bp.record_once
def _register_cli(state):
    state.app.cli.add_command(audit_cli)
