"""The masked multi-label loss: a label a dataset does not annotate contributes nothing."""

from __future__ import annotations

import torch

from inference.risk.train import masked_bce


def test_unlabelled_cells_do_not_change_the_loss_or_its_gradient() -> None:
    labels = torch.tensor([[1, -1, 0], [-1, 1, -1]])
    weights = torch.ones(2, 3)
    pos_weight = torch.ones(3)
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = masked_bce(logits, labels, weights, pos_weight)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0 and logits.grad[1, 2] == 0
    other = torch.zeros(2, 3)
    other[0, 1], other[1, 2] = 50.0, -50.0  # wildly wrong guesses where there is no label
    assert torch.isclose(masked_bce(other, labels, weights, pos_weight), loss.detach())


def test_cell_weights_scale_each_cells_pull() -> None:
    labels = torch.tensor([[1, 0]])
    logits = torch.zeros(1, 2, requires_grad=True)
    masked_bce(logits, labels, torch.tensor([[1.0, 0.25]]), torch.ones(2)).backward()
    assert torch.isclose(logits.grad[0, 1].abs() * 4, logits.grad[0, 0].abs())
