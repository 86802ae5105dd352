"""The naive way, as the seed model cards use the models: one reply at a time, every input padded to 64 tokens,
three separate ER/IP/EX models each encoding the seeker post again, then the risk model on the post."""

from __future__ import annotations

import copy
import logging
import statistics
import time
from typing import Any

from bench.load import peak_rss_mb, percentile
from bench.messages import make_conversations, reply_requests
from bench.models import BenchModels
from inference.types import Mechanism, ReplyScoreRequest

log = logging.getLogger(__name__)

PAD_TO = 64
LOAD_SHARE = 0.7


class NaiveScorer:
    """Three stand-alone bi-encoders (each with its own seeker encoder) and the risk classifier."""

    def __init__(self, models: BenchModels, *, device: str, dtype: Any) -> None:
        from inference.empathy.scorer import EmpathyScorer
        from inference.risk.scorer import RiskScorer

        empathy = EmpathyScorer.load(models.empathy, device=device, dtype=dtype)
        self.risk = RiskScorer.load(models.risk, device=device, dtype=dtype)
        self.device = device
        self.models = {}
        self.tokenizers = {}
        for mechanism in Mechanism:
            model = empathy.responders[mechanism]
            # A model of its own, as three separately downloaded checkpoints would be.
            model.seeker_encoder = copy.deepcopy(empathy.seeker_encoders[empathy.seeker_group[mechanism]])
            self.models[mechanism] = model.eval()
            self.tokenizers[mechanism] = empathy.tokenizers[mechanism]
        self.param_counts = {
            "encoder": _non_embedding_parameters(
                self.models[Mechanism.EMOTIONAL_REACTIONS].responder_encoder
            ),
            "risk": _non_embedding_parameters(self.risk.model),
        }
        self.empathy_token_length = empathy.token_length

    def _encode(self, tokenizer: Any, text: str) -> tuple[Any, Any]:
        encoded = tokenizer(
            text, padding="max_length", truncation=True, max_length=PAD_TO, return_tensors="pt"
        )
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def score(self, request: ReplyScoreRequest) -> None:
        import torch

        with torch.no_grad():
            for mechanism, model in self.models.items():
                tokenizer = self.tokenizers[mechanism]
                seeker_ids, seeker_mask = self._encode(tokenizer, request.parent_text)
                reply_ids, reply_mask = self._encode(tokenizer, request.reply_text)
                seeker_states = model.encode_seeker(seeker_ids, seeker_mask)
                level_logits, rationale_logits = model.score(
                    seeker_states, seeker_mask, reply_ids, reply_mask
                )
                torch.softmax(level_logits.float(), dim=-1).tolist()
                rationale_logits.argmax(dim=-1).tolist()
            ids, mask = self._encode(self.risk.tokenizer, request.parent_text)
            output = self.risk.model(input_ids=ids, attention_mask=mask)
            logits = output if isinstance(output, torch.Tensor) else output.logits
            torch.sigmoid(logits.float()).tolist()

    def useful_gflop_per_reply(self, requests: list[ReplyScoreRequest]) -> float:
        """Work that must be done (unpadded tokens x 2 x parameters), seekers and risk once per parent."""
        parents = {r.parent_id: r.parent_text for r in requests}
        encoder, risk = self.param_counts["encoder"], self.param_counts["risk"]
        flops = sum(2 * encoder * self.empathy_token_length(text) for text in parents.values())
        flops += sum(2 * risk * self.risk.token_length(text) for text in parents.values())
        flops += sum(3 * 2 * encoder * self.empathy_token_length(r.reply_text) for r in requests)
        return flops / len(requests) / 1e9


def _non_embedding_parameters(module: Any) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if "embeddings" not in name)


def measure_naive(
    models: BenchModels, *, device: str, parents: int, seed: int, threads: int
) -> dict[str, Any]:
    import torch

    from inference.engine import model_dtype

    torch.set_num_threads(threads)
    scorer = NaiveScorer(models, device=device, dtype=model_dtype(device))
    capacity_requests = reply_requests(make_conversations(parents, seed=seed, id_offset=1_000_000))
    steady_requests = reply_requests(make_conversations(parents, seed=seed, id_offset=2_000_000))
    for request in reply_requests(make_conversations(2, seed=seed + 99)):
        scorer.score(request)

    started, cpu_before = time.perf_counter(), time.process_time()
    for request in capacity_requests:
        scorer.score(request)
    capacity = len(capacity_requests) / (time.perf_counter() - started)
    cpu_ms_per_reply = 1000 * (time.process_time() - cpu_before) / len(capacity_requests)

    # One server, first come first served: each reply waits for those before it, as in a bot that scores
    # replies one at a time as they arrive.
    rate = LOAD_SHARE * capacity
    latencies = []
    started = time.perf_counter()
    for index, request in enumerate(steady_requests):
        arrival = index / rate
        wait = arrival - (time.perf_counter() - started)
        if wait > 0:
            time.sleep(wait)
        scorer.score(request)
        latencies.append((time.perf_counter() - started - arrival) * 1000)
    elapsed = time.perf_counter() - started
    return {
        "replies": len(capacity_requests),
        "replies_per_s": capacity,
        "cpu_ms_per_reply": cpu_ms_per_reply,
        "steady": {
            "offered_per_s": rate,
            "p50_ms": statistics.median(latencies),
            "p99_ms": percentile(latencies, 0.99),
            "achieved_per_s": len(steady_requests) / elapsed,
        },
        "peak_rss_mb": peak_rss_mb(),
        "gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "useful_gflop_per_reply": scorer.useful_gflop_per_reply(capacity_requests),
    }
