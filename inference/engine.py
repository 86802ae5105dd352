"""The one model runner every backend shares: loads the models once and scores batches of requests."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.batching import plan_length_groups
from inference.config import InferenceConfig
from inference.errors import InferenceError, InputRejected
from inference.text_normalise import visible_text
from inference.types import (
    EmpathyResult,
    ReplyScore,
    ReplyScoreRequest,
    RiskResult,
    RiskScore,
    RiskScoreRequest,
)

if TYPE_CHECKING:
    import torch

    from inference.empathy.scorer import EmpathyScorer
    from inference.risk.scorer import RiskScorer

log = logging.getLogger(__name__)

WorkItem = ReplyScoreRequest | RiskScoreRequest
WorkResult = ReplyScore | RiskScore | InferenceError

# Discord messages are at most 4 000 characters; check-in answers and pasted walls of text longer than this
# are scored on their first MAX_TEXT_CHARS characters (the empathy models read only 64 tokens anyway, and
# the risk model's windows over 10 000 characters already see the whole of any real message).
MAX_TEXT_CHARS = 10_000


# Made-up probe pairs: int8 quantisation is kept only if it scores these as fp32 does.
PROBE_PAIRS: tuple[tuple[str, str], ...] = (
    ("I failed my exam and I feel like giving up on everything.", "That sounds really hard. What happened?"),
    ("My best friend stopped talking to me and I don't know why.", "I'm so sorry, that must hurt a lot."),
    ("I can't sleep, my thoughts keep racing every night.", "Have you tried writing them down before bed?"),
    ("Nobody would notice if I disappeared.", "I would notice. Can you tell me more about how you feel?"),
    (
        "Work has been overwhelming and my boss keeps yelling.",
        "It seems like you're carrying a lot right now.",
    ),
    ("I finally went to therapy today!", "That's wonderful, I'm proud of you for taking that step."),
    ("I feel so alone since moving to a new city.", "Moving is tough. Are there clubs or groups near you?"),
    ("Everything is pointless lately.", "ok"),
)


def prepare_text(text: str, *, what: str) -> str:
    """The text the models see: the original (so rationale offsets point into it), capped in length.

    Raises InputRejected when nothing visible is left; the message names the field, never the text.
    """
    if not isinstance(text, str):
        raise InputRejected(f"{what} must be text, not {type(text).__name__}")
    if not visible_text(text):
        raise InputRejected(f"{what} is empty (only whitespace or invisible characters): nothing to score")
    return text[:MAX_TEXT_CHARS]


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise InferenceError("INFERENCE_DEVICE=cuda but no CUDA GPU is visible; use auto or cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def model_dtype(device: str, cpu_dtype: str = "fp32") -> torch.dtype | None:
    """bf16 on GPUs that have it, else fp16 on GPU; on CPU the checkpoint's own (None) unless bf16 is asked
    for and the CPU computes it natively (AMX or AVX512-BF16; emulated bf16 would be slower than fp32)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_dtype in ("bf16", "auto"):
        # "auto" takes bf16 only where the CPU computes it natively (AMX / AVX512-BF16): there it is ~1.4x
        # faster with the same risk tiers and 99.5% of the same levels as fp32 (bench/RESULTS.md), the same
        # trade a GPU makes by default. Elsewhere bf16 would be emulated and slower, so fp32 stays.
        if cpu_has_native_bf16():
            return torch.bfloat16
        if cpu_dtype == "bf16":
            log.warning("bf16 was asked for but this CPU has no AMX or AVX512-BF16: running fp32")
    return None


def cpu_has_native_bf16() -> bool:
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def configure_cpu_threads(requested: int | None) -> int:
    """Intra-op threads: one per usable physical core unless set (hyperthreads and extra threads only fight
    over the same cores; on a machine shared with CPU-heavy jobs, fewer threads than cores can be faster)."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:  # pragma: no cover - psutil is a dependency
        physical = usable
    threads = max(1, requested or min(usable, physical))
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(1)
    return threads


@dataclass
class _ParentEntry:
    digest: bytes
    seeker: Any = None  # the empathy scorer's SeekerEncoding
    risk: RiskResult | None = None


class SeekerCache:
    """A bounded LRU of per-parent work (seeker encoding, parent risk), keyed by the parent's message id.

    A digest of the text is kept with each entry, so an edited parent message is encoded again.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._entries: OrderedDict[int, _ParentEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, parent_id: int, text: str) -> _ParentEntry:
        """The cached entry for this parent, or a fresh empty one when it is unknown or was edited."""
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        entry = self._entries.get(parent_id)
        if entry is not None and entry.digest == digest:
            self._entries.move_to_end(parent_id)
            return entry
        return _ParentEntry(digest)

    def put(self, parent_id: int, entry: _ParentEntry) -> None:
        if self.capacity == 0:
            return
        self._entries[parent_id] = entry
        self._entries.move_to_end(parent_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True)
