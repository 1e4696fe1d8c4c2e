"""Noisy linear imputation (the ROAD fill), fill_deleted and input-level insertion, against hand computations."""

import numpy as np
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_eval.fills import NLI_NOISE, NLI_WEIGHTS, fill, fill_deleted, insertion_images, noisy_linear_imputation


def _image(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_weights_are_roads():
    assert sum(NLI_WEIGHTS.values()) == pytest.approx(1.0)
    assert {w for (dr, dc), w in NLI_WEIGHTS.items() if dr == 0 or dc == 0} == {1 / 6}
    assert {w for (dr, dc), w in NLI_WEIGHTS.items() if dr != 0 and dc != 0} == {1 / 12}
    assert NLI_NOISE == 0.01


def test_centre_of_a_3x3_image_is_the_weighted_mean_of_its_neighbours():
    image = _image(1, 2, 3, 3)
    deleted = torch.zeros(1, 3, 3, dtype=torch.bool)
    deleted[0, 1, 1] = True
    out = noisy_linear_imputation(image, deleted, indices=[0], noise_std=0.0)
    x = image[0]
    direct = x[:, 0, 1] + x[:, 1, 0] + x[:, 1, 2] + x[:, 2, 1]
    diagonal = x[:, 0, 0] + x[:, 0, 2] + x[:, 2, 0] + x[:, 2, 2]
    torch.testing.assert_close(out[0, :, 1, 1], direct / 6 + diagonal / 12)  # the weights sum to 1 inside
    assert torch.equal(out[0][~deleted[0].expand(2, 3, 3)], image[0][~deleted[0].expand(2, 3, 3)])


def test_corner_renormalizes_and_neighbouring_unknowns_solve_together():
    image = _image(1, 1, 3, 3, seed=1)
    deleted = torch.zeros(1, 3, 3, dtype=torch.bool)
    deleted[0, 0, 0] = True
    out = noisy_linear_imputation(image, deleted, indices=[0], noise_std=0.0)
    x = image[0, 0]
    # neighbours inside: right and below (1/6 each), diagonal (1/12); weights 5/12 in all
    torch.testing.assert_close(out[0, 0, 0, 0], (2 * x[0, 1] + 2 * x[1, 0] + x[1, 1]) / 5)
    # one row [a, ?, ?, b]: x1 = (a + x2)/2, x2 = (x1 + b)/2 → linear interpolation
    row = torch.tensor([[[[1.0, 9.0, 9.0, 4.0]]]], dtype=torch.float64)
    gap = torch.tensor([[[False, True, True, False]]])
    out = noisy_linear_imputation(row, gap, indices=[0], noise_std=0.0)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))


def test_noise_is_the_noise_fills_stream_on_deleted_pixels_only():
    images = _image(3, 3, 6, 5, seed=2, dtype=torch.float32)
    deleted = _image(3, 6, 5, seed=3) > 0.6
    out = noisy_linear_imputation(images, deleted, indices=[4, 7, 9], seed=2)
    clean = noisy_linear_imputation(images, deleted, indices=[4, 7, 9], seed=2, noise_std=0.0)
    kept = ~deleted[:, None].expand_as(images)
    assert torch.equal(out[kept], images[kept])  # kept pixels unchanged, bit for bit
    for b, index in enumerate([4, 7, 9]):
        noise = np.random.default_rng([2, index]).standard_normal((3, 6, 5))
        hand = (clean[b].double() + 0.01 * torch.from_numpy(noise)).float()
        torch.testing.assert_close(out[b][deleted[b].expand(3, 6, 5)], hand[deleted[b].expand(3, 6, 5)],
                                   atol=1e-6, rtol=0)
    # deterministic by (seed, dataset index), whatever the batch
    assert torch.equal(noisy_linear_imputation(images[1:2], deleted[1:2], indices=[7], seed=2)[0], out[1])
    assert torch.equal(noisy_linear_imputation(images, deleted, indices=[4, 7, 9], seed=2), out)
    other = noisy_linear_imputation(images, deleted, indices=[4, 7, 9], seed=3)
    assert not torch.equal(other[deleted[:, None].expand_as(images)], out[deleted[:, None].expand_as(images)])


def test_everything_deleted_gives_the_mean_plus_noise():
    images = _image(1, 3, 4, 4, seed=4)
    out = noisy_linear_imputation(images, torch.ones(1, 4, 4, dtype=torch.bool), indices=[5], seed=1)
    noise = np.random.default_rng([1, 5]).standard_normal((3, 4, 4)).astype(np.float32)
    torch.testing.assert_close(out[0], 0.01 * torch.from_numpy(noise).double())
    nothing = noisy_linear_imputation(images, torch.zeros(1, 4, 4, dtype=torch.bool), indices=[5])
    assert torch.equal(nothing, images)


def test_fill_deleted_is_one_entry_for_every_fill():
    images = _image(2, 3, 4, 4, seed=5, dtype=torch.float32)
    deleted = torch.zeros(2, 1, 4, 4, dtype=torch.bool)  # [B, 1, H, W] accepted
    deleted[:, :, :2] = True
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    for kind in ("mean", "black", "noise", "blur"):
        out = fill_deleted(images, deleted, kind, mean, std, indices=[0, 1], seed=3, sigma=1.0)
        expected = torch.where(deleted, fill(images, kind, mean, std, [0, 1], 3, 1.0), images)
        assert torch.equal(out, expected), kind
    torch.testing.assert_close(fill_deleted(images, deleted, "nli", mean, std, indices=[0, 1], seed=3),
                               noisy_linear_imputation(images, deleted[:, 0], [0, 1], 3))
    with pytest.raises(ConfigError, match="fill_deleted"):
        fill(images, "nli", mean, std)
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        fill_deleted(images, deleted[:, 0, :3], "nli", mean, std, indices=[0, 1])
    with pytest.raises(ValueError, match="one dataset index per image"):
        noisy_linear_imputation(images, deleted, indices=[0])


def test_insertion_puts_tokens_back_on_the_blurred_image_in_order():
    image = _image(1, 2, 4, 4, seed=6)
    blurred = fill(image, "blur", (0, 0), (1, 1), sigma=1.0)
    order = torch.tensor([[3, 0, 1, 2]])  # 2×2 grid of 2×2-pixel tokens: bottom-right first
    out = insertion_images(image, order, [0, 1, 2, 4], (2, 2), sigma=1.0)
    assert out.shape == (1, 4, 2, 4, 4)
    assert torch.equal(out[0, 0], blurred[0])  # k = 0: nothing inserted
    assert torch.equal(out[0, 3], image[0])  # k = N: the image itself
    one = blurred[0].clone()
    one[:, 2:, 2:] = image[0, :, 2:, 2:]
    assert torch.equal(out[0, 1], one)
    one[:, :2, :2] = image[0, :, :2, :2]  # then token 0, top-left
    assert torch.equal(out[0, 2], one)
    # the default sigma is half a token's side: 1 pixel here
    assert torch.equal(insertion_images(image, order, [1], (2, 2)), out[:, 1:2])
    with pytest.raises(ValueError, match="0..4"):
        insertion_images(image, order, [5], (2, 2))
