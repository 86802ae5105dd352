"""Discord's JSON error answers, raised by REST handlers and turned into responses in one place."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            # Discord nests field errors as {"field": {"_errors": [{"code", "message"}]}}.
            data["errors"] = {
                name: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": text}]}
                for name, text in self.errors.items()
            }
        return data


def unknown_message() -> ApiError:
    return ApiError(404, 10008, "Unknown Message")


def unknown_channel() -> ApiError:
    return ApiError(404, 10003, "Unknown Channel")


def unknown_user() -> ApiError:
    return ApiError(404, 10013, "Unknown User")


def unknown_member() -> ApiError:
    return ApiError(404, 10007, "Unknown Member")


def unknown_guild() -> ApiError:
    return ApiError(404, 10004, "Unknown Guild")


def unknown_interaction() -> ApiError:
    return ApiError(404, 10062, "Unknown interaction")


def unknown_webhook() -> ApiError:
    return ApiError(404, 10015, "Unknown Webhook")


def invalid_webhook_token() -> ApiError:
    return ApiError(401, 50027, "Invalid Webhook Token")


def already_acknowledged() -> ApiError:
    return ApiError(400, 40060, "Interaction has already been acknowledged.")


def cannot_dm() -> ApiError:
    return ApiError(403, 50007, "Cannot send messages to this user")
