"""Benchmark: the naive way of scoring replies against PeerCare's inference worker, same models, same messages.

    python bench/inference.py [--quick] [--json] [--backend worker|inprocess] [--device auto|cpu|cuda]

The naive way is the seed model cards' usage: one reply at a time, every input padded to 64 tokens, the
three empathy models each encoding the seeker post again, plus the risk model on the post. PeerCare's way
is the worker backend: dynamic batching grouped by length, one seeker encoding per parent (cached),
inference mode, bf16 on GPU. Reports replies/s (saturated), p50/p99 latency under a steady offered load
(70% of each side's own capacity), peak RSS and the speedup. With --json the last line is one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# `python bench/inference.py` puts bench/ first on sys.path, where this file would shadow the `inference`
# package; put the repository root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench.load import cpu_seconds, peak_rss_mb, saturate, steady_load  # noqa: E402
from bench.messages import make_conversations, reply_requests  # noqa: E402
from bench.models import BenchModels, prepare_models  # noqa: E402
from inference.config import InferenceConfig  # noqa: E402
from inference.types import Mechanism  # noqa: E402

log = logging.getLogger("bench.inference")

# Offered load for the latency figures, as a share of each side's own measured capacity.
LOAD_SHARE = 0.7
H100_BF16_DENSE_TFLOPS = 989.0


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the naive side (its own process, so its memory and threads are its own) --------------------------------


def _naive_child(models: BenchModels, device: str, parents: int, seed: int, threads: int, queue) -> None:
    try:
        from bench.naive import measure_naive

        queue.put(measure_naive(models, device=device, parents=parents, seed=seed, threads=threads))
    except BaseException as exc:  # report, don't hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_naive(models: BenchModels, *, device: str, parents: int, seed: int, threads: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_naive_child, args=(models, device, parents, seed, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    if "error" in result:
        raise SystemExit(f"naive benchmark failed: {result['error']}")
    return result


# -- PeerCare's side -------------------------------------------------------------------------------------------


def gpu_memory_mb(pid: int) -> float | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid):
            return float(fields[1])
    return None


async def run_peercare(
    models: BenchModels,
    *,
    backend: str,
    device: str,
    parents: int,
    seed: int,
    threads: int,
    max_batch: int,
    cpu_dtype: str = "fp32",
) -> dict[str, Any]:
    from inference.factory import create_inference_client

    config = InferenceConfig(
        backend=backend,  # type: ignore[arg-type]
        device=device,  # type: ignore[arg-type]
        empathy_sources=dict(models.empathy),
        risk_source=models.risk,
        max_batch_size=max_batch,
        max_wait_ms=5.0,
        queue_size=100_000,  # this measures speed, not shedding
        cpu_threads=threads,
        cpu_dtype=cpu_dtype,  # type: ignore[arg-type]
        request_timeout_s=600,
        heartbeat_timeout_s=120,
    )
    client = create_inference_client(config)
    started = time.perf_counter()
    await client.start()
    await client.wait_ready()  # type: ignore[attr-defined]
    load_s = time.perf_counter() - started

    # Distinct message ids per phase, so no phase finds another's parents in the seeker cache.
    warm = reply_requests(make_conversations(8, seed=seed + 99, id_offset=9_000_000))
    capacity_requests = reply_requests(make_conversations(parents, seed=seed, id_offset=1_000_000))
    steady_requests = reply_requests(make_conversations(parents, seed=seed, id_offset=2_000_000))
    await asyncio.gather(*(client.score_reply(r) for r in warm))

    pid = getattr(client, "pid", None)
    cpu_before = cpu_seconds(pid) + cpu_seconds(None) if pid else cpu_seconds(None)
    throughput = await saturate(client.score_reply, capacity_requests, concurrency=4 * max_batch)
    cpu_used = (cpu_seconds(pid) + cpu_seconds(None) if pid else cpu_seconds(None)) - cpu_before
    latency = await steady_load(client.score_reply, steady_requests, rate_per_s=LOAD_SHARE * throughput.per_s)

    worker_rss = peak_rss_mb(pid) if pid else float("nan")
    result = {
        "backend": backend,
        "device": getattr(client, "device", None) or device,
        "cpu_dtype": cpu_dtype if device == "cpu" else None,
        "load_s": round(load_s, 2),
        "replies": throughput.replies,
        "replies_per_s": throughput.per_s,
        # CPU time (worker + this client process) per reply: far less sensitive to other jobs than wall time.
        "cpu_ms_per_reply": 1000 * cpu_used / throughput.replies,
        "steady": dataclasses.asdict(latency),
        # The bench process's own figure includes building the models, so only the worker's is reported.
        "peak_rss_mb": {"worker": worker_rss, "bench_process": peak_rss_mb()},
        "gpu_memory_mb": gpu_memory_mb(pid) if pid and device != "cpu" else None,
    }
    engine = getattr(client, "engine", None)
    if engine is not None:
        result["engine_stats"] = dataclasses.asdict(engine.stats)
    await client.close()
    return result


# -- CPU precisions: bf16 and dynamic int8 against fp32 ---------------------------------------------------------


def measure_precisions(models: BenchModels, *, parents: int, seed: int, threads: int) -> dict[str, Any]:
    """Engine speed in fp32, bf16 (where the CPU has it natively) and dynamic int8, and how often each gives
    the same levels and risk tiers as fp32 on the same replies."""
    from inference.engine import ScoringEngine, cpu_has_native_bf16

    requests = reply_requests(make_conversations(parents, seed=seed + 7, id_offset=3_000_000))
    base = InferenceConfig(
        backend="inprocess",
        device="cpu",
        empathy_sources=dict(models.empathy),
        risk_source=models.risk,
        cpu_threads=threads,
        int8_min_agreement=0.0,  # measure it here rather than let the engine refuse it
    )
    variants = {"fp32": base, "int8": dataclasses.replace(base, quantize_int8=True)}
    if cpu_has_native_bf16():
        variants["bf16"] = dataclasses.replace(base, cpu_dtype="bf16")
    runs: dict[str, Any] = {}
    for name, config in variants.items():
        engine = ScoringEngine.load(config)
        started, cpu_before = time.perf_counter(), time.process_time()
        results = []
        for start in range(0, len(requests), 32):
            results.extend(engine.score_batch(requests[start : start + 32]))
        runs[name] = {
            "replies_per_s": len(requests) / (time.perf_counter() - started),
            "cpu_ms_per_reply": 1000 * (time.process_time() - cpu_before) / len(requests),
            "results": results,
        }
    summary: dict[str, Any] = {"replies": len(requests)}
    for name, run in runs.items():
        entry = {k: v for k, v in run.items() if k != "results"}
        if name != "fp32":
            entry.update(_agreement(runs["fp32"]["results"], run["results"]))
        summary[name] = entry
    return summary


def _agreement(reference: list, other: list) -> dict[str, float]:
    same_level = levels = same_tier = 0
    largest_shift = 0.0
    for a, b in zip(reference, other, strict=True):
        for mechanism, score in a.empathy.by_mechanism().items():
            theirs = b.empathy.by_mechanism()[mechanism]
            same_level += score.level == theirs.level
            levels += 1
        same_tier += a.parent_risk.tier == b.parent_risk.tier
        largest_shift = max(
            largest_shift,
            *(
                abs(p - b.parent_risk.probabilities[label])
                for label, p in a.parent_risk.probabilities.items()
            ),
        )
    return {
        "level_agreement": same_level / max(1, levels),
        "risk_tier_agreement": same_tier / max(1, len(reference)),
        "largest_risk_probability_shift": largest_shift,
    }


# -- report ----------------------------------------------------------------------------------------------------


def roofline_share(naive: dict[str, Any], peercare: dict[str, Any]) -> float | None:
    """Useful FLOP/s over the H100's dense bf16 peak (useful = unpadded tokens x 2 x parameters)."""
    flops_per_reply = naive.get("useful_gflop_per_reply")
    if not flops_per_reply:
        return None
    return peercare["replies_per_s"] * flops_per_reply * 1e9 / (H100_BF16_DENSE_TFLOPS * 1e12)


