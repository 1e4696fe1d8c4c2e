"""Deletion evaluation: fast path = general path, hand-built curves, invariances, tables."""

import numpy as np
import pandas as pd
import pytest
import torch

from ersm_core.errors import ConfigError, DatasetError
from ersm_core.model import ModelConfig, build_model
from ersm_eval.cam import token_sums
from ersm_eval.deletion import (
    DeletionEvaluator, DeletionSettings, deletion_logits, deletion_logits_general, deletion_steps,
    input_deletion_logits, kept_pooled, token_pixel_map, token_score_arrays,
)
from ersm_eval.fills import fill, token_blur_sigma
from ersm_eval.schema import TABLES
from ersm_eval.stats import trapezoid


def _model(**kw):
    torch.manual_seed(kw.pop("seed", 0))
    return build_model(ModelConfig(**{"num_classes": 5, "image_size": 64, **kw})).eval()


@pytest.fixture(scope="module")
def ersm():
    return _model(variant="ersm_full")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 3, 64, 64, generator=g), torch.randint(0, 5, (32,), generator=g)


def _random_orders(batch, curves, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.stack([torch.randperm(n, generator=g) for _ in range(curves)]) for _ in range(batch)])


# -- the fast path ---------------------------------------------------------------------


@pytest.mark.parametrize("backbone,size,patch", [("compact_cnn", 64, 1), ("compact_cnn", 64, 2), ("convnext_atto", 128, 1)])
@pytest.mark.parametrize("soft,rescale", [(False, True), (True, True), (False, False)])
def test_fast_path_equals_general_path(backbone, size, patch, soft, rescale):
    model = _model(backbone=backbone, image_size=size, patch_size=patch, variant="ersm_full")
    if backbone.startswith("convnext"):
        assert not model.head_is_linear  # the norm-before-classifier case
    with torch.no_grad():
        feats = model.forward_features(torch.randn(3, 3, size, size))
        fmap = model.gate(feats) if soft else feats
    orders = _random_orders(3, 2, model.n_tokens)
    steps = deletion_steps(model.n_tokens)
    fast = deletion_logits(model, fmap, orders, steps, rescale)
    general = deletion_logits_general(model, fmap, orders, steps, rescale)
    assert fast.shape == (3, 2, model.n_tokens, 5)
    assert (fast - general).abs().max().item() < 1e-5


def test_rescale_is_gap_times_n_over_n_minus_k_on_a_hand_example():
    # one channel, 2x2 grid of P=1 tokens with values 1, 2, 3, 6; delete in order 3, 0, 1, 2
    fmap = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    sums = token_sums(fmap, 1)
    assert sums[0, :, 0].tolist() == [1.0, 2.0, 3.0, 6.0]
    orders = torch.tensor([[[3, 0, 1, 2]]])
    steps = torch.arange(4)
    gap = fmap.mean().item()
    rescaled = kept_pooled(sums, orders, steps, rescale=True, positions=1)[0, 0, :, 0]
    assert rescaled.tolist() == pytest.approx([12 / 4, 6 / 3, 5 / 2, 3 / 1])
    zeroed = [12.0, 6.0, 5.0, 3.0]  # sums left after zeroing k tokens
    assert rescaled.tolist() == pytest.approx([z / 4 * 4 / (4 - k) for k, z in enumerate(zeroed)])
    assert rescaled[0].item() == pytest.approx(gap)
    plain = kept_pooled(sums, orders, steps, rescale=False, positions=1)[0, 0, :, 0]
    assert plain.tolist() == pytest.approx([z / 4 for z in zeroed])


def test_steps_subset():
    assert deletion_steps(64, 5).tolist() == [0, 16, 32, 47, 63]
    assert deletion_steps(8).tolist() == list(range(8))
    assert deletion_steps(8, 100).tolist() == list(range(8))
    with pytest.raises(ConfigError):
        deletion_steps(1)


# -- a hand-built model with known token contributions ----------------------------------


