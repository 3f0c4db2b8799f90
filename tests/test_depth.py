"""Depth map producer (`modalities.depth`): the whole path against transformers' own pieces.

Models: tiny randomly initialised `DepthAnythingForDepthEstimation` (DINOv2 backbone, 4 layers of
width 32, patch 14: the class and backbone of the Depth Anything V2 checkpoints) and
`DPTForDepthEstimation` (ViT, 4 layers of width 32, patch 16), fixed torch seed, written with
`save_pretrained` (safetensors) plus a preprocessor_config.json in the format of the Hugging Face
checkpoints; small network sizes (70 and 64) keep the file fast. Random heads end in a ReLU that
zeroes most outputs, so each head's last convolution is rescaled once (on a fixed random input) to
give outputs of mean ~1 and std ~0.3: maps with structure, not mostly-flat zeros.

The reference for every map is transformers' own path, independent of the code under test:
`DPTImageProcessorPil.from_pretrained(model_dir)` -> the model -> `post_process_depth_estimation`
(bicubic to H x W) -> per-image min-max in float64. The preprocessed tensors must equal the PIL
processor's exactly; against the torchvision-backend `DPTImageProcessor` (transformers 5's default)
they differ where torch's uint8 bicubic rounds differently from Pillow: at most 2 grey levels on
under 1 % of the values (asserted; the measured numbers are printed).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top,wrong-import-position
from aesthetics_jax.modalities import depth  # pylint: disable=g-import-not-at-top,wrong-import-position
from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top,wrong-import-position

PARITY = 1e-4
KINDS = ("depth_anything", "dpt")
PREPROCESSOR = {
    # as the Depth Anything V2 Hugging Face checkpoints ship it, at a small size
    "depth_anything": {"image_processor_type": "DPTImageProcessor", "do_resize": True,
                       "size": {"height": 70, "width": 70}, "keep_aspect_ratio": True, "ensure_multiple_of": 14,
                       "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                       "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_pad": False},
    # square (transformers' ViT DPT takes square inputs only); bilinear to exercise another filter
    "dpt": {"image_processor_type": "DPTImageProcessor", "do_resize": True, "size": {"height": 64, "width": 64},
            "keep_aspect_ratio": False, "ensure_multiple_of": 32, "resample": 2, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5]},
}


@functools.lru_cache(maxsize=None)
def photo(name: str, height: int = 375, width: int = 500) -> np.ndarray:
    """A real photograph (scikit-image), cropped to height x width (uint8 RGB)."""
    image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[:height, :width, :3])


def _tiny_model(kind: str):
    if kind == "depth_anything":
        backbone = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2,
                                             image_size=56, patch_size=14, out_indices=[1, 2, 3, 4],
                                             reshape_hidden_states=False)
        config = transformers.DepthAnythingConfig(backbone_config=backbone, patch_size=14, reassemble_hidden_size=32,
                                                  neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16,
                                                  head_hidden_size=8)
        return transformers.DepthAnythingForDepthEstimation(config), (70, 98)
    config = transformers.DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                    image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16,
                                    use_auxiliary_head=False)
    return transformers.DPTForDepthEstimation(config), (64, 64)


def _lift_head(model, shape) -> None:
    """Rescales the head's last convolution so that its output (before the final ReLU) has mean 1
    and std 0.3 on a fixed random input of `shape`."""
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    seen = []
    hook = last.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    with torch.no_grad():
        model(pixel_values=torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(1)))
        hook.remove()
        factor = 0.3 / float(seen[0].std())
        last.weight.mul_(factor)
        last.bias.mul_(factor).add_(1.0 - float(seen[0].mean()) * factor)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{kind: (model_dir, model in eval mode)}."""
    out = {}
    for seed, kind in enumerate(KINDS):
        torch.manual_seed(seed)
        model, shape = _tiny_model(kind)
        model.eval()
        _lift_head(model, shape)
        model_dir = str(tmp_path_factory.mktemp(kind))
        model.save_pretrained(model_dir)
        with open(os.path.join(model_dir, depth.PROCESSOR_FILE), "w") as f:
            json.dump(PREPROCESSOR[kind], f)
        out[kind] = (model_dir, model)
    return out


@pytest.fixture(scope="module")
def producers(checkpoints):
    return {kind: modalities.create("depth", model_dir=model_dir) for kind, (model_dir, _) in checkpoints.items()}


