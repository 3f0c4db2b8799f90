"""ClipCap experts: the Flax mapper + GPT-2 and the decoders against a torch reference in CG-IAA's
released key layout (`benchmarks/clipcap_torch.py`: the published mapper written in torch +
transformers' GPT2LMHeadModel, random weights), and the CG-IAA converter / critic bundle / critique
command end to end.

Parity: teacher-forced logits <= 1e-4; greedy tokens equal transformers' `generate` (greedy, with
its own KV cache); beam tokens, lengths and order equal the released `generate_beam` algorithm run in
torch without a cache (`clipcap_torch.released_beam_search`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from aesthetics_jax.convert import cgiaa  # noqa: E402
from benchmarks.clipcap_torch import TorchClipCap, released_beam_search  # noqa: E402
from aesthetics_jax.critique import critic as critic_lib  # noqa: E402
from aesthetics_jax.critique import decoding  # noqa: E402
from aesthetics_jax.models import clipcap  # noqa: E402

PREFIX_DIM, PREFIX_LEN, CLIP_LEN, WIDTH, MAPPER_LAYERS, HEADS = 24, 4, 3, 32, 2, 8
VOCAB = 300


def _reference(seed, *, prefix_dim=PREFIX_DIM, width=WIDTH, gpt_heads=4, vocab=VOCAB):
    return TorchClipCap(seed, prefix_dim=prefix_dim, width=width, gpt_heads=gpt_heads, gpt_layers=2, vocab=vocab,
                        n_positions=128, prefix_length=PREFIX_LEN, clip_length=CLIP_LEN, mapper_layers=MAPPER_LAYERS,
                        mapper_heads=HEADS, spread=0.3)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    ref = _reference(0)
    path = tmp_path_factory.mktemp("cgiaa") / "color.pt"
    torch.save(ref.state_dict(), path)
    params, config = cgiaa.convert_expert(cgiaa.clip_convert.read_state_dict(path), gpt_heads=4, origin=str(path))
    torch.manual_seed(1)
    features = torch.nn.functional.normalize(torch.randn(3, PREFIX_DIM), dim=-1)
    return ref, {"params": params}, config, features


def test_converted_config(expert):
    _, _, config, _ = expert
    assert (config.prefix_dim, config.prefix_length, config.clip_length, config.num_layers, config.num_heads,
            config.mlp_ratio) == (PREFIX_DIM, PREFIX_LEN, CLIP_LEN, MAPPER_LAYERS, HEADS, 2.0)
    assert (config.gpt2.vocab_size, config.gpt2.n_embd, config.gpt2.n_layer) == (VOCAB, WIDTH, 2)


def test_teacher_forced_logits_match_torch(expert):
    ref, variables, config, features = expert
    tokens = torch.randint(0, VOCAB, (3, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref.logits(features, tokens).numpy()
        want_prefix = ref.clip_project(features).numpy()
    model = clipcap.ClipCap(config)
    got = np.asarray(model.apply(variables, jnp.asarray(features.numpy()), jnp.asarray(tokens.numpy())))
    prefix = np.asarray(model.apply(variables, jnp.asarray(features.numpy()), method="prefix"))
    np.testing.assert_allclose(prefix, want_prefix, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_padding_is_masked(expert):
    """Right padding (ids < 0) changes nothing at the real positions."""
    _, variables, config, features = expert
    model = clipcap.ClipCap(config)
    x = jnp.asarray(features.numpy())
    tokens = np.array([[5, 9, 13, 2], [7, 1, 3, 8], [4, 4, 4, 4]], np.int32)
    padded = np.concatenate([tokens, -np.ones((3, 3), np.int32)], axis=1)
    full = model.apply(variables, x, jnp.asarray(tokens))
    with_pad = model.apply(variables, x, jnp.asarray(padded))
    np.testing.assert_allclose(np.asarray(with_pad)[:, :4], np.asarray(full), atol=1e-5)


def _stop_token(ref, features, beam):
    """A token the best beam of image 0 emits mid-sequence, so the stop logic is exercised."""
    with torch.no_grad():
        prefix = ref.clip_project(features[:1])
        free = released_beam_search(ref, prefix, beam, 12, stop=-1)[0]
    return int(free[4])


def test_beam_search_matches_released_algorithm(expert):
    ref, variables, config, features = expert
    beam, max_tokens = 3, 20
    stop = _stop_token(ref, features, beam)
    model = clipcap.ClipCap(config)
    prefix = model.apply(variables, jnp.asarray(features.numpy()), method="prefix")
    tokens, lengths, scores = decoding.beam_search(model, variables, prefix, stop_token=stop, beam=beam,
                                                   max_tokens=max_tokens)
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)  # best first
    stopped = 0
    for b in range(features.shape[0]):
        with torch.no_grad():
            want = released_beam_search(ref, ref.clip_project(features[b:b + 1]), beam, max_tokens, stop)
        got = [tokens[b, k, :lengths[b, k]].tolist() for k in range(beam)]
        assert got == want, f"image {b}"
        stopped += sum(seq[-1] == stop for seq in want)
    assert stopped > 0  # the stop rule took part


def test_greedy_matches_transformers_generate(expert):
    ref, variables, config, features = expert
    stop = _stop_token(ref, features, 1)
    model = clipcap.ClipCap(config)
    prefix = model.apply(variables, jnp.asarray(features.numpy()), method="prefix")
    tokens, lengths = decoding.sample(model, variables, prefix, stop_token=stop, max_tokens=15)
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    for b in range(features.shape[0]):
        with torch.no_grad():
            out = ref.gpt.generate(inputs_embeds=ref.clip_project(features[b:b + 1]), max_new_tokens=15,
                                   do_sample=False, eos_token_id=stop, pad_token_id=0)
        want = out[0].tolist()
        want = want[:want.index(stop) + 1] if stop in want else want
        assert tokens[b, :lengths[b]].tolist() == want, f"image {b}"


def test_top_p_samples_from_the_nucleus(expert):
    """top_p sampling: the first token always lies in the smallest set of tokens holding top_p of
    the probability mass (computed here with numpy), and different keys give different samples."""
    _, variables, config, features = expert
    model = clipcap.ClipCap(config)
    prefix = model.apply(variables, jnp.asarray(features.numpy()), method="prefix")
    logits, _ = model.apply(variables, prefix, method="lm")
    probs = np.asarray(jax.nn.softmax(logits[:, -1]))
    firsts = []
    for seed in range(20):
        tokens, _ = decoding.sample(model, variables, prefix, stop_token=-1, max_tokens=2, top_p=0.5,
                                    rng=jax.random.key(seed))
        firsts.append(np.asarray(tokens[:, 0]))
    firsts = np.stack(firsts)
    for b in range(probs.shape[0]):
        order = np.argsort(-probs[b])
        cum = np.cumsum(probs[b][order])
        nucleus = set(order[: int(np.searchsorted(cum, 0.5)) + 1].tolist())
        assert set(firsts[:, b].tolist()) <= nucleus
    assert len({tuple(f) for f in firsts}) > 1


def test_decoding_compiles_once(expert):
    """One program per (batch, prefix) shape: the loop over positions never retraces."""
    _, variables, config, features = expert
    model = clipcap.ClipCap(config)
    prefix = model.apply(variables, jnp.asarray(features.numpy()), method="prefix")
    decoding.beam_search(model, variables, prefix, stop_token=7, beam=2, max_tokens=9)
    before = decoding.beam_search._cache_size()
    decoding.beam_search(model, variables, prefix * 1.5, stop_token=11, beam=2, max_tokens=9)
    assert decoding.beam_search._cache_size() == before


# ----------------------------------------------------------------------------- converter + critique command

CORPUS = ["The colours are washed out by haze.", "The subject is sharp and crisp.", "A tight crop, close on the subject.",
          "There is heavy noise in the shadows.", "The exposure is too bright; the sky is blown out.",
          "Nice composition, centred on the scene!", "Soft focus, the details are blurred.",
          "A faint blue cast over the whole frame.", "Blocky JPEG compression artefacts.",
          "Don't crop so tight: 3:2 is better."]


def _tokenizer_files(directory, vocab_size):
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS * 20, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tok.save_model(str(directory))
    assert tok.get_vocab_size() == vocab_size  # every id the model can emit decodes
    return tok


@pytest.fixture(scope="module")
def cgiaa_dir(tmp_path_factory):
    """CG-IAA's release layout with random weights: base_model.pt (open_clip's OpenAI-layout CLIP
    under `clip_model.`), color.pt and dof.pt (ClipCaptionModel layout), the GPT-2 tokenizer files."""
    open_clip = pytest.importorskip("open_clip")
    directory = tmp_path_factory.mktemp("cgiaa_release")
    vocab = 300
    _tokenizer_files(directory, vocab)
    torch.manual_seed(3)
    base = open_clip.model.CLIP(embed_dim=24, quick_gelu=True,
                                vision_cfg=dict(layers=2, width=128, patch_size=8, image_size=32, head_width=64),
                                text_cfg=dict(context_length=16, vocab_size=49408, width=64, heads=1, layers=2)).eval()
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "ln" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name != "logit_scale":
                p.copy_(0.1 * torch.randn_like(p))
    torch.save({f"clip_model.{k}": v for k, v in base.state_dict().items()}, directory / "base_model.pt")
    experts = {}
    for seed, attr in enumerate(("color", "dof")):
        experts[attr] = _reference(10 + seed, prefix_dim=24, width=64, gpt_heads=1, vocab=vocab)
        torch.save(experts[attr].state_dict(), directory / f"{attr}.pt")
    return directory, base, experts


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "aesthetics_jax.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture(scope="module")
def critic_bundle(cgiaa_dir, tmp_path_factory):
    """`aesthetics-jax convert --from cgiaa` of the release-layout directory."""
    out = tmp_path_factory.mktemp("critic") / "critic"
    done = _run_cli("convert", "--from", "cgiaa", str(cgiaa_dir[0]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_convert_and_critique_command_match_torch(cgiaa_dir, critic_bundle, tmp_path):
    """`convert --from cgiaa` -> critic bundle; `critique` on PNG files (and a broken one) gives, per
    image and attribute, the text of the released beam search on the torch reference."""
    from PIL import Image

    from aesthetics_jax.data import preprocessing
    from aesthetics_jax.models import gpt2_tokenizer

    directory, base, experts = cgiaa_dir
    out = critic_bundle
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 48, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (photos / "zz_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    done = _run_cli("critique", str(photos), "--model", str(out), "--beam", "3", "--max-tokens", "12", "--quiet",
                    "--no-cache")
    assert done.returncode == 1, done.stderr  # one image failed, the others were critiqued
    items = [json.loads(line) for line in done.stdout.splitlines()]
    assert [os.path.basename(it["image"]) for it in items] == ["p0.png", "p1.png", "p2.png", "zz_broken.jpg"]
    assert "error" in items[3] and "critiques" not in items[3]

    tok = gpt2_tokenizer.GPT2Tokenizer.from_dir(directory)
    stop = tok.encode(".")[0]
    spec = preprocessing.transform_spec("torchvision_squash", image_size=32)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    for i in range(3):
        pixels = preprocessing.apply_transform(np.asarray(Image.open(photos / f"p{i}.png").convert("RGB")), spec)
        x = (torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0 - mean) / std
        with torch.no_grad():
            feature = torch.nn.functional.normalize(base.encode_image(x), dim=-1)
            for attr, ref in experts.items():
                best = released_beam_search(ref, ref.clip_project(feature), 3, 12, stop)[0]
                assert items[i]["critiques"][attr] == tok.decode(best).rstrip(), (i, attr)

    done = _run_cli("critique", str(photos / "p0.png"), "--model", str(out), "--attributes", "dof", "--method",
                    "greedy", "--max-tokens", "5", "--format", "csv", "--quiet", "--no-cache")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "image,critiques.dof,error"


def test_convert_cgiaa_errors_name_the_problem(cgiaa_dir, tmp_path):
    directory, _, experts = cgiaa_dir
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("base_model.pt", "vocab.json", "merges.txt"):
        (broken / name).write_bytes((directory / name).read_bytes())
    sd = experts["color"].state_dict()
    sd.pop("clip_project.transformer.layers.1.mlp.fc2.bias")
    sd["clip_project.extra"] = torch.zeros(3)
    torch.save(sd, broken / "color.pt")
    done = _run_cli("convert", "--from", "cgiaa", str(broken), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "layers_1/mlp/fc2/bias" in done.stderr and "clip_project.extra" in done.stderr
    (broken / "color.pt").unlink()
    done = _run_cli("convert", "--from", "cgiaa", str(broken), "--out", str(tmp_path / "out2"))
    assert done.returncode == 1 and "color.pt" in done.stderr


def test_critique_benchmark_smoke(tmp_path):
    """benchmarks/critique.py end to end at tiny size: same tokens as the released torch beam search
    (checked by the script), a table row per side and the ratios."""
    pytest.importorskip("open_clip")
    out = tmp_path / "critique.json"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([sys.executable, "benchmarks/critique.py", "--size", "tiny", "--images", "2", "--max_tokens", "5",
                           "--rounds", "1", "--threads", "1", "--json", str(out)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "give the same tokens for all four experts" in done.stdout
    data = json.loads(out.read_text())
    assert set(data["sides"]) == {"jax", "torch-released", "torch-generate"}
    assert all(v["critiques_per_s"] > 0 for v in data["sides"].values())


def test_scorer_bundle_with_critics_predicts_scores_and_critiques_in_one_call(critic_bundle, tmp_path):
    """`bundle pack WORKDIR --critics CRITIC` (here `bundle.write(critics=PATH)`): `predict` returns
    the NIMA distribution and the critiques per image; the critiques equal the critics-only bundle's
    on the same prepared pixels (same input transform), and a critics-only bundle through `predict`
    gives the critiques alone."""
    import aesthetics_jax
    from aesthetics_jax import models
    from aesthetics_jax.export import bundle

    model_config = {"name": "mobilenet", "width": 0.25, "num_blocks": 2, "heads": {"emd": {"type": "emd"}}}
    cfg = dict(model_config)
    variables = models.create(cfg.pop("name"), **cfg).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    transform = {"name": "torchvision_squash", "image_size": 32, "bicubic": 0}
    both = bundle.write(str(tmp_path / "both"), model_config=model_config, variables=dict(variables), image_size=32,
                        transform=transform, critics=str(critic_bundle))
    images = np.random.default_rng(1).integers(0, 256, (3, 40, 45, 3), dtype=np.uint8)
    scored = aesthetics_jax.predict(list(images), model=both, batch_size=4)
    alone = aesthetics_jax.predict(list(images), model=str(critic_bundle), batch_size=4)
    api = aesthetics_jax.critique(list(images), model=str(critic_bundle), batch_size=4)
    for s_item, c_item, a_item in zip(scored, alone, api):
        assert len(s_item["predictions"]) == 10 and np.isfinite(s_item["mean_score_prediction"])
        assert set(s_item["critiques"]) == {"color", "dof"}
        assert s_item["critiques"] == c_item["critiques"] == a_item["critiques"]
        assert set(c_item) == {"image", "critiques"}


def test_critique_scorer_bundle_scores_images_through_its_experts(critic_bundle, tmp_path):
    """A critique scorer (configs/critique_iaa.py's model) packed with experts: `predict` on images
    writes the critiques, tokenises them and scores them -- the same numbers as the scorer applied by
    hand to the critiques the `critique` API returns."""
    import aesthetics_jax
    from aesthetics_jax import models
    from aesthetics_jax.export import bundle
    from aesthetics_jax.models import clip_tokenizer

    text = dict(context_length=16, width=32, layers=1, num_heads=4, embed_dim=24)
    model_config = {"name": "critique_text", "variant": "tiny", "text": text, "attributes": 2, "hidden": 8,
                    "preprocess": "none", "heads": {"emd": {"type": "emd"}}}
    cfg = dict(model_config)
    model = models.create(cfg.pop("name"), **cfg)
    dummy = jnp.zeros((1, 2, 16), jnp.int32)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), critique_tokens=dummy)
    transform = {"name": "torchvision_squash", "image_size": 32, "bicubic": 0}
    data = {"name": "demo", "image_size": 32, "critiques": {"path": "x.jsonl", "attributes": ["dof", "color"],
                                                            "context_length": 16}}
    scorer = bundle.write(str(tmp_path / "scorer"), model_config=model_config, variables=dict(variables), image_size=32,
                          transform=transform, config={"model": model_config, "data": data}, critics=str(critic_bundle))
    images = list(np.random.default_rng(2).integers(0, 256, (3, 36, 30, 3), dtype=np.uint8))
    scored = aesthetics_jax.predict(images, model=scorer, batch_size=4)
    critiques = aesthetics_jax.critique(images, model=str(critic_bundle), batch_size=4)
    texts = [c["critiques"][a] for c in critiques for a in ("dof", "color")]
    tokens = clip_tokenizer.tokenize(texts, context_length=16, truncate=True).reshape(3, 2, 16)
    want = model.apply(variables, jnp.zeros((3, 32, 32, 3)), critique_tokens=jnp.asarray(tokens))["emd"]
    for i, item in enumerate(scored):
        assert item["critiques"] == critiques[i]["critiques"]
        np.testing.assert_allclose(item["predictions"], np.asarray(want["distribution"][i]), atol=1e-6)
    # without experts the scorer has nothing to read: a clear error
    alone = bundle.write(str(tmp_path / "alone"), model_config=model_config, variables=dict(variables), image_size=32,
                         transform=transform, config={"model": model_config, "data": data})
    with pytest.raises(ValueError, match="holds no critique experts"):
        aesthetics_jax.predict(images, model=alone)
