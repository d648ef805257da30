import itertools
import math

import pytest
import torch

from torchrl_vta.metrics import (
    boundary_auc,
    boundary_offsets,
    boundary_rates,
    boundary_scores,
    event_triggered_average,
    per_tolerance_table,
    periodic_boundaries,
)


def _mask(length, *positions):
    out = torch.zeros(length, dtype=torch.bool)
    out[list(positions)] = True
    return out


def _brute_force_matches(pred, true, tol):
    """Maximum matching by augmenting paths (Kuhn), independent of the library's sweep."""
    preds = torch.nonzero(pred).flatten().tolist()
    events = torch.nonzero(true).flatten().tolist()
    owner = {}

    def augment(p, seen):
        for e in events:
            if abs(p - e) <= tol and e not in seen:
                seen.add(e)
                if e not in owner or augment(owner[e], seen):
                    owner[e] = p
                    return True
        return False

    return sum(augment(p, set()) for p in preds)


@pytest.mark.parametrize(
    "tol, tp, fp, fn",
    [(0, 1, 3, 2), (1, 2, 2, 1), (2, 3, 1, 0)],
)
def test_scores_hand_computed(tol, tp, fp, fn):
    # events 2, 5, 9; predictions 3, 5, 7, 11.
    # tol 0: only 5. tol 1: 3-2, 5-5. tol 2: 3-2, 5-5, 7-9 (11 is 2 away from 9, already taken).
    true = _mask(12, 2, 5, 9)
    pred = _mask(12, 3, 5, 7, 11)
    s = boundary_scores(pred, true, tolerance=tol)
    assert (s["tp"], s["fp"], s["fn"]) == (tp, fp, fn)
    assert s["precision"] == pytest.approx(tp / 4)
    assert s["recall"] == pytest.approx(tp / 3)
    assert s["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    expected_f1 = {0: 2 / 7, 1: 4 / 7, 2: 6 / 7}[tol]
    assert s["f1"] == pytest.approx(expected_f1)


def test_matching_beats_greedy_by_distance():
    # Events 2 and 5, predictions 4 and 7, tolerance 2. The closest pair (4, 5) taken first
    # (by nearest event or by smallest distance) leaves 7 unmatched: 1 match. The optimum
    # pairs 4-2 and 7-5: 2 matches.
    true = _mask(10, 2, 5)
    pred = _mask(10, 4, 7)
    s = boundary_scores(pred, true, tolerance=2)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 0, 0)
    assert s["f1"] == 1.0


def test_matching_is_maximal_on_random_cases():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        pred = torch.rand(15, generator=gen) < 0.35
        true = torch.rand(15, generator=gen) < 0.35
        pred[0] = true[0] = False
        for tol in (0, 1, 2, 3):
            assert boundary_scores(pred, true, tol)["tp"] == _brute_force_matches(pred, true, tol)


def test_one_to_one():
    # Three predictions around one event: one match, two false positives.
    s = boundary_scores(_mask(8, 3, 4, 5), _mask(8, 4), tolerance=1)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 0)


def test_exclusion_of_forced_boundaries():
    pred = _mask(8, 0, 3, 6)
    true = _mask(8, 0, 3, 6)
    # t = 0 never counts: neither the forced first READ nor an event there.
    s = boundary_scores(pred, true, tolerance=0)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 0, 0)
    # The forced boundary at 6 is removed from the predictions; the event there stays.
    s = boundary_scores(pred, true, tolerance=0, exclude=_mask(8, 0, 6))
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)
    assert s["precision"] == 1.0 and s["recall"] == 0.5
    # A free prediction next to an excluded position can still match the event there.
    s = boundary_scores(_mask(8, 5, 6), _mask(8, 6), tolerance=1, exclude=_mask(8, 6))
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 0)


def test_micro_average_over_sequences():
    pred = torch.stack([_mask(6, 1, 2), _mask(6, 4)])
    true = torch.stack([_mask(6, 1), _mask(6, 2, 3)])
    s = boundary_scores(pred.reshape(1, 2, 6), true.reshape(1, 2, 6), tolerance=0)
    # Sequence 0: tp 1, fp 1. Sequence 1: fp 1, fn 2.
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 2)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 3)


