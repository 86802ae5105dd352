"""A bot process on the Ray backend stops cleanly on SIGTERM: its Serve application is deleted, and it exits 0."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from inference.config import InferenceConfig
from tests.support.processes import killed_on_exit
from tests.support.ray_serve_app import NEEDS_RAY

pytestmark = NEEDS_RAY

READY_TIMEOUT_S = 240.0

# `peercare run` in small: the loop owns SIGTERM before Ray starts (run_bot), and the handler closes the client.
_PROCESS = """
import asyncio, json, signal, sys
from inference.backends.ray_serve import RayServeClient
from inference.config import InferenceConfig
from inference.types import Mechanism

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    options = json.loads(sys.argv[1])
    options["empathy_sources"] = {Mechanism(k): v for k, v in options["empathy_sources"].items()}
    client = RayServeClient(InferenceConfig(**options))
    await client.start()
    await client.wait_ready()
    print("READY", client.ready, flush=True)
    await stop.wait()
    await client.close()
    print("CLOSED", flush=True)

asyncio.run(main())
"""


def test_sigterm_deletes_the_serve_app_and_exits_cleanly(tiny_config: Callable[..., InferenceConfig]) -> None:
    options = dataclasses.asdict(tiny_config("ray"))
    options["empathy_sources"] = {m.value: path for m, path in options["empathy_sources"].items()}
    running = subprocess.Popen(
        [sys.executable, "-c", _PROCESS, json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with killed_on_exit(running) as process:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY"):
                break
            assert time.monotonic() < deadline, "the Ray Serve app never became ready"
        else:
            pytest.fail(f"the process ended before its Serve app was ready ({process.wait()})")
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]

    # Ray's crash handler caught the SIGTERM too, and the next Serve call aborted the process (exit -6).
    assert process.returncode == 0, output[-3000:]
    assert "CLOSED" in output
