"""What the benchmarks share: a fresh migrated database, and their section of docs/performance.md."""
from __future__ import annotations

from pathlib import Path


def migrated_app(url: str, folder: str):
    """A Lobby app on ``url`` with the schema migrated; a PostgreSQL database is EMPTIED first."""
    import flask_migrate
    from sqlalchemy import create_engine, text

    from app import create_app
    from config import TestConfig

    config = TestConfig(url, folder)
    if url.startswith("postgres"):
        engine = create_engine(config.SQLALCHEMY_DATABASE_URI)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    app = create_app(config)
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
    return app


def replace_section(path: Path, heading: str, section: str) -> None:
    """Put ``section`` (which starts with ``heading``) in place of that heading's section, or at the end."""
    text = path.read_text() if path.exists() else "# Performance\n\n"
    section = section.rstrip("\n") + "\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[following + 1:] if following != -1 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
