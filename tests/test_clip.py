"""CLIP model and tokenizer: structure against transformers, padding/mask equivalence, zero-shot
scoring against numpy, the `clip` backbone through models.create, and tokenizer parity with
OpenAI's own `simple_tokenizer.py` and transformers' `CLIPTokenizer` on the same vocabulary."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax import models
from aesthetics_jax.models import clip as clip_model
from aesthetics_jax.models import clip_tokenizer

STRINGS = [
    "a photo of a cat",
    "A PHOTO   of\ta  DOG.",
    "don't, won't; it's they're we've I'm you'll he'd",
    "café naïve résumé Ünïcödé",
    "HDR sunset!!! 1234567 #nofilter @user",
    "emoji 😀🎉 and 中文字符 and русский текст",
    "hyphen-ated under_score slash/path back\\slash",
    "",
    "   leading and trailing   ",
    "aesthetic quality: 9/10 (excellent), shallow depth-of-field, bokeh",
    "<|startoftext|>special tokens<|endoftext|> inside",
    "x" * 50,
]


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("variant", ["vit_b32", "vit_b16", "vit_l14"])
def test_variant_parameter_count_matches_transformers(variant):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = clip_model.VARIANTS[variant]
    v, t = cfg.vision, cfg.text
    hf_cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=t.width, intermediate_size=4 * t.width, num_hidden_layers=t.layers,
                         num_attention_heads=t.num_heads),
        vision_config=dict(image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.width,
                           intermediate_size=4 * v.width, num_hidden_layers=v.layers, num_attention_heads=v.num_heads),
        projection_dim=v.embed_dim,
    )
    with torch.device("meta"):
        hf = transformers.CLIPModel(hf_cfg)
    hf_vision = sum(p.numel() for n, p in hf.named_parameters() if n.startswith(("vision_model.", "visual_projection")))
    hf_total = sum(p.numel() for p in hf.parameters())
    shapes = jax.eval_shape(
        clip_model.CLIP(cfg).init, jax.random.PRNGKey(0),
        jnp.zeros((1, v.image_size, v.image_size, 3)), jnp.zeros((1, t.context_length), jnp.int32),
    )["params"]
    assert _count(shapes["visual"]) == hf_vision
    assert _count(shapes) == hf_total
    # ViT-B/16 image tower: 86.19 M parameters (OpenAI's released model).
    if variant == "vit_b16":
        assert _count(shapes["visual"]) == 86_192_640


def _tiny(**kw):
    return models.create("clip", variant="tiny", heads={"emd": {"type": "emd"}}, **kw)


def test_backbone_outputs_and_pad_tokens_equivalence():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), jnp.uint8)
    model = _tiny()
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
    paths = set("/".join(p) for p in traverse_util.flatten_dict(variables["params"]["backbone"]))
    assert {"conv1/kernel", "class_embedding", "positional_embedding", "ln_pre/scale", "ln_post/bias", "proj",
            "resblocks_1/attn/in_proj/kernel", "resblocks_1/c_fc/kernel"} <= paths
    features = jax.jit(lambda m, v, x: m.apply(v, x, method="features"), static_argnums=0)
    feats = features(model, variables, images)
    assert feats["pooled"].shape == (2, 24) and feats["pooled"].dtype == jnp.float32
    assert feats["feature_map"].shape == (2, 4, 4, 32)
    assert feats["tokens"].shape == (2, 17, 32)
    # Padding 17 tokens to 24 (masked keys) changes nothing.
    padded = features(_tiny(pad_tokens_to=8), variables, images)
    for key in ("pooled", "feature_map", "tokens"):
        np.testing.assert_allclose(np.asarray(padded[key]), np.asarray(feats[key]), atol=1e-5)
    # pool_tokens is the tokens -> pooled map (for Grad-CAM on the token grid).
    backbone = model.backbone
    pooled = backbone.apply({"params": variables["params"]["backbone"]}, feats["tokens"], method="pool_tokens")
    np.testing.assert_allclose(np.asarray(pooled), np.asarray(feats["pooled"]), atol=1e-6)
    pre = features(_tiny(pooled="pre_projection"), variables, images)["pooled"]
    np.testing.assert_allclose(np.asarray(pre) @ np.asarray(variables["params"]["backbone"]["proj"]),
                               np.asarray(feats["pooled"]), atol=1e-5)
    assert models.default_preprocess("clip") == "clip"


def test_backbone_trains_and_runs_bf16():
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)), jnp.uint8)
    model = _tiny()
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)

    def loss(params):
        return jnp.mean(model.apply({"params": params}, images, train=True)["emd"]["mean"])

    grads = jax.jit(jax.grad(loss))(variables["params"])
    assert float(jnp.abs(grads["backbone"]["resblocks_0"]["attn"]["in_proj"]["kernel"]).sum()) > 0
    f32 = jax.jit(model.apply)(variables, images)["emd"]["mean"]
    bf16 = jax.jit(_tiny(dtype="bfloat16").apply)(variables, images)["emd"]["mean"]
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(bf16), np.asarray(f32), atol=0.1)


def test_activations_and_bad_options():
    x = jnp.linspace(-4, 4, 9)
    np.testing.assert_allclose(clip_model.activation("quick_gelu", x), x / (1 + np.exp(-1.702 * np.asarray(x))),
                               rtol=1e-6)
    from scipy.special import erf

    xs = np.asarray(x)
    np.testing.assert_allclose(clip_model.activation("gelu", x), 0.5 * xs * (1 + erf(xs / np.sqrt(2))), rtol=1e-6,
                               atol=1e-7)
    images = jnp.zeros((1, 32, 32, 3), jnp.uint8)
    with pytest.raises(ValueError, match="pooled must be"):
        _tiny(pooled="cls").init(jax.random.PRNGKey(0), images)
    with pytest.raises(ValueError, match="unknown CLIP variant"):
        models.create("clip", variant="vit_h14", heads={"emd": {"type": "emd"}}).init(jax.random.PRNGKey(0), images)
    with pytest.raises(ValueError, match="expects 32x32"):
        _tiny().init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.uint8))


def test_conv_stem_matches_torch():
    """stem='conv' (stem_width 8, stem_depth 2: per stage a stride-2 conv then a residual stride-1
    conv, GELU, channels 8 -> 16 -> 32, 1x1 projection) against the same weights in torch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tower = clip_model.CLIPVisionTransformer(variant="tiny", image_size=32, patch_size=8, width=32, stem="conv",
                                             stem_width=8, stem_depth=2)
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype(np.float32)
    params = tower.init(jax.random.key(0), x)["params"]
    assert [params[f"stem_{i}"]["kernel"].shape[-1] for i in range(3)] == [8, 16, 32]
    tokens = np.asarray(tower.apply({"params": params}, x, method="embed"))

    def conv(h, p, stride):
        w = torch.tensor(np.asarray(p["kernel"])).permute(3, 2, 0, 1)  # HWIO -> OIHW
        return F.conv2d(h, w, torch.tensor(np.asarray(p["bias"])), stride=stride, padding=1)

    h = torch.from_numpy(x).permute(0, 3, 1, 2)
    for i in range(3):
        h = F.gelu(conv(h, params[f"stem_{i}"], 2))
        h = h + F.gelu(conv(h, params[f"stem_{i}_1"], 1))
    proj = torch.tensor(np.asarray(params["stem_proj"]["kernel"]))[0, 0]  # [in, out]
    h = h.permute(0, 2, 3, 1).reshape(2, -1, 32) @ proj
    cls = torch.tensor(np.asarray(params["class_embedding"])).expand(2, 1, 32)
    h = torch.cat([cls, h], 1) + torch.tensor(np.asarray(params["positional_embedding"]))
    ln = params["ln_pre"]
    h = F.layer_norm(h, (32,), torch.tensor(np.asarray(ln["scale"])), torch.tensor(np.asarray(ln["bias"])), 1e-5)
    np.testing.assert_allclose(tokens, h.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="stem_depth"):
        clip_model.CLIPVisionTransformer(variant="tiny", stem="conv", stem_depth=0).init(jax.random.key(0), x)


