"""GPT-2 (models/gpt2.py, convert/gpt2.py, models/gpt2_tokenizer.py) against transformers.

The reference is a tiny random `transformers.GPT2LMHeadModel` (CPU torch, every tensor perturbed
so LayerNorms and biases matter) saved with `save_pretrained` / `torch.save`: logits of the full
forward, of jitted incremental decoding with the KV cache and of right-padded batches must match
it to <= 1e-4 (float32). The tokenizer is checked against transformers' GPT-2 tokenizer and a
pure-Python rendering of OpenAI's GPT-2 BPE written here, on a vocabulary trained in the test.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from aesthetics_jax.convert import gpt2 as gpt2_convert  # noqa: E402
from aesthetics_jax.models import gpt2  # noqa: E402
from aesthetics_jax.models import gpt2_tokenizer  # noqa: E402

VOCAB, POSITIONS, WIDTH, LAYERS, HEADS = 300, 64, 32, 2, 4
TOL = 1e-4


def _hf_model(seed: int = 0, **overrides):
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=WIDTH, n_layer=LAYERS,
                                  n_head=HEADS, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, **overrides)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF's init has LN = identity and zero biases: perturb everything
        for name, p in model.named_parameters():
            if ".ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def _hf_logits(model, ids=None, embeds=None, attention_mask=None):
    with torch.no_grad():
        kwargs = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = torch.tensor(np.asarray(attention_mask))
        if ids is not None:
            kwargs["input_ids"] = torch.tensor(np.asarray(ids))
        else:
            kwargs["inputs_embeds"] = torch.tensor(np.asarray(embeds, np.float32))
        return model(**kwargs).logits.numpy()


@pytest.fixture(scope="module")
def hf():
    return _hf_model()


@pytest.fixture(scope="module")
def hf_dir(hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2_hf")
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def converted(hf_dir):
    params, config = gpt2_convert.load_pretrained(hf_dir)
    return params, config, gpt2.GPT2LMHeadModel(config)


@pytest.fixture(scope="module")
def apply(converted):
    """`model.apply` under jit (op-by-op Flax is slower than compiling these tiny graphs)."""
    params, _, model = converted
    jitted = jax.jit(model.apply, static_argnames=("method", "deterministic"))
    return lambda *args, **kwargs: jitted({"params": params}, *args, **kwargs)


def _state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _ids(shape, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, shape).astype(np.int32)


# ------------------------------------------------------------------------------------------------
# Config


def test_config_from_hf_and_variants(hf, converted):
    _, config, _ = converted
    assert config == gpt2.GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=WIDTH, n_layer=LAYERS,
                                     n_head=HEADS, eos_token_id=VOCAB - 1)
    assert gpt2.GPT2Config.from_dict(config.to_dict()) == config
    base = hf.config.to_dict()
    for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        with pytest.raises(ValueError, match=key):
            gpt2.GPT2Config.from_hf({**base, key: True})
    with pytest.raises(ValueError, match="activation_function"):
        gpt2.GPT2Config.from_hf({**base, "activation_function": "swish"})
    for act in ("gelu", "relu", "gelu_pytorch_tanh"):
        assert gpt2.GPT2Config.from_hf({**base, "activation_function": act}).activation == act
    # GPT-2 small's published parameter count (tied head), without allocating it.
    shapes = jax.eval_shape(gpt2.GPT2LMHeadModel(gpt2.VARIANTS["gpt2"]).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 1, 768)))
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 124_439_808
    for name, (layers, heads, width) in {"gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280),
                                         "gpt2-xl": (48, 25, 1600)}.items():
        v = gpt2.VARIANTS[name]
        assert (v.n_layer, v.n_head, v.n_embd, v.vocab_size, v.n_positions) == (layers, heads, width, 50257, 1024)


# ------------------------------------------------------------------------------------------------
# Forward parity, incremental decoding, padding, dropout


def test_logits_parity(hf, apply):
    ids = _ids((2, 12))
    embeds = apply(ids, method="embed_tokens")
    assert embeds.shape == (2, 12, WIDTH) and embeds.dtype == jnp.float32
    logits, cache = apply(embeds)
    assert cache is None and logits.dtype == jnp.float32 and logits.shape == (2, 12, VOCAB)
    np.testing.assert_allclose(logits, _hf_logits(hf, ids=ids), atol=TOL, rtol=0)
    np.testing.assert_allclose(logits, _hf_logits(hf, embeds=embeds), atol=TOL, rtol=0)
    # Arbitrary (prefix) embeddings, as a ClipCap caller passes them.
    prefix = np.random.default_rng(1).normal(size=(2, 5, WIDTH)).astype(np.float32)
    mixed = jnp.concatenate([prefix, embeds], axis=1)
    np.testing.assert_allclose(apply(mixed)[0], _hf_logits(hf, embeds=mixed), atol=TOL, rtol=0)


def test_incremental_decoding_matches_full_forward(hf, converted, apply):
    params, config, model = converted
    b, prefix_len, steps, max_length = 2, 4, 7, 16
    prefix = np.random.default_rng(2).normal(size=(b, prefix_len, WIDTH)).astype(np.float32)
    ids = _ids((b, steps), seed=3)
    traces = {"prefill": 0, "step": 0}

    @jax.jit
    def prefill(params, embeds, cache):
        traces["prefill"] += 1
        return model.apply({"params": params}, embeds, cache=cache)

    @functools.partial(jax.jit, donate_argnums=2)
    def step(params, token, cache):
        traces["step"] += 1
        embeds = model.apply({"params": params}, token[:, None], method="embed_tokens")
        return model.apply({"params": params}, embeds, cache=cache)

    cache = gpt2.init_cache(config, b, max_length)
    assert cache["key"].shape == (LAYERS, b, max_length, HEADS, WIDTH // HEADS)
    assert cache["value"].shape == cache["key"].shape and cache["index"].shape == ()
    first, cache = prefill(params, prefix, cache)
    step_logits = [first]
    for i in range(steps):
        logits, cache = step(params, jnp.asarray(ids[:, i]), cache)
        step_logits.append(logits)
    assert int(cache["index"]) == prefix_len + steps
    assert traces == {"prefill": 1, "step": 1}  # one compiled step for every position
    got = np.concatenate([np.asarray(x) for x in step_logits], axis=1)

    embeds = jnp.concatenate([prefix, apply(ids, method="embed_tokens")], axis=1)
    full, _ = apply(embeds)
    np.testing.assert_allclose(got, full, atol=TOL, rtol=0)
    np.testing.assert_allclose(got, _hf_logits(hf, embeds=embeds), atol=TOL, rtol=0)

    # Beam-style reordering touches only the key/value leaves (index is a shared scalar).
    order = jnp.array([1, 0])
    swapped = {**cache, **{k: cache[k][:, order] for k in ("key", "value")}}
    np.testing.assert_array_equal(swapped["key"][:, 0], cache["key"][:, 1])


def test_right_padded_batch_with_attention_mask(hf, converted, apply):
    config = converted[1]
    lengths = np.array([10, 6, 3, 0])
    t = 10
    ids = _ids((4, t), seed=4)
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, ids, 0)
    embeds = apply(ids, method="embed_tokens")
    logits, _ = apply(embeds, attention_mask=mask)
    assert np.isfinite(np.asarray(logits)).all()  # the all-padding row included
    ref = _hf_logits(hf, ids=ids[:3], attention_mask=mask[:3])
    for row, n in enumerate(lengths[:3]):
        np.testing.assert_allclose(logits[row, :n], ref[row, :n], atol=TOL, rtol=0)
        unpadded, _ = apply(embeds[row:row + 1, :n])
        np.testing.assert_allclose(logits[row, :n], unpadded[0], atol=TOL, rtol=0)

    # The same padded prefill through a cache, with the mask over all max_length slots.
    max_length = 16
    cache_mask = np.concatenate([mask, np.ones((4, max_length - t), np.int32)], axis=1)
    cached, cache = apply(embeds, cache=gpt2.init_cache(config, 4, max_length), attention_mask=cache_mask)
    assert int(cache["index"]) == t
    for row, n in enumerate(lengths[:3]):
        np.testing.assert_allclose(cached[row, :n], logits[row, :n], atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="attention_mask"):
        apply(embeds, cache=gpt2.init_cache(config, 4, max_length), attention_mask=mask)


def test_left_padded_batch_with_cache(hf, converted, apply):
    """Left padding is where the key mask matters (with right padding causality already hides the
    pads from valid positions): padded prompts, then decoding steps through the cache with a
    [B, max_length] mask, against the full forward and transformers with the same mask (positions
    are not shifted by the padding, in both)."""
    config = converted[1]
    t, steps, max_length = 8, 3, 16
    lengths = np.array([8, 5, 2])
    mask = (np.arange(t)[None] >= (t - lengths)[:, None]).astype(np.int32)
    ids = np.where(mask == 1, _ids((3, t), seed=6), 0)
    more = _ids((3, steps), seed=7)
    full_ids = np.concatenate([ids, more], axis=1)
    full_mask = np.concatenate([mask, np.ones((3, steps), np.int32)], axis=1)
    full, _ = apply(apply(full_ids, method="embed_tokens"), attention_mask=full_mask)
    assert np.isfinite(np.asarray(full)).all()  # leading pad queries see no key at all
    ref = _hf_logits(hf, ids=full_ids, attention_mask=full_mask)
    valid = full_mask.astype(bool)
    np.testing.assert_allclose(np.asarray(full)[valid], ref[valid], atol=TOL, rtol=0)

    cache_mask = np.concatenate([mask, np.ones((3, max_length - t), np.int32)], axis=1)
    first, cache = apply(apply(ids, method="embed_tokens"), cache=gpt2.init_cache(config, 3, max_length),
                         attention_mask=cache_mask)
    got = [first]
    for i in range(steps):
        logits, cache = apply(apply(more[:, i:i + 1], method="embed_tokens"), cache=cache, attention_mask=cache_mask)
        got.append(logits)
    got = np.concatenate([np.asarray(x) for x in got], axis=1)
    np.testing.assert_allclose(got[valid], np.asarray(full)[valid], atol=TOL, rtol=0)


def test_dropout_only_when_not_deterministic(apply):
    embeds = apply(_ids((2, 8), seed=5), method="embed_tokens")
    base, _ = apply(embeds)
    same, _ = apply(embeds, deterministic=True, rngs={"dropout": jax.random.PRNGKey(1)})
    np.testing.assert_array_equal(base, same)
    drop1, _ = apply(embeds, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
    drop2, _ = apply(embeds, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    assert np.abs(np.asarray(drop1) - np.asarray(base)).max() > 1e-3
    assert np.abs(np.asarray(drop1) - np.asarray(drop2)).max() > 1e-3


def test_init_matches_converted_tree(converted):
    params, _, model = converted
    fresh = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 1, WIDTH)))["params"]
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert jax.tree.map(lambda x: x.shape, fresh) == jax.tree.map(lambda x: x.shape, params)
    assert set(params) == {"wte", "wpe", "ln_f"} | {f"h_{i}" for i in range(LAYERS)}
    assert params["h_0"]["attn"]["c_attn"]["kernel"].shape == (WIDTH, 3 * WIDTH)


# ------------------------------------------------------------------------------------------------
# Conversion


def test_load_pytorch_bin_and_state_dict_names(hf, hf_dir, converted, tmp_path):
    params, config, _ = converted
    (tmp_path / "config.json").write_text((hf_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        gpt2_convert.load_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    params_bin, config_bin = gpt2_convert.load_pretrained(tmp_path)
    assert config_bin == config
    jax.tree.map(np.testing.assert_array_equal, params_bin, params)

    sd = _state_dict(hf)
    assert "lm_head.weight" in sd
    # Bare GPT2Model names, plus the old mask buffers (dropped by named rules).
    bare = {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")}
    bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, POSITIONS, POSITIONS), np.uint8))
    bare["h.1.attn.masked_bias"] = np.asarray(-1e4, np.float32)
    jax.tree.map(np.testing.assert_array_equal, gpt2_convert.convert_state_dict(bare, config), params)
    assert gpt2_convert.infer_config(sd, n_head=HEADS, eos_token_id=VOCAB - 1) == config
    with pytest.raises(ValueError, match="n_head"):
        gpt2_convert.infer_config(sd)  # 32 // 64 == 0 heads


def test_strict_conversion_errors(hf, converted):
    params, config, _ = converted
    sd = _state_dict(hf)
    missing = {k: v for k, v in sd.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"h_1/mlp/c_fc/bias") as e:
        gpt2_convert.convert_state_dict(missing, config, origin="some.bin")
    assert "some.bin" in str(e.value)
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.attn\.extra"):
        gpt2_convert.convert_state_dict({**sd, "transformer.h.0.attn.extra": np.zeros(3)}, config)
    wrong = {**sd, "transformer.h.0.ln_2.bias": np.zeros(WIDTH + 1, np.float32)}
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.ln_2\.bias.*shape \(33,\)"):
        gpt2_convert.convert_state_dict(wrong, config)
    untied = {**sd, "lm_head.weight": sd["lm_head.weight"] + 1}
    with pytest.raises(ValueError, match="untied"):
        gpt2_convert.convert_state_dict(untied, config)
    with pytest.raises(ValueError, match="h_2"):  # a config with more layers than the weights
        gpt2_convert.convert_state_dict(sd, gpt2.GPT2Config(**{**config.to_dict(), "n_layer": 3}))


def test_prefix_clipcap_style(hf, converted):
    params, config, _ = converted
    sd = _state_dict(hf)
    clipcap = {"gpt." + k: v for k, v in sd.items()}
    clipcap["clip_project.model.0.weight"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"clip_project\.model\.0\.weight"):
        gpt2_convert.convert_state_dict(clipcap, config, prefix="gpt.")
    only_gpt = {k: v for k, v in clipcap.items() if k.startswith("gpt.")}
    jax.tree.map(np.testing.assert_array_equal, gpt2_convert.convert_state_dict(only_gpt, config, prefix="gpt."),
                 params)
    assert gpt2_convert.infer_config(only_gpt, prefix="gpt.", n_head=HEADS, eos_token_id=VOCAB - 1) == config


# ------------------------------------------------------------------------------------------------
# Tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte -> printable character table: printable Latin-1 bytes map to
    themselves, the other 68 bytes to U+0100, U+0101, ... in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


class _ReferenceBPE:
    """OpenAI's GPT-2 encoder, in plain Python (independent of the `tokenizers` package)."""

    PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def __init__(self, vocab_path, merges_path):
        regex = pytest.importorskip("regex")
        self.vocab = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
        lines = Path(merges_path).read_text(encoding="utf-8").split("\n")
        pairs = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        self.ranks = {pair: i for i, pair in enumerate(pairs)}
        self.byte_map = _bytes_to_unicode()
        self.pattern = regex.compile(self.PATTERN)

    def _bpe(self, word: str) -> list[str]:
        parts = list(word)
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode(self, text: str) -> list[int]:
        ids = []
        pieces = text.split(gpt2_tokenizer.EOT)
        for n, piece in enumerate(pieces):
            if n:
                ids.append(self.vocab[gpt2_tokenizer.EOT])
            for chunk in self.pattern.findall(piece):
                word = "".join(self.byte_map[b] for b in chunk.encode("utf-8"))
                ids.extend(self.vocab[token] for token in self._bpe(word))
        return ids


