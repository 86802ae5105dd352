"""Does the scoring engine's memory level off? RSS while it scores made-up replies, per allocator/oneDNN setting.

Each setting runs in a fresh process (glibc reads ``MALLOC_*`` at start-up, oneDNN its cache size when torch
first builds a primitive), as the inference worker would with that environment: the shipped models at the
bot's default precision score made-up replies (``bench.messages``) in random batch sizes of 1-32, and RSS is
read after every ``--every`` replies. Settings ending in ``trim`` also call glibc's ``malloc_trim(0)`` after
every batch (``trim8``: every 8th, as the worker does). CPU ms/reply is the measured process's own CPU time
(less sensitive to other jobs on a shared machine than replies/s). The worker's defaults are
``onednn64+trim8`` (docs/worker-memory.md).

    nice -n 10 python -m bench.worker_memory --replies 2000
    nice -n 10 python -m bench.worker_memory --replies 2000 --settings baseline arena2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

SETTINGS: dict[str, dict[str, str]] = {
    "baseline": {},
    "arena2": {"MALLOC_ARENA_MAX": "2"},
    "onednn64": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    "arena2+onednn64": {"MALLOC_ARENA_MAX": "2", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    # A fixed mmap threshold: glibc otherwise raises it (up to 32 MiB) each time a mapped block is freed, after
    # which activation tensors of every batch shape are carved from the heap arenas and fragment them.
    "mmap128k": {"MALLOC_MMAP_THRESHOLD_": "131072"},
    "mmap1m": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
    "trim": {},
    "arena2+trim": {"MALLOC_ARENA_MAX": "2"},
    "mmap128k+onednn64": {"MALLOC_MMAP_THRESHOLD_": "131072", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    "onednn64+trim": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    "onednn64+trim8": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    "trim8": {},
}


def _trim_every(name: str) -> int:
    """Batches between ``malloc_trim`` calls for this setting; 0 = never."""
    last = name.split("+")[-1]
    if not last.startswith("trim"):
        return 0
    return int(last.removeprefix("trim") or 1)


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_child(
    replies: int, every: int, seed: int, cpu_dtype: str, threads: int | None, trim_every: int
) -> dict[str, Any]:
    """Inside the measured process: load the engine, score, return RSS checkpoints."""
    import ctypes

    from bench.messages import make_conversations, reply_requests
    from inference.config import InferenceConfig
    from inference.engine import ScoringEngine

    engine = ScoringEngine.load(InferenceConfig(device="cpu", cpu_dtype=cpu_dtype, cpu_threads=threads))
    requests = reply_requests(make_conversations(replies, seed=seed))[:replies]
    rng = random.Random(seed)
    malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim if trim_every else None
    batches = 0
    checkpoints = [(0, round(_rss_mib()))]
    started = time.perf_counter()
    cpu_started = time.process_time()
    system_started = os.times().system
    done = next_mark = 0
    next_mark = every
    while done < len(requests):
        size = rng.randint(1, 32)
        engine.score_batch(requests[done : done + size])
        batches += 1
        if malloc_trim is not None and batches % trim_every == 0:
            malloc_trim(0)
        done += size
        if done >= next_mark or done >= len(requests):
            checkpoints.append((min(done, len(requests)), round(_rss_mib())))
            next_mark += every
    return {
        "checkpoints": checkpoints,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
        "system_seconds": round(os.times().system - system_started, 1),
    }


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, **SETTINGS[name]}
    command = [sys.executable, "-m", "bench.worker_memory", "--child", "--replies", str(args.replies)]
    command += ["--every", str(args.every), "--seed", str(args.seed), "--cpu-dtype", args.cpu_dtype]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if _trim_every(name):
        command += ["--trim-every", str(_trim_every(name))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    points = result["checkpoints"]
    after_load = points[0][1]
    half = [rss for count, rss in points if count <= args.replies // 2]
    return {
        "setting": name,
        "env": SETTINGS[name],
        "rss_after_load_mib": after_load,
        "rss_peak_first_half_mib": max(half),
        "rss_peak_mib": max(rss for _, rss in points),
        "rss_final_mib": points[-1][1],
        "growth_mib": points[-1][1] - after_load,
        "growth_second_half_mib": points[-1][1] - max(half),
        "seconds": result["seconds"],
        "replies_per_s": round(args.replies / max(result["seconds"], 1e-9), 1),
        "cpu_ms_per_reply": round(1000 * result["cpu_seconds"] / args.replies, 1),
        # Kernel time: page faults and unmapping, what a lower mmap threshold or trimming costs.
        "system_ms_per_reply": round(1000 * result["system_seconds"] / args.replies, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "checkpoints": points,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250, help="replies between RSS readings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-dtype", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--trim-every", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print(
            json.dumps(
                run_child(args.replies, args.every, args.seed, args.cpu_dtype, args.threads, args.trim_every)
            )
        )
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = []
    for name in args.settings:
        result = measure(name, args)
        results.append(result)
        log.info(
            "%-16s after load %5d MiB, peak %5d MiB (first half %5d), final %5d: +%d MiB (+%d in the second "
            "half), %.1f replies/s, %.1f CPU ms/reply (%.1f in the kernel)",
            name,
            result["rss_after_load_mib"],
            result["rss_peak_mib"],
            result["rss_peak_first_half_mib"],
            result["rss_final_mib"],
            result["growth_mib"],
            result["growth_second_half_mib"],
            result["replies_per_s"],
            result["cpu_ms_per_reply"],
            result["system_ms_per_reply"],
        )
    print(json.dumps({"replies": args.replies, "cpu_dtype": args.cpu_dtype, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
