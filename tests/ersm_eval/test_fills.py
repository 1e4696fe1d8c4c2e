"""The one fill of input-level deletion and occlusion, against hand computations."""

import numpy as np
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_eval.fills import FILL_KINDS, blur_kernel_size, fill, token_blur_sigma
from ersm_eval.occluders import BLUR_SIGMA_FRACTION, fill_values


def _hand_blur(image: np.ndarray, sigma: float, kernel: int) -> np.ndarray:
    """Separable Gaussian (truncated to ``kernel``, normalized) with reflect padding, one channel [H, W]."""
    r = kernel // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-x**2 / (2 * sigma**2))
    k /= k.sum()
    padded = np.pad(image.astype(np.float64), r, mode="reflect")
    rows = np.stack([np.convolve(row, k, mode="valid") for row in padded])  # [H + 2r, W]
    return np.stack([np.convolve(col, k, mode="valid") for col in rows.T]).T


def test_mean_and_black_by_hand():
    images = torch.randn(2, 3, 4, 4)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    assert torch.equal(fill(images, "mean", mean, std), torch.zeros_like(images))
    black = fill(images, "black", mean, std)
    # (0 - 0.5)/0.25 = -2, (0 - 0.4)/0.2 = -2, (0 - 0.3)/0.1 = -3
    torch.testing.assert_close(black[1, :, 2, 3], torch.tensor([-2.0, -2.0, -3.0]))
    assert black.shape == images.shape


def test_noise_is_one_stream_per_seed_and_dataset_index():
    images = torch.zeros(3, 3, 5, 5)
    out = fill(images, "noise", (0,) * 3, (1,) * 3, indices=[7, 8, 9], seed=2)
    for b, index in enumerate([7, 8, 9]):
        hand = np.random.default_rng([2, index]).standard_normal((3, 5, 5)).astype(np.float32)
        assert torch.equal(out[b], torch.from_numpy(hand))
    # the same image alone, or in another batch, gets the same noise
    assert torch.equal(fill(images[:1], "noise", (0,) * 3, (1,) * 3, indices=[8], seed=2)[0], out[1])
    with pytest.raises(ValueError, match="one dataset index per image"):
        fill(images, "noise", (0,) * 3, (1,) * 3, indices=[1], seed=0)


def test_blur_is_a_gaussian_with_the_sigma_given():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    sigma = 1.0
    kernel = blur_kernel_size(sigma, 12, 12)
    assert kernel == 7  # 2·⌈3σ⌉ + 1
    out = fill(images, "blur", (0,) * 3, (1,) * 3, sigma=sigma)
    np.testing.assert_allclose(out[1, 2].numpy(), _hand_blur(images[1, 2].numpy(), sigma, kernel), atol=1e-6)
    # kernel capped below twice the side (reflect padding), sigma floored at 0.5
    assert blur_kernel_size(5.0, 6, 8) == 5
    torch.testing.assert_close(fill(images, "blur", (0,) * 3, (1,) * 3, sigma=0.1),
                               fill(images, "blur", (0,) * 3, (1,) * 3, sigma=0.5))
    with pytest.raises(ValueError, match="sigma"):
        fill(images, "blur", (0,) * 3, (1,) * 3)


def test_blur_does_not_depend_on_the_batch():
    torch.manual_seed(1)
    images = torch.randn(11, 3, 16, 16)
    whole = fill(images, "blur", (0,) * 3, (1,) * 3, sigma=1.5)
    assert torch.equal(whole[9:10], fill(images[9:10], "blur", (0,) * 3, (1,) * 3, sigma=1.5))


def test_each_protocol_passes_its_own_sigma():
    torch.manual_seed(2)
    images = torch.randn(2, 3, 50, 50, dtype=torch.float64)
    # occlusion: 4% of the side (50 px -> sigma 2); deletion: half a token's side (50 px / 5 tokens -> 5)
    torch.testing.assert_close(fill_values("blur", images, (0,) * 3, (1,) * 3, 0, [0, 1]),
                               fill(images, "blur", (0,) * 3, (1,) * 3, sigma=2.0))
    assert BLUR_SIGMA_FRACTION * 50 == 2.0
    assert token_blur_sigma((50, 50), (5, 5)) == 5.0
    # gray is the mean fill, noise the same stream in both protocols
    assert torch.equal(fill_values("gray", images, (0.5,) * 3, (0.2,) * 3, 0, [0, 1]), torch.zeros_like(images))
    torch.testing.assert_close(fill_values("noise", images, (0,) * 3, (1,) * 3, 3, [4, 5]),
                               fill(images, "noise", (0,) * 3, (1,) * 3, indices=[4, 5], seed=3))


def test_unknown_fill():
    assert FILL_KINDS == ("mean", "black", "noise", "blur")
    with pytest.raises(ConfigError, match="mean, black, noise, blur"):
        fill(torch.zeros(1, 3, 4, 4), "pink", (0,) * 3, (1,) * 3)
