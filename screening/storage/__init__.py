"""Storage: the database tables, every statement the service runs, and the migrations.

SQLAlchemy Core on SQLite or PostgreSQL. Only the services layer imports this
package (an import contract holds it so). A new table goes in ``tables.py`` with
a new Alembic revision in ``migrations/versions/``.
"""
