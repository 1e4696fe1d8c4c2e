"""Ranking agreement: closed-form Spearman/Kendall on orders against scipy, top-k overlap."""

import numpy as np
import pytest
from scipy import stats

from ersm_eval.agreement import kendall_orders, overlap_k, positions, ranking_agreement, spearman_orders, topk_overlap
from ersm_eval.schema import TABLES


def test_positions_invert_orders():
    orders = np.array([[2, 0, 3, 1]])
    assert positions(orders).tolist() == [[1, 3, 0, 2]]


def test_identical_and_reversed_orders():
    a = np.array([[0, 1, 2, 3], [3, 1, 0, 2]])
    b = a[:, ::-1].copy()
    assert spearman_orders(a, a).tolist() == [1.0, 1.0]
    assert kendall_orders(a, a).tolist() == [1.0, 1.0]
    assert spearman_orders(a, b).tolist() == [-1.0, -1.0]
    assert kendall_orders(a, b).tolist() == [-1.0, -1.0]
    assert topk_overlap(a, a, 2).tolist() == [1.0, 1.0]
    assert topk_overlap(a, b, 2).tolist() == [0.0, 0.0]
    assert topk_overlap(np.array([[0, 1, 2, 3]]), np.array([[1, 3, 0, 2]]), 2).tolist() == [0.5]


def test_matches_scipy_on_random_permutations():
    rng = np.random.default_rng(0)
    a = np.stack([rng.permutation(23) for _ in range(30)])
    b = np.stack([rng.permutation(23) for _ in range(30)])
    pa, pb = positions(a), positions(b)
    rho = [stats.spearmanr(x, y).statistic for x, y in zip(pa, pb)]
    tau = [stats.kendalltau(x, y).statistic for x, y in zip(pa, pb)]
    assert np.allclose(spearman_orders(a, b), rho)
    assert np.allclose(kendall_orders(a, b), tau)


def test_table_has_one_row_per_pair():
    rng = np.random.default_rng(1)
    orders = {name: np.stack([rng.permutation(16) for _ in range(5)]) for name in ("energy", "cam", "random")}
    table = ranking_agreement(orders, "ckpt")
    assert list(table.columns) == TABLES["ranking_agreement.csv"]
    assert list(zip(table.ranking_a, table.ranking_b)) == [("energy", "cam"), ("energy", "random"), ("cam", "random")]
    assert (table.checkpoint == "ckpt").all() and (table.n_images == 5).all()
    assert overlap_k(16, 0.25) == 4 and overlap_k(16, 0.5) == 8 and overlap_k(2, 0.25) == 1
    row = table.iloc[0]
    expected = topk_overlap(orders["energy"], orders["cam"], 4).mean()
    assert row.overlap25_mean == pytest.approx(expected)
    assert row.spearman_sd == pytest.approx(spearman_orders(orders["energy"], orders["cam"]).std(ddof=1))


def test_single_ranking_gives_an_empty_table():
    table = ranking_agreement({"cam": np.zeros((3, 4), dtype=np.int64) + np.arange(4)})
    assert table.empty and list(table.columns) == TABLES["ranking_agreement.csv"]


def test_center_and_border_are_exact_reverses():
    from ersm_eval.rankings import border_order, center_order

    orders = {"center": center_order((3, 4))[None], "border": border_order((3, 4))[None]}
    row = ranking_agreement(orders).iloc[0]
    assert (row.ranking_a, row.ranking_b) == ("center", "border")
    assert row.spearman_mean == pytest.approx(-1.0) and row.kendall_mean == pytest.approx(-1.0)
    assert row.overlap50_mean == 0.0
