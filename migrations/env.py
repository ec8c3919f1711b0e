"""Alembic environment for Lobby: the models' metadata, the app's engine, batch mode for SQLite."""
from alembic import context
from flask import current_app

from models import db

config = context.config
metadata = db.metadata
options = current_app.extensions["migrate"].configure_args


def run_migrations_offline():
    context.configure(url=str(db.engine.url), target_metadata=metadata, literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def skip_empty(context_, revision, directives):
        # `flask db migrate` with no model change writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []

    with db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          process_revision_directives=skip_empty, **options)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
