"""CLIP-IQA (`zeroshot.clip_iqa`) against torch references built on a tiny random transformers
`CLIPModel`: image / text features from `get_image_features` / `get_text_features`, L2-normalised,
logits = logit_scale.exp() * img @ txt.T, softmax over each (positive, negative) pair -> positive
probability; ours must match within 1e-4. Position-embedding interpolation is checked against
transformers' `interpolate_pos_encoding=True` (bicubic) and `torch.nn.functional.interpolate`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
skimage_data = pytest.importorskip("skimage.data")
skimage_transform = pytest.importorskip("skimage.transform")

from aesthetics_jax.models import clip_tokenizer  # noqa: E402
from aesthetics_jax.models import preprocessing  # noqa: E402
from aesthetics_jax.zeroshot import clip_iqa  # noqa: E402

CONTEXT = 16
SIZE = 32  # tiny model: 32 px, patch 8 -> 4x4 grid
LOGIT_SCALE = 8.0  # exp scale; small enough that pair probabilities of a random model are not all 0 / 1


def _hf_model(seed: int = 0):
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CONTEXT, hidden_act="quick_gelu"),
        vision_config=dict(image_size=SIZE, patch_size=8, hidden_size=48, intermediate_size=96,
                           num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
        projection_dim=24,
    )
    torch.manual_seed(seed)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # HF's init is nearly trivial: perturb everything
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(float(np.log(LOGIT_SCALE)))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def _photos(h: int, w: int) -> np.ndarray:
    imgs = [skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee(), skimage_data.rocket()]
    out = [skimage_transform.resize(im, (h, w), anti_aliasing=True, preserve_range=True) for im in imgs]
    return np.clip(np.round(np.stack(out)), 0, 255).astype(np.uint8)


def _torch_scores(model, images, pairs, interpolate=False):
    pixels = np.asarray(preprocessing.normalize(images, "clip"))
    pv = torch.from_numpy(pixels.copy()).permute(0, 3, 1, 2).contiguous()
    texts = [t for pair in pairs for t in pair]
    ids = torch.from_numpy(clip_tokenizer.tokenize(texts, context_length=CONTEXT).astype(np.int64))
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pv, interpolate_pos_encoding=interpolate)
        txt = model.get_text_features(input_ids=ids)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * img @ txt.T
        probs = logits.reshape(len(images), -1, 2).softmax(-1)[..., 0]
    return probs.numpy()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from aesthetics_jax.convert import clip as clip_convert
    from aesthetics_jax.models import clip as clip_model

    model = _hf_model()
    out = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(out)
    params, config = clip_convert.load_clip_state_dict(out / "model.safetensors", "hf")
    return model, clip_model.CLIP(config), params, out


@pytest.mark.parametrize("prompts", ["default", "ava_attributes", "pyiqa"])
def test_scores_match_torch(tiny, prompts):
    model, net, params, _ = tiny
    images = _photos(SIZE, SIZE)
    iqa = clip_iqa.ClipIQA(net, params, prompts)
    pair_scores, score = iqa(images)
    pairs = clip_iqa.PROMPT_SETS[prompts]
    ref = _torch_scores(model, images, pairs)
    assert pair_scores.shape == (4, len(pairs)) and score.shape == (4,)
    np.testing.assert_allclose(pair_scores, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(score, ref.mean(1), atol=1e-4, rtol=0)
    assert ((ref > 0.01) & (ref < 0.99)).any(), "degenerate reference: probabilities saturated"
    assert abs(iqa.logit_scale - LOGIT_SCALE) < 1e-4
    assert np.allclose(np.linalg.norm(np.asarray(iqa.text_embeds), axis=1), 1.0, atol=1e-5)


def test_custom_pairs_and_pair_order(tiny):
    """A custom list of pairs; swapping a pair's prompts gives 1 - score."""
    _, net, params, _ = tiny
    images = _photos(SIZE, SIZE)
    a, _ = clip_iqa.ClipIQA(net, params, [("Sharp photo.", "Blurry photo.")])(images)
    b, _ = clip_iqa.ClipIQA(net, params, [("Blurry photo.", "Sharp photo.")])(images)
    np.testing.assert_allclose(a, 1.0 - b, atol=1e-6)


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear"])
@pytest.mark.parametrize("n_in,n_out", [(4, 7), (4, 6), (7, 16), (14, 24), (6, 4), (16, 7), (5, 5)])
def test_interpolation_matrix_matches_torch(kernel, n_in, n_out):
    """The separable 2-D resampling equals torch F.interpolate(align_corners=False) (up and down)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_in, n_in, 3)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=(n_out, n_in + 1),
                                          mode=kernel, align_corners=False)[0].permute(1, 2, 0).numpy()
    pos = np.concatenate([rng.normal(size=(1, 3)).astype(np.float32), x.reshape(-1, 3)])
    ours = np.asarray(clip_iqa.resample_pos_embed(pos, n_in, (n_out, n_in + 1), kernel))
    np.testing.assert_array_equal(ours[0], pos[0])  # class position kept
    np.testing.assert_allclose(ours[1:].reshape(n_out, n_in + 1, 3), ref, atol=1e-5, rtol=0)
    if n_in == n_out:
        np.testing.assert_allclose(clip_iqa.interpolation_matrix(n_in, n_out, kernel), np.eye(n_in), atol=1e-12)


def test_interpolate_at_model_size_equals_none(tiny):
    _, net, params, _ = tiny
    images = _photos(SIZE, SIZE)
    a, _ = clip_iqa.ClipIQA(net, params, "pyiqa")(images)
    b, _ = clip_iqa.ClipIQA(net, params, "pyiqa", pos_embed="interpolate")(images)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("h,w", [(48, 48), (40, 64)])
def test_interpolate_larger_matches_transformers(tiny, h, w):
    """transformers' `interpolate_pos_encoding=True` (bicubic, align_corners=False) is the reference."""
    model, net, params, _ = tiny
    images = _photos(h, w)
    ours, _ = clip_iqa.ClipIQA(net, params, "ava_attributes", pos_embed="interpolate")(images)
    ref = _torch_scores(model, images, clip_iqa.PROMPT_SETS["ava_attributes"], interpolate=True)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # a different kernel gives different scores (the option is live)
    bil, _ = clip_iqa.ClipIQA(net, params, "ava_attributes", pos_embed="interpolate", kernel="bilinear")(images)
    assert np.abs(bil - ours).max() > 1e-6