@pytest.fixture()
def hand():
    """ERSM-Unary on a 2x2 map: tokens t = (4,0), (1,0), (3,0), (0,5) in channels 0 and 1, zeros elsewhere.

    Template w = (1, 2, 0, ...), b = 0: u = (1, 1, 1, 2) (three ties). Head: logit_0 = x0 − x1 − 0.5,
    logit_1 = 0; label 0. Orders: energy/unary (highest first, ties by index) 3,0,1,2;
    magnitude (norms 4,1,3,5, lowest first) 1,2,0,3; cam (contributions 4,1,3,−5 over 4) 3,1,2,0.
    """
    model = _model(num_classes=2, image_size=32, variant="ersm_unary")
    assert model.grid == (2, 2)
    with torch.no_grad():
        model.spatial.template.weight.zero_()
        model.spatial.template.weight[0, :2] = torch.tensor([1.0, 2.0])
        model.spatial.bias.zero_()
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[0, :2] = torch.tensor([1.0, -1.0])
        model.head.bias[0] = -0.5
    feats = torch.zeros(1, model.channels, 2, 2)
    feats[0, 0] = torch.tensor([[4.0, 1.0], [3.0, 0.0]])
    feats[0, 1] = torch.tensor([[0.0, 0.0], [0.0, 5.0]])
    return model, feats


def test_hand_model_gives_the_known_curves(hand):
    model, feats = hand
    settings = DeletionSettings(rankings=("energy", "unary", "magnitude", "cam"), label="hand")
    ev = DeletionEvaluator(model, settings)
    ev.update({"features": feats, "label": torch.tensor([0]), "index": torch.tensor([0])})
    rec = ev.records()
    orders = {(name, order): rec["orders"][0, c].tolist() for c, (name, order, _) in enumerate(ev.curves)}
    # LeRF deletes what a ranking calls least important first (highest energy, lowest norm), MoRF the opposite
    assert orders == {("energy", "lerf"): [3, 0, 1, 2], ("energy", "morf"): [0, 1, 2, 3],
                      ("unary", "lerf"): [3, 0, 1, 2], ("unary", "morf"): [0, 1, 2, 3],
                      ("magnitude", "lerf"): [1, 2, 0, 3], ("magnitude", "morf"): [3, 0, 2, 1],
                      ("cam", "lerf"): [3, 1, 2, 0], ("cam", "morf"): [0, 2, 1, 3]}
    # logit_0 = mean of kept (x0 − x1) − 0.5, by hand
    kept_mean = {("energy", "lerf"): [0.75, 8 / 3, 2.0, 3.0], ("energy", "morf"): [0.75, -1 / 3, -1.0, -5.0],
                 ("magnitude", "lerf"): [0.75, 2 / 3, -0.5, -5.0], ("cam", "lerf"): [0.75, 8 / 3, 3.5, 4.0]}
    tables = ev.compute()
    curves = tables["deletion_curves.csv"]
    for (name, order), values in kept_mean.items():
        rows = curves[(curves.ranking == name) & (curves.order == order)].sort_values("k")
        logit0 = np.array(values) - 0.5
        assert rows.accuracy.tolist() == (logit0 > 0).astype(float).tolist()
        assert rows.mean_true_prob.to_numpy() == pytest.approx(1 / (1 + np.exp(-logit0)), abs=1e-6)
        assert (rows.seed == -1).all()
    # the symmetric gain of one image: LeRF area − MoRF area of its correctness curves (fraction 0, ¼, ½, ¾)
    summary = tables["deletion_summary.csv"].set_index("ranking")
    assert summary.loc["energy", "auc_lerf"] == pytest.approx(1.0) and summary.loc["energy", "auc_morf"] == pytest.approx(1 / 6)
    assert summary.loc["energy", "sg"] == pytest.approx(5 / 6)


def test_hand_model_without_rescale_pools_by_the_plain_mean(hand):
    model, feats = hand
    ev = DeletionEvaluator(model, DeletionSettings(rankings=("energy",), rescale=False))
    ev.update({"features": feats, "label": torch.tensor([0]), "index": torch.tensor([0])})
    curves = ev.compute()["deletion_curves.csv"]
    curve = curves[curves.order == "lerf"].sort_values("k")
    logit0 = np.array([3.0, 8.0, 4.0, 3.0]) / 4 - 0.5  # kept sums over all 4 positions
    assert curve.mean_true_prob.to_numpy() == pytest.approx(1 / (1 + np.exp(-logit0)), abs=1e-6)


