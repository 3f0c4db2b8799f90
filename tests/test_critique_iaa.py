"""Critique-based scoring: generated critiques as model inputs (`datasets.CritiqueSource`), the
`critique_text` backbone (CG-IAA's text-only IAA), the fusion model's textual='generated', and a
smoke run of `configs/critique_iaa.py` on the demo votes with critiques written from the demo's
own per-image critiques."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax import models
from aesthetics_jax.data import datasets
from aesthetics_jax.models import clip as clip_lib
from aesthetics_jax.models import clip_tokenizer


def _write_jsonl(path, items):
    with open(path, "w") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")


def test_read_critiques_names_bad_lines(tmp_path):
    good = {"image": "/x/images/12.jpg", "critiques": {"color": "dull.", "dof": "sharp."}}
    _write_jsonl(tmp_path / "a.jsonl", [good, {"image": "/x/13.jpg", "error": "undecodable_image"}])
    assert datasets.read_critiques(str(tmp_path / "a.jsonl"), ("dof", "color")) == {12: ("sharp.", "dull.")}
    _write_jsonl(tmp_path / "b.jsonl", [good, {"image": "/x/14.jpg", "critiques": {"color": "ok."}}])
    with pytest.raises(ValueError, match=r"b.jsonl:2: no critique for \['dof'\]"):
        datasets.read_critiques(str(tmp_path / "b.jsonl"), ("color", "dof"))
    _write_jsonl(tmp_path / "c.jsonl", [good, good])
    with pytest.raises(ValueError, match="c.jsonl:2: image id 12 given twice"):
        datasets.read_critiques(str(tmp_path / "c.jsonl"), ("color",))
    _write_jsonl(tmp_path / "d.jsonl", [{"image": "/x/photo.jpg", "critiques": {"color": "x"}}])
    with pytest.raises(ValueError, match="not named <id>"):
        datasets.read_critiques(str(tmp_path / "d.jsonl"), ("color",))


def test_critique_source_adds_clip_tokens_and_names_missing_ids(tmp_path):
    _write_jsonl(tmp_path / "c.jsonl", [{"image": f"{i}.jpg", "critiques": {"color": f"colour {i}.", "dof": "soft."}}
                                        for i in (1, 2)])
    records = [{"id": np.int64(2), "image": b""}, {"id": np.int64(1), "image": b""}, {"id": np.int64(3), "image": b""}]
    src = datasets.CritiqueSource(records, path=str(tmp_path / "c.jsonl"), attributes=("dof", "color"), context_length=16)
    tokens = src[0]["critique_tokens"]
    want = clip_tokenizer.tokenize(["soft.", "colour 2."], context_length=16)
    np.testing.assert_array_equal(tokens, want)
    assert datasets.label_keys(src)[-1] == "critique_tokens"
    with pytest.raises(KeyError, match="image 3 has no critique"):
        src[2]


def test_critique_text_is_the_text_tower_per_attribute():
    """pooled = the concatenated L2-normalised embeddings of a plain CLIP text tower on each critique."""
    text = dict(context_length=16, width=32, layers=1, num_heads=4, embed_dim=24)
    model = models.create("critique_text", variant="tiny", text=text, attributes=2, heads={"emd": {"type": "emd"}})
    tokens = clip_tokenizer.tokenize(["sharp and crisp.", "washed out.", "too dark.", "nice light."], context_length=16)
    tokens = jnp.asarray(tokens.reshape(2, 2, 16))
    images = jnp.zeros((2, 8, 8, 3))
    v = model.init(jax.random.key(0), images, critique_tokens=tokens)
    out = model.apply(v, images, critique_tokens=tokens, return_features=True)
    tower = clip_lib.CLIPTextTransformer(clip_lib._resolve(clip_lib.VARIANTS["tiny"].text, text))
    emb = clip_lib.l2_normalize(tower.apply({"params": v["params"]["backbone"]["text"]}, tokens.reshape(4, 16)))
    np.testing.assert_allclose(np.asarray(out["features"]["pooled"]), np.asarray(emb).reshape(2, 48), atol=1e-6)
    assert out["emd"]["distribution"].shape == (2, 10)
    with pytest.raises(ValueError, match="critique_tokens"):
        model.apply(v, images)


def test_fusion_with_generated_critiques_reads_them():
    vision = dict(image_size=32, patch_size=8, width=32, layers=1, num_heads=4, embed_dim=24)
    text = dict(text_context_length=16, text_width=32, text_layers=1, text_num_heads=4, text_embed_dim=24)
    model = models.create("cgiaa", variant="tiny", experts=("color", "dof"), textual="generated", fusion="concat",
                          heads={"emd": {"type": "emd"}}, **vision, **text)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), jnp.float32)
    a = jnp.asarray(clip_tokenizer.tokenize(["dull.", "soft.", "vivid.", "sharp."], context_length=16).reshape(2, 2, 16))
    b = jnp.asarray(clip_tokenizer.tokenize(["dull.", "soft.", "vivid.", "blurred."], context_length=16).reshape(2, 2, 16))
    v = model.init(jax.random.key(0), images, critique_tokens=a)
    names = set(v["params"]["backbone"])
    assert {"base", "expert_color", "expert_dof", "text_color", "text_dof", "fusion"} == names  # no logit scales
    out_a = model.apply(v, images, critique_tokens=a)["emd"]["mean"]
    out_b = model.apply(v, images, critique_tokens=b)["emd"]["mean"]
    assert out_a[0] == out_b[0] and out_a[1] != out_b[1]  # only image 1's dof critique changed
    with pytest.raises(ValueError, match="critique_tokens"):
        model.apply(v, images)


def test_smoke_run_scores_images_from_critiques(tmp_path):
    from aesthetics_jax.data.builders import demo_captions
    from aesthetics_jax.train import trainer
    from configs import critique_iaa

    config = critique_iaa.get_config("smoke,attributes=color+dof")
    config.data.data_dir = str(tmp_path / "data")
    config.async_checkpointing = False
    prepared = datasets.prepare(config.data)  # the demo render; its critiques stand in for generated ones
    raw = tmp_path / "data" / "demo" / "raw"
    demo_captions.write_demo_critiques(str(raw))
    texts = {g: {int(e["img_id"]): e["caption"] for e in json.load(open(raw / "critiques" / f"{g}.json"))}
             for g in ("color", "dof")}
    ids = set()
    for split in datasets.splits(prepared):
        src = datasets.source(prepared, split)
        ids |= {int(src[i]["id"]) for i in range(len(src))}
    path = tmp_path / "critiques.jsonl"
    _write_jsonl(path, [{"image": os.path.join(str(raw), "images", f"{i}.jpg"),
                         "critiques": {g: texts[g][i] for g in texts}} for i in sorted(ids)])
    config.data.critiques.path = str(path)
    results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert np.isfinite(results["test/emd/srcc"]) and np.isfinite(results["val/emd/srcc"])
