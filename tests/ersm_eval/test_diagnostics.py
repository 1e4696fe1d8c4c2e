"""Energy diagnostics: neighbour counts, centre scores, pairwise share and the correlations, by hand."""

import numpy as np
import pytest
import torch
from scipy import stats

from ersm_eval.agreement import ranking_agreement
from ersm_eval.diagnostics import (
    DIAGNOSTIC_METRICS, center_scores, energy_diagnostic_values, energy_diagnostics, neighbour_counts, pairwise_share,
    rank_pearson,
)
from ersm_eval.orders import orders_from_scores
from ersm_eval.rankings import RANKINGS, RankingInputs
from ersm_eval.schema import TABLES


def test_neighbour_counts_on_3x3_and_other_grids():
    assert neighbour_counts((3, 3)).tolist() == [3, 5, 3, 5, 8, 5, 3, 5, 3]
    assert neighbour_counts((2, 4)).tolist() == [3, 5, 5, 3, 3, 5, 5, 3]
    assert neighbour_counts((1, 3)).tolist() == [1, 2, 1]
    grid = neighbour_counts((5, 6)).reshape(5, 6)
    assert grid[0, 0] == grid[4, 5] == 3 and grid[0, 2] == grid[2, 0] == 5 and (grid[1:-1, 1:-1] == 8).all()


def test_center_scores_on_3x3():
    # center order 4, 1, 3, 5, 7, 0, 2, 6, 8: the first deleted scores N − 1 = 8
    assert center_scores((3, 3)).tolist() == [3, 7, 2, 6, 8, 5, 1, 4, 0]


def test_pairwise_share_by_hand():
    eu = np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 2.0]])
    ep = np.array([[1.0, 1.0, 2.0], [6.0, 0.0, 2.0]])
    # image 0: 1/2, 1/4, 2/2 -> mean 7/12; image 1: 6/8, 0, 1/2 -> mean 5/12
    assert pairwise_share(eu, ep) == pytest.approx([7 / 12, 5 / 12])
    # a token with no energy at all has no share and is left out
    assert pairwise_share([[0.0, 1.0]], [[0.0, 3.0]]) == pytest.approx([0.75])


def test_rank_pearson_is_spearman_without_ties_and_nan_when_constant():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 10)), rng.random((4, 10))
    ranks = lambda x: np.argsort(np.argsort(x, 1), 1)  # noqa: E731
    expected = [stats.spearmanr(a[i], b[i])[0] for i in range(4)]
    assert rank_pearson(ranks(a), ranks(b)) == pytest.approx(expected)
    assert np.isnan(rank_pearson(np.ones(5), np.arange(5))[()])


def _scores(energy, unary=None, pairwise=None):
    energy = torch.as_tensor(np.asarray(energy), dtype=torch.float32)
    return {"energy": energy, "energy_unary": energy / 2 if unary is None else torch.as_tensor(unary),
            "energy_pairwise": energy / 2 if pairwise is None else torch.as_tensor(pairwise)}


def test_energy_equal_to_closeness_to_the_centre_correlates_perfectly():
    grid = (3, 3)
    values = energy_diagnostic_values(_scores([center_scores(grid)]), grid)
    assert values["spearman_center"] == pytest.approx([1.0])
    assert values["pairwise_share"] == pytest.approx([0.5])
    # energy = neighbour count plus a tiny tie-break: Spearman with the counts (average ranks for their ties)
    energy = neighbour_counts(grid) + np.arange(9) * 1e-3
    values = energy_diagnostic_values(_scores([energy]), grid)
    assert values["spearman_neighbours"] == pytest.approx([stats.spearmanr(energy, neighbour_counts(grid))[0]])
    assert values["spearman_neighbours"][0] > 0.8


def test_spearman_center_equals_the_agreement_of_the_energy_and_center_orders():
    grid = (4, 5)
    rng = np.random.default_rng(1)
    energy = torch.from_numpy(rng.random((6, 20)).astype(np.float32))
    energy[0, :5] = 0.5  # ties in the energy too: broken as the energy ranking breaks them
    inputs = RankingInputs({"energy": energy}, np.arange(6), 20, grid=grid)
    # the energy ranking's LeRF order (highest energy first) and the center ranking's MoRF order (nearest first)
    orders = {"energy": orders_from_scores(RANKINGS.get("energy").importance(inputs))[1].numpy(),
              "center": orders_from_scores(RANKINGS.get("center").importance(inputs))[0].numpy()}
    agreement = ranking_agreement(orders)
    values = energy_diagnostic_values(_scores(energy), grid)
    assert values["spearman_center"].mean() == pytest.approx(agreement.spearman_mean.iloc[0], abs=1e-12)
    # and it is the Spearman correlation of the energy with the center ranking's scores (tie-free rows)
    for i in range(1, 6):
        assert values["spearman_center"][i] == pytest.approx(stats.spearmanr(energy[i], center_scores(grid))[0])


def test_energy_diagnostics_table():
    values = {"pairwise_share": np.array([0.2, 0.4, 0.6]), "spearman_center": np.array([0.5, np.nan, 0.7]),
              "spearman_neighbours": np.array([np.nan, np.nan, np.nan])}
    table = energy_diagnostics(values, "ck", n_boot=200, seed=0)
    assert list(table.columns) == TABLES["energy_diagnostics.csv"]
    assert table.metric.tolist() == list(DIAGNOSTIC_METRICS) and (table.checkpoint == "ck").all()
    row = table.set_index("metric")
    assert row.loc["pairwise_share", "value"] == pytest.approx(0.4)
    assert row.loc["spearman_center", "value"] == pytest.approx(0.6)  # the NaN image left out
    assert 0.2 <= row.loc["pairwise_share", "ci_low"] <= 0.4 <= row.loc["pairwise_share", "ci_high"] <= 0.6
    assert np.isnan(row.loc["spearman_neighbours", "value"])
    again = energy_diagnostics(values, "ck", n_boot=200, seed=0)
    assert again.equals(table)  # seeded
