"""Vision-language pretraining pieces: InfoNCE, the contrastive CLIP, the global-batch step, retrieval.

References are independent: torch's cross-entropy for the loss, numpy for embeddings and
similarities, brute-force enumeration of rankings for the chance recall, hand-built rankings for
R@k.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import traverse_util

from aesthetics_jax import losses
from aesthetics_jax.evaluate import retrieval
from aesthetics_jax.models import clip, preprocessing
from aesthetics_jax.train import optimizer, sharding, steps


def _torch_infonce(logits, keep=None):
    import torch
    import torch.nn.functional as F

    x = torch.tensor(np.asarray(logits, np.float64))
    if keep is not None:
        idx = torch.tensor(np.flatnonzero(keep))
        x = x[idx][:, idx]
    labels = torch.arange(x.shape[0])
    return float((F.cross_entropy(x, labels) + F.cross_entropy(x.T, labels)) / 2)


def test_infonce_matches_torch_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 6)) * 5
    assert float(losses.clip_infonce(logits)) == pytest.approx(_torch_infonce(logits), rel=1e-5)
    keep = np.array([1, 1, 0, 1, 1, 0], np.float32)  # padding pairs leave rows *and* columns
    assert float(losses.clip_infonce(logits, weights=keep)) == pytest.approx(_torch_infonce(logits, keep > 0), rel=1e-5)
    with pytest.raises(ValueError, match="square"):
        losses.clip_infonce(np.zeros((3, 4)))


def test_identical_captions_are_shared_positives_like_torch_soft_targets():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 5)) * 4
    ids = np.array([[1, 7, 0], [2, 8, 0], [1, 7, 0], [3, 9, 0], [2, 8, 0]])  # captions 0=2, 1=4
    same = (ids[:, None] == ids[None]).all(-1).astype(np.float64)
    target = torch.tensor(same / same.sum(1, keepdims=True))
    x = torch.tensor(logits)
    expected = float((F.cross_entropy(x, target) + F.cross_entropy(x.T, target)) / 2)
    assert float(losses.clip_infonce(logits, caption_ids=ids)) == pytest.approx(expected, rel=1e-5)
    unique = np.arange(15).reshape(5, 3)  # all distinct: the plain loss
    assert float(losses.clip_infonce(logits, caption_ids=unique)) == pytest.approx(_torch_infonce(logits), rel=1e-5)
    config = {"nce": {"type": "clip_infonce", "output": "clip.logits", "target": "tokens"}}
    total, _ = losses.total_loss({"clip": {"logits": logits}}, {"tokens": ids}, config)
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_infonce_is_a_targetless_term_of_total_loss():
    logits = np.eye(4) * 3.0
    config = {"nce": {"type": "clip_infonce", "output": "clip.logits", "weight": 2.0}}
    total, terms = losses.total_loss({"clip": {"logits": logits}}, {}, config)
    assert float(total) == pytest.approx(2 * _torch_infonce(logits), rel=1e-5)
    assert set(terms) == {"nce"}


def _tiny(**text):
    return clip.create_contrastive("tiny", text=text or None)


def test_contrastive_clip_has_clip_params_and_clamped_scale():
    model = _tiny()
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    params = model.init(jax.random.key(0), images)["params"]
    reference = clip.CLIP(clip.VARIANTS["tiny"]).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 16), jnp.int32))["params"]
    shapes = lambda p: {k: v.shape for k, v in traverse_util.flatten_dict(p, sep="/").items()}  # noqa: E731
    assert shapes(params) == shapes(reference)  # loads converted CLIPs and loads into CLIP unchanged

    tokens = np.zeros((3, 16), np.int32)
    tokens[:, 0], tokens[:, 1:4], tokens[:, 4] = 49406, [[320, 1125, 539], [320, 1929, 2345], [7, 8, 9]], 49407
    params = dict(params, logit_scale=jnp.asarray(math.log(250.0)))  # above OpenAI's clamp
    out = model.apply({"params": params}, images, tokens)["clip"]
    # Independent: the plain CLIP towers, normalised and scored in numpy.
    base = clip.CLIP(clip.VARIANTS["tiny"])
    img = np.asarray(base.apply({"params": params}, preprocessing.normalize(images, "clip"), method="encode_image"), np.float64)
    txt = np.asarray(base.apply({"params": params}, tokens, method="encode_text"), np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    assert float(out["logit_scale"]) == pytest.approx(100.0, rel=1e-6)
    np.testing.assert_allclose(out["logits"], 100.0 * img @ txt.T, atol=2e-4)
    # Evaluation (no tokens): only per-image outputs, so the trainer's predictor can gather them.
    assert set(model.apply({"params": params}, images)["clip"]) == {"image_embed"}


def test_train_step_contrasts_the_global_batch_across_devices():
    """Sharded over 8 devices, the step's loss is InfoNCE over all 16 pairs (not 8 local losses)."""
    model = _tiny()
    tx = optax.sgd(0.1)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    tokens = np.zeros((16, 16), np.int32)
    tokens[:, 0], tokens[:, 1:5], tokens[:, 5] = 49406, rng.integers(300, 5000, (16, 4)), 49407
    state = steps.create_state(model, tx, jax.random.key(0), (32, 32, 3))
    loss_config = {"nce": {"type": "clip_infonce", "output": "clip.logits"}}
    mesh = sharding.make_mesh()
    step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, loss_config=loss_config),
                   in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh), sharding.replicated(mesh)))
    batch = sharding.put_batch({"image": images, "tokens": tokens}, mesh)
    _, metrics = step(state, batch, jax.random.key(1))

    out = model.apply({"params": state.params}, images, tokens)["clip"]
    expected = _torch_infonce(np.asarray(out["logits"]))
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
    per_device = np.mean([_torch_infonce(np.asarray(out["logits"])[i:i + 2, i:i + 2]) for i in range(0, 16, 2)])
    assert abs(expected - per_device) > 1e-3  # the check can tell the two apart


