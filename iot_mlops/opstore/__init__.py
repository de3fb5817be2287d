"""The operational store: predictions, their feedback and the decision log in one database, its schema in Alembic."""