TEXTS = [
    "Hello world",
    " Hello world",
    "A photo of a cat, sitting on a mat.",
    "don't, can't, it's, we're, I've, you'll, he'd, I'm",
    "Numbers: 3.14159, 42, 1,000,000 and 2024-01-01",
    "multiple   spaces    here  ",
    "line one\nline two\n\n\ttabbed\r\nwindows",
    "unicode: café, naïve, Ærøskøbing, 東京, Привет мир",
    "emoji 😀🎉 and 👩‍👩‍👧 family",
    "punctuation!!! ??? ... --- (brackets) [square] {curly} <angle> @#$%^&*",
    "ending with space ",
    "",
    "text<|endoftext|>more text",
    "   leading spaces",
]

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a photo of a cat sitting on a mat, don't you think? it's lovely",
    "Numbers 0123456789 and more numbers 42 3.14",
    "unicode café naïve 東京 Привет 😀 🎉",
    "line breaks\nand tabs\tand   spaces",
    "punctuation!!! ??? ... --- (brackets) [square] {curly}",
    "We're here, you'll see, I've been, he'd go, I'm done.",
]


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    path = tmp_path_factory.mktemp("gpt2_bpe")
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(CORPUS * 20, vocab_size=400, min_frequency=1, special_tokens=[gpt2_tokenizer.EOT],
                                show_progress=False)
    trainer.save_model(str(path))
    return path