def test_frozen_gradients_are_not_computed():
    """A frozen text tower (schedule lr None): grad_norm counts the trainable gradients only, and
    the compiled step no longer computes the frozen tower's weight gradients (fewer flops)."""
    model = _tiny()
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    tokens = np.zeros((8, 16), np.int32)
    tokens[:, 0], tokens[:, 1:5], tokens[:, 5] = 49406, rng.integers(300, 5000, (8, 4)), 49407
    schedule = [("^text/", None), (".*", dict(decay_type="constant"))]
    config = ml_collections.ConfigDict(dict(lr=0.1, optimizer="adam", optimizer_kwargs={}, schedule=schedule,
                                            grad_clip_norm=1.0))
    state = steps.create_state(model, optax.sgd(0.1), jax.random.key(0), (32, 32, 3))
    tx, _ = optimizer.make_optimizer(config, state.params, total_steps=10)
    state = state.replace(opt_state=tx.init(state.params))
    frozen = frozenset(optimizer.frozen_paths(state.params, schedule))
    assert frozen and all(p.startswith("text/") for p in frozen)
    loss_config = {"nce": {"type": "clip_infonce", "output": "clip.logits"}}
    batch, key = {"image": images, "tokens": tokens}, jax.random.key(1)
    jitted = {f: jax.jit(functools.partial(steps.train_step, model=model, tx=tx, loss_config=loss_config, frozen=f))
              for f in (frozenset(), frozen)}
    _, metrics = jitted[frozen](state, batch, key)

    def loss(params):
        return losses.clip_infonce(model.apply({"params": params}, images, tokens)["clip"]["logits"])
    grads = traverse_util.flatten_dict(jax.grad(loss)(state.params), sep="/")
    expected = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for k, g in grads.items() if not k.startswith("text/")))
    assert float(metrics["grad_norm"]) == pytest.approx(expected, rel=1e-4)
    flops = {f: jitted[f].lower(state, batch, key).compile().cost_analysis()["flops"] for f in jitted}
    assert flops[frozen] < 0.9 * flops[frozenset()]


