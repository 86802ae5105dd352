"""Typed inference errors, each carrying a message an operator or moderator can act on."""

from __future__ import annotations


class InferenceError(Exception):
    """Base class for everything the inference layer raises on purpose."""


class ModelLoadError(InferenceError):
    """A model source could not be loaded; ``setting`` names the setting to change."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(f"{message} (change {setting})" if setting else message)
        self.setting = setting


class InputRejected(InferenceError):
    """The input cannot be scored (e.g. empty after normalisation); nothing was run."""


class InferenceUnavailable(InferenceError):
    """The backend is not running or could not be restarted."""


class InferenceShutDown(InferenceUnavailable):
    """The backend was closed (the bot is shutting down) while the request waited or ran."""

    def __init__(self) -> None:
        super().__init__("the inference backend is shut down")


class RequestShed(InferenceError):
    """Coaching work dropped under load; ``reason`` is recorded by the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
