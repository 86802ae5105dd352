"""Errors a service raises on purpose; their text is shown to the member or moderator as is."""

from __future__ import annotations


class UserFacingError(Exception):
    """A refusal with a message a person can act on (bad argument, missing setup, ...)."""