def test_chance_recall_equals_enumeration():
    for m_total, m_pos, k in [(5, 1, 1), (5, 2, 1), (5, 2, 3), (6, 3, 2), (4, 1, 4)]:
        hits = sum(any(r < k for r in ranks[:m_pos]) for ranks in itertools.permutations(range(m_total)))
        assert retrieval.chance_recall(m_total, m_pos, k) == pytest.approx(hits / math.factorial(m_total))


def test_retrieval_metrics_on_hand_built_rankings(tmp_path):
    # 3 images, 4 distinct texts; image 0 owns texts {0, 1}, image 1 owns {2}, image 2 owns {3}.
    image = np.eye(4)[:3]
    texts = np.array([[0.2, 0.9, 0.0, 0.0],   # text 0: best for image 1 (a negative) -> image 0 ranks it 2nd
                      [0.9, 0.0, 0.0, 0.1],   # text 1: image 0's best text
                      [0.0, 0.5, 0.0, 0.8],   # text 2 (image 1's): image 1 ranks it 2nd behind text 0
                      [0.1, 0.0, 0.9, 0.0]])  # text 3 (image 2's): its best
    records = [{"id": 10, "captions": ["a", "b"], "caption_groups": ["color", "dof"]},
               {"id": 11, "captions": ["c"], "caption_groups": ["color"]},
               {"id": 12, "captions": ["d", "d"], "caption_groups": ["dof", "dof"]}]
    names, groups, owned = retrieval._distinct(records)
    assert names == ["a", "b", "c", "d"] and owned == [[0, 1], [2], [3]] and groups == ["color", "dof", "color", "dof"]
    out = retrieval.run(predictions={"clip.image_embed": image}, targets={}, ids=np.array([10, 11, 12]),
                        outdir=str(tmp_path), prefix="test", heads={}, texts=names, text_groups=groups,
                        text_embeds=texts, owned=owned, caption_ids=[10, 11, 12])
    # i2t ranks: image 0 -> text 1 first (rank 1); image 1: text 0 (0.9) > text 2 (0.5) -> rank 2; image 2 -> 1.
    assert out["i2t/r1"] == pytest.approx(2 / 3) and out["i2t/r5"] == 1.0
    # t2i: text 0 -> image 1 (0.9) beats image 0 (0.2): rank 2; text 1 -> image 0 rank 1;
    # text 2 -> image 1 (0.5) vs image 0 (0) and image 2 (0): rank 1; text 3 -> image 2 rank 1.
    assert out["t2i/r1"] == pytest.approx(3 / 4)
    assert out["i2t/median_rank"] == 1.0
    assert out["i2t/chance_r1"] == pytest.approx(np.mean([2 / 4, 1 / 4, 1 / 4]))
    # Per group: color texts {0, 2}: image 0 owns 0 -> rank 1 (0.2 vs 0.0); image 1 owns 2 -> 0.5 < 0.9: rank 2.
    assert out["color/i2t_r1"] == pytest.approx(1 / 2) and out["color/n"] == 2
    assert out["dof/i2t_r1"] == 1.0 and out["dof/chance_r1"] == pytest.approx(0.5)
    csv_rows = (tmp_path / "test_retrieval.csv").read_text().splitlines()
    assert csv_rows[2].startswith("11,2,a,False")
    with pytest.raises(ValueError, match="same order"):
        retrieval.run(predictions={"clip.image_embed": image}, targets={}, ids=np.array([11, 10, 12]),
                      outdir=str(tmp_path), prefix="t", heads={}, texts=names, text_groups=groups,
                      text_embeds=texts, owned=owned, caption_ids=[10, 11, 12], write_files=False)


