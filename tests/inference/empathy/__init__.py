"""Tests of the ER/IP/EX empathy models."""