def test_text_tower_causal_and_eot_pooling():
    cfg = clip_model.VARIANTS["tiny"]
    model = clip_model.CLIP(cfg)
    tok = clip_tokenizer.tokenize(["a photo of a cat", "a photo"], context_length=cfg.text.context_length)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.asarray(tok))
    encode = jax.jit(lambda v, t: model.apply(v, t, method="encode_text"))
    emb = encode(variables, jnp.asarray(tok))
    # Tokens after EOT (padding) cannot change the embedding (causal mask + EOT pooling).
    noisy = tok.copy()
    for row in range(len(tok)):
        eot = int(np.argmax(tok[row] == clip_tokenizer.get_tokenizer().eot_token))
        noisy[row, eot + 1:] = 320
    emb2 = encode(variables, jnp.asarray(noisy))
    np.testing.assert_allclose(np.asarray(emb2), np.asarray(emb), atol=1e-6)
    # A token before EOT does change it.
    changed = tok.copy()
    changed[0, 1] = 1125
    assert np.abs(np.asarray(encode(variables, jnp.asarray(changed)))[0] - emb[0]).max() > 1e-4


def test_zero_shot_scores_match_numpy():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    logit_scale = np.log(100.0)
    expected = 100.0 * (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
        txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    got = clip_model.zero_shot_scores(jnp.asarray(img), jnp.asarray(txt), logit_scale)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # Identical embeddings score exp(logit_scale); scores are scale-invariant in the embeddings.
    same = clip_model.zero_shot_scores(jnp.asarray(img[:1] * 7), jnp.asarray(img[:1]), logit_scale)
    np.testing.assert_allclose(np.asarray(same), [[100.0]], rtol=1e-5)


# --- tokenizer


def _openai_simple_tokenizer():
    """OpenAI's own simple_tokenizer.py from the openai-clip package, loaded without its torch-
    importing package __init__."""
    path = clip_tokenizer.default_bpe_path().parent / "simple_tokenizer.py"
    if not path.is_file():
        pytest.skip("openai-clip's simple_tokenizer.py not installed")
    spec = importlib.util.spec_from_file_location("openai_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(str(clip_tokenizer.default_bpe_path()))


def test_tokenizer_matches_openai_simple_tokenizer():
    ours = clip_tokenizer.get_tokenizer()
    ref = _openai_simple_tokenizer()
    for text in STRINGS + ["&amp; html &lt;entities&gt;", "mojibake: cafÃ©"]:
        assert ours.encode(text) == ref.encode(text), text
        assert ours.decode(ours.encode(text)) == ref.decode(ref.encode(text))


def test_tokenizer_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = clip_tokenizer.get_tokenizer()
    ours.write_hf_files(tmp_path)
    hf = transformers.CLIPTokenizer.from_pretrained(str(tmp_path))
    # transformers' fast CLIPTokenizer normalises with NFC instead of ftfy + html.unescape; on
    # text that needs neither (all of STRINGS), the ids must agree exactly.
    for text in STRINGS:
        expected = hf(text)["input_ids"]
        got = ours.tokenize(text, context_length=77)[0]
        assert list(got[: len(expected)]) == expected, text
        assert not got[len(expected):].any()


def test_tokenize_padding_truncation():
    tok = clip_tokenizer.get_tokenizer()
    ids = clip_tokenizer.tokenize(["a photo of a cat", "a"], context_length=10)
    assert ids.dtype == np.int32 and ids.shape == (2, 10)
    np.testing.assert_array_equal(ids[0], [49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0])
    assert tok.vocab_size == 49408
    long = "word " * 100
    with pytest.raises(ValueError, match="longer than context_length"):
        tok.tokenize(long)
    truncated = tok.tokenize(long, truncate=True)[0]
    assert truncated[0] == 49406 and truncated[-1] == 49407 and (truncated != 0).all()


def test_tokenizer_imports_no_torch():
    code = ("import sys; from aesthetics_jax.models import clip_tokenizer as t; t.tokenize('x'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