def test_tokenizer_matches_references(bpe_files):
    tok = gpt2_tokenizer.GPT2Tokenizer.from_dir(bpe_files)
    vocab = json.loads((bpe_files / "vocab.json").read_text(encoding="utf-8"))
    assert tok.vocab_size == len(vocab) > 350
    assert tok.eos_token_id == vocab[gpt2_tokenizer.EOT] == tok.token_to_id(gpt2_tokenizer.EOT)
    assert tok.token_to_id("not-a-token-in-this-vocab") is None
    hf_tok = transformers.GPT2Tokenizer.from_pretrained(str(bpe_files))
    reference = _ReferenceBPE(bpe_files / "vocab.json", bpe_files / "merges.txt")
    batch = tok.encode_batch(TEXTS)
    for text, ids in zip(TEXTS, batch):
        assert tok.encode(text) == ids
        assert ids == reference.encode(text), text
        assert ids == hf_tok.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == text
        assert tok.decode(np.asarray(ids, np.int32)) == text
    assert len(tok.encode(" the quick brown fox")) < len(" the quick brown fox")  # merges were applied
    eot = tok.encode("a<|endoftext|>b")
    assert tok.eos_token_id in eot and tok.decode(eot, skip_special_tokens=True) == "ab"


def test_tokenizer_missing_files(bpe_files, tmp_path):
    (tmp_path / "vocab.json").write_text((bpe_files / "vocab.json").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="merges.txt.*huggingface-cli download gpt2"):
        gpt2_tokenizer.GPT2Tokenizer.from_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        gpt2_tokenizer.GPT2Tokenizer.from_dir(tmp_path / "nowhere")
