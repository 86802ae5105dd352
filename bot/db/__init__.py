"""The database layer: schema, session factory and migrations. Knows nothing of models or Discord."""
