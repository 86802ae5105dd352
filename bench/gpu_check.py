"""GPU check, part 2 (bench/gpu_check.sh runs part 1, ``bench.inference``): precisions on the device vs the CPU.

Scores the same replies (with their posts) with the engine on ``--device`` in bf16 (what PeerCare runs on a GPU)
and in fp32, and once on the CPU in fp32 as the reference. Reports replies/s (batches of ``--batch``), peak GPU
memory, the share of the GPU's dense bf16 peak the useful FLOPs reach, and checks that the device's scores equal
the CPU's: the same risk tier for every post and at least ``--min-level-agreement`` of the ER/IP/EX levels.
Exit code 1 when a check fails. ``--quick`` for the CPU dry run CI does.

    python -m bench.gpu_check --device cuda [--quick] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.inference import _agreement
from bench.messages import make_conversations, reply_requests
from bench.models import prepare_models
from inference.config import InferenceConfig

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by GPU name; the share is only as good as this table.
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
}
MIN_LEVEL_AGREEMENT = 0.99


def bf16_peak_tflops(gpu_name: str) -> float | None:
    for name, peak in BF16_PEAK_TFLOPS.items():
        if name.lower() in gpu_name.lower():
            return peak
    return None


@contextlib.contextmanager
def _fp32_on_gpu() -> Iterator[None]:
    """The engine always runs bf16/fp16 on a GPU; for the comparison, load the checkpoints' own fp32 there."""
    import inference.engine as engine_module

    original = engine_module.model_dtype
    engine_module.model_dtype = lambda device, cpu_dtype="fp32": None  # type: ignore[assignment]
    try:
        yield
    finally:
        engine_module.model_dtype = original


def _run(config: InferenceConfig, requests: list, batch: int, *, fp32: bool = False) -> dict[str, Any]:
    import torch

    from inference.engine import ScoringEngine

    cuda = config.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with _fp32_on_gpu() if fp32 and cuda else contextlib.nullcontext():
        engine = ScoringEngine.load(config)
    engine.score_batch(requests[:batch])  # warm-up: kernels, caches
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    results = []
    for start in range(0, len(requests), batch):
        results.extend(engine.score_batch(requests[start : start + batch]))
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]!r}")
    precision = engine.model_versions.get("precision", "?")
    del engine
    return {
        "precision": str(precision),
        "replies_per_s": len(requests) / elapsed,
        "gpu_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "results": results,
    }


def check(
    *, device: str, parents: int, batch: int, seed: int, useful_gflop_per_reply: float | None
) -> dict[str, Any]:
    import torch

    requests = reply_requests(make_conversations(parents, seed=seed + 11, id_offset=5_000_000))
    with tempfile.TemporaryDirectory(prefix="peercare-gpu-check-") as scratch:
        models = prepare_models("auto", Path(scratch))
        base = InferenceConfig(
            backend="inprocess", device="cpu", empathy_sources=dict(models.empathy), risk_source=models.risk
        )
        reference = _run(base, requests, batch)
        on_device = dataclasses.replace(base, device=device, cpu_dtype="bf16")
        runs = {"bf16": _run(on_device, requests, batch)}
        # On the CPU (the dry run) fp32 on the device is the reference itself: measured once.
        runs["fp32"] = (
            reference
            if device == "cpu"
            else _run(dataclasses.replace(on_device, cpu_dtype="fp32"), requests, batch, fp32=True)
        )
    gpu_name = torch.cuda.get_device_name(0) if device == "cuda" else None
    peak = bf16_peak_tflops(gpu_name) if gpu_name else None
    summary: dict[str, Any] = {
        "device": device,
        "gpu": gpu_name,
        "models": models.description,
        "replies": len(requests),
        "batch": batch,
        "cpu_fp32_replies_per_s": reference["replies_per_s"],
        "bf16_peak_tflops": peak,
    }
    ok = True
    for name, run in runs.items():
        agreement = _agreement(reference["results"], run["results"])
        passed = (
            agreement["risk_tier_agreement"] == 1.0 and agreement["level_agreement"] >= MIN_LEVEL_AGREEMENT
        )
        ok &= passed
        share = (
            run["replies_per_s"] * useful_gflop_per_reply * 1e9 / (peak * 1e12)
            if peak and useful_gflop_per_reply
            else None
        )
        summary[name] = {
            **{k: v for k, v in run.items() if k != "results"},
            **agreement,
            "share_of_bf16_peak": share,
            "same_as_cpu": passed,
        }
    summary["ok"] = ok
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="a few parents (the CPU dry run)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--useful-gflop-per-reply",
        type=float,
        default=None,
        help="from bench.inference's JSON (naive.useful_gflop_per_reply), for the share of the bf16 peak",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    summary = check(
        device=args.device,
        parents=6 if args.quick else 120,
        batch=args.batch,
        seed=args.seed,
        useful_gflop_per_reply=args.useful_gflop_per_reply,
    )
    print(f"precision check on {summary['gpu'] or summary['device']}: {summary['replies']} replies")
    print(f"  CPU fp32 reference: {summary['cpu_fp32_replies_per_s']:.1f} replies/s")
    for name in ("bf16", "fp32"):
        run = summary[name]
        memory = f"{run['gpu_memory_mib']:.0f} MiB" if run["gpu_memory_mib"] is not None else "n/a"
        share = f"{100 * run['share_of_bf16_peak']:.2f}%" if run["share_of_bf16_peak"] is not None else "n/a"
        print(
            f"  {name:>4} ({run['precision']}): {run['replies_per_s']:.1f} replies/s, GPU memory {memory}, "
            f"share of bf16 peak {share}; vs CPU: tiers {100 * run['risk_tier_agreement']:.1f}%, "
            f"levels {100 * run['level_agreement']:.2f}% -> {'OK' if run['same_as_cpu'] else 'DIFFERENT'}"
        )
    if args.json:
        print(json.dumps(summary, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
