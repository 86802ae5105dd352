"""Risk classifiers: per-label probabilities, calibrated tiers and the crisis-phrase layer for escalation."""
