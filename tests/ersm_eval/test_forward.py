"""Fixed-size chunks: what the function sees, what comes back."""

import pytest
import torch

from ersm_eval.forward import fixed_chunks


def test_every_call_gets_exactly_one_chunk_and_padding_is_dropped():
    seen = []

    def fn(x):
        seen.append(x[:, 0].tolist())
        return {"double": 2 * x, "grid": (4, 4)}

    images = torch.arange(5.0)[:, None]
    out = fixed_chunks(fn, images, chunk=3)
    assert seen == [[0.0, 1.0, 2.0], [3.0, 4.0, 4.0]]  # the last chunk padded with copies of its last image
    torch.testing.assert_close(out["double"], 2 * images)
    assert out["grid"] == (4, 4)
    single = fixed_chunks(lambda x: x + 1, images[:1], chunk=4)
    torch.testing.assert_close(single, torch.tensor([[1.0]]))


def test_channels_last_inputs_stay_channels_last():
    layouts = []
    x = torch.rand(3, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    fixed_chunks(lambda c: layouts.append(c.is_contiguous(memory_format=torch.channels_last)) or c, x, chunk=2)
    assert layouts == [True, True]


def test_bad_chunks():
    with pytest.raises(ValueError, match="at least 1"):
        fixed_chunks(lambda x: x, torch.ones(2, 1), chunk=0)
    with pytest.raises(ValueError, match="at least one image"):
        fixed_chunks(lambda x: x, torch.ones(0, 1))
