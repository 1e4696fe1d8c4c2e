"""The ranking registry: names, stable orders, seeded random orders, skipping."""

import numpy as np
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_core.model import ModelConfig, build_model
from ersm_eval.orders import orders_from_scores
from ersm_eval.rankings import (
    ALIASES, DEFAULT_RANKINGS, RANKINGS, RankingInputs, border_order, center_order, random_orders, resolve_rankings,
    stable_order,
)

SPEC_NAMES = ["energy", "unary", "random", "magnitude", "cam", "center"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        variant: build_model(ModelConfig(num_classes=3, image_size=32, variant=variant)).eval()
        for variant in ("ersm_full", "baseline", "l0")
    }


def test_registry_holds_the_spec_table():
    assert sorted(RANKINGS.names()) == sorted(SPEC_NAMES)
    assert DEFAULT_RANKINGS == ("energy", "unary", "magnitude", "cam", "center", "random")
    assert ALIASES == {"border": ("center", "lerf"), "magnitude_desc": ("magnitude", "morf"),
                       "energy_reversed": ("energy", "morf")}


def test_unknown_ranking_lists_valid_names(models):
    with pytest.raises(ConfigError, match=r"unknown ranking 'energi'.*valid names: .*energy.*magnitude_desc → magnitude"):
        resolve_rankings(["energy", "energi"], models["ersm_full"])


def test_ties_keep_the_lower_index_first():
    score = torch.tensor([[1.0, 2.0, 2.0, 1.0, 2.0]])
    assert stable_order(score, descending=True).tolist() == [[1, 2, 4, 0, 3]]
    assert stable_order(score, descending=False).tolist() == [[0, 3, 1, 2, 4]]
    # negating to sort descending keeps ±0 (equal) in index order too
    zeros = torch.tensor([[0.0, -0.0, 0.0, -0.0]])
    assert stable_order(zeros, descending=True).tolist() == [[0, 1, 2, 3]]
    # many ties (a stable sort is needed beyond torch's small-size path)
    many = torch.zeros(2, 300)
    assert stable_order(many, True).tolist() == [list(range(300))] * 2


def test_directions_of_each_score_ranking():
    scores = {"energy": torch.tensor([[0.1, 0.5, 0.3]]), "unary": torch.tensor([[2.0, -1.0, 0.0]]),
              "magnitude": torch.tensor([[3.0, 1.0, 2.0]])}
    inputs = RankingInputs(scores, np.array([0]), 3, cam=torch.tensor([[0.2, -0.4, 0.9]]))

    def order(name):
        morf, lerf = orders_from_scores(RANKINGS.get(name).importance(inputs))
        return {"morf": morf.tolist()[0], "lerf": lerf.tolist()[0]}

    # LeRF deletes what the ranking calls least important first: the highest energy, the lowest norm
    assert order("energy") == {"lerf": [1, 2, 0], "morf": [0, 2, 1]}  # the old energy / energy_reversed
    assert order("unary") == {"lerf": [0, 2, 1], "morf": [1, 2, 0]}
    assert order("magnitude") == {"lerf": [1, 2, 0], "morf": [0, 2, 1]}  # the old magnitude / magnitude_desc
    assert order("cam") == {"lerf": [1, 0, 2], "morf": [2, 0, 1]}


def test_unary_is_lowest_keep_first(models):
    model = models["ersm_full"]
    with torch.no_grad():
        scores = model.token_scores(model.forward_features(torch.randn(3, 3, 32, 32)))
    by_unary = stable_order(scores["unary"], True)
    by_keep = stable_order(scores["keep"], False)
    assert torch.equal(by_unary, by_keep)


def test_random_orders_depend_only_on_seed_and_index():
    both = random_orders([5, 9], seed=3, n_tokens=16)
    alone = random_orders([9], seed=3, n_tokens=16)
    assert np.array_equal(both[1], alone[0])
    assert np.array_equal(both[0], np.random.default_rng([3, 5]).permutation(16))
    assert not np.array_equal(random_orders([5], 4, 16), both[:1])
    assert sorted(both[0].tolist()) == list(range(16))


def test_models_without_energy_skip_energy_rankings(models):
    resolved = resolve_rankings(list(DEFAULT_RANKINGS) + ["energy_reversed"], models["baseline"])
    assert [r.name for r in resolved.rankings] == ["magnitude", "cam", "center", "random"]
    assert set(resolved.skipped) == {"energy", "unary"}
    assert "MORF order of 'energy'" in resolved.notes["energy_reversed"]
    assert "baseline" in resolved.skipped["energy"] and "Energy-Mask" in resolved.skipped["energy"]
    l0 = resolve_rankings(list(DEFAULT_RANKINGS), models["l0"])
    assert "energy" in l0.skipped and "cam" in [r.name for r in l0.rankings]


def test_nothing_applicable_is_an_error(models):
    with pytest.raises(ConfigError, match="none of the requested rankings applies"):
        resolve_rankings(["energy", "unary"], models["baseline"])


def test_duplicates_are_dropped_in_order(models):
    resolved = resolve_rankings(["cam", "energy", "cam"], models["ersm_full"])
    assert [r.name for r in resolved.rankings] == ["cam", "energy"]


def test_center_and_border_on_a_3x3_grid_by_hand():
    # doubled coordinates: the centre token 4 at distance 0; 1, 3, 5, 7 at 1; the corners at sqrt(2)
    assert center_order((3, 3)).tolist() == [4, 1, 3, 5, 7, 0, 2, 6, 8]
    assert border_order((3, 3)).tolist() == [8, 6, 2, 0, 7, 5, 3, 1, 4]


def test_center_and_border_on_a_2x4_grid_by_hand():
    # grid centre (1, 2); token centres (r + 0.5, c + 0.5): the middle columns 1, 2 of both rows are at
    # distance sqrt(0.5), the outer columns at sqrt(2.5); ties keep the lower index first
    assert center_order((2, 4)).tolist() == [1, 2, 5, 6, 0, 3, 4, 7]
    assert border_order((2, 4)).tolist() == [7, 4, 3, 0, 6, 5, 2, 1]


def test_center_and_border_rankings_use_the_grid_for_every_image():
    inputs = RankingInputs({"energy": torch.zeros(2, 8)}, np.array([3, 7]), 8, grid=(2, 4))
    center, lerf = orders_from_scores(RANKINGS.get("center").importance(inputs))
    assert center.tolist() == [[1, 2, 5, 6, 0, 3, 4, 7]] * 2  # MoRF: nearest the centre first
    # LeRF: farthest first, ties by the lower index (the old border reversed the ties too)
    assert lerf.tolist() == [[0, 3, 4, 7, 1, 2, 5, 6]] * 2
    assert center.dtype == torch.int64
    # no grid given: a square grid
    square = RankingInputs({}, np.array([0]), 9)
    assert orders_from_scores(RANKINGS.get("center").importance(square))[0].tolist() == [[4, 1, 3, 5, 7, 0, 2, 6, 8]]


def test_center_and_border_apply_to_every_model(models):
    for model in models.values():
        resolved = resolve_rankings(["center", "border"], model)
        assert [r.name for r in resolved.rankings] == ["center"]  # border is center's LeRF order
        assert "LERF order of 'center'" in resolved.notes["border"]
