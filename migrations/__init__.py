"""Alembic migrations for PeerCare's database (packaged so an installed `peercare` can migrate)."""
