"""A Discord server on loopback (REST API v10 + gateway) for running the real discord.py client in tests."""

from tests.discord_server import faults
from tests.discord_server.faults import Fault, FaultPlan
from tests.discord_server.interactions import CommandError, Interaction
from tests.discord_server.recorder import RecordedRequest, UploadedFile
from tests.discord_server.server import DiscordServer, WaitTimeout
from tests.discord_server.world import Cast, Channel, Guild, Message, Role, User, World

__all__ = [
    "Cast",
    "Channel",
    "CommandError",
    "DiscordServer",
    "Fault",
    "FaultPlan",
    "Guild",
    "Interaction",
    "Message",
    "RecordedRequest",
    "Role",
    "UploadedFile",
    "User",
    "WaitTimeout",
    "World",
    "faults",
]