def print_report(summary: dict[str, Any]) -> None:
    naive, ours = summary["naive"], summary["peercare"]
    print(f"PeerCare inference benchmark — {summary['date']}")
    print(
        f"machine: {summary['machine']['cpu']} ({summary['machine']['cores_usable']} usable cores)"
        f", load average {summary['load_before']} -> {summary['load_after']}"
    )
    print(f"models: {summary['models']}; device: {summary['device']}; messages: {summary['messages']}")
    print()
    header = f"{'':28}{'replies/s':>12}{'CPU ms/reply':>14}{'p50 ms':>10}{'p99 ms':>10}{'peak RSS MiB':>14}"
    print(header)
    print("-" * len(header))
    print(
        f"{'naive (batch 1, pad 64)':28}{naive['replies_per_s']:>12.1f}{naive['cpu_ms_per_reply']:>14.0f}"
        f"{naive['steady']['p50_ms']:>10.1f}"
        f"{naive['steady']['p99_ms']:>10.1f}{naive['peak_rss_mb']:>14.0f}"
    )
    print(
        f"{'PeerCare ' + ours['backend'] + (' ' + ours['cpu_dtype'] if ours.get('cpu_dtype') else ''):28}{ours['replies_per_s']:>12.1f}{ours['cpu_ms_per_reply']:>14.0f}"
        f"{ours['steady']['p50_ms']:>10.1f}"
        f"{ours['steady']['p99_ms']:>10.1f}{ours['peak_rss_mb']['worker']:>14.0f}"
    )
    print()
    print(
        f"speedup vs naive: {summary['speedup_vs_naive']:.2f}x in replies/s, "
        f"{summary['speedup_cpu_time']:.2f}x in CPU time per reply"
    )
    print(
        f"  (latency at {LOAD_SHARE:.0%} of each side's capacity:"
        f" naive {naive['steady']['offered_per_s']:.1f}/s, PeerCare {ours['steady']['offered_per_s']:.1f}/s)"
    )
    if summary.get("roofline_share") is not None:
        print(
            f"GPU: {summary['roofline_share']:.2%} of the H100 dense bf16 roofline; "
            f"GPU memory naive {naive.get('gpu_memory_mb')} MiB, PeerCare {ours.get('gpu_memory_mb')} MiB"
        )
    if summary.get("precisions"):
        q = summary["precisions"]
        print(f"CPU precisions (engine in-process, {q['replies']} replies, agreement with fp32):")
        for name in ("fp32", "bf16", "int8"):
            if name in q:
                run = q[name]
                agreement = (
                    f"; levels {run['level_agreement']:.3f}, risk tiers {run['risk_tier_agreement']:.3f},"
                    f" largest risk probability shift {run['largest_risk_probability_shift']:.3f}"
                    if name != "fp32"
                    else ""
                )
                print(
                    f"  {name}: {run['replies_per_s']:.1f} replies/s, {run['cpu_ms_per_reply']:.1f} CPU ms/reply"
                    + agreement
                )


