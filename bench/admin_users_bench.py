"""How fast the admin user pages answer with 100,000 users.

    .venv/bin/python bench/admin_users_bench.py postgresql://postgres@127.0.0.1:5432/lobby_bench
    .venv/bin/python bench/admin_users_bench.py sqlite:////tmp/lobby-bench.db

The database is emptied and seeded first (``--reuse`` keeps an already seeded one). Prints the median time of each page over a few
requests, measured through the Flask test client (no network, no browser).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flask_migrate  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from app import create_app  # noqa: E402
from config import TestConfig  # noqa: E402
from models import Group, Membership, User, UserEmail, db  # noqa: E402
from tests.conftest import AuthActions, reset_postgres, wipe  # noqa: E402


USERS = 100_000
GIVEN = ["Anna", "Ben", "Chloé", "Dev", "Erin", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kai", "Lena"]
FAMILY = ["Smith", "Berg", "Okafor", "Durand", "Patel", "Walsh", "Haddad", "Lind", "Tanaka", "Costa", "Meyer"]
DEPARTMENTS = ["Finance", "Sales", "Engineering", "Marketing", "Design", "People", "Operations"]


def seed(app) -> None:
    start = datetime(2024, 1, 1)
    with app.app_context():
        group = Group(display_name="Everyone", source="scim")
        db.session.add(group)
        db.session.flush()
        for offset in range(0, USERS, 10_000):
            users, emails, members = [], [], []
            for i in range(offset, offset + 10_000):
                user_id = f"{i:08d}-0000-4000-8000-000000000000"
                given, family = GIVEN[i % len(GIVEN)], FAMILY[(i // 7) % len(FAMILY)]
                login = f"{given.lower()}.{family.lower()}{i}@example.com"
                users.append({"id": user_id, "user_name": login, "user_name_key": login, "given_name": given,
                              "family_name": family, "display_name": f"{given} {family}",
                              "department": DEPARTMENTS[i % len(DEPARTMENTS)], "extra": {},
                              "active": i % 10 != 1, "is_admin": i == 0, "source": ("scim", "saml", "local")[i % 3],
                              "created_at": start + timedelta(minutes=i), "updated_at": start, "version": 1,
                              "session_epoch": 0, "password_hash": None,
                              "search_text": "\n".join(p.casefold() for p in (login, f"{given} {family}", given, family,
                                                                               DEPARTMENTS[i % len(DEPARTMENTS)], login)),
                              "last_login_at": start + timedelta(hours=i % 5000) if i % 4 else None})
                emails.append({"user_id": user_id, "value": login, "value_key": login, "primary": True,
                               "position": 0})
                members.append({"group_id": group.id, "user_id": user_id, "source": "scim"})
            db.session.execute(insert(User), users)
            db.session.execute(insert(UserEmail), emails)
            db.session.execute(insert(Membership), members)
        admin = db.session.get(User, "00000000-0000-4000-8000-000000000000")
        admin.set_password("benchmark password")
        db.session.commit()


def main(url: str) -> None:
    app = create_app(TestConfig(url, tempfile.mkdtemp()))
    reuse = "--reuse" in sys.argv
    if reuse:
        with app.app_context():
            reuse = db.session.query(User).count() == USERS
    if not reuse:
        if url.startswith("postgres"):
            reset_postgres(url)
        with app.app_context():
            flask_migrate.upgrade(revision="heads")
        wipe(app)
        began = time.perf_counter()
        seed(app)
        print(f"seeded {USERS:,} users in {time.perf_counter() - began:.1f} s")
    if url.startswith("postgres"):
        with app.app_context(), db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")  # statistics are transactional: commit them
    client = app.test_client()
    AuthActions(client).login_as(type("U", (), {"user_name": "anna.smith0@example.com",
                                                "password": "benchmark password"}))
    with app.app_context():
        last = User.query.order_by(User.user_name_key.desc()).offset(60).first().id
        group_id = Group.query.one().id
    pages = {
        "first page": "/admin/users",
        "search 'smith' (name)": "/admin/users?q=smith",
        "search one email": "/admin/users?q=greta.lind79990@example.com",
        "search 'okafor sales'": "/admin/users?q=okafor+sales",
        "inactive SCIM users": "/admin/users?status=inactive&source=scim",
        "newest first": "/admin/users?sort=-created",
        "recent sign-in first": "/admin/users?sort=-last_login",
        "near the end (keyset)": f"/admin/users?after={last}",
        "group of 100,000, first page": f"/admin/groups/{group_id}",
        "groups list": "/admin/groups",
        "dashboard": "/admin/",
    }
    for name, path in pages.items():
        times = []
        for _ in range(5):
            began = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        print(f"{name:32} {statistics.median(times):8.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
