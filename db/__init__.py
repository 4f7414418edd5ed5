"""Storage: SQLModel tables, the engine factory, careful queries and Alembic migrations."""