# Messages for --risk-cost: short chat (what most support-channel messages are) and a Reddit-length post.
_SHORT_CHAT = (
    "hello",
    "ok thx",
    "lol same",
    "i cant sleep again and my exam is tomorrow",
    "honestly i dont know how much longer i can keep doing this",
    "thanks so much, that really helped",
    "my boss yelled at me today and i just sat in the car crying for an hour",
    "anyone else feel like the weekends go by too fast",
)
_LONG_POST = " ".join(
    "I have been struggling for a few months now with work and with my family, and every week it feels a bit "
    "heavier than the one before. I try to keep busy and to talk to people but it does not seem to help."
    for _ in range(6)
)


def risk_cost(threads: int, repeats: int = 5) -> dict[str, Any]:
    """CPU ms per message of the shipped risk model with its crisis head against the same model without it.

    Both sides are the same loaded scorer (the crisis head switched off for the baseline), interleaved per
    repeat so machine load hits them alike; one message per call, as the worker sees a quiet channel. The
    crisis-phrase floor's own share (matching alone, inside both sides) is timed in the same repeats: it grew with
    attempt 19's phrase file and speaker rules.
    """
    import torch

    from inference.risk.scorer import RiskScorer

    torch.set_num_threads(threads)
    scorer = RiskScorer.load(os.environ.get("RISK_MODEL", "shipped:risk"))
    crisis = scorer.crisis
    sets = {"short_chat": list(_SHORT_CHAT), "long_post": [_LONG_POST] * 2}
    totals = {name: {"baseline": 0.0, "with_crisis": 0.0, "phrase_floor": 0.0} for name in sets}
    scorer.predict(["warm up"])
    for _ in range(repeats):
        for name, texts in sets.items():
            for side, head in (("baseline", None), ("with_crisis", crisis)):
                scorer.crisis = head
                started = time.process_time()
                for text in texts:
                    scorer.predict([text])
                totals[name][side] += (time.process_time() - started) * 1000 / len(texts)
            started = time.process_time()
            for text in texts:
                scorer.phrase_book.matches(text)
            totals[name]["phrase_floor"] += (time.process_time() - started) * 1000 / len(texts)
    scorer.crisis = crisis
    out: dict[str, Any] = {"has_crisis_head": crisis is not None, "threads": threads, "repeats": repeats}
    for name, sides in totals.items():
        base, new = sides["baseline"] / repeats, sides["with_crisis"] / repeats
        out[name] = {
            "baseline_cpu_ms": round(base, 2),
            "with_crisis_cpu_ms": round(new, 2),
            "ratio": round(new / base, 3),
            "phrase_floor_cpu_ms": round(sides["phrase_floor"] / repeats, 3),
            "phrase_floor_share": round(sides["phrase_floor"] / repeats / new, 4),
        }
    return out