class _Reply:
    index: int
    request: ReplyScoreRequest
    parent_key: tuple[int, str]
    text: str


@dataclass
class EngineStats:
    seeker_encodings: int = 0
    seeker_cache_hits: int = 0
    empathy_calls: int = 0
    risk_calls: int = 0
    replies: int = 0
    risk_texts: int = 0


class ScoringEngine:
    """Scores mixed batches of reply and risk requests with one EmpathyScorer and one RiskScorer.

    Not thread-safe: backends run it from one thread at a time (the batcher's worker thread).
    """

    def __init__(
        self,
        empathy: EmpathyScorer,
        risk: RiskScorer,
        *,
        device: str = "cpu",
        seeker_cache_size: int = 2048,
        model_versions: dict[str, str] | None = None,
        max_group: int = 64,
    ) -> None:
        self.empathy = empathy
        self.risk = risk
        self.device = device
        self.cache = SeekerCache(seeker_cache_size)
        self.model_versions = dict(model_versions or {})
        self.max_group = max_group
        self.stats = EngineStats()

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, config: InferenceConfig, *, progress: Callable[[str], None] | None = None) -> ScoringEngine:
        """Load all models once (seconds to minutes). ``progress`` gets short stage names, never text."""
        from inference.empathy.scorer import EmpathyScorer
        from inference.risk.scorer import RiskScorer

        say = progress or (lambda stage: None)
        started = time.perf_counter()
        device = resolve_device(config.device)
        dtype = model_dtype(device, config.cpu_dtype)
        threads = configure_cpu_threads(config.cpu_threads) if device == "cpu" else None
        say(f"loading empathy models on {device}")
        empathy = EmpathyScorer.load(
            config.empathy_sources, device=device, dtype=dtype, recogniser=config.empathy_recogniser
        )
        say("loading risk model")
        risk_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        if config.risk_problem_type is not None:
            risk_kwargs["problem_type"] = config.risk_problem_type
        risk = RiskScorer.load(config.risk_source, **risk_kwargs)
        versions = {m.value: src for m, src in config.empathy_sources.items()}
        versions["risk"] = config.risk_source
        if config.empathy_recogniser is not None:
            versions["chat_recogniser"] = config.empathy_recogniser
        versions["precision"] = str(dtype).removeprefix("torch.") if dtype is not None else "fp32"
        engine = cls(
            empathy,
            risk,
            device=device,
            seeker_cache_size=config.seeker_cache_size,
            model_versions=versions,
            max_group=max(1, config.max_batch_size),
        )
        if config.quantize_int8:
            if device == "cpu" and dtype is None:
                say("quantising to int8")
                engine.quantize_int8(min_agreement=config.int8_min_agreement)
            else:
                log.info(
                    "INFERENCE_QUANTIZE_INT8 applies to fp32 on CPU only; running %s in %s", device, dtype
                )
        engine.warm_up()
        log.info(
            "inference models ready on %s (%s, %s threads) in %.1fs",
            device,
            dtype or "fp32",
            threads or "-",
            time.perf_counter() - started,
        )
        return engine

    def warm_up(self) -> None:
        """Run the probes once so the first real request does not pay for lazy initialisation."""
        self.score_batch(self._probe_requests()[:2])
        self.cache.clear()

    # -- int8 ------------------------------------------------------------------------------------

    def quantize_int8(self, *, min_agreement: float = 0.95) -> float:
        """Swap Linear layers for dynamic int8 ones if that keeps the probe scores; returns the agreement."""
        import torch

        before = self._probe_outcomes()
        originals = _module_slots(self.empathy) + _module_slots(self.risk)
        # One deep copy of every slot together keeps what the slots share shared (a multi-task model's three views
        # hold one responder encoder), and the originals stay as they are for the way back.
        copies = copy.deepcopy([module for _, _, module in originals])
        for (owner, key, _), module in zip(originals, copies, strict=True):
            quantised = torch.ao.quantization.quantize_dynamic(
                module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
            _set_slot(owner, key, quantised)
        self.cache.clear()
        after = self._probe_outcomes()
        agreement = sum(a == b for a, b in zip(before, after, strict=True)) / max(1, len(before))
        if agreement < min_agreement:
            for owner, key, module in originals:
                _set_slot(owner, key, module)
            self.cache.clear()
            log.warning(
                "int8 quantisation changed probe scores (agreement %.2f < %.2f): kept fp32",
                agreement,
                min_agreement,
            )
        else:
            self.model_versions["int8"] = f"dynamic (probe agreement {agreement:.2f})"
            log.info("int8 dynamic quantisation on: probe agreement with fp32 %.2f", agreement)
        return agreement

    def _probe_requests(self) -> list[WorkItem]:
        items: list[WorkItem] = []
        for index, (parent, reply) in enumerate(PROBE_PAIRS):
            items.append(ReplyScoreRequest(-1 - index, parent, -1001 - index, reply))
        return items

    def _probe_outcomes(self) -> list[object]:
        """Discrete outcomes (levels per mechanism, risk tier) for the probes: what int8 must preserve."""
        outcomes: list[object] = []
        for result in self.score_batch(self._probe_requests()):
            if isinstance(result, ReplyScore):
                for mechanism, score in result.empathy.by_mechanism().items():
                    outcomes.append((mechanism, score.level))
                outcomes.append(("risk", result.parent_risk.tier))
        self.cache.clear()
        return outcomes

    # -- scoring ---------------------------------------------------------------------------------

    def score_batch(self, items: Sequence[WorkItem]) -> list[WorkResult]:
        """Score a mixed batch. Each item gets its own result or typed error; one bad item spoils nothing."""
        import torch

        with torch.inference_mode():
            return self._score_batch(items)

    def _score_batch(self, items: Sequence[WorkItem]) -> list[WorkResult]:
        results: list[WorkResult | None] = [None] * len(items)
        replies: list[_Reply] = []
        # Risk texts deduplicated within the batch: ("message", id) or ("parent", id, text).
        risk_texts: dict[tuple, str] = {}
        risk_items: list[tuple[int, RiskScoreRequest]] = []
        # Keyed by id and text: two replies in one batch may quote a parent before and after an edit.
        parents: dict[tuple[int, str], _ParentEntry] = {}

        for index, item in enumerate(items):
            try:
                if isinstance(item, ReplyScoreRequest):
                    parent_text = prepare_text(item.parent_text, what=f"parent message {item.parent_id}")
                    reply_text = prepare_text(item.reply_text, what=f"reply {item.reply_id}")
                    key = (item.parent_id, parent_text)
                    replies.append(_Reply(index, item, key, reply_text))
                    if key not in parents:
                        parents[key] = self.cache.get(item.parent_id, parent_text)
                    if item.score_reply_risk:
                        risk_texts[("message", item.reply_id)] = reply_text
                elif isinstance(item, RiskScoreRequest):
                    text = prepare_text(item.text, what=f"message {item.message_id}")
                    risk_items.append((index, item))
                    risk_texts[("message", item.message_id)] = text
                else:
                    raise InputRejected(f"cannot score a {type(item).__name__}")
            except InferenceError as exc:
                results[index] = exc

        self._encode_seekers(parents)
        for key, entry in parents.items():
            if entry.risk is None:
                risk_texts[("parent", *key)] = key[1]
        risk_results = self._predict_risk(risk_texts)
        for key, entry in parents.items():
            parent_risk = risk_results.get(("parent", *key))
            if isinstance(parent_risk, RiskResult):
                entry.risk = parent_risk
            if entry.seeker is not None and entry.risk is not None:
                self.cache.put(key[0], entry)

        empathy = self._score_empathy(replies, parents)
        for reply, outcome in zip(replies, empathy, strict=True):
            results[reply.index] = self._reply_score(reply, outcome, parents[reply.parent_key], risk_results)
        for index, item in risk_items:
            risk = risk_results[("message", item.message_id)]
            results[index] = RiskScore(item.message_id, risk) if isinstance(risk, RiskResult) else risk
        self.stats.replies += len(replies)
        return [result if result is not None else InferenceError("not scored") for result in results]

    def _reply_score(
        self,
        reply: _Reply,
        empathy: EmpathyResult | InferenceError,
        parent: _ParentEntry,
        risk_results: dict[tuple, RiskResult | InferenceError],
    ) -> WorkResult:
        item = reply.request
        if isinstance(empathy, InferenceError):
            return empathy
        parent_risk = parent.risk or risk_results.get(("parent", *reply.parent_key))
        if not isinstance(parent_risk, RiskResult):
            return parent_risk or InferenceError(f"parent message {item.parent_id} has no risk score")
        reply_risk = None
        if item.score_reply_risk:
            reply_risk = risk_results[("message", item.reply_id)]
            if not isinstance(reply_risk, RiskResult):
                return reply_risk
        return ReplyScore(
            reply_id=item.reply_id,
            parent_id=item.parent_id,
            empathy=empathy,
            parent_risk=parent_risk,
            reply_risk=reply_risk,
            model_versions=dict(self.model_versions),
        )

    def _encode_seekers(self, parents: dict[tuple[int, str], _ParentEntry]) -> None:
        missing = [(key[1], entry) for key, entry in parents.items() if entry.seeker is None]
        self.stats.seeker_cache_hits += len(parents) - len(missing)
        self.cache.hits += len(parents) - len(missing)
        self.cache.misses += len(missing)
        if not missing:
            return
        texts = [text for text, _ in missing]
        lengths = [self.empathy.token_length(text) for text in texts]
        encodings = self._grouped_by_length(texts, lengths, self.empathy.encode_seekers, "seeker")
        self.stats.seeker_encodings += len(missing)
        for (_, entry), encoding in zip(missing, encodings, strict=True):
            if not isinstance(encoding, InferenceError):
                entry.seeker = encoding

    def _score_empathy(
        self, replies: list[_Reply], parents: dict[tuple[int, str], _ParentEntry]
    ) -> list[EmpathyResult | InferenceError]:
        outcomes: list[EmpathyResult | InferenceError | None] = [None] * len(replies)
        scorable: list[int] = []
        for position, reply in enumerate(replies):
            if parents[reply.parent_key].seeker is None:
                outcomes[position] = InferenceError(
                    f"parent message {reply.request.parent_id} could not be encoded"
                )
            else:
                scorable.append(position)
        if scorable:
            pairs = [(parents[replies[p].parent_key].seeker, replies[p].text) for p in scorable]
            lengths = [self.empathy.token_length(text) for _, text in pairs]

            def run(group: list[tuple[Any, str]]) -> list[EmpathyResult]:
                self.stats.empathy_calls += 1
                return self.empathy.score([seeker for seeker, _ in group], [text for _, text in group])

            scored = self._grouped_by_length(pairs, lengths, run, "reply")
            for position, outcome in zip(scorable, scored, strict=True):
                outcomes[position] = outcome
        return [outcome if outcome is not None else InferenceError("not scored") for outcome in outcomes]

    def _predict_risk(self, texts: dict[tuple, str]) -> dict[tuple, RiskResult | InferenceError]:
        if not texts:
            return {}
        keys = list(texts)

        def run(group: list[str]) -> list[RiskResult]:
            self.stats.risk_calls += 1
            return self.risk.predict(group)

        # One call: the risk scorer already splits long posts into windows and batches them by length.
        predicted = self._run_isolated([texts[key] for key in keys], run, "risk")
        self.stats.risk_texts += len(keys)
        return dict(zip(keys, predicted, strict=True))

    def _grouped_by_length(self, inputs: list, lengths: list[int], run: Callable, what: str) -> list:
        """Run ``run`` over length-grouped slices of ``inputs``; results come back in input order."""
        out: list[Any] = [None] * len(inputs)
        for group in plan_length_groups(lengths, max_group=self.max_group):
            for index, outcome in zip(
                group, self._run_isolated([inputs[i] for i in group], run, what), strict=True
            ):
                out[index] = outcome
        return out

    def _run_isolated(self, group: list, run: Callable, what: str) -> list:
        """Run a group; if it fails, run its members one by one so only the culprit gets the error."""
        try:
            outcomes = list(run(group))
            if len(outcomes) != len(group):
                raise InferenceError(f"{what} model returned {len(outcomes)} results for {len(group)} inputs")
            return outcomes
        except Exception as exc:
            if len(group) == 1:
                log.error("%s scoring failed for one input: %s", what, type(exc).__name__)
                return [InferenceError(f"{what} scoring failed: {type(exc).__name__}")]
            log.warning(
                "%s batch of %d failed (%s); scoring one by one", what, len(group), type(exc).__name__
            )
            return [outcome for member in group for outcome in self._run_isolated([member], run, what)]


def _module_slots(owner: object) -> list[tuple[object, Any, Any]]:
    """The torch modules held by a scorer (as attributes, or in a dict attribute), with where they live."""
    import torch

    slots: list[tuple[object, Any, Any]] = []
    for name, value in list(vars(owner).items()) if hasattr(owner, "__dict__") else []:
        if isinstance(value, torch.nn.Module):
            slots.append((owner, name, value))
        elif isinstance(value, dict):
            slots.extend(
                (value, key, module) for key, module in value.items() if isinstance(module, torch.nn.Module)
            )
    return slots


def _set_slot(owner: object, key: Any, module: Any) -> None:
    if isinstance(owner, dict):
        owner[key] = module
    else:
        setattr(owner, key, module)
