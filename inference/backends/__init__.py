"""Inference backends: in-process, a supervised worker process, and Ray Serve; all share ScoringEngine."""