# -- the evaluator ---------------------------------------------------------------------


def _run(model, images, labels, batch_size, settings):
    ev = DeletionEvaluator(model, settings)
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        ev.update({"image": images[sl], "label": labels[sl], "index": torch.arange(len(images))[sl] + 100})
    return ev


def _csv(tables):
    return {name: df.to_csv(index=False, float_format="%.10g") for name, df in tables.items()}


def assert_same_tables(a, b):
    """Identical tables, except that probabilities may differ in the last float32 digits: CPU
    convolution backends pick batch-size-dependent algorithms, so backbone features are not
    always bitwise equal across batch sizes (correctness bits and everything computed from
    them are). The same holds for the energies behind the energy diagnostics."""
    assert sorted(a) == sorted(b)
    for name in a:
        x, y = a[name], b[name]
        assert list(x.columns) == list(y.columns) and len(x) == len(y), name
        for col in x.columns:
            from_probabilities = col == "mean_true_prob" or col.startswith("prob_auc")
            if from_probabilities or (name == "energy_diagnostics.csv" and col in ("value", "ci_low", "ci_high")):
                np.testing.assert_allclose(x[col].to_numpy(float), y[col].to_numpy(float), rtol=1e-5, atol=1e-7)
            else:
                pd.testing.assert_series_equal(x[col], y[col], check_exact=True, obj=f"{name}:{col}")


def test_batch_size_does_not_change_any_table(ersm, images):
    settings = DeletionSettings(seeds=(0, 1), label="m", n_boot=200)
    tables = [_run(ersm, *images, bs, settings).compute() for bs in (1, 7, 32)]
    assert_same_tables(tables[0], tables[1])
    assert_same_tables(tables[0], tables[2])
    # with the backbone's features given, batch size changes nothing at all
    with torch.no_grad():
        feats = ersm.forward_features(images[0])
    texts = []
    for bs in (1, 7, 32):
        ev = DeletionEvaluator(ersm, settings)
        for start in range(0, 32, bs):
            sl = slice(start, start + bs)
            ev.update({"features": feats[sl], "label": images[1][sl], "index": torch.arange(32)[sl]})
        texts.append(_csv(ev.compute()))
    assert texts[0] == texts[1] == texts[2]


def test_record_order_does_not_matter_and_duplicates_are_refused(ersm, images):
    ev = _run(ersm, *images, 8, DeletionSettings(seeds=(0,), n_boot=100))
    rec = ev.records()
    perm = np.random.default_rng(0).permutation(len(rec["index"]))
    shuffled = {k: v[perm] for k, v in rec.items()}
    assert _csv(ev.compute(shuffled)) == _csv(ev.compute(rec))
    doubled = {k: np.concatenate([v, v]) for k, v in rec.items()}
    with pytest.raises(ValueError, match="more than once"):
        ev.compute(doubled)


def test_same_seed_same_random_curves(ersm, images):
    a = _run(ersm, *images, 16, DeletionSettings(rankings=("random",), seeds=(3,), n_boot=100)).compute()
    b = _run(ersm, *images, 5, DeletionSettings(rankings=("random", "cam"), seeds=(3, 4), n_boot=100)).compute()
    ca = a["deletion_curves.csv"]
    cb = b["deletion_curves.csv"]
    cb3 = cb[(cb.ranking == "random") & (cb.seed == 3)].reset_index(drop=True)
    pd.testing.assert_frame_equal(ca, cb3)
    seed4 = cb[(cb.ranking == "random") & (cb.seed == 4)]
    assert not np.allclose(cb3.mean_true_prob, seed4.mean_true_prob)


@pytest.mark.parametrize("variant,soft", [("ersm_full", True), ("ersm_full", False), ("baseline", False), ("l0", True)])
def test_k0_accuracy_equals_plain_evaluation(variant, soft, images):
    model = _model(variant=variant, seed=3)
    x, y = images
    ev = _run(model, x, y, 10, DeletionSettings(soft_gate=soft, seeds=(0,), n_boot=100))
    with torch.no_grad():
        if soft or variant == "baseline":
            plain = model(x).argmax(1)  # the model as at inference
        else:
            plain = model.forward_head(model.pool(model.forward_features(x))).argmax(1)  # ungated map
    curves = ev.compute()["deletion_curves.csv"]
    at0 = curves[curves.k == 0]
    assert np.allclose(at0.accuracy, (plain == y).float().mean().item())


