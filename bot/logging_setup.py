"""Configure logging once; nothing in PeerCare logs message text or tokens."""

from __future__ import annotations

import logging

QUIET_LIBRARIES = ("discord", "apscheduler", "asyncio")
PAYLOAD_LOGGERS = (
    "discord.gateway",
    "discord.http",
    "discord.state",
    "aiosqlite",
    "sqlalchemy.engine",
    "asyncpg",
)


class _RedactSecrets(logging.Filter):
    """Last line of defence: blank a known secret if any library tries to log it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if any(secret in message for secret in self._secrets):
                for secret in self._secrets:
                    message = message.replace(secret, "[redacted]")
                record.msg, record.args = message, None
        return True


def configure_logging(level: str = "INFO", *, secrets: list[str] | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_RedactSecrets(secrets or []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries whose DEBUG output carries message text (gateway payloads, REST bodies, SQL parameters)
    # stay at INFO or above even when PeerCare itself runs at DEBUG.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
