"""CG-IAA fusion backbone (`models/cgiaa.py`), tiny CLIP towers.

References are independent of the module: the standalone `clip.CLIP` / `CLIPVisionTransformer` /
`CLIPTextTransformer` applied to the same parameters, `clip_tokenizer.tokenize`, and numpy
(softmax of the clamped-scale cosines, one-hot argmax, the concat MLP, layer norm)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util
from scipy.special import erf

from aesthetics_jax import models
from aesthetics_jax.models import cgiaa
from aesthetics_jax.models import clip as clip_lib
from aesthetics_jax.models import clip_tokenizer, preprocessing
from aesthetics_jax.train import optimizer

HEADS = {"emd": {"type": "emd", "num_bins": 10}}
TINY = clip_lib.VARIANTS["tiny"]
# Word-disjoint banks: a token id that occurs in one prompt only identifies that prompt.
PROMPTS = {
    "color": ["red apple", "blue ocean", "green forest", "yellow sun"],
    "dof": ["sharp focus", "blurry background", "soft bokeh"],
}


def _key(seed=0):
    return jax.random.key(seed, impl="rbg")


def _images(seed=0, batch=2):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (batch, 32, 32, 3)), jnp.uint8)


def _create(**kw):
    kw.setdefault("variant", "tiny")
    return models.create("cgiaa", heads=HEADS, **kw)


def _top(params) -> set:
    return set(params["backbone"])


def _paths(tree) -> dict:
    return {"/".join(k): v.shape for k, v in traverse_util.flatten_dict(tree).items()}


def _shapes(model, images=None):
    images = _images() if images is None else images
    return jax.eval_shape(model.init, _key(), images)["params"]


def _random_variables(model, images, seed=0):
    """Random float32 parameters of the right shapes without compiling an init (kernels ~ fan-in
    scaled normal, norms' scales around 1, logit scales log(1/0.07))."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(jax.eval_shape(model.init, _key(), images)).items():
        shape = leaf.shape
        if not shape:
            value = np.full(shape, math.log(1 / 0.07))
        elif path[-1] == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:
            value = rng.normal(0, 0.1, shape)
        else:
            value = rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
        flat[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat)


def _np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def _np_l2(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_layer_norm(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _np_dense(x, p):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def test_parameter_tree_layout_and_shapes():
    images = _images()
    full = _shapes(_create())
    expected = {"base", "fusion"} | {f"{k}_{e}" for e in cgiaa.EXPERTS for k in ("expert", "text", "logit_scale")}
    assert _top(full) == expected
    # Dropped expert: its four groups are gone (fusion loses its two projections).
    dropped = _shapes(_create(experts=["color", "composition", "general"]))
    assert _top(dropped) == expected - {"expert_dof", "text_dof", "logit_scale_dof"}
    fusion_full, fusion_dropped = set(_paths(full["backbone"]["fusion"])), set(_paths(dropped["backbone"]["fusion"]))
    assert fusion_full - fusion_dropped == {f"proj_{k}_dof/{p}" for k in ("attr", "text") for p in ("kernel", "bias")}
    # Fusion off: the base tower only.
    assert _top(_shapes(_create(fusion="none"))) == {"base"}
    assert _top(_shapes(_create(fusion="none", experts=()))) == {"base"}
    concat = _shapes(_create(fusion="concat", experts=("color", "dof"), fusion_dim=16))["backbone"]["fusion"]
    assert _paths(concat) == {"fc1/kernel": (24 * 5, 16), "fc1/bias": (16,), "fc2/kernel": (16, 16), "fc2/bias": (16,),
                              "residual/kernel": (24, 16), "residual/bias": (16,)}
    # Tower layouts are a CLIP checkpoint's: base/ and expert_e/ = visual/, text_e/ = text/.
    ref = jax.eval_shape(clip_lib.CLIP(TINY).init, _key(), jnp.zeros((1, 32, 32, 3)),
                         jnp.zeros((1, TINY.text.context_length), jnp.int32))["params"]
    backbone = full["backbone"]
    for e in cgiaa.EXPERTS:
        assert _paths(backbone[f"expert_{e}"]) == _paths(ref["visual"])
        assert _paths(backbone[f"text_{e}"]) == _paths(ref["text"])
        assert backbone[f"logit_scale_{e}"].shape == ref["logit_scale"].shape == ()
    assert _paths(backbone["base"]) == _paths(ref["visual"])

    # Real init + apply (two experts to keep it small): output shapes and dtypes.
    model = _create(experts=("color", "dof"), prompts=PROMPTS, fusion_dim=16)
    variables = jax.jit(model.init)(_key(), images)
    assert float(variables["params"]["backbone"]["logit_scale_color"]) == pytest.approx(math.log(1 / 0.07))
    out = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, images)
    assert out["emd"]["distribution"].shape == (2, 10)
    assert np.all(np.isfinite(np.asarray(out["emd"]["distribution"])))
    assert out["features"]["pooled"].shape == (2, 16) and out["features"]["feature_map"].shape == (2, 4, 4, 32)
    feats = jax.eval_shape(lambda v: model.apply(v, images, method="features"), variables)
    assert feats["pooled"].dtype == jnp.float32 and feats["tokens"].shape == (2, 17, 32)
    assert {e: w.shape for e, w in feats["expert_weights"].items()} == {"color": (2, 4), "dof": (2, 3)}
    none = _create(fusion="none")
    none_vars = jax.eval_shape(none.init, _key(), images)
    assert jax.eval_shape(lambda v: none.apply(v, images, method="features"), none_vars)["pooled"].shape == (2, 24)


def _clip_params(backbone, tower, text=None, logit_scale=None):
    params = {"visual": backbone[tower]}
    params["text"] = backbone[text] if text else backbone["text_color"]
    params["logit_scale"] = backbone[logit_scale] if logit_scale else jnp.float32(0.0)
    return {"params": params}


def test_branches_equal_standalone_clip_and_numpy_matching():
    images = _images(1)
    x = preprocessing.normalize(images, "clip")
    soft = _create(experts=("color", "dof"), prompts=PROMPTS, fusion="concat", fusion_dim=16)
    variables = _random_variables(soft, images, 1)
    bb = dict(variables["params"]["backbone"])
    bb["logit_scale_color"] = jnp.float32(5.0)  # exp(5) = 148 > 100: clamped
    bb["logit_scale_dof"] = jnp.float32(3.0)  # exp(3) = 20.1: not clamped
    variables = {"params": {**variables["params"], "backbone": bb}}
    clip_model = clip_lib.CLIP(TINY)

    # Eager on both sides (op by op), so the comparisons are not blurred by XLA's fusion choices.
    feats = soft.apply(variables, images, method="features")
    # base branch = the standalone image tower on the same parameters.
    tower = clip_lib.CLIPVisionTransformer(variant="tiny")
    ref = tower.apply({"params": bb["base"]}, x)
    for key in ("feature_map", "tokens"):
        np.testing.assert_allclose(np.asarray(feats[key]), np.asarray(ref[key]), atol=1e-6)
    v_ref = _np_l2(clip_model.apply(_clip_params(bb, "base"), x, method="encode_image"))
    none = _create(fusion="none")
    pooled_none = none.apply({"params": {"backbone": {"base": bb["base"]}, "emd": variables["params"]["emd"]}}, images,
                             method="features")["pooled"]
    np.testing.assert_allclose(np.asarray(pooled_none), v_ref, atol=1e-6)

    ref_scores, ref_banks, ref_feats = {}, {}, {}
    for e, scale in (("color", 100.0), ("dof", math.exp(3.0))):
        p = _clip_params(bb, f"expert_{e}", f"text_{e}", f"logit_scale_{e}")
        f = _np_l2(clip_model.apply(p, x, method="encode_image"))
        tokens = clip_tokenizer.tokenize(PROMPTS[e], context_length=TINY.text.context_length)
        bank = _np_l2(clip_model.apply(p, jnp.asarray(tokens), method="encode_text"))
        # The text bank equals the standalone text tower on the tokenised prompts.
        text_ref = clip_lib.CLIPTextTransformer(TINY.text).apply({"params": bb[f"text_{e}"]}, jnp.asarray(tokens))
        np.testing.assert_allclose(bank, _np_l2(text_ref), atol=1e-6)
        ref_scores[e], ref_banks[e], ref_feats[e] = scale * f @ bank.T, bank, f
        np.testing.assert_allclose(np.asarray(feats["expert_weights"][e]), _np_softmax(ref_scores[e]), atol=1e-5)

    # The concat fusion by hand: fc2(gelu(fc1([v, f..., t...]))) + residual(v).
    fp = bb["fusion"]
    t = {e: _np_softmax(ref_scores[e]) @ ref_banks[e] for e in ("color", "dof")}
    u = np.concatenate([v_ref, ref_feats["color"], ref_feats["dof"], t["color"], t["dof"]], axis=-1)
    h = _np_dense(u, fp["fc1"])
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    want = _np_dense(h, fp["fc2"]) + _np_dense(v_ref, fp["residual"])
    np.testing.assert_allclose(np.asarray(feats["pooled"]), want, atol=1e-5)

    # attribute_matches on the backbone: scores, weights, index.
    matches = soft.backbone.apply({"params": bb}, x, method="attribute_matches")
    for e in ("color", "dof"):
        np.testing.assert_allclose(np.asarray(matches[e]["scores"]), ref_scores[e], rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(matches[e]["index"]), ref_scores[e].argmax(-1))
    assert soft.backbone.prompt_bank == {e: tuple(PROMPTS[e]) for e in ("color", "dof")}

    # textual='hard': one-hot of the numpy argmax, and t_e is the selected critique's embedding.
    hard = _create(experts=("color", "dof"), prompts=PROMPTS, fusion="concat", fusion_dim=16, textual="hard")
    hard_feats = hard.apply(variables, images, method="features")
    t_hard = {}
    for e in ("color", "dof"):
        idx = ref_scores[e].argmax(-1)
        np.testing.assert_array_equal(np.asarray(hard_feats["expert_weights"][e]),
                                      np.eye(len(PROMPTS[e]), dtype=np.float32)[idx])
        t_hard[e] = ref_banks[e][idx]
    u = np.concatenate([v_ref, ref_feats["color"], ref_feats["dof"], t_hard["color"], t_hard["dof"]], axis=-1)
    h = _np_dense(u, fp["fc1"])
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    np.testing.assert_allclose(np.asarray(hard_feats["pooled"]),
                               _np_dense(h, fp["fc2"]) + _np_dense(v_ref, fp["residual"]), atol=1e-5)

    # expert_tokens='text' (the demo's fusion): u = [v, t...]; fc1 is the kernel without the f_e rows.
    text_only = _create(experts=("color", "dof"), prompts=PROMPTS, fusion="concat", fusion_dim=16, expert_tokens="text")
    d = v_ref.shape[-1]
    kernel = np.asarray(fp["fc1"]["kernel"])
    text_fp = {**fp, "fc1": {"kernel": jnp.asarray(np.concatenate([kernel[:d], kernel[3 * d:]])),
                             "bias": fp["fc1"]["bias"]}}
    text_vars = {"params": {**variables["params"], "backbone": {**bb, "fusion": text_fp}}}
    assert _paths(text_vars["params"]) == _paths(_shapes(text_only, images))
    h = _np_dense(np.concatenate([v_ref, t["color"], t["dof"]], axis=-1), text_fp["fc1"])
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    np.testing.assert_allclose(np.asarray(text_only.apply(text_vars, images, method="features")["pooled"]),
                               _np_dense(h, fp["fc2"]) + _np_dense(v_ref, fp["residual"]), atol=1e-5)


def test_expert_dropout_drops_whole_expert_tokens_in_training_only():
    """With expert_dropout, each training example's pooled feature is the concat fusion with each
    expert's (f_e, t_e) either kept or zeroed; every kept/dropped pattern occurs, at about the rate;
    evaluation (train=False) keeps everything."""
    batch = 48
    images = _images(5, batch)
    x = preprocessing.normalize(images, "clip")
    kw = dict(experts=("color", "dof"), prompts=PROMPTS, fusion="concat", fusion_dim=16)
    plain, dropping = _create(**kw), _create(expert_dropout=0.5, **kw)
    variables = _random_variables(plain, images, 5)
    bb = variables["params"]["backbone"]
    fp = bb["fusion"]
    clip_model = clip_lib.CLIP(TINY)
    v = _np_l2(clip_model.apply(_clip_params(bb, "base"), x, method="encode_image"))
    f, t = {}, {}
    for e in ("color", "dof"):
        p = _clip_params(bb, f"expert_{e}", f"text_{e}", f"logit_scale_{e}")
        f[e] = _np_l2(clip_model.apply(p, x, method="encode_image"))
        tokens = clip_tokenizer.tokenize(PROMPTS[e], context_length=TINY.text.context_length)
        bank = _np_l2(clip_model.apply(p, jnp.asarray(tokens), method="encode_text"))
        t[e] = _np_softmax(np.exp(math.log(1 / 0.07)) * f[e] @ bank.T) @ bank

    def fused(keep_color, keep_dof):
        u = np.concatenate([v, f["color"] * keep_color, f["dof"] * keep_dof, t["color"] * keep_color,
                            t["dof"] * keep_dof], axis=-1)
        h = _np_dense(u, fp["fc1"])
        return _np_dense(0.5 * h * (1 + erf(h / np.sqrt(2))), fp["fc2"]) + _np_dense(v, fp["residual"])

    patterns = {(a, b): fused(a, b) for a in (0, 1) for b in (0, 1)}
    np.testing.assert_allclose(np.asarray(dropping.apply(variables, images, method="features")["pooled"]),
                               patterns[1, 1], atol=1e-5)  # evaluation: nothing dropped
    pooled = np.asarray(dropping.apply(variables, images, train=True, rngs={"dropout": _key(7)},
                                       method="features")["pooled"])
    seen = []
    for i in range(batch):
        match = [k for k, want in patterns.items() if np.allclose(pooled[i], want[i], atol=1e-5)]
        assert len(match) == 1, f"example {i} matches {match}"
        seen.append(match[0])
    assert set(seen) == set(patterns)
    kept = np.asarray(seen).mean()  # each expert kept with probability 0.5
    assert 0.3 < kept < 0.7
    with pytest.raises(ValueError, match="expert_dropout"):
        _shapes(_create(experts=("color",), expert_dropout=1.0))


def test_attention_fusion_against_standalone_block():
    """pooled = LN(block(stack[P_v v, P_f f_e..., P_t t_e...])[:, 0]) with clip.ResidualAttentionBlock."""
    images = _images(2)
    model = _create(experts=("color",), prompts=PROMPTS, fusion_dim=16, fusion_heads=4)
    variables = _random_variables(model, images, 2)
    bb = variables["params"]["backbone"]
    fp = bb["fusion"]
    assert set(fp) == {"proj_visual", "proj_attr_color", "proj_text_color", "resblocks_0", "ln_post"}
    feats = model.apply(variables, images, method="features")
    x = preprocessing.normalize(images, "clip")
    clip_model = clip_lib.CLIP(TINY)
    p = _clip_params(bb, "expert_color", "text_color", "logit_scale_color")
    v = _np_l2(clip_model.apply(_clip_params(bb, "base"), x, method="encode_image"))
    f = _np_l2(clip_model.apply(p, x, method="encode_image"))
    tokens = clip_tokenizer.tokenize(PROMPTS["color"], context_length=TINY.text.context_length)
    bank = _np_l2(clip_model.apply(p, jnp.asarray(tokens), method="encode_text"))
    w = _np_softmax(np.exp(math.log(1 / 0.07)) * f @ bank.T)
    z = np.stack([_np_dense(v, fp["proj_visual"]), _np_dense(f, fp["proj_attr_color"]),
                  _np_dense(w @ bank, fp["proj_text_color"])], axis=1)
    block = clip_lib.ResidualAttentionBlock(16, 4, 4.0, "gelu")
    z = np.asarray(block.apply({"params": fp["resblocks_0"]}, jnp.asarray(z, jnp.float32)), np.float64)
    np.testing.assert_allclose(np.asarray(feats["pooled"]), _np_layer_norm(z[:, 0], fp["ln_post"]), atol=1e-5)
    # Two fusion layers: a second block appears.
    assert set(_shapes(_create(experts=("color",), fusion_layers=2))["backbone"]["fusion"]) >= {"resblocks_1"}
    # expert_tokens='text': the experts contribute t_e only, z = [P_v v, P_t t_e] (same parameters otherwise).
    text_only = _create(experts=("color",), prompts=PROMPTS, fusion_dim=16, fusion_heads=4, expert_tokens="text")
    text_fp = {k: v for k, v in fp.items() if k != "proj_attr_color"}
    text_vars = {"params": {**variables["params"], "backbone": {**bb, "fusion": text_fp}}}
    assert set(_shapes(text_only)["backbone"]["fusion"]) == set(text_fp)
    z = np.stack([_np_dense(v, fp["proj_visual"]), _np_dense(w @ bank, fp["proj_text_color"])], axis=1)
    z = np.asarray(block.apply({"params": fp["resblocks_0"]}, jnp.asarray(z, jnp.float32)), np.float64)
    np.testing.assert_allclose(np.asarray(text_only.apply(text_vars, images, method="features")["pooled"]),
                               _np_layer_norm(z[:, 0], fp["ln_post"]), atol=1e-5)
    with pytest.raises(ValueError, match="expert_tokens"):
        _shapes(_create(experts=("color",), expert_tokens="image"))


def test_gradients_hard_vs_soft_and_dropping_an_expert():
    images = _images(3)
    tokens = clip_tokenizer.tokenize(PROMPTS["color"], context_length=TINY.text.context_length)
    kw = dict(experts=("color",), prompts=PROMPTS, fusion="concat", fusion_dim=16)
    soft, hard = _create(**kw), _create(textual="hard", **kw)
    variables = _random_variables(soft, images, 3)

    def grads(model):
        def loss(params):
            return jnp.sum(model.apply({"params": params}, images)["emd"]["mean"])
        return jax.jit(jax.grad(loss))(variables["params"])["backbone"]

    selected = np.asarray(soft.apply(variables, images, method="features")["expert_weights"]["color"]).argmax(-1)
    specials = {0, clip_tokenizer.get_tokenizer().sot_token, clip_tokenizer.get_tokenizer().eot_token}
    ids = [set(row.tolist()) - specials for row in tokens]
    chosen = set().union(*(ids[k] for k in set(selected.tolist())))
    others = set().union(*(ids[k] for k in range(len(ids)) if k not in set(selected.tolist()))) - chosen
    assert chosen and others

    g_hard, g_soft = grads(hard), grads(soft)
    # hard: nothing flows through the matching weights -> the logit scale gets exactly zero ...
    assert float(g_hard["logit_scale_color"]) == 0.0
    assert float(g_soft["logit_scale_color"]) != 0.0
    # ... and only the selected critiques' tokens get a gradient (through the value t_e).
    emb_hard = np.asarray(g_hard["text_color"]["token_embedding"]["embedding"])
    emb_soft = np.asarray(g_soft["text_color"]["token_embedding"]["embedding"])
    assert all(np.all(emb_hard[i] == 0) for i in others)
    assert all(np.any(emb_hard[i] != 0) for i in chosen)
    assert all(np.any(emb_soft[i] != 0) for i in others | chosen)
    # The expert image tower still trains through its own token f_e in both modes.
    for g in (g_hard, g_soft):
        assert float(jnp.abs(g["expert_color"]["conv1"]["kernel"]).sum()) > 0
        assert float(jnp.abs(g["base"]["conv1"]["kernel"]).sum()) > 0

    # Dropping an expert: its params disappear and the output changes (same remaining params).
    two = _create(experts=("color", "dof"), prompts=PROMPTS, fusion_dim=16)
    v2 = _random_variables(two, images, 4)
    one = _create(experts=("color",), prompts=PROMPTS, fusion_dim=16)
    bb = dict(v2["params"]["backbone"])
    for k in ("expert_dof", "text_dof", "logit_scale_dof"):
        bb.pop(k)
    bb["fusion"] = {k: v for k, v in bb["fusion"].items() if not k.endswith("_dof")}
    v1 = {"params": {**v2["params"], "backbone": bb}}
    assert _paths(v1["params"]) == _paths(_shapes(one, images))
    out2 = np.asarray(two.apply(v2, images, method="features")["pooled"])
    out1 = np.asarray(one.apply(v1, images, method="features")["pooled"])
    assert out1.shape == out2.shape and np.abs(out1 - out2).max() > 1e-3


def test_jit_bfloat16_and_config_inputs():
    images = _images(5)
    prompts = ml_collections.ConfigDict({"color": ["red apple", "blue ocean"]})
    model = _create(experts=["color"], prompts=prompts, fusion_dim=16)
    assert model.backbone.prompts == (("color", ("red apple", "blue ocean")),) and model.backbone.experts == ("color",)
    hash(model)  # hashable, so usable as a static jit argument
    assert model.backbone == _create(experts=("color",), prompts=[("color", ["red apple", "blue ocean"])],
                                     fusion_dim=16).backbone
    variables = _random_variables(model, images, 5)
    f32 = jax.jit(model.apply)(variables, images)["emd"]["mean"]
    bf16_model = _create(experts=["color"], prompts=prompts, fusion_dim=16, dtype="bfloat16")
    assert {x.dtype for x in jax.tree.leaves(_shapes(bf16_model, images))} == {jnp.dtype(jnp.float32)}
    feats = jax.eval_shape(lambda v: bf16_model.apply(v, images, method="features"), variables)
    assert feats["pooled"].dtype == jnp.float32 and feats["feature_map"].dtype == jnp.bfloat16
    apply = jax.jit(lambda m, v, x: m.apply(v, x), static_argnums=0)  # the module as a static argument
    bf16 = apply(bf16_model, variables, images)["emd"]["mean"]
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(bf16), np.asarray(f32), atol=0.1)


def test_freeze_regex_selects_towers_only():
    params = _shapes(_create(experts=("color", "dof"), prompts=PROMPTS))

    def frozen(regex):
        return set(optimizer.frozen_paths(params, [(regex, None), (".*", {})])) if regex else set()

    paths = optimizer.param_paths(params)
    towers = {p for p in paths if p.split("/")[1] in {f"{k}_{e}" for e in ("color", "dof")
                                                      for k in ("expert", "text", "logit_scale")}}
    base = {p for p in paths if p.startswith("backbone/base/")}
    assert frozen(cgiaa.freeze_regex(("color", "dof"))) == towers | base
    assert frozen(cgiaa.freeze_regex(["color", "dof"], train_base=True)) == towers
    scales = {"backbone/logit_scale_color", "backbone/logit_scale_dof"}
    assert frozen(cgiaa.freeze_regex(("color", "dof"), train_logit_scales=True)) == (towers - scales) | base
    # Last block of the 2-layer tiny base trains with ln_post and proj.
    last = frozen(cgiaa.freeze_regex(("color", "dof"), train_base_blocks=1, variant="tiny"))
    trained_base = {p for p in base if p.split("/")[2] in ("resblocks_1", "ln_post", "proj")}
    assert trained_base and last == towers | (base - trained_base)
    assert cgiaa.freeze_regex((), train_base=True) is None
    assert not any(p.startswith(("backbone/fusion/", "emd/")) for p in frozen(cgiaa.freeze_regex(("color", "dof"))))
    with pytest.raises(ValueError, match="train_base_blocks must be"):
        cgiaa.freeze_regex(("color",), train_base_blocks=3, variant="tiny")


def test_bad_options_are_clear_errors():
    images = _images()

    def init(**kw):
        return _shapes(_create(**kw), images)

    with pytest.raises(ValueError, match="use fusion='none'"):
        init(experts=())
    with pytest.raises(ValueError, match="textual must be"):
        init(experts=("color",), textual="argmax")
    with pytest.raises(ValueError, match="fusion must be"):
        init(experts=("color",), fusion="sum")
    with pytest.raises(ValueError, match="has no prompts"):
        init(experts=("texture",))
    with pytest.raises(ValueError, match="empty prompt bank"):
        init(experts=("color",), prompts={"color": []})
    with pytest.raises(ValueError, match="does not fit the text context"):
        init(experts=("color",), prompts={"color": ["word " * 20]})
    with pytest.raises(ValueError, match="must be an identifier"):
        init(experts=("depth-of-field",), prompts={"depth-of-field": ["x"]})
    with pytest.raises(ValueError, match="embed_dim"):
        init(experts=("color",), text_embed_dim=16)
    with pytest.raises(ValueError, match="not divisible by fusion_heads"):
        init(experts=("color",), fusion_dim=18)
    with pytest.raises(ValueError, match="list of strings"):
        _create(prompts={"color": "vivid colors"})
    with pytest.raises(ValueError, match="unknown backbone options"):
        _create(expert=("color",))
    # Text overrides make another tower size expressible.
    shapes = init(experts=("color",), text_width=16, text_layers=1, text_num_heads=2, text_context_length=12)
    assert shapes["backbone"]["text_color"]["positional_embedding"].shape == (12, 16)
    assert "resblocks_1" not in shapes["backbone"]["text_color"]
