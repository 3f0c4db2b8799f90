"""GPT-2 language model (OpenAI / Hugging Face layout) in Flax Linen, with a fixed-size KV cache.

Layout (`GPT2LMHeadModel`; parameter names follow transformers' `GPT2LMHeadModel` so that
`convert/gpt2.py` is a renaming, no transposes)::

    wte          Embed [vocab_size, n_embd]     token embeddings; also the (tied) LM head
    wpe          Embed [n_positions, n_embd]    learned absolute positions
    h_{i}        x += attn(ln_1(x)); x += mlp(ln_2(x))          (pre-LN blocks, i < n_layer)
                   ln_1, ln_2        LayerNorm (eps layer_norm_epsilon)
                   attn/c_attn       Dense(3 * n_embd): q, k, v concatenated on the output axis
                   attn/c_proj       Dense(n_embd)
                   mlp/c_fc          Dense(4 * n_embd) -> activation
                   mlp/c_proj        Dense(n_embd)
    ln_f         final LayerNorm; logits = ln_f(x) @ wte.T  (`nn.Embed.attend`, no bias)

Dense kernels are [in, out], which is exactly the layout of HF's `Conv1D.weight`. LayerNorms
compute in float32 whatever the compute dtype (`dtype`); params are float32; logits are returned
in float32. Attention is causal with scale 1 / sqrt(head_dim) and a float32 softmax.
Activation `gelu_new` / `gelu_pytorch_tanh` is GELU's tanh approximation (every released GPT-2),
`gelu` the exact (erf) one, `relu` ReLU.

The model takes *embeddings*, not ids: `embed_tokens(ids)` gives wte(ids) [B, T, n_embd] (compute
dtype), so a caller can put anything in front of the tokens (ClipCap: a projected CLIP prefix).
Positions (wpe) are added inside `__call__`, then embedding dropout.

    logits, new_cache = model.apply({'params': params}, inputs_embeds, cache=None,
                                    attention_mask=None, deterministic=True)

KV cache contract (`init_cache(config, batch_size, max_length, dtype)`), a plain pytree::

    {'key':   [n_layer, B, max_length, n_head, head_dim]  (zeros; `dtype`)
     'value': [n_layer, B, max_length, n_head, head_dim]
     'index': int32 scalar: the number of positions already written (positions 0 .. index-1)}

A call with a cache of T inputs writes their keys/values at positions [index, index + T)
(`jax.lax.dynamic_update_slice`), uses positions index + arange(T) for wpe, lets query position p
attend to cached positions <= p (so never to stale or unwritten slots), and returns the cache with
index + T. All shapes are fixed by `max_length`, so under `jax.jit` one compiled function serves
every decoding step (and another every prefill of a given length). The caller must keep
index + T <= max_length <= n_positions: `dynamic_update_slice` clamps its start index, so
overflowing silently overwrites the last slots (not checked: index is a traced value).
'index' is a scalar shared by the batch: to reorder or gather beams along the batch axis map only
the 'key' / 'value' leaves, e.g.
`cache = {**cache, **{k: cache[k][:, beam_idx] for k in ('key', 'value')}}` (a blind
`jax.tree.map(lambda x: x[:, idx], cache)` fails on the scalar).

`attention_mask` (optional, [B, key_length] of 1 = attend / 0 = padding; key_length = T without a
cache, max_length with one) removes padded *keys*; it is combined (AND) with the causal mask.
Positions are not shifted by it (as in HF's GPT-2 when `position_ids` is not given): it is meant
for right padding, where the valid prefix of every row is computed exactly as the unpadded row.
With a cache, mask slots >= index + T need no particular value (causality already hides them),
so a [B, max_length] mask of the prompt's padding followed by ones works for decoding. A query
whose keys are all masked (e.g. a row that is all padding) attends uniformly instead of producing
NaN; its output is meaningless but finite.

Dropout (rng stream 'dropout', only when `deterministic=False`): embd_pdrop after wte + wpe,
attn_pdrop on the attention probabilities, resid_pdrop after each c_proj.

Example (ClipCap-style: a prefix of embeddings, then greedy decoding with one compiled step)::

    params, cfg = convert.gpt2.load_pretrained('gpt2_dir')     # HF save_pretrained directory
    model = gpt2.GPT2LMHeadModel(cfg)                           # (or VARIANTS[...] + model.init)

    @jax.jit
    def prefill(params, embeds, cache):
        return model.apply({'params': params}, embeds, cache=cache)

    @jax.jit
    def step(params, token, cache):                             # token [B] int32
        embeds = model.apply({'params': params}, token[:, None], method='embed_tokens')
        logits, cache = model.apply({'params': params}, embeds, cache=cache)
        return jnp.argmax(logits[:, -1], axis=-1), cache

    cache = gpt2.init_cache(cfg, batch_size=B, max_length=prefix_len + 40)
    logits, cache = prefill(params, prefix_embeds, cache)      # [B, prefix_len, n_embd]
    token = jnp.argmax(logits[:, -1], axis=-1)
    tokens = [token]
    for _ in range(39):
        token, cache = step(params, token, cache)
        tokens.append(token)                                    # stop at cfg.eos_token_id

Variants (`VARIANTS`): gpt2 (124M: 12 layers, 12 heads, 768), gpt2-medium (24/16/1024),
gpt2-large (36/20/1280), gpt2-xl (48/25/1600), and `tiny` for tests.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu")

# transformers GPT2Config options whose non-default values change the computation in ways this
# model does not implement: (key, the supported value, why).
_UNSUPPORTED_HF = (
    ("scale_attn_by_inverse_layer_idx", False, "attention scores divided by (layer index + 1)"),
    ("reorder_and_upcast_attn", False, "the reordered, upcast attention of Mistral-style training"),
    ("add_cross_attention", False, "cross-attention layers (encoder-decoder use)"),
    ("scale_attn_weights", True, "unscaled attention scores"),
    ("tie_word_embeddings", True, "an LM head not tied to wte"),
)


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    activation: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    eos_token_id: int | None = 50256

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> "GPT2Config":
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown GPT-2 activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if self.n_head <= 0 or self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GPT2Config.{name} must be positive, got {getattr(self, name)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "GPT2Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown GPT2Config fields {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_hf(cls, d: Mapping) -> "GPT2Config":
        """From a transformers GPT-2 `config.json` dict; unrelated keys (summary_*, dtype, ...) are
        ignored, missing ones take transformers' defaults (which are this class's defaults)."""
        model_type = d.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(f"config.json has model_type={model_type!r}; only 'gpt2' is supported")
        for key, supported, what in _UNSUPPORTED_HF:
            if key in d and d[key] is not None and bool(d[key]) != supported:
                raise ValueError(f"config.json has {key}={d[key]!r} ({what}), which this GPT-2 does not implement")
        n_embd = int(d.get("n_embd", cls.n_embd))
        n_inner = d.get("n_inner")
        if n_inner is not None and int(n_inner) != 4 * n_embd:
            raise ValueError(f"config.json has n_inner={n_inner}; only the standard 4 * n_embd = {4 * n_embd} "
                             "is supported")
        act = d.get("activation_function", cls.activation)
        if act not in ACTIVATIONS:
            raise ValueError(f"config.json has activation_function={act!r}; supported: {', '.join(ACTIVATIONS)}")
        eos = d.get("eos_token_id", cls.eos_token_id)
        if isinstance(eos, (list, tuple)):
            if len(eos) != 1:
                raise ValueError(f"config.json has eos_token_id={eos!r}; a single id is supported")
            eos = eos[0]
        config = cls(
            vocab_size=int(d.get("vocab_size", cls.vocab_size)),
            n_positions=int(d.get("n_positions", cls.n_positions)),
            n_embd=n_embd,
            n_layer=int(d.get("n_layer", cls.n_layer)),
            n_head=int(d.get("n_head", cls.n_head)),
            layer_norm_epsilon=float(d.get("layer_norm_epsilon", cls.layer_norm_epsilon)),
            activation=act,
            resid_pdrop=float(d.get("resid_pdrop", cls.resid_pdrop)),
            embd_pdrop=float(d.get("embd_pdrop", cls.embd_pdrop)),
            attn_pdrop=float(d.get("attn_pdrop", cls.attn_pdrop)),
            eos_token_id=None if eos is None else int(eos),
        )
        return config.validate()


VARIANTS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": GPT2Config(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": GPT2Config(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": GPT2Config(n_layer=48, n_head=25, n_embd=1600),
    "tiny": GPT2Config(vocab_size=300, n_positions=128, n_embd=32, n_layer=2, n_head=4, eos_token_id=299),
}


def init_cache(config: GPT2Config, batch_size: int, max_length: int, dtype: Any = jnp.float32) -> dict:
    """An empty KV cache for `max_length` positions (see the module docstring for the contract)."""
    if not 0 < max_length <= config.n_positions:
        raise ValueError(f"cache max_length must be in [1, n_positions={config.n_positions}], got {max_length}")
    shape = (config.n_layer, batch_size, max_length, config.n_head, config.head_dim)
    return {"key": jnp.zeros(shape, dtype), "value": jnp.zeros(shape, dtype), "index": jnp.zeros((), jnp.int32)}


def activation(name: str, x):
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if name == "relu":
        return jax.nn.relu(x)
    raise ValueError(f"unknown GPT-2 activation {name!r}; known: {', '.join(ACTIVATIONS)}")


def _layer_norm(eps: float, name: str):
    """LayerNorm computing in float32 (callers cast in and out); params `<name>/scale`, `/bias`."""
    return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=jnp.float32, name=name)


def _dense(features: int, dtype, name: str, std: float = 0.02):
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=nn.initializers.normal(std),
                    name=name)


class GPT2Attention(nn.Module):
    """Causal self-attention; with a cache, writes this call's keys/values into layer `layer`."""

    config: GPT2Config
    layer: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, cache_kv=None, index=None, deterministic: bool = True):
        cfg = self.config
        b, t, _ = x.shape
        h, d = cfg.n_head, cfg.head_dim
        qkv = _dense(3 * cfg.n_embd, self.dtype, "c_attn")(x)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        q, k, v = (y.reshape(b, t, h, d) for y in (q, k, v))
        if cache_kv is not None:
            keys, values = cache_kv
            start = (self.layer, 0, index, 0, 0)
            keys = jax.lax.dynamic_update_slice(keys, k[None].astype(keys.dtype), start)
            values = jax.lax.dynamic_update_slice(values, v[None].astype(values.dtype), start)
            cache_kv = (keys, values)
            k = keys[self.layer].astype(self.dtype)
            v = values[self.layer].astype(self.dtype)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(d)
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1)
        probs = nn.Dropout(cfg.attn_pdrop)(probs, deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v).reshape(b, t, cfg.n_embd)
        out = _dense(cfg.n_embd, self.dtype, "c_proj", 0.02 / math.sqrt(2 * cfg.n_layer))(out)
        return nn.Dropout(cfg.resid_pdrop)(out, deterministic=deterministic), cache_kv