def test_tables_follow_the_schema(ersm, images):
    settings = DeletionSettings(seeds=(0, 1, 2), steps=6, label="ckpt", n_boot=100)
    ev = _run(ersm, *images, 16, settings)
    tables = ev.compute()
    for name, df in tables.items():
        assert list(df.columns) == TABLES[name], name
    curves = tables["deletion_curves.csv"]
    assert sorted(curves.k.unique().tolist()) == ev.steps.tolist() == [0, 3, 6, 9, 12, 15]
    assert (curves.n_images == 32).all() and (curves.checkpoint == "ckpt").all()
    assert set(curves[curves.ranking == "random"].seed) == {0, 1, 2}
    assert (curves[curves.ranking != "random"].seed == -1).all()
    assert set(curves[curves.ranking == "random"].order) == {"random"}
    for name in ("energy", "unary", "magnitude", "cam", "center"):  # every non-random ranking has both orders
        assert set(curves[curves.ranking == name].order) == {"morf", "lerf"}, name
    assert np.allclose(curves.fraction_removed, curves.k / 16)
    assert ((curves.ci_low <= curves.accuracy) & (curves.accuracy <= curves.ci_high)).all()
    summary = tables["deletion_summary.csv"].set_index("ranking")
    assert summary.loc["random", "n_seeds"] == 3 and np.isnan(summary.loc["random", "max_gap_to_random"])
    assert summary.loc["random", "sg"] == 0 and summary.loc["random", "verdict"] == ""
    assert set(summary.verdict) - {""} <= {"supports", "contradicts", "indistinguishable", "not_testable"}
    assert np.isnan(summary.loc["center", "sg_minus_center"]) and np.isfinite(summary.loc["energy", "sg_minus_center"])
    assert summary.loc["energy", "max_gap_ci_low"] <= summary.loc["energy", "max_gap_to_random"] <= summary.loc["energy", "max_gap_ci_high"]
    tests = tables["deletion_tests.csv"]
    compared = {"energy", "unary", "magnitude", "cam", "center"}
    assert set(tests.ranking) == compared and set(tests.test) == {"paired_bootstrap"}
    assert set(zip(tests.ranking, tests.order)) == {(r, o) for r in compared for o in ("morf", "lerf")}
    assert ((tests.p_value > 0) & (tests.p_value <= 1)).all()
    agreement = tables["ranking_agreement.csv"]
    assert len(agreement) == 15  # 6 rankings by their LeRF order, random by its first seed: 6·5/2 pairs
    pairs = set(zip(agreement.ranking_a, agreement.ranking_b))
    for position in ("center",):
        others = (compared | {"random"}) - {position}
        assert all((position, o) in pairs or (o, position) in pairs for o in others)


def test_one_seed_uses_exact_mcnemar(ersm, images):
    tables = _run(ersm, *images, 32, DeletionSettings(rankings=("cam", "random"), seeds=(0,), n_boot=100)).compute()
    tests = tables["deletion_tests.csv"]
    assert set(tests.test) == {"mcnemar_exact"}
    assert tests[tests.k == 0].p_value.iloc[0] == 1.0


def test_token_scores_and_describe(ersm, images):
    ev = _run(ersm, *images, 32, DeletionSettings(seeds=(0,), save_token_scores=True, n_boot=100))
    arrays = token_score_arrays(ev.records(), ev.curves, ersm.grid)
    assert arrays["index"].tolist() == list(range(100, 132))
    for key in ("energy", "unary", "keep", "magnitude", "cam"):
        assert arrays[key].shape == (32, 16) and arrays[key].dtype == np.float32
    assert arrays["orders"].shape == (32, 11, 16) and arrays["orders"].dtype == np.int16
    assert arrays["curve_names"].tolist() == [f"{r}_{o}" for r in ("energy", "unary", "magnitude", "cam", "center")
                                              for o in ("morf", "lerf")] + ["random_seed0"]
    info = ev.describe()
    assert info["k_values"] == list(range(16)) and info["skipped_rankings"] == {}


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="--level feature only"):
        DeletionSettings(level="input", soft_gate=True)
    with pytest.raises(ConfigError, match="unknown fill"):
        DeletionSettings(fill="pink")
    with pytest.raises(ConfigError, match="at least 2"):
        DeletionSettings(steps=1)
    with pytest.raises(ConfigError, match="duplicates"):
        DeletionSettings(seeds=(1, 1))


