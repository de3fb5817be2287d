"""Alembic environment of the operational store: the caller's connection, or the configured store URL."""

from alembic import context

from iot_mlops.opstore.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # the `alembic` command line: the store the settings name
    from iot_mlops.opstore.engine import create_engine
    from iot_mlops.settings import get_settings

    with create_engine(get_settings().store).connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    # render_as_batch: SQLite alters a table by copying it, which Alembic's batch mode does.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