class GPT2MLP(nn.Module):
    config: GPT2Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        cfg = self.config
        y = activation(cfg.activation, _dense(4 * cfg.n_embd, self.dtype, "c_fc")(x))
        y = _dense(cfg.n_embd, self.dtype, "c_proj", 0.02 / math.sqrt(2 * cfg.n_layer))(y)
        return nn.Dropout(cfg.resid_pdrop)(y, deterministic=deterministic)


class GPT2Block(nn.Module):
    config: GPT2Config
    layer: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, cache_kv=None, index=None, deterministic: bool = True):
        eps = self.config.layer_norm_epsilon
        y = _layer_norm(eps, "ln_1")(x.astype(jnp.float32)).astype(self.dtype)
        y, cache_kv = GPT2Attention(self.config, self.layer, self.dtype, name="attn")(
            y, mask, cache_kv, index, deterministic)
        x = x + y
        y = _layer_norm(eps, "ln_2")(x.astype(jnp.float32)).astype(self.dtype)
        return x + GPT2MLP(self.config, self.dtype, name="mlp")(y, deterministic), cache_kv


class GPT2LMHeadModel(nn.Module):
    """GPT-2 with its tied LM head (see the module docstring for layout, cache and masks).

    Methods:
      embed_tokens(ids [B, T] int) -> wte(ids) [B, T, n_embd] (compute dtype).
      __call__(inputs_embeds [B, T, n_embd], *, cache=None, attention_mask=None,
               deterministic=True, last_only=False) -> (logits [B, T, vocab_size] float32,
               new_cache or None); last_only: the last position's logits only ([B, 1, vocab]),
               what a prefill for decoding needs (the LM head is the largest matmul).

    Initialise with `model.init(rng, jnp.zeros((1, 1, config.n_embd)))` (creates every param,
    wte included, since the head reads it).
    """

    config: GPT2Config = VARIANTS["gpt2"]
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config.validate()
        embed = nn.initializers.normal(0.02)
        self.wte = nn.Embed(cfg.vocab_size, cfg.n_embd, dtype=self.dtype, param_dtype=jnp.float32,
                            embedding_init=embed)
        self.wpe = nn.Embed(cfg.n_positions, cfg.n_embd, dtype=self.dtype, param_dtype=jnp.float32,
                            embedding_init=nn.initializers.normal(0.01))
        self.h = [GPT2Block(cfg, i, self.dtype, name=f"h_{i}") for i in range(cfg.n_layer)]
        self.ln_f = _layer_norm(cfg.layer_norm_epsilon, "ln_f")
        self.drop = nn.Dropout(cfg.embd_pdrop)

    def embed_tokens(self, ids):
        """Token ids [B, T] -> wte(ids) [B, T, n_embd] in the compute dtype."""
        return self.wte(jnp.asarray(ids))

    def __call__(self, inputs_embeds, *, cache: dict | None = None, attention_mask=None,
                 deterministic: bool = True, last_only: bool = False):
        cfg = self.config
        x = jnp.asarray(inputs_embeds)
        if x.ndim != 3 or x.shape[-1] != cfg.n_embd:
            raise ValueError(f"inputs_embeds must be [B, T, n_embd={cfg.n_embd}], got shape {x.shape}")
        b, t, _ = x.shape
        if cache is None:
            if t > cfg.n_positions:
                raise ValueError(f"sequence length {t} exceeds n_positions {cfg.n_positions}")
            start = jnp.zeros((), jnp.int32)
            key_length = t
            cache_kv = None
        else:
            missing = {"key", "value", "index"} - set(cache)
            if missing:
                raise ValueError(f"cache lacks {sorted(missing)}; build it with gpt2.init_cache")
            key_length = cache["key"].shape[2]
            expected = (cfg.n_layer, b, key_length, cfg.n_head, cfg.head_dim)
            for name in ("key", "value"):
                if cache[name].shape != expected:
                    raise ValueError(f"cache[{name!r}] has shape {cache[name].shape}, expected {expected} "
                                     f"([n_layer, B, max_length, n_head, head_dim])")
            if key_length > cfg.n_positions:
                raise ValueError(f"cache max_length {key_length} exceeds n_positions {cfg.n_positions}")
            if t > key_length:
                raise ValueError(f"{t} inputs do not fit a cache of max_length {key_length}")
            start = jnp.asarray(cache["index"], jnp.int32)
            cache_kv = (cache["key"], cache["value"])
        q_pos = start + jnp.arange(t, dtype=jnp.int32)
        k_pos = jnp.arange(key_length, dtype=jnp.int32)
        mask = (k_pos[None, :] <= q_pos[:, None])[None, None]  # [1, 1, T, K]
        if attention_mask is not None:
            attention_mask = jnp.asarray(attention_mask)
            if attention_mask.shape != (b, key_length):
                raise ValueError(f"attention_mask must be [B={b}, key_length={key_length}] (key_length = T without a "
                                 f"cache, max_length with one), got {attention_mask.shape}")
            mask = mask & (attention_mask != 0)[:, None, None, :]

        x = x.astype(self.dtype) + self.wpe(q_pos)[None]
        x = self.drop(x, deterministic=deterministic)
        for block in self.h:
            x, cache_kv = block(x, mask, cache_kv, start, deterministic)
        if last_only:  # decoding reads the next-token distribution only: skip the LM head elsewhere
            x = x[:, -1:]
        x = self.ln_f(x.astype(jnp.float32)).astype(self.dtype)
        logits = self.wte.attend(x).astype(jnp.float32)
        new_cache = None
        if cache is not None:
            new_cache = {"key": cache_kv[0], "value": cache_kv[1], "index": start + t}
        return logits, new_cache