def test_no_images_is_an_error(ersm):
    with pytest.raises(DatasetError, match="no images"):
        DeletionEvaluator(ersm).compute()


def test_records_hold_no_features(ersm, images):
    ev = _run(ersm, *images, 32, DeletionSettings(n_boot=100))
    rec = ev.records()
    diag = {"diag_pairwise_share", "diag_spearman_center", "diag_spearman_neighbours"}  # one number per image each
    assert set(rec) == {"index", "label", "correct", "true_prob", "orders"} | diag
    assert rec["correct"].dtype == bool and rec["true_prob"].dtype == np.float32
    assert rec["correct"].shape == (32, len(ev.curves), 16)
    assert all(rec[k].shape == (32,) for k in diag)
    # a process that saw no image has no records: the one error of every evaluator (torchrun's gather
    # passes None for such a process instead)
    with pytest.raises(DatasetError, match="nothing to compute for deletion"):
        DeletionEvaluator(ersm, DeletionSettings(n_boot=100)).records()


# -- input level -----------------------------------------------------------------------


def test_token_pixel_map():
    pix = token_pixel_map((8, 8), (2, 2))
    assert pix[:4, :4].eq(0).all() and pix[:4, 4:].eq(1).all() and pix[4:, :4].eq(2).all() and pix[4:, 4:].eq(3).all()


def test_deletion_fills_are_the_shared_fills():
    x = torch.randn(2, 3, 16, 16)
    mean, std, idx = (0.5,) * 3, (0.25,) * 3, np.array([0, 1])
    assert fill(x, "mean", mean, std, idx).abs().sum() == 0
    torch.testing.assert_close(fill(x, "black", mean, std, idx), torch.full_like(x, -2.0))
    n1 = fill(x, "noise", mean, std, idx, seed=0)
    torch.testing.assert_close(n1[1], torch.from_numpy(np.random.default_rng([0, 1]).standard_normal((3, 16, 16)).astype(np.float32)))
    # deletion's blur: half a token's side, 16 px over a 2x2 grid -> sigma 4
    assert token_blur_sigma((16, 16), (2, 2)) == 4.0 and token_blur_sigma((32, 16), (4, 4)) == 2.0
    assert DeletionSettings(level="input", fill="blur").fill == "blur"
    with pytest.raises(ConfigError, match="unknown fill"):
        DeletionSettings(level="input", fill="gray")


def test_input_level_fills_the_regions_of_deleted_tokens(ersm, images):
    x, y = images[0][:2], images[1][:2]
    orders = _random_orders(2, 2, ersm.n_tokens)
    fills = torch.zeros_like(x)
    steps = np.array([0, 5, 15])
    logits = input_deletion_logits(ersm, x, fills, orders, steps, chunk=4)
    with torch.no_grad():
        assert torch.allclose(logits[:, :, 0], ersm(x)[:, None].expand(-1, 2, -1), atol=1e-5)
        # by hand: image 1, curve 1, k = 5; tokens are 16x16 pixel squares of the 4x4 grid
        manual = x[1].clone()
        for token in orders[1, 1, :5].tolist():
            r, c = divmod(token, 4)
            manual[:, 16 * r : 16 * r + 16, 16 * c : 16 * c + 16] = 0.0
        assert torch.allclose(logits[1, 1, 1], ersm(manual[None])[0], atol=1e-5)