def reference_maps(model_dir, model, images) -> np.ndarray:
    """transformers' PIL processor -> model -> post_process_depth_estimation -> min-max (float64)."""
    processor = transformers.DPTImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
    inputs = processor(images=list(images), return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    post = processor.post_process_depth_estimation(outputs, target_sizes=[image.shape[:2] for image in images])
    maps = []
    for result in post:
        d = result["predicted_depth"].numpy().astype(np.float64)
        maps.append((d - d.min()) / (d.max() - d.min()))
    return np.stack(maps)


# -- the module, the geometry and the pieces ---------------------------------------------------------

def test_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "import aesthetics_jax.modalities.depth as d\n"
            "assert d.network_size(375, 500, (518, 518), True, 14) == (392, 518)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr


def test_network_size_matches_transformers():
    from transformers.models.dpt.image_processing_pil_dpt import get_resize_output_image_size

    rng = np.random.default_rng(0)
    cases = [(375, 500), (500, 375), (1, 1), (32, 4000), (518, 518), (391, 517)]
    cases += [tuple(int(v) for v in rng.integers(1, 3000, 2)) for _ in range(300)]
    for height, width in cases:
        for size, keep, multiple in (((518, 518), True, 14), ((384, 384), False, 1), ((70, 90), True, 32)):
            theirs = get_resize_output_image_size(np.zeros((3, height, width)), size, keep, multiple)
            assert depth.network_size(height, width, size, keep, multiple) == (theirs.height, theirs.width)


@pytest.mark.parametrize("kind", KINDS)
def test_preprocessing_matches_transformers_processors(checkpoints, producers, kind):
    model_dir, _ = checkpoints[kind]
    producer = producers[kind]
    pil = transformers.DPTImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
    tv = transformers.DPTImageProcessor.from_pretrained(model_dir, local_files_only=True)
    std = min(PREPROCESSOR[kind]["image_std"])
    big = cv2.resize(photo("coffee", 400, 600), (1200, 800), interpolation=cv2.INTER_LINEAR)
    for image in (photo("astronaut"), photo("coffee", 375, 500)[::-1, ::-1], photo("chelsea", 300, 451),
                  photo("astronaut", 97, 131), big):
        image = np.ascontiguousarray(image)
        ours = depth.preprocess(image[None], producer.preprocessing, producer.network_size(*image.shape[:2]))
        theirs = pil(images=[image], return_tensors="np")["pixel_values"]
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        assert np.array_equal(ours, theirs)
        torchvision_backend = tv(images=[image], return_tensors="pt")["pixel_values"].numpy()
        diff = np.abs(ours - torchvision_backend)
        print(f"\n{kind} {image.shape[:2]} -> {ours.shape[2:]}: vs torchvision backend max "
              f"{diff.max() * std * 255:.2f} grey levels, {100 * (diff > 1e-5).mean():.2f} % of values differ")
        assert diff.max() <= 2 / 255 / std + 1e-5 and (diff > 1e-5).mean() < 0.01


def test_bicubic_resize_matches_torch():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 23, 37)).astype(np.float32)
    for size in ((375, 500), (11, 17), (23, 80), (5, 37), (1, 1)):
        ours = depth.resize_bicubic(x, size)
        theirs = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=size, mode="bicubic",
                                                 align_corners=False)[:, 0].numpy()
        assert ours.shape == (2, *size) and np.abs(ours - theirs).max() < 1e-5


def test_normalisation_polarity_flat_and_non_finite():
    rng = np.random.default_rng(3)
    d = rng.uniform(0.5, 3.0, (2, 8, 9)).astype(np.float32)
    near = depth.normalize_depth(d)
    d64 = d.astype(np.float64)
    expected = (d64 - d64.min(axis=(1, 2), keepdims=True)) / np.ptp(d64, axis=(1, 2), keepdims=True)
    assert np.abs(near - expected).max() < 1e-6
    assert near.reshape(2, -1).min(1).tolist() == [0, 0] and near.reshape(2, -1).max(1).tolist() == [1, 1]
    np.testing.assert_allclose(depth.normalize_depth(d, polarity="far"), 1 - near, atol=1e-6)
    # metric depth (large = far): flipped, so that 1 = nearest still holds
    np.testing.assert_allclose(depth.normalize_depth(d, larger_is_nearer=False), 1 - near, atol=1e-6)
    flat = np.stack([np.full((4, 5), 2.5, np.float32), np.zeros((4, 5), np.float32)])
    flat[0, 0, 0] += 1e-6          # float rounding noise is no depth structure
    for polarity in depth.POLARITIES:
        assert np.array_equal(depth.normalize_depth(flat, polarity=polarity), np.zeros((2, 4, 5), np.float32))
    bad = d.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        depth.normalize_depth(bad)