def test_zero_shot_attribute_classification_against_hand_counts(tmp_path):
    image = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8]])
    class_embeds = np.array([[1.0, 0.0], [0.0, 1.0]])  # "sharp" ~ axis 0, "blurred" ~ axis 1
    labels = {1: "sharp", 2: "blurred", 3: "blurred", 4: "blurred"}
    out = retrieval.run(predictions={"clip.image_embed": image}, targets={}, ids=np.array([1, 2, 3, 4]),
                        outdir=str(tmp_path), prefix="t", heads={}, texts=["x"], text_groups=["dof"],
                        text_embeds=np.array([[1.0, 0.0]]), owned=[[0], [0], [0], [0]], caption_ids=[1, 2, 3, 4],
                        classes={"dof": (["sharp", "blurred"], class_embeds, labels)}, write_files=False)
    # guesses: sharp, blurred, sharp, blurred -> 3 of 4 right (image 3 is labelled blurred).
    assert out["dof/zeroshot_acc"] == 0.75
    assert out["dof/majority_acc"] == 0.75 and out["dof/uniform_acc"] == 0.5
    # balanced: sharp 1/1, blurred 2/3 -> 5/6, as sklearn computes it.
    from sklearn.metrics import balanced_accuracy_score

    assert out["dof/zeroshot_balanced_acc"] == pytest.approx(5 / 6)
    assert out["dof/zeroshot_balanced_acc"] == pytest.approx(balanced_accuracy_score([0, 1, 1, 1], [0, 1, 0, 1]))


def test_conv_stem_is_the_documented_stack_of_strided_convolutions():
    from scipy.special import erf

    tower = clip.CLIPVisionTransformer(variant="tiny", image_size=32, patch_size=8, stem="conv")
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype(np.float32)
    params = tower.init(jax.random.key(0), x)["params"]
    assert "conv1" not in params and [f"stem_{i}" for i in range(3)] == sorted(k for k in params if k.startswith("stem_") and k != "stem_proj")
    assert [params[f"stem_{i}"]["kernel"].shape[-1] for i in range(3)] == [8, 16, 32]  # doubling up to width 32
    # Reference: lax convolutions (SAME-style 1-pixel padding, stride 2) + exact GELU in numpy.
    h = x
    for i in range(3):
        k, b = params[f"stem_{i}"]["kernel"], params[f"stem_{i}"]["bias"]
        h = np.asarray(jax.lax.conv_general_dilated(h, k, (2, 2), ((1, 1), (1, 1)),
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                    precision=jax.lax.Precision.HIGHEST)) + b
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    h = h @ params["stem_proj"]["kernel"][0, 0]
    tokens = np.concatenate([np.broadcast_to(params["class_embedding"], (2, 1, 32)), h.reshape(2, 16, 32)], 1)
    tokens = tokens + params["positional_embedding"]
    mu, var = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
    expected = (tokens - mu) / np.sqrt(var + 1e-5) * params["ln_pre"]["scale"] + params["ln_pre"]["bias"]
    np.testing.assert_allclose(tower.apply({"params": params}, x, method="embed"), expected, atol=2e-5)
    assert tower.apply({"params": params}, x)["feature_map"].shape == (2, 4, 4, 32)
    with pytest.raises(ValueError, match="power-of-two"):
        clip.CLIPVisionTransformer(variant="tiny", image_size=36, patch_size=12, stem="conv").init(
            jax.random.key(0), np.zeros((1, 36, 36, 3), np.float32))