def test_input_level_evaluator(ersm, images):
    x, y = images[0][:4], images[1][:4]
    settings = DeletionSettings(level="input", steps=3, seeds=(0,), fill="noise", n_boot=100, input_chunk=16)
    ev = _run(ersm, x, y, 4, settings)
    curves = ev.compute()["deletion_curves.csv"]
    with torch.no_grad():
        plain = (ersm(x).argmax(1) == y).float().mean().item()
    assert np.allclose(curves[curves.k == 0].accuracy, plain)
    with pytest.raises(ConfigError, match="needs images"):
        ev.update({"features": torch.zeros(1, ersm.channels, 4, 4), "label": torch.tensor([0]), "index": torch.tensor([0])})


# -- ΔAUC, verdicts and the chance test on hand-made records ------------------------------


def _hand_records(correct, n_tokens=16):
    """Records for rankings (energy MoRF, energy LeRF, random seeds 0 and 1): correctness [n, 4, S] given,
    probability = correctness."""
    correct = np.asarray(correct, dtype=bool)
    n = correct.shape[0]
    rng = np.random.default_rng(0)
    return {
        "index": np.arange(n, dtype=np.int64),
        "label": np.zeros(n, dtype=np.int64),
        "correct": correct,
        "true_prob": correct.astype(np.float32),
        "orders": np.stack([[rng.permutation(n_tokens) for _ in range(correct.shape[1])]
                            for _ in range(n)]).astype(np.int16),
    }


# 3 images, k = 0, 5, 10, 15 of N = 16: curves energy MoRF, energy LeRF, random seed 0, random seed 1
HAND = [
    [[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]],
    [[1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]],
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]],
]


def test_auc_difference_by_hand_on_three_images_and_four_steps(ersm):
    ev = DeletionEvaluator(ersm, DeletionSettings(rankings=("energy", "random"), seeds=(0, 1), steps=4, n_boot=200))
    assert ev.steps.tolist() == [0, 5, 10, 15]
    tables = ev.compute(_hand_records(HAND))
    # equal fraction steps of 5/16 over a range of 15/16: normalized area = (y0/2 + y1 + y2 + y3/2) / 3
    # image 0: energy LeRF 2.5/3, random (mean of seeds: 1, .5, 0, 0) 1/3       -> +0.5
    # image 1: energy LeRF 0.5/3, random (1, 1, 1, .5) 5.5/6                     -> -0.75
    # image 2: energy LeRF 0,     random (0, .5, 0, 0) 1/6                       -> -1/6
    expected = (0.5 - 0.75 - 1 / 6) / 3  # = -2.5/18
    row = tables["deletion_summary.csv"].set_index("ranking").loc["energy"]
    assert row.auc_diff_lerf == pytest.approx(expected, abs=1e-12)
    assert row.prob_auc_diff_lerf == pytest.approx(expected, abs=1e-12)  # probability = correctness here
    assert row.auc_diff_lerf_ci_low <= row.auc_diff_lerf <= row.auc_diff_lerf_ci_high
    assert 0 < row.auc_diff_lerf_p_value <= 1
    # MoRF areas 0.5/3, 0.5/3, 0: ΔAUC (0.5/3 − 1/3 + 0.5/3 − 5.5/6 − 1/6) / 3; SG (2/3 + 0 + 0) / 3
    assert row.auc_diff_morf == pytest.approx((0.5 / 3 - 1 / 3 + 0.5 / 3 - 5.5 / 6 - 1 / 6) / 3, abs=1e-12)
    assert row.sg == pytest.approx(2 / 9, abs=1e-12) and row.prob_sg == pytest.approx(2 / 9, abs=1e-12)
    assert row.auc_lerf - row.auc_morf == pytest.approx(row.sg, abs=1e-12)
    assert row.sg_ci_low <= row.sg <= row.sg_ci_high and 0 <= row.sg_p_value <= 1
    # the same number from the written curves: seed-mean curve, then the area
    curves = tables["deletion_curves.csv"]
    x = np.array([0, 5, 10, 15]) / 16

    def area(ranking, order):
        rows = curves[(curves.ranking == ranking) & (curves.order == order)]
        y = rows.groupby("k")["accuracy"].mean().to_numpy()
        return trapezoid(y, x) / (x[-1] - x[0])  # np.trapezoid exists from numpy 2.0 only

    assert area("energy", "lerf") - area("random", "random") == pytest.approx(expected, abs=1e-12)
    assert area("energy", "lerf") - area("energy", "morf") == pytest.approx(row.sg, abs=1e-9)
    # per-k gaps: energy (2/3, 1/3, 1/3, 0) − random (2/3, 2/3, 1/3, 1/6)
    assert row.max_gap_to_random == 0 and row.max_gap_k == 0
    assert row.min_gap_to_random == pytest.approx(-1 / 3) and row.min_gap_k == 5
    assert row.min_gap_ci_low <= row.min_gap_to_random <= row.min_gap_ci_high
    # k = 0 is an exact tie on every image (interval [0, 0]) and k = 10 an equal accuracy (1/3 each):
    # neither counts as a step above or below random
    tests = tables["deletion_tests.csv"]
    tests = tests[tests.order == "lerf"].set_index("k")
    assert tests.loc[0, "ci_low"] == 0 and tests.loc[0, "ci_high"] == 0
    assert tests.loc[10, "difference"] == 0 and tests.loc[10, "ci_low"] <= 0 <= tests.loc[10, "ci_high"]
    above = int((tests.ci_low > 0).sum())
    below = int((tests.ci_high < 0).sum())
    assert (row.steps_above_random, row.steps_below_random, row.n_steps) == (above, below, 4)
    assert above == 0 and below <= 2
    assert row.verdict == ("supports" if row.sg_ci_low > 0 else "contradicts"
                           if row.sg_ci_high < 0 else "indistinguishable")
    random_row = tables["deletion_summary.csv"].set_index("ranking").loc["random"]
    assert np.isnan(random_row.auc_diff_lerf) and random_row.verdict == "" and pd.isna(random_row.min_gap_k)


