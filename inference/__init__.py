"""Models and the inference worker. Knows nothing of Discord or the database."""
