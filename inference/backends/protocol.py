"""The worker pipe protocol: length-prefixed pickled frames between the bot and its own worker process.

Only the bot and the worker it spawned ever write to these pipes, so pickle is safe here; errors travel
as (class name, message) and are rebuilt only from PeerCare's own error classes.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
from typing import Any

from inference import errors

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024

# Frame "op" values.
CONFIG = "config"  # bot -> worker, first frame: {"config": InferenceConfig, "log_level": int}
SCORE = "score"  # bot -> worker: {"id": int, "item": WorkItem}
SHUTDOWN = "shutdown"  # bot -> worker
PROGRESS = "progress"  # worker -> bot: {"stage": str}
READY = "ready"  # worker -> bot: {"device": str, "versions": dict}
LOAD_FAILED = "load_failed"  # worker -> bot: {"error": (name, message)}
HEARTBEAT = "heartbeat"  # worker -> bot
RESULT = "result"  # worker -> bot: {"id": int, "result": ReplyScore | RiskScore}
ERROR = "error"  # worker -> bot: {"id": int, "error": (name, message)}

_ERROR_TYPES: dict[str, type[errors.InferenceError]] = {
    cls.__name__: cls
    for cls in (
        errors.InferenceError,
        errors.ModelLoadError,
        errors.InputRejected,
        errors.InferenceUnavailable,
        errors.RequestShed,
    )
}


def encode(op: str, **fields: Any) -> bytes:
    payload = pickle.dumps({"op": op, **fields}, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at end of stream (the other side exited or closed the pipe)."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME_BYTES:
            raise errors.InferenceError(f"worker frame of {size} bytes exceeds the limit")
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


def error_to_wire(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, errors.RequestShed):
        return ("RequestShed", exc.reason)
    name = type(exc).__name__ if type(exc).__name__ in _ERROR_TYPES else "InferenceError"
    message = str(exc) if isinstance(exc, errors.InferenceError) else f"scoring failed: {type(exc).__name__}"
    return (name, message)


def error_from_wire(wire: tuple[str, str]) -> errors.InferenceError:
    name, message = wire
    cls = _ERROR_TYPES.get(name, errors.InferenceError)
    if cls is errors.ModelLoadError:
        return errors.ModelLoadError(message)
    return cls(message)
