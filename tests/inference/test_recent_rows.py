"""Recent rows: outputs kept by a digest of their input, so a growing burst is not read again from the start."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inference.recent_rows import RecentRows, text_key, token_key


class Squares:
    """A 'model' whose row for input n is [n, n*n]; it records what it was asked to compute."""

    def __init__(self, inputs: list[int]) -> None:
        self.inputs = inputs
        self.asked: list[list[int]] = []

    def __call__(self, positions: list[int]) -> np.ndarray:
        self.asked.append([self.inputs[p] for p in positions])
        return np.array([[self.inputs[p], self.inputs[p] ** 2] for p in positions], dtype=np.float32).reshape(
            -1, 2
        )


def _rows(recent: RecentRows, inputs: list[int]) -> tuple[np.ndarray, Squares]:
    model = Squares(inputs)
    return recent.rows([token_key([n]) for n in inputs], model), model


def test_rows_come_back_in_order_and_only_new_inputs_are_computed() -> None:
    recent = RecentRows(10)
    first, model = _rows(recent, [1, 2, 3])
    assert first.tolist() == [[1, 1], [2, 4], [3, 9]] and model.asked == [[1, 2, 3]]
    second, model = _rows(recent, [3, 4, 1])
    assert second.tolist() == [[3, 9], [4, 16], [1, 1]] and model.asked == [[4]]
    assert (recent.hits, recent.misses) == (2, 4)


def test_an_input_repeated_in_one_call_is_computed_once() -> None:
    rows, model = _rows(RecentRows(10), [5, 5, 6, 5])
    assert rows[:, 0].tolist() == [5, 5, 6, 5] and model.asked == [[5, 6]]


def test_nothing_held_is_asked_for_again_and_nothing_new_means_no_call() -> None:
    recent = RecentRows(10)
    _rows(recent, [1, 2])
    _, model = _rows(recent, [2, 1])
    assert model.asked == []


def test_the_least_recently_used_row_goes_first() -> None:
    recent = RecentRows(2)
    _rows(recent, [1, 2])
    _rows(recent, [1])  # 1 is now the most recent
    _rows(recent, [3])  # 2 goes
    _, model = _rows(recent, [1, 2, 3])
    assert model.asked == [[2]] and len(recent) == 2


def test_no_inputs_give_the_model_s_empty_shape() -> None:
    rows, model = _rows(RecentRows(4), [])
    assert rows.shape == (0, 2) and model.asked == [[]]


def test_a_model_that_returns_too_few_rows_is_an_error_not_a_silent_mix_up() -> None:
    recent = RecentRows(4)
    with pytest.raises(ValueError, match="computed 1 rows for 2 inputs"):
        recent.rows([token_key([1]), token_key([2])], lambda positions: np.zeros((1, 2)))
    assert len(recent) == 0


def test_a_stored_row_does_not_change_when_the_caller_changes_its_array() -> None:
    recent = RecentRows(4)
    rows = recent.rows([text_key("a")], lambda positions: np.ones((1, 2)))
    rows[0, 0] = 99.0
    again = recent.rows([text_key("a")], lambda positions: np.zeros((1, 2)))
    assert again.tolist() == [[1.0, 1.0]]


def test_keys_are_digests_of_the_input_not_the_input() -> None:
    assert len(text_key("the pills are right here")) == 16 and b"pills" not in text_key(
        "the pills are right here"
    )
    assert text_key("a") != text_key("b") and token_key([1, 2]) != token_key([2, 1])


def test_threads_sharing_it_each_get_their_own_rows() -> None:
    recent = RecentRows(64)
    results: dict[int, list[float]] = {}

    def work(worker: int) -> None:
        inputs = [worker * 100 + n for n in range(20)]
        rows, _ = _rows(recent, inputs)
        results[worker] = rows[:, 0].tolist()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[w] == [w * 100 + n for n in range(20)] for w in range(8))