# -- the producer against transformers' path ----------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_maps_match_transformers_reference(checkpoints, producers, kind):
    model_dir, model = checkpoints[kind]
    producer = producers[kind]
    assert isinstance(producer, modalities.MapProducer) and producer.name == "depth"
    images = np.stack([photo("astronaut"), photo("coffee", 375, 500), photo("astronaut")[:, ::-1]])
    maps = producer(images)
    assert maps.shape == (3, 375, 500) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() == 0 and maps.max() == 1
    assert all(m.std() > 0.05 for m in maps)                 # structured maps, not flat
    ref = reference_maps(model_dir, model, images)
    err = np.abs(maps - ref).max()
    print(f"\n{kind}: max |producer - transformers reference| = {err:.2e}")
    assert err < PARITY
    # a different-sized photo, float pixels
    chelsea = photo("chelsea", 300, 451)
    ours = producer(chelsea[None].astype(np.float32))[0]
    assert np.abs(ours - reference_maps(model_dir, model, [chelsea])[0]).max() < PARITY


def test_batching_mixed_sizes_and_polarity(checkpoints, producers):
    model_dir, _ = checkpoints["depth_anything"]
    producer = producers["depth_anything"]
    images = np.stack([photo("astronaut"), photo("coffee", 375, 500), photo("astronaut")[::-1]])
    one = modalities.create("depth", model_dir=model_dir, batch_size=1)
    three = modalities.create("depth", model_dir=model_dir, batch_size=3)
    by_one, by_three = one(images), three(images)
    assert np.abs(by_one - by_three).max() < 1e-5
    listed = modalities.compute_maps(producer, [images[0], photo("chelsea", 300, 451), images[1],
                                                photo("coffee", 150, 200)], batch_size=2)
    assert [m.shape for m in listed] == [(375, 500), (300, 451), (375, 500), (150, 200)]
    assert np.abs(listed[0] - by_three[0]).max() < 1e-5 and np.abs(listed[2] - by_three[1]).max() < 1e-5
    assert np.abs(listed[1] - producer(photo("chelsea", 300, 451)[None])[0]).max() < 1e-5
    assert all(np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 for m in listed)
    far = modalities.create("depth", model_dir=model_dir, polarity="far")(images)
    assert np.abs(far - (1 - by_three)).max() < 1e-5


def test_metadata_sha256_and_rebuild(checkpoints, producers):
    for kind in KINDS:
        model_dir, _ = checkpoints[kind]
        meta = producers[kind].metadata()
        with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
            assert meta["weights_sha256"] == hashlib.sha256(f.read()).hexdigest()
        assert meta["name"] == "depth" and meta["model_type"] == kind and meta["weights_files"] == ["model.safetensors"]
        assert meta["config_class"] == {"depth_anything": "DepthAnythingConfig", "dpt": "DPTConfig"}[kind]
        assert meta["output"] == "relative inverse depth"
        assert meta["params"]["input_size"] == [PREPROCESSOR[kind]["size"]["height"]] * 2
        assert json.loads(json.dumps(meta)) == meta
        rebuilt = modalities.create(meta["name"], **meta["params"])
        assert rebuilt.metadata() == meta
    image = photo("chelsea", 300, 451)[None]
    assert np.array_equal(rebuilt(image), producers["dpt"](image))
    # input_size overrides the checkpoint's size; without preprocessor_config.json: documented defaults
    bigger = modalities.create("depth", model_dir=checkpoints["depth_anything"][0], input_size=84)
    assert bigger.network_size(375, 500) == (84, 112) and bigger.metadata()["params"]["input_size"] == [84, 84]


def test_defaults_without_preprocessor_config(checkpoints, tmp_path):
    _, model = checkpoints["depth_anything"]
    bare = tmp_path / "bare"
    model.save_pretrained(bare)
    producer = modalities.create("depth", model_dir=str(bare))
    assert producer.input_size == (518, 518) and producer.network_size(375, 500) == (392, 518)
    assert producer.metadata()["preprocessing"]["source"] == "defaults for depth_anything"
    sha256 = hashlib.sha256((bare / "model.safetensors").read_bytes()).hexdigest()
    assert producer.metadata()["weights_sha256"] == sha256
    assert producer.metadata()["preprocessing"]["image_mean"] == list(depth.IMAGENET_MEAN)


