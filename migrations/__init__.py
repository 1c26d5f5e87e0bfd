"""Alembic environment and revisions for nnlab's tracking schema (installed as nnlab.migrations)."""
