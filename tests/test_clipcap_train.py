"""Training a ClipCap expert (`configs/clipcap_attr.py`, task 'caption'): the loss against torch's
cross-entropy, the caption tokens, the demo's keyword classes and tokenizer, and a smoke run from a
critic bundle's experts + image tower (init_from) to the critique evaluator's report."""

from __future__ import annotations

import csv
import os

import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax import losses
from aesthetics_jax.data import datasets
from aesthetics_jax.data.builders import demo_captions

torch = pytest.importorskip("torch")


def test_caption_xent_matches_torch_ignore_index():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32)
    tokens = rng.integers(0, 11, (3, 5)).astype(np.int32)
    tokens[0, 3:] = -1
    tokens[2, 1:] = -1
    want = torch.nn.functional.cross_entropy(torch.tensor(logits).reshape(-1, 11), torch.tensor(tokens).long().reshape(-1),
                                             ignore_index=-1)
    got = losses.caption_xent(jnp.asarray(tokens), jnp.asarray(logits))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    # a zero-weight (padding) example is left out entirely
    masked = losses.caption_xent(jnp.asarray(tokens), jnp.asarray(logits), weights=jnp.array([1.0, 0.0, 1.0]))
    keep = torch.tensor(tokens).long().clone()
    keep[1] = -1
    want = torch.nn.functional.cross_entropy(torch.tensor(logits).reshape(-1, 11), keep.reshape(-1), ignore_index=-1)
    np.testing.assert_allclose(float(masked), float(want), rtol=1e-5)


def test_add_period_as_released():
    assert datasets.add_period("  nice colours ") == "nice colours."
    assert datasets.add_period("too dark .") == "too dark."
    assert datasets.add_period("sharp.") == "sharp."


@pytest.mark.parametrize("group,text,want", [
    ("dof", "The image is badly blurred; nothing is in focus. It is sharp?", "very_blurred"),
    ("dof", "Focus is crisp and the fine detail is sharp.", "sharp"),
    ("dof", "A mild softness takes the edge off the details.", "soft"),
    ("dof", "soft and sharp.", None),
    ("general", "Strong sensor noise makes the picture grainy.", "noisy"),
    ("color", "It is badly too dark: underexposed, with the shadows blocked up.", "underexposed"),
    ("composition", "The framing is tight and close: a 3:2 frame centred on the scene.", "tight"),
])
def test_critique_class_reads_the_first_sentences_keyword(group, text, want):
    assert demo_captions.critique_class(group, text) == want


def test_every_demo_template_names_its_own_class():
    """The keyword table agrees with the critique writer: each first-sentence template, filled, is
    read back as its class."""
    fill = dict(adv="clearly", adj="Clear", hue="blue", tones="colours", frame="3:2", where="centred on the scene")
    for group, classes in demo_captions._TEMPLATES.items():
        for name, templates in classes.items():
            for template in templates:
                assert demo_captions.critique_class(group, template.format(**fill)) == name, template


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from aesthetics_jax.train import trainer
    from configs import clipcap_attr

    root = tmp_path_factory.mktemp("clipcap")
    config = clipcap_attr.get_config("smoke,attribute=dof")
    config.data.data_dir = str(root / "data")
    config.async_checkpointing = False
    results = trainer.train_and_evaluate(config, str(root / "run"))
    return root, config, results


def test_demo_tokenizer_is_learnt_once_and_reproducibly(smoke, tmp_path):
    root, _, _ = smoke
    raw = root / "data" / "demo" / "raw"
    tok_dir = raw / demo_captions.TOKENIZER_DIR
    assert (tok_dir / "vocab.json").is_file() and (tok_dir / "merges.txt").is_file()
    copy = tmp_path / "copy"
    (copy / demo_captions.CRITIQUES_DIR).mkdir(parents=True)
    for g in demo_captions.GROUPS:
        name = f"{demo_captions.CRITIQUES_DIR}/{g}.json"
        (copy / name).write_bytes((raw / name).read_bytes())
    again = demo_captions.write_demo_tokenizer(str(copy))
    for name in ("vocab.json", "merges.txt"):
        assert (tok_dir / name).read_bytes() == open(os.path.join(again, name), "rb").read()


def test_gpt2_caption_tokens_pad_and_round_trip(smoke):
    from aesthetics_jax.models import gpt2_tokenizer

    root, config, _ = smoke
    tokens = datasets.GPT2CaptionTokens(datasets.gpt2_tokenizer_dir(config.data), max_tokens=12)
    ids = tokens.encode("The focus is  soft ")
    tok = gpt2_tokenizer.GPT2Tokenizer.from_dir(tokens.tokenizer_dir)
    n = int(np.sum(ids >= 0))
    assert ids.shape == (12,) and np.all(ids[n:] == -1)
    assert tok.decode(ids[:n].tolist()) == "The focus is  soft."


def test_smoke_run_reports_critiques(smoke):
    root, _, results = smoke
    for key in ("test/nll", "test/perplexity", "test/distinct", "test/keyword_acc", "test/majority_acc",
                "test/uniform_acc"):
        assert key in results and np.isfinite(results[key]), key
    with open(root / "run" / "eval" / "test_critiques.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["label"] in ("sharp", "soft", "very_blurred") for r in rows)


def test_expert_initialises_from_a_critic_bundle(smoke, tmp_path):
    """A critic bundle's image tower and expert seed a new expert (fine-tuning a released expert):
    after init_from the parameters equal the bundle's."""
    from flax import traverse_util

    from aesthetics_jax.export import bundle
    from aesthetics_jax.models import clip as clip_lib
    from aesthetics_jax.train import checkpointing, trainer
    from configs import clipcap_attr

    root, config, _ = smoke
    params = checkpointing.restore_params(str(root / "run" / "checkpoints"))["params"]
    vision = dict(config.model.vision)
    vision.pop("variant")
    clip_config = clip_lib.CLIPVisionConfig(**vision)  # an image tower alone (no text tower in the payload)
    tok_dir = datasets.gpt2_tokenizer_dir(config.data)
    from aesthetics_jax.models import clipcap

    bundle.write(str(tmp_path / "critic"), model_config={"name": "clip", "heads": {}}, variables={}, image_size=32,
                 critics=dict(clip_params={"visual": params["visual"]}, clip_config=clip_config,
                              experts={"dof": params["captioner"]},
                              clipcap_config=clipcap.ClipCapConfig.from_dict(dict(config.model.clipcap)),
                              vocab=os.path.join(tok_dir, "vocab.json"), merges=os.path.join(tok_dir, "merges.txt")))
    new = clipcap_attr.get_config(f"smoke,attribute=dof,clip={tmp_path / 'critic'}")
    new.data.data_dir = config.data.data_dir
    new.init_from.sources.append(dict(workdir=str(tmp_path / "critic"), rename=[("^critics/experts/dof/", "captioner/")]))
    new.init_from.dont_load = []
    new.total_steps = 1
    new.lr = 0.0
    new.async_checkpointing = False
    trainer.train_and_evaluate(new, str(tmp_path / "run"))
    got = traverse_util.flatten_dict(checkpointing.restore_params(str(tmp_path / "run" / "checkpoints"))["params"], sep="/")
    want = traverse_util.flatten_dict(params, sep="/")
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6, err_msg=k)