def test_metric_checkpoint_keeps_one_is_nearest(checkpoints, tmp_path):
    """A metric Depth Anything head predicts depth (large = far): its map is flipped, 1 = nearest."""
    model_dir, _ = checkpoints["depth_anything"]
    metric_dir = tmp_path / "metric"
    metric_dir.mkdir()
    config = json.loads(open(os.path.join(model_dir, "config.json")).read())
    config.update(depth_estimation_type="metric", max_depth=20)
    (metric_dir / "config.json").write_text(json.dumps(config))
    for name in ("model.safetensors", depth.PROCESSOR_FILE):
        (metric_dir / name).write_bytes(open(os.path.join(model_dir, name), "rb").read())
    producer = modalities.create("depth", model_dir=str(metric_dir))
    assert producer.metadata()["output"] == "metric depth"
    model = transformers.DepthAnythingForDepthEstimation.from_pretrained(str(metric_dir), local_files_only=True).eval()
    images = np.stack([photo("astronaut"), photo("coffee", 375, 500)])
    farthest_is_one = reference_maps(str(metric_dir), model, images)
    assert np.abs(producer(images) - (1 - farthest_is_one)).max() < PARITY


# -- refusals and the skip path ---------------------------------------------------------------------

def test_clear_errors(checkpoints, producers, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        modalities.create("depth", model_dir=str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        modalities.create("depth", model_dir=str(empty))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        modalities.create("depth", model_dir=str(other))
    model_dir, _ = checkpoints["depth_anything"]
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_bytes(open(os.path.join(model_dir, "config.json"), "rb").read())
    with pytest.raises(ValueError, match="holds no weights"):
        modalities.create("depth", model_dir=str(no_weights))
    (no_weights / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot load"):
        modalities.create("depth", model_dir=str(no_weights))
    for bad in ({"polarity": "up"}, {"backend": "jax"}, {"dtype": "int8"}, {"batch_size": 0}, {"min_side": 0},
                {"input_size": 0}, {"input_size": (70, 70, 3)}):
        with pytest.raises(ValueError):
            modalities.create("depth", model_dir=model_dir, **bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            modalities.create("depth", model_dir=model_dir, device="cuda")
    # a ViT DPT takes square inputs only: an aspect-keeping preprocessor is refused when built
    dpt_dir = tmp_path / "dpt_aspect"
    checkpoints["dpt"][1].save_pretrained(dpt_dir)
    (dpt_dir / depth.PROCESSOR_FILE).write_text(json.dumps(dict(PREPROCESSOR["dpt"], keep_aspect_ratio=True)))
    with pytest.raises(ValueError, match="square"):
        modalities.create("depth", model_dir=str(dpt_dir))
    producer = producers["depth_anything"]
    with pytest.raises(ValueError, match="expected images"):
        producer(np.zeros((2, 40, 40), np.uint8))
    with pytest.raises(ValueError, match="min_side=32"):
        producer(np.zeros((1, 1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="patch"):
        producer(np.zeros((1, 32, 4000, 3), np.uint8))


def test_map_files_skip_a_tiny_image(producers, tmp_path):
    producer = producers["depth_anything"]
    folder = tmp_path / "photos"
    folder.mkdir()
    normal = {"a_astronaut": photo("astronaut"), "b_chelsea": photo("chelsea", 300, 451)}
    for name, image in normal.items():
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "c_dot.png"), np.full((1, 1, 3), 128, np.uint8))
    summary = files.compute_map_files(producer, str(folder), str(tmp_path / "maps"), batch_size=4, progress=None)
    assert summary["computed"] == 2 and summary["skipped"] == 1
    skipped = files.read_skipped(tmp_path / "maps")
    assert [(r["id"], r["reason"]) for r in skipped] == [("c_dot", "map_failed")]
    assert "min_side" in skipped[0]["detail"] and "1x1" in skipped[0]["detail"]
    index = files.read_index(tmp_path / "maps")
    assert [r["id"] for r in index] == ["a_astronaut", "b_chelsea"]
    for name, image in normal.items():
        stored = files.read_map_png(tmp_path / "maps" / f"{name}.png")
        assert np.abs(stored - producer(image[None])[0]).max() <= 0.5 / 65535 + 1e-6
    assert files.read_producer(tmp_path / "maps")["producer"] == json.loads(json.dumps(producer.metadata()))