# Replies for --recogniser-cost: chat replies of the kinds the canonical coaching set has (made up here).
_CHAT_REPLIES = (
    "ok thx",
    "lol same",
    "It sounds like you feel let down and a bit alone with it.",
    "so you're saying the exams keep piling up and nobody notices",
    "that sucks, im sorry",
    "what happened after you told her?",
    "have you tried talking to your teacher about it",
    "same here honestly, last winter was rough for me too",
)
_CHAT_SEEKER = "i feel like nobody gets how tired i am of all this"


def recogniser_cost(threads: int, baseline: str | None, repeats: int = 5) -> dict[str, Any]:
    """CPU ms per reply of the shipped empathy scorer with no chat recogniser, with ``baseline`` (an earlier
    recogniser folder, e.g. attempt 1's frozen heads) and with the shipped one; interleaved per repeat on the
    same loaded bi-encoders, one reply per call (a quiet channel)."""
    import torch

    from inference.config import shipped_empathy_sources
    from inference.empathy.recogniser import ChatRecogniser
    from inference.empathy.scorer import EmpathyScorer

    torch.set_num_threads(threads)
    scorer = EmpathyScorer.load(shipped_empathy_sources())
    sides: dict[str, Any] = {"none": None, "shipped": ChatRecogniser.load("shipped:empathy-chat")}
    if baseline:
        sides["baseline"] = ChatRecogniser.load(baseline)
    seeker = scorer.encode_seekers([_CHAT_SEEKER])[0]
    totals = dict.fromkeys(sides, 0.0)
    for recogniser in sides.values():
        scorer.recogniser = recogniser
        scorer.score([seeker], ["warm up"])
    for _ in range(repeats):
        for side, recogniser in sides.items():
            scorer.recogniser = recogniser
            started = time.process_time()
            for reply in _CHAT_REPLIES:
                scorer.score([seeker], [reply])
            totals[side] += (time.process_time() - started) * 1000 / len(_CHAT_REPLIES)
    ms = {side: round(total / repeats, 2) for side, total in totals.items()}
    out: dict[str, Any] = {
        "threads": threads,
        "repeats": repeats,
        "baseline": baseline,
        "cpu_ms_per_reply": ms,
    }
    out["shipped_vs_none"] = round(ms["shipped"] / ms["none"], 3)
    if baseline:
        out["shipped_vs_baseline"] = round(ms["shipped"] / ms["baseline"], 3)
        out["baseline_vs_none"] = round(ms["baseline"] / ms["none"], 3)
    return out