def test_empty_cases():
    none = torch.zeros(6, dtype=torch.bool)
    s = boundary_scores(none, _mask(6, 2), tolerance=1)
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    assert (s["tp"], s["fp"], s["fn"]) == (0, 0, 1)
    s = boundary_scores(_mask(6, 2), none, tolerance=1)
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    s = boundary_scores(none, none, tolerance=1)
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    s = boundary_scores(none, none, tolerance=1, zero_division=float("nan"))
    assert all(math.isnan(s[k]) for k in ("precision", "recall", "f1"))
    s = boundary_scores(none, _mask(6, 2), tolerance=1, zero_division=float("nan"))
    assert math.isnan(s["precision"]) and s["recall"] == 0.0 and s["f1"] == 0.0


def test_per_tolerance_table():
    rows = per_tolerance_table(_mask(12, 3, 5, 7, 11), _mask(12, 2, 5, 9))
    assert [r["tolerance"] for r in rows] == [0, 1, 2]
    assert [r["tp"] for r in rows] == [1, 2, 3]


def test_bad_inputs():
    with pytest.raises(ValueError, match="tolerance"):
        boundary_scores(_mask(5, 1), _mask(5, 1), tolerance=-1)
    with pytest.raises(ValueError, match="true"):
        boundary_scores(_mask(5, 1), _mask(6, 1))
    with pytest.raises(ValueError, match="trailing singleton"):
        boundary_scores(_mask(5, 1)[:, None], _mask(5, 1)[:, None])
    with pytest.raises(ValueError, match="exclude"):
        boundary_scores(_mask(5, 1), _mask(5, 1), exclude=_mask(4, 1))
    with pytest.raises(ValueError, match="pred"):
        boundary_scores(torch.rand(5), _mask(5, 1))


def test_auc_hand_cases():
    true = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)  # t = 0 is ignored
    assert boundary_auc(torch.tensor([0.0, 0.1, 0.6, 0.2, 0.9]), true) == 1.0
    assert boundary_auc(torch.tensor([0.0, 0.9, 0.2, 0.6, 0.1]), true) == 0.0
    assert boundary_auc(torch.full((5,), 0.3), true) == 0.5
    # positives 0.4, 0.8 vs negatives 0.1, 0.5: 3 of 4 pairs ordered right.
    assert boundary_auc(torch.tensor([0.0, 0.1, 0.4, 0.5, 0.8]), true) == pytest.approx(0.75)
    # positives 0.5, 0.9 vs negatives 0.5, 0.1: the tie counts one half -> 3.5 / 4.
    assert boundary_auc(torch.tensor([0.0, 0.5, 0.5, 0.1, 0.9]), true) == pytest.approx(0.875)
    # Excluding the 0.5 negative leaves a perfect ranking.
    exclude = torch.tensor([0, 0, 0, 1, 0], dtype=torch.bool)
    assert boundary_auc(torch.tensor([0.0, 0.1, 0.4, 0.5, 0.8]), true, exclude=exclude) == 1.0
    assert math.isnan(boundary_auc(torch.rand(5), torch.zeros(5, dtype=torch.bool)))


def test_auc_matches_pairwise_definition():
    gen = torch.Generator().manual_seed(1)
    prob = (torch.rand(4, 20, generator=gen) * 5).round() / 5  # many ties
    true = torch.rand(4, 20, generator=gen) < 0.3
    scores, labels = prob[:, 1:].flatten(), true[:, 1:].flatten()
    pos, neg = scores[labels], scores[~labels]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos.tolist(), neg.tolist())]
    assert boundary_auc(prob, true) == pytest.approx(sum(pairs) / len(pairs))


