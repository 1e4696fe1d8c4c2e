"""Input transforms: timm's data config, the authors' crop, the resize filter, masks and boxes alike."""

import numpy as np
import pytest
import torch
from PIL import Image

from ersm_core.data import AUTHORS_CROP_PCT, ImageTransform, backbone_data_config, model_transform, resolve_data_config
from ersm_core.data.transforms import COMPACT_CNN_DATA, ResizeCrop, parse_crop_pct, resize_crop_geometry, resize_target
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
    assert "timm pretrained config of tf_efficientnet_lite0" in cfg.source and "crop_mode" not in cfg.source


def test_a_timm_crop_mode_other_than_center_is_named_in_the_source():
    import timm

    if not timm.is_model("coat_lite_medium_384"):
        pytest.skip("this timm has no coat_lite_medium_384")
    cfg = backbone_data_config("coat_lite_medium_384")  # timm's config asks for crop_mode 'squash'
    assert "crop_mode 'squash' is applied as a centre crop" in cfg.source


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
    # S = 100: the resize target is floor(100 / (1/1.14)) = floor(113.99999999999999) = 113 (timm's floor),
    # the longer side int(113 · 200 / 150) = 150, then the centre crop at round(50 / 2) = 25 and
    # round(13 / 2) = round(6.5) = 6 (Python rounds halves to even, as torchvision's centre crop does)
    t = ImageTransform(image_size=100, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=AUTHORS_CROP_PCT)
    scale, new_w, new_h, left, top = t.geometry(200, 150)
    assert new_h == 113 and new_w == 150 and scale == pytest.approx(113 / 150)
    assert (left, top) == (25, 6)
    assert t.describe()["resize_shorter_side_to"] == 113


def test_resize_crop_geometry_by_hand():
    # resnet50's 224 px at crop 0.95: floor(235.79) = 235, not round's 236
    assert resize_target(224, 0.95) == 235 and resize_target(224, 0.875) == 256 and resize_target(128, 1.0) == 128
    # centre, 300x200: shorter side 235, longer int(235 · 1.5) = 352; offsets round(128 / 2) = 64, round(11 / 2) = 6
    assert resize_crop_geometry(300, 200, 224, 0.95) == ResizeCrop(352, 235, 64, 6)
    # centre, 200x333 (portrait): longer int(235 · 333 / 200) = int(391.275) = 391; offsets 6, round(167 / 2) = 84
    assert resize_crop_geometry(200, 333, 224, 0.95) == ResizeCrop(235, 391, 6, 84)
    # squash: both sides 235, whatever the aspect
    assert resize_crop_geometry(300, 200, 224, 0.95, "squash") == ResizeCrop(235, 235, 6, 6)
    # border: the longer side 300 -> 235 (ratio 300 / 235), the shorter round(200 · 235 / 300) = round(156.67) = 157,
    # padded to 224 with (224 − 157) // 2 = 33 rows above; the longer side cropped at round(11 / 2) = 6
    assert resize_crop_geometry(300, 200, 224, 0.95, "border") == ResizeCrop(235, 157, 6, -33)
    # an image already at the output size is left alone
    assert resize_crop_geometry(128, 128, 128, 1.0) == ResizeCrop(128, 128, 0, 0)
    with pytest.raises(ConfigError, match="unknown crop mode 'letterbox'"):
        resize_crop_geometry(300, 200, 224, 0.95, "letterbox")


def _noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Uniform noise: any one-pixel shift or other filter changes most pixels by far more than 1/255."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _apply(geometry: ResizeCrop, image: Image.Image, size: int, interpolation: str, fill: tuple[int, ...]) -> np.ndarray:
    """The obvious application of a ResizeCrop: PIL resize, paste onto a filled canvas at (−left, −top)."""
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[interpolation]
    resized = image if image.size == (geometry.width, geometry.height) else image.resize((geometry.width, geometry.height), resample)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(resized, (-geometry.left, -geometry.top))
    return np.asarray(canvas)


def _timm_pixels(transform, image: Image.Image, mean, std) -> np.ndarray:
    """timm's eval transform output with its normalization undone, as [H, W, 3] in [0, 1]."""
    x = transform(image)
    return (x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("backbone", ["resnet50", "tf_efficientnet_lite0"])
@pytest.mark.parametrize("size", [(300, 200), (200, 333), (224, 224), (513, 97)])
def test_eval_inputs_are_timms_own(backbone, size):
    """Our eval transform of a timm backbone gives timm's validation inputs (create_transform, is_training=False)."""
    from timm import create_model
    from timm.data import create_transform, resolve_data_config as timm_resolve

    timm_cfg = timm_resolve(model=create_model(backbone, pretrained=False))
    expected = _timm_pixels(create_transform(**timm_cfg, is_training=False), _noise_image(*size), timm_cfg["mean"], timm_cfg["std"])
    cfg = backbone_data_config(backbone)
    ours_t = ImageTransform(cfg.image_size, cfg.mean, cfg.std, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation)
    ours, _, _ = ours_t.pixels(_noise_image(*size))
    ours = ours.permute(1, 2, 0).numpy() / 255.0
    assert ours.shape == expected.shape == (224, 224, 3)
    assert np.abs(ours - expected).max() <= 1 / 255
    # the check can fail: the same pixels one column to the side are far off
    assert np.abs(ours[:, 1:] - expected[:, :-1]).max() > 0.5


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize("size", [(300, 200), (200, 333), (40, 40)])
def test_resize_crop_geometry_matches_timm_in_every_crop_mode(crop_mode, size):
    from timm.data import create_transform

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for image_size, crop_pct in ((224, 0.95), (64, 0.875), (37, 0.9)):
        transform = create_transform(image_size, is_training=False, crop_pct=crop_pct, crop_mode=crop_mode,
                                     interpolation="bicubic", mean=mean, std=std)
        image = _noise_image(*size, seed=image_size)
        expected = _timm_pixels(transform, image, mean, std)
        geometry = resize_crop_geometry(*size, image_size, crop_pct, crop_mode)
        ours = _apply(geometry, image, image_size, "bicubic", tuple(round(255 * v) for v in mean)) / 255.0
        assert np.abs(ours - expected).max() <= 1 / 255, (image_size, crop_pct, geometry)


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