def empathy_compare(
    candidate: str, *, device: str, parents: int, seed: int, threads: int, max_batch: int, repeats: int
) -> dict[str, Any]:
    """The worker's replies/s, CPU ms per reply and peak RSS with the shipped ER/IP/EX models and with
    ``candidate`` (one folder for all three mechanisms, e.g. a multi-task model), alternated ``repeats`` times
    in this run; ratios are candidate / shipped (issue 14's bar: replies/s >= 1.5x, peak RSS not higher)."""
    from inference.config import shipped_empathy_sources

    sides = {
        "shipped": BenchModels(dict(shipped_empathy_sources()), "shipped:risk", "shipped ER/IP/EX"),
        "candidate": BenchModels({m: candidate for m in Mechanism}, "shipped:risk", candidate),
    }
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for _ in range(repeats):
        for side, models in sides.items():
            result = asyncio.run(
                run_peercare(
                    models,
                    backend="worker",
                    device=device,
                    parents=parents,
                    seed=seed,
                    threads=threads,
                    max_batch=max_batch,
                )
            )
            runs[side].append(result)

    def median(side: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[side]))

    def rss(side: str) -> float:
        return float(max(run["peak_rss_mb"]["worker"] for run in runs[side]))

    out: dict[str, Any] = {"candidate": candidate, "threads": threads, "repeats": repeats, "parents": parents}
    for side in sides:
        out[side] = {
            "replies_per_s": median(side, "replies_per_s"),
            "cpu_ms_per_reply": median(side, "cpu_ms_per_reply"),
            "peak_rss_mb": rss(side),
            "replies_per_s_runs": [round(run["replies_per_s"], 2) for run in runs[side]],
        }
    out["replies_per_s_ratio"] = round(out["candidate"]["replies_per_s"] / out["shipped"]["replies_per_s"], 3)
    out["cpu_time_ratio"] = round(
        out["shipped"]["cpu_ms_per_reply"] / out["candidate"]["cpu_ms_per_reply"], 3
    )
    out["peak_rss_ratio"] = round(out["candidate"]["peak_rss_mb"] / out["shipped"]["peak_rss_mb"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages (about a minute on 2 CPU cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--backend", choices=("worker", "inprocess"), default="worker")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--models",
        choices=("auto", "shipped", "fresh"),
        default="auto",
        help="shipped models, or freshly initialised MiniLM-shaped ones (same compute); "
        "auto = shipped when present",
    )
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = every usable core)")
    parser.add_argument(
        "--precisions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure bf16 and dynamic int8 against fp32 (default: on for full CPU runs)",
    )
    parser.add_argument(
        "--cpu-dtype",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="PeerCare's CPU precision (INFERENCE_CPU_DTYPE; auto = the bot's default: bf16 where native)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--risk-cost",
        action="store_true",
        help="only measure the risk model's CPU ms per message with and without its crisis head",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="--risk-cost, --recogniser-cost: interleaved repeats (more on a busy machine)",
    )
    parser.add_argument(
        "--recogniser-cost",
        action="store_true",
        help="only measure the empathy scorer's CPU ms per reply without, with --baseline-recogniser, and "
        "with the shipped chat recogniser",
    )
    parser.add_argument(
        "--baseline-recogniser",
        default=None,
        help="--recogniser-cost: an earlier chat recogniser folder to compare the shipped one with",
    )
    parser.add_argument(
        "--empathy-compare",
        default=None,
        metavar="FOLDER",
        help="only compare the worker with the shipped ER/IP/EX models and with FOLDER for all three "
        "(e.g. a multi-task model), alternated --repeats times",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Quiet transformers' per-load reports and progress bars (here and in the child processes).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    from inference.engine import resolve_device

    device = resolve_device(args.device)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.risk_cost:
        cost = risk_cost(threads, repeats=args.repeats)
        print(json.dumps(cost) if args.json else json.dumps(cost, indent=2))
        return 0
    if args.recogniser_cost:
        cost = recogniser_cost(threads, args.baseline_recogniser, repeats=args.repeats)
        print(json.dumps(cost) if args.json else json.dumps(cost, indent=2))
        return 0
    naive_parents, peercare_parents = (8, 40) if args.quick else (40, 200)
    if args.empathy_compare:
        same = {"device": device, "seed": args.seed, "threads": threads, "max_batch": args.max_batch}
        compared = empathy_compare(
            args.empathy_compare, parents=peercare_parents, repeats=args.repeats, **same
        )
        print(json.dumps(compared) if args.json else json.dumps(compared, indent=2))
        return 0
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="peercare-bench-") as scratch:
        models = prepare_models(args.models, Path(scratch))
        naive = run_naive(models, device=device, parents=naive_parents, seed=args.seed, threads=threads)
        peercare = asyncio.run(
            run_peercare(
                models,
                backend=args.backend,
                device=device,
                parents=peercare_parents,
                seed=args.seed,
                threads=threads,
                max_batch=args.max_batch,
                cpu_dtype=args.cpu_dtype,
            )
        )
        want_precisions = (
            args.precisions if args.precisions is not None else (not args.quick and device == "cpu")
        )
        precisions = (
            measure_precisions(models, parents=40, seed=args.seed, threads=threads)
            if want_precisions
            else None
        )
    summary: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_average(),
        "models": models.description,
        "device": device,
        "messages": f"naive {naive['replies']} replies / {naive_parents} parents; PeerCare {peercare['replies']}"
        f" replies / {peercare_parents} parents per phase",
        "naive": naive,
        "peercare": peercare,
        "precisions": precisions,
        "speedup_vs_naive": peercare["replies_per_s"] / naive["replies_per_s"],
        "speedup_cpu_time": naive["cpu_ms_per_reply"] / peercare["cpu_ms_per_reply"],
        "replies_per_s": peercare["replies_per_s"],
        "p50_ms": peercare["steady"]["p50_ms"],
        "p99_ms": peercare["steady"]["p99_ms"],
    }
    if device == "cuda":
        summary["roofline_share"] = roofline_share(naive, peercare)
    print_report(summary)
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
