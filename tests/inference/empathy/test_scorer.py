"""EmpathyScorer: one seeker pass for three mechanisms, reusable encodings, exact dynamic padding."""

from __future__ import annotations

import pytest
import torch

from inference.empathy.scorer import EmpathyScorer, SeekerEncoding
from inference.errors import InputRejected
from inference.types import Mechanism
from tests.support.tiny_empathy import build_tiny_bi_encoder, build_tiny_empathy_models, save_upstream


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> EmpathyScorer:
    return EmpathyScorer.load(build_tiny_empathy_models(tmp_path_factory.mktemp("scorer")))


def all_probabilities(results) -> torch.Tensor:
    return torch.tensor([[s.probabilities for s in r.by_mechanism().values()] for r in results])


def test_batch_scores_equal_one_by_one_scores_despite_padding(scorer, seekers, replies) -> None:
    together = all_probabilities(scorer.score_pairs(seekers, replies))
    alone = torch.cat(
        [all_probabilities(scorer.score_pairs([s], [r])) for s, r in zip(seekers, replies, strict=True)]
    )
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_one_seeker_encoding_serves_many_replies(scorer, seekers, replies) -> None:
    (encoding,) = scorer.encode_seekers(seekers[:1])
    reused = scorer.score([encoding] * len(replies), replies)
    fresh = scorer.score_pairs(seekers[:1] * len(replies), replies)
    torch.testing.assert_close(all_probabilities(reused), all_probabilities(fresh), atol=1e-6, rtol=1e-5)


def test_shared_seeker_encoder_runs_once_for_all_three_mechanisms(scorer, seekers) -> None:
    calls = []
    (encoder,) = scorer.seeker_encoders.values()
    handle = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        encodings = scorer.encode_seekers(seekers)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert all(isinstance(e, SeekerEncoding) for e in encodings)


def test_masked_models_keep_only_real_seeker_tokens(scorer) -> None:
    (encoding,) = scorer.encode_seekers(["I feel alone."])
    (states,) = encoding.states.values()
    assert states.shape[0] == encoding.length == scorer.token_length("I feel alone.")


def test_upstream_models_get_seekers_padded_to_max_length(tmp_path) -> None:
    model = build_tiny_bi_encoder("ER", model_type="roberta", seeker_mask=False, lowercase=True)
    checkpoint = save_upstream(model, tmp_path / "upstream")
    scorer = EmpathyScorer.load(dict.fromkeys(Mechanism, checkpoint))
    (encoding,) = scorer.encode_seekers(["I feel alone."])
    (states,) = encoding.states.values()
    assert states.shape[0] == scorer.max_length == 64


def test_token_length_counts_special_tokens_and_stops_at_the_window(scorer) -> None:
    assert scorer.token_length("hear you") == 4  # [CLS] hear you [SEP]
    assert scorer.token_length("word " * 500) == scorer.max_length == 64


def test_blank_reply_is_rejected_before_running_a_model(scorer, seekers) -> None:
    with pytest.raises(InputRejected, match="empty"):
        scorer.score_pairs(seekers[:1], ["   "])


def test_encodings_and_replies_must_pair_up(scorer, seekers, replies) -> None:
    encodings = scorer.encode_seekers(seekers[:1])
    with pytest.raises(ValueError, match="1 seeker encodings for 2 replies"):
        scorer.score(encodings, replies[:2])


def test_empty_batch_scores_nothing(scorer) -> None:
    assert scorer.score([], []) == []
    assert scorer.encode_seekers([]) == []
