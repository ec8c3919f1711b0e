"""Keyset pagination for the admin lists: page N costs the same as page 1.

A page is addressed by the id of the row it continues after (or before), not
by an offset, so the database reads the next rows off an index instead of
counting past every row before them. With 100,000 users, "next page" near the
end is as fast as the first page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, tuple_

from models import db

PER_PAGE = 50
# Counting stops here: "more than 10,000" is as useful to a person as the exact number.
COUNT_CAP = 10_000


@dataclass
class Page:
    items: list
    next_cursor: Any = None
    prev_cursor: Any = None
    total: int | None = None
    total_capped: bool = False
    extra: dict = field(default_factory=dict)


def keyset_page(query, *, key, id_column, descending: bool, after=None, before=None,
                per_page: int = PER_PAGE) -> Page:
    """One page of ``query`` ordered by (key, id); ``after``/``before`` are row ids from a previous page.

    ``key`` must never be NULL (wrap nullable columns in coalesce): the row
    comparison below has no answer for NULL.
    """
    cursor = after if after is not None else before
    anchor = None
    if cursor is not None:
        anchor = db.session.execute(select(key, id_column).where(id_column == cursor)).first()
    backwards = before is not None and after is None and anchor is not None
    # Walking back to the previous page reads the index the other way round, then flips the rows.
    scan_descending = descending != backwards
    if anchor is not None:
        position = tuple_(key, id_column)
        query = query.filter(position < tuple_(*anchor) if scan_descending else position > tuple_(*anchor))
    order = (key.desc(), id_column.desc()) if scan_descending else (key.asc(), id_column.asc())
    rows = query.order_by(*order).limit(per_page + 1).all()
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()
        has_prev, has_next = more, True
    else:
        has_prev, has_next = anchor is not None, more
    id_name = id_column.key
    return Page(items=rows,
                next_cursor=getattr(rows[-1], id_name) if rows and has_next else None,
                prev_cursor=getattr(rows[0], id_name) if rows and has_prev else None)


def capped_count(query, id_column, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows ``query`` matches, counting no further than ``cap``; (count, capped)."""
    limited = query.order_by(None).with_entities(id_column).limit(cap + 1).subquery()
    count = db.session.execute(select(func.count()).select_from(limited)).scalar_one()
    return min(count, cap), count > cap