def test_a_model_at_chance_makes_every_ranking_not_testable(ersm):
    # 1 of 5 images right before any deletion, 5 classes: chance 0.2 inside the Wilson interval
    good = [[1, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]]  # a large gain, but it says nothing
    correct = [good] + [[[0, 0, 0, 0]] * 4] * 4
    ev = DeletionEvaluator(ersm, DeletionSettings(rankings=("energy", "random"), seeds=(0, 1), steps=4, n_boot=200))
    tables = ev.compute(_hand_records(correct))
    summary = tables["deletion_summary.csv"].set_index("ranking")
    assert summary.loc["energy", "verdict"] == "not_testable"
    out = ev.verdicts(tables)
    assert out["chance_test"]["at_chance"] and out["chance_test"]["accuracy"] == pytest.approx(0.2)
    assert out["chance_test"]["chance"] == pytest.approx(1 / 5) and out["chance_test"]["n_classes"] == 5
    assert out["verdicts"] == {"energy": "not_testable"}
    assert "at chance" in out["sentences"]["chance"] and "cannot be judged" in out["sentences"]["rankings"]["energy"]


def test_verdicts_follow_the_summary_when_above_chance(ersm, images):
    ev = _run(ersm, *images, 32, DeletionSettings(rankings=("energy", "center", "random"), seeds=(0, 1), n_boot=100))
    tables = ev.compute()
    out = ev.verdicts(tables)
    summary = tables["deletion_summary.csv"].set_index("ranking")
    n = len(images[1])
    k0 = int(round(summary.loc["energy", "acc_k0"] * n))
    assert out["chance_test"]["accuracy"] == pytest.approx(k0 / n) and out["chance_test"]["n_images"] == n
    for name in ("energy", "center"):
        assert out["verdicts"][name] == summary.loc[name, "verdict"]
    diag = tables["energy_diagnostics.csv"].set_index("metric")["value"]
    assert out["energy_diagnostics"]["spearman_center"] == diag["spearman_center"]
    assert out["sentences"]["position"] is not None


def test_energy_diagnostics_only_for_models_with_energies(images):
    baseline = _model(variant="baseline")
    ev = _run(baseline, *images, 32, DeletionSettings(seeds=(0,), n_boot=100))
    tables = ev.compute()
    assert "energy_diagnostics.csv" not in tables
    assert not any(k.startswith("diag_") for k in ev.records())
    assert "no Energy-Mask Layer" in ev.verdicts(tables)["energy_diagnostics"]
