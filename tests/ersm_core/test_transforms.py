"""Input transforms: timm's data config, the authors' crop, the resize filter, masks and boxes alike."""

import numpy as np
import pytest
import torch
from PIL import Image

from ersm_core.data import AUTHORS_CROP_PCT, ImageTransform, backbone_data_config, model_transform, resolve_data_config
from ersm_core.data.transforms import COMPACT_CNN_DATA, parse_crop_pct
from ersm_core.errors import ConfigError, DatasetError
from ersm_core.model import ModelConfig, build_model


def test_compact_cnn_keeps_its_defaults():
    cfg = backbone_data_config("compact_cnn")
    assert (cfg.image_size, cfg.crop_pct, cfg.interpolation) == (128, 1.0, "bilinear")
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.25, 0.25, 0.25)
    # and a compact_cnn model's transform is the same as before this option existed
    t = model_transform(build_model(ModelConfig(num_classes=2, image_size=32)))
    assert (t.image_size, t.crop_pct, t.interpolation, t.mean, t.std) == (32, 1.0, "bilinear", (0.5,) * 3, (0.25,) * 3)


def test_timm_backbone_data_config_is_timms_own():
    from timm import create_model
    from timm.data import resolve_model_data_config

    expected = resolve_model_data_config(create_model("tf_efficientnet_lite0", pretrained=False))
    cfg = backbone_data_config("tf_efficientnet_lite0")
    assert cfg.image_size == expected["input_size"][-1] == 224
    assert cfg.crop_pct == expected["crop_pct"] == 0.875
    assert cfg.interpolation == expected["interpolation"] == "bicubic"
    assert cfg.mean == tuple(expected["mean"]) and cfg.std == tuple(expected["std"])
    assert "timm pretrained config of tf_efficientnet_lite0" in cfg.source


def test_overrides_and_the_authors_convention():
    cfg = resolve_data_config("compact_cnn", image_size=64, crop_pct="authors", interpolation="bicubic")
    assert (cfg.image_size, cfg.interpolation) == (64, "bicubic")
    assert cfg.crop_pct == pytest.approx(1 / 1.14) == AUTHORS_CROP_PCT
    assert "overridden: image_size, crop_pct, interpolation" in cfg.source and "'authors'" in cfg.source
    assert resolve_data_config("compact_cnn") == COMPACT_CNN_DATA
    assert parse_crop_pct("0.9") == 0.9 and parse_crop_pct("none") == 1.0 and parse_crop_pct(None) is None
    with pytest.raises(ConfigError, match="--crop-pct must be in"):
        parse_crop_pct(1.5)
    with pytest.raises(ConfigError, match="authors"):
        parse_crop_pct("paper")
    with pytest.raises(ConfigError, match="unknown --interpolation 'cubic'"):
        resolve_data_config("compact_cnn", interpolation="cubic")
    with pytest.raises(ConfigError, match="unknown backbone 'no_such_net'"):
        backbone_data_config("no_such_net")


def test_authors_crop_geometry_by_hand():
    # S = 100: resize the shorter side to round(114) px, then centre-crop 100
    t = ImageTransform(image_size=100, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=AUTHORS_CROP_PCT)
    scale, new_w, new_h, left, top = t.geometry(200, 150)
    assert new_h == 114 and new_w == 152 and scale == pytest.approx(114 / 150)
    assert (left, top) == (26, 7)
    assert t.describe()["resize_shorter_side_to"] == 114


def test_interpolation_changes_pixels_and_masks_stay_nearest():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    mask = Image.fromarray((rng.random((40, 60)) > 0.5).astype(np.uint8) * 255)
    box = (6.0, 4.0, 30.0, 20.0)
    common = dict(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.8)
    bil = ImageTransform(**common, interpolation="bilinear").pixels(image, mask, box)
    bic = ImageTransform(**common, interpolation="bicubic").pixels(image, mask, box)
    assert not torch.equal(bil[0], bic[0])
    # the mask and box do not depend on the image filter; the mask stays binary (nearest)
    assert torch.equal(bil[1], bic[1]) and set(bil[1].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(bil[2], bic[2])
    # box by hand: shorter side 40 -> 20 (scale 0.5), width 60 -> 30, crop 16 at (7, 2)
    assert bil[2].tolist() == [0.0, 0.0, 8.0, 8.0]
    # the same bicubic resize as PIL's own, then the crop
    expected = np.asarray(image.resize((30, 20), Image.BICUBIC))[2:18, 7:23]
    assert np.array_equal(bic[0].permute(1, 2, 0).numpy(), expected)


def test_bad_transform_settings_raise():
    with pytest.raises(DatasetError, match="unknown interpolation"):
        ImageTransform(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="cubic")
    with pytest.raises(DatasetError, match="crop_pct must be in"):
        ImageTransform(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.0)


def test_model_config_interpolation_reaches_the_transform():
    model = build_model(ModelConfig(num_classes=2, image_size=32, interpolation="bicubic", crop_pct=0.5))
    t = model_transform(model, train=True)
    assert (t.interpolation, t.crop_pct, t.hflip) == ("bicubic", 0.5, True)
    assert t.describe()["interpolation"] == "bicubic" and t.describe()["mask_interpolation"] == "nearest"
