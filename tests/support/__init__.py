"""Helpers the tests share: tiny real models and fixtures."""