def test_convnet_tower_matches_torch_conv_batchnorm_in_train_and_eval_mode():
    """CLIPConvNet (arch 'convnet') vs torch: Conv2d(3x3, stride 2, pad 1, no bias) -> BatchNorm2d
    (momentum 0.1 = flax 0.9) -> ReLU per stage, then [mean, population sd] pooling and the
    projection; batch statistics and the running-average update in training, running averages in
    evaluation."""
    torch = pytest.importorskip("torch")
    tower = clip.vision_tower(variant="tiny", image_size=32, arch="convnet", conv_widths=[6, 10], embed_dim=5)
    assert type(tower).__name__ == "CLIPConvNet"
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    variables = tower.init(jax.random.key(1), x)
    params = jax.tree.map(np.asarray, variables["params"])
    # Non-trivial BN affine parameters, so scale and bias are checked too.
    for i in range(2):
        params[f"bn_{i}"]["scale"] = rng.uniform(0.5, 1.5, params[f"bn_{i}"]["scale"].shape).astype(np.float32)
        params[f"bn_{i}"]["bias"] = rng.normal(size=params[f"bn_{i}"]["bias"].shape).astype(np.float32)
    layers = []
    for i, (cin, cout) in enumerate([(3, 6), (6, 10)]):
        conv = torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        conv.weight.data = torch.tensor(params[f"conv_{i}"]["kernel"]).permute(3, 2, 0, 1).contiguous()
        bn = torch.nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        bn.weight.data, bn.bias.data = torch.tensor(params[f"bn_{i}"]["scale"]), torch.tensor(params[f"bn_{i}"]["bias"])
        layers += [conv, bn, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers).double()

    def reference(train):
        net.train(train)
        with torch.no_grad():
            g = net(torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2))
        pooled = torch.cat([g.mean((2, 3)), torch.sqrt(g.var((2, 3), unbiased=False) + 1e-5)], 1).numpy()
        return pooled @ params["proj"].astype(np.float64), g.permute(0, 2, 3, 1).numpy()

    out, updated = tower.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                               mutable=["batch_stats"])
    expected, grid = reference(train=True)
    np.testing.assert_allclose(out["pooled"], expected, atol=1e-4)
    np.testing.assert_allclose(out["feature_map"], grid, atol=1e-4)
    for i, n in enumerate([4 * 16 * 16, 4 * 8 * 8]):  # one running-average update from the initial (0, 1)
        bn = net[3 * i + 1]
        np.testing.assert_allclose(updated["batch_stats"][f"bn_{i}"]["mean"], bn.running_mean.numpy(), atol=1e-5)
        # torch averages the unbiased batch variance in, flax the biased one (n values per channel).
        biased = 0.9 + (bn.running_var.numpy() - 0.9) * (n - 1) / n
        np.testing.assert_allclose(updated["batch_stats"][f"bn_{i}"]["var"], biased, rtol=1e-5)
    # Evaluation: torch's running statistics loaded into flax.
    stats = {f"bn_{i}": {"mean": net[3 * i + 1].running_mean.numpy().astype(np.float32),
                         "var": net[3 * i + 1].running_var.numpy().astype(np.float32)} for i in range(2)}
    out = tower.apply({"params": params, "batch_stats": stats}, x, train=False)
    expected, _ = reference(train=False)
    np.testing.assert_allclose(out["pooled"], expected, atol=1e-4)
    assert "tokens" not in out
    with pytest.raises(ValueError, match="vision_tower"):
        clip.CLIPVisionTransformer(variant="tiny", arch="convnet", conv_widths=(4,)).init(
            jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="conv_widths"):
        clip.vision_tower(variant="tiny", arch="convnet").init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))


def test_contrastive_clip_with_a_convnet_tower_updates_batch_stats_only_in_training():
    model = clip.create_contrastive("tiny", vision=dict(image_size=32, arch="convnet", conv_widths=(4, 8)))
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    tokens = np.zeros((3, 16), np.int32)
    variables = model.init(jax.random.key(0), images, tokens)
    before = variables["batch_stats"]["visual"]["bn_0"]["mean"]
    _, new = model.apply(variables, images, tokens, train=True, mutable=["batch_stats"])
    assert not np.allclose(new["batch_stats"]["visual"]["bn_0"]["mean"], before)
    a = model.apply(variables, images, tokens, train=False)["clip"]["image_embed"]
    b = model.apply(variables, images[:1], tokens[:1], train=False)["clip"]["image_embed"]
    np.testing.assert_allclose(a[:1], b, atol=1e-6)  # evaluation: per-image, independent of the batch