def test_rates():
    pred = torch.stack([_mask(9, 0, 2, 4), _mask(9, 0, 6)])
    true = torch.stack([_mask(9, 4), _mask(9, 0, 5, 7)])
    r = boundary_rates(pred, true)
    assert r["boundary_rate"] == pytest.approx(3 / 16)
    assert r["event_rate"] == pytest.approx(3 / 16)
    # 18 frames in 2 + 3 segments.
    assert r["mean_segment_length"] == pytest.approx(18 / 5)
    exclude = torch.stack([_mask(9, 4), _mask(9)])
    r = boundary_rates(pred, true, exclude=exclude)
    assert r["boundary_rate"] == pytest.approx(2 / 16)
    assert r["mean_segment_length"] == pytest.approx(18 / 5)


def test_periodic_boundaries():
    out = periodic_boundaries((3, 20), count=4)
    assert out.shape == (3, 20) and out.dtype == torch.bool
    assert out.sum(-1).tolist() == [4, 4, 4]
    assert torch.nonzero(out[0]).flatten().tolist() == [4, 8, 12, 16]
    counts = torch.tensor([0, 1, 19])
    out = periodic_boundaries((3, 20), count=counts)
    assert out.sum(-1).tolist() == [0, 1, 19]
    assert torch.nonzero(out[1]).flatten().tolist() == [10]
    assert not out[:, 0].any()
    out = periodic_boundaries((2, 10), period=3)
    assert torch.nonzero(out[1]).flatten().tolist() == [3, 6, 9]
    # The baseline at a model's own counts has the same boundary rate.
    pred = torch.rand(5, 30) < 0.2
    base = periodic_boundaries(pred.shape, count=pred[:, 1:].sum(-1))
    assert boundary_rates(base, pred)["boundary_rate"] == boundary_rates(pred, pred)["boundary_rate"]


def test_periodic_bad_options():
    with pytest.raises(ValueError, match="count"):
        periodic_boundaries((10,), count=10)
    with pytest.raises(ValueError, match="period"):
        periodic_boundaries((10,), period=0)
    with pytest.raises(ValueError, match="exactly one"):
        periodic_boundaries((10,), count=1, period=2)


def test_boundary_offsets_hand_case_and_shift():
    true = torch.zeros(2, 12, dtype=torch.bool)
    true[0, [3, 8]] = True
    true[1, 5] = True
    # Every boundary two steps before its event: all mass at -2, none elsewhere.
    early = torch.roll(true, -2, dims=-1)
    counts = boundary_offsets(early, true, max_offset=3)
    assert counts[-2] == 3 and sum(v for k, v in counts.items() if k != -2) == 0
    # Forced boundaries are dropped, t = 0 too, and a tie goes to the earlier event.
    pred = torch.zeros(2, 12, dtype=torch.bool)
    pred[0, [0, 5, 11]] = True
    pred[1, 1] = True
    forced = torch.zeros_like(pred)
    forced[0, 11] = True
    counts = boundary_offsets(pred, true, exclude=forced, max_offset=3)
    assert counts[2] == 1 and counts[-3] == 0 and counts["far"] == 1


def test_boundary_offsets_without_events_and_bad_option():
    pred = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    counts = boundary_offsets(pred, torch.zeros_like(pred), max_offset=1)
    assert counts == {-1: 0, 0: 0, 1: 0, "far": 2}
    with pytest.raises(ValueError, match="max_offset"):
        boundary_offsets(pred, pred, max_offset=-1)


def test_event_triggered_average_finds_an_early_peak():
    generator = torch.Generator().manual_seed(0)
    true = torch.rand(50, 40, generator=generator) < 0.1
    signal = torch.rand(50, 40, generator=generator)
    # A score that peaks two steps before every labelled event.
    signal = signal + 5 * torch.roll(true, -2, dims=-1).float()
    average = event_triggered_average(signal, true, lags=(-3, -2, -1, 0, 1))
    assert max(average, key=average.get) == -2
    assert average[-2] > 5 and average[0] < 2
    with pytest.raises(ValueError, match="signal"):
        event_triggered_average(signal[:, :10], true)
