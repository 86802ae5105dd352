"""Point `peercare run` in another process at the loopback server: a sitecustomize shim and its environment.

Only discord.py's two URLs are redirected (its REST base and gateway); everything else runs as in production.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.discord_server.server import DiscordServer

REPO_ROOT = Path(__file__).resolve().parents[2]

_SHIM = """
import os
if os.environ.get("PEERCARE_TEST_API_BASE"):
    import discord.gateway
    import discord.http
    import yarl
    discord.http.Route.BASE = os.environ["PEERCARE_TEST_API_BASE"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["PEERCARE_TEST_GATEWAY"])
"""


def redirect_environment(server: DiscordServer, folder: Path) -> dict[str, str]:
    """Environment entries that send a Python process's discord.py to ``server``; writes the shim into ``folder``."""
    shim = folder / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "sitecustomize.py").write_text(_SHIM)
    return {
        "PYTHONPATH": os.pathsep.join([str(shim), str(REPO_ROOT)]),
        "PEERCARE_TEST_API_BASE": server.api_base,
        "PEERCARE_TEST_GATEWAY": server.gateway.url,
    }