def test_errors(tiny):
    _, net, params, _ = tiny
    with pytest.raises(ValueError, match="unknown CLIP-IQA prompt set 'nope'.*default, ava_attributes, pyiqa"):
        clip_iqa.ClipIQA(net, params, "nope")
    with pytest.raises(ValueError, match="prompt pair 0"):
        clip_iqa.ClipIQA(net, params, [("only one",)])
    with pytest.raises(ValueError, match="pos_embed"):
        clip_iqa.ClipIQA(net, params, pos_embed="rope")
    with pytest.raises(ValueError, match="kernel"):
        clip_iqa.ClipIQA(net, params, pos_embed="interpolate", kernel="lanczos")
    iqa = clip_iqa.ClipIQA(net, params)
    with pytest.raises(ValueError, match=r"needs 32x32 inputs .*got 48x40.*pos_embed='interpolate'"):
        iqa(np.zeros((1, 48, 40, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        iqa(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="no convert.json"):
        clip_iqa.ClipIQA.from_dir(tiny[3])


def test_from_conversion_dir(tiny, tmp_path):
    """`aesthetics-jax convert --from hf-clip ... --arch clip --out DIR` -> ClipIQA.from_dir(DIR)."""
    from aesthetics_jax.convert import commands

    model, _, _, src = tiny
    out = tmp_path / "conv"
    assert commands.main(["--from", "hf-clip", str(src / "model.safetensors"), "--arch", "clip",
                          "--out", str(out)]) == 0
    images = _photos(SIZE, SIZE)
    scores, score = clip_iqa.ClipIQA.from_dir(out, "default")(images)
    ref = _torch_scores(model, images, clip_iqa.PROMPT_SETS["default"])
    np.testing.assert_allclose(scores, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(score, ref[:, 0], atol=1e-4, rtol=0)


def test_vlap_initialises_from_the_conversion_dir(tiny, tmp_path):
    """`init_from.workdir = DIR` (a converted CLIP) fills a ContrastiveCLIP's params strictly, and the
    loaded model embeds images as transformers' CLIPModel does."""
    import jax
    import optax
    import torch
    from flax import traverse_util

    from aesthetics_jax.convert import clip as clip_convert
    from aesthetics_jax.convert import commands
    from aesthetics_jax.models import clip as clip_model
    from aesthetics_jax.train import steps, trainer

    model, _, _, src = tiny
    out = tmp_path / "conv"
    assert commands.main(["--from", "hf-clip", str(src / "model.safetensors"), "--arch", "clip",
                          "--out", str(out)]) == 0
    config, params = clip_convert.load_conversion(out)
    vlap = clip_model.ContrastiveCLIP(config)
    state = steps.create_state(vlap, optax.sgd(0.1), jax.random.key(0), (SIZE, SIZE, 3))
    state = trainer._merge_init(state, {"workdir": str(out), "step": -1, "dont_load": []})
    flat = traverse_util.flatten_dict(state.params, sep="/")
    for key, value in traverse_util.flatten_dict(params, sep="/").items():
        np.testing.assert_array_equal(flat[key], value)
    images = _photos(SIZE, SIZE)
    ours = np.asarray(vlap.apply({"params": state.params}, images)["clip"]["image_embed"])
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    pixels = (torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 255 - mean) / std
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=pixels)
        ref = getattr(ref, "pooler_output", ref)
        ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)
