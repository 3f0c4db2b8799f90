"""Decoding ClipCap critiques with a fixed-size KV cache: beam search, greedy, top-p sampling.

    tokens, lengths, scores = beam_search(model, params, prefix, stop_token=tok.encode(".")[0])
    text = tok.decode(tokens[b, 0, :lengths[b, 0]]).rstrip()    # image b's best critique

`model` is a `models.clipcap.ClipCap`, `params` its parameters, `prefix` the GPT-2 prefix
[B, P, n_embd] (`model.apply(v, features, method='prefix')`). Every function is one XLA program:
the prefix fills the cache once, then a `lax.while_loop` feeds one token per step into a cache of
P + max_tokens positions (shapes never change, so nothing recompiles per step or per length) and
stops when every sequence has stopped. Batches of images decode together; `jax.vmap` over stacked
expert parameters decodes several experts in the same call (`critique.critic`).

Beam search is CG-IAA's / ClipCap's released `generate_beam`, per image, exactly:
  * step 1: log(softmax(logits / temperature)) of the last prefix position; the top `beam` tokens
    start the beams (score = their log-probability, length 1);
  * each later step: a stopped beam may only continue with token 0 at no cost; the candidates'
    summed log-probabilities are divided by the length (stopped beams keep theirs, the others +1),
    the top `beam` of all beam x vocabulary candidates by that average survive, their score is the
    average times their length;
  * a beam stops on `stop_token` (".": critiques are one sentence); an image is done when all its
    beams have stopped (its state is then frozen, as the released loop `break`s), or after
    `max_tokens` tokens (67);
  * beams are returned best first by score / length; a beam's text is its first `length` tokens
    (the stop token included).
The log-probabilities are ``log(softmax(x))`` as released (not ``log_softmax``), so the scores are
bit-comparable. Greedy is the released `generate2` (whose top-p filter never removes the arg max,
so it is plain greedy); `top_p` sampling draws from the nucleus instead.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aesthetics_jax.models import gpt2 as gpt2_lib


def _log_probs(logits, temperature: float):
    t = temperature if temperature > 0 else 1.0
    return jnp.log(jax.nn.softmax(logits.astype(jnp.float32) / t, axis=-1))


def _prefill(model, params, prefix, max_tokens: int):
    b, p, _ = prefix.shape
    cache = gpt2_lib.init_cache(model.config.gpt2, b, p + max_tokens, prefix.dtype)
    logits, cache = model.apply(params, prefix, cache, last_only=True, method="lm")
    return logits[:, -1], cache


def _step(model, params, last, cache):
    """Feeds tokens ``last`` [N] at the cache's next position: ``(logits [N, vocab], cache)``."""
    embeds = model.apply(params, last[:, None], method="embed_tokens")
    logits, cache = model.apply(params, embeds, cache, method="lm")
    return logits[:, 0], cache


@functools.partial(jax.jit, static_argnames=("model", "beam", "max_tokens", "temperature"))
def beam_search(model, params, prefix, *, stop_token: int, beam: int = 5, max_tokens: int = 67,
                temperature: float = 1.0):
    """Released beam search for every image of ``prefix`` [B, P, D] (module docstring).

    Returns ``tokens`` [B, beam, max_tokens] int32 (0 after a beam's end), ``lengths`` [B, beam]
    int32 and ``scores`` [B, beam] (summed log-probability / length), beams best first.
    """
    b = prefix.shape[0]
    k = beam
    last_logits, cache = _prefill(model, params, prefix, max_tokens)
    vocab = last_logits.shape[-1]
    if k > vocab:
        raise ValueError(f"beam {k} exceeds the vocabulary ({vocab})")
    scores, first = jax.lax.top_k(_log_probs(last_logits, temperature), k)  # [B, K]
    tokens = jnp.zeros((b, k, max_tokens), jnp.int32).at[:, :, 0].set(first)
    lengths = jnp.ones((b, k), jnp.float32)
    stopped = first == stop_token
    # Every image's cache, once per beam: [L, B * K, T, H, hd].
    cache = {**cache, "key": jnp.repeat(cache["key"], k, axis=1), "value": jnp.repeat(cache["value"], k, axis=1)}

    def reorder(x, src):  # x [L, B * K, ...] -> the beams src [B, K] of each image
        shape = x.shape
        x = x.reshape(shape[0], b, k, *shape[2:])
        idx = src.reshape(1, b, k, *([1] * (len(shape) - 2)))
        return jnp.take_along_axis(x, idx, axis=2).reshape(shape)

    def cond(state):
        i, _, _, _, _, stopped, _ = state
        return (i < max_tokens) & ~jnp.all(stopped)

    def body(state):
        i, cache, tokens, scores, lengths, stopped, last = state
        logits, new_cache = _step(model, params, last.reshape(-1), cache)
        logp = _log_probs(logits, temperature).reshape(b, k, vocab)
        only_zero = jnp.where(jnp.arange(vocab) == 0, 0.0, -jnp.inf)
        logp = jnp.where(stopped[..., None], only_zero, logp)
        sums = scores[..., None] + logp
        grown = jnp.where(stopped, lengths, lengths + 1)
        avg, flat = jax.lax.top_k((sums / grown[..., None]).reshape(b, k * vocab), k)
        src, tok = flat // vocab, (flat % vocab).astype(jnp.int32)
        new_lengths = jnp.take_along_axis(grown, src, axis=1)
        new_tokens = jnp.take_along_axis(tokens, src[..., None], axis=1).at[:, :, i].set(tok)
        new_scores = avg * new_lengths
        new_stopped = jnp.take_along_axis(stopped, src, axis=1) | (tok == stop_token)
        new_cache = {**new_cache, "key": reorder(new_cache["key"], src), "value": reorder(new_cache["value"], src)}
        # An image whose beams had all stopped keeps its state (the released loop has ended for it).
        done = jnp.all(stopped, axis=1)
        keep = lambda old, new: jnp.where(done.reshape(b, *([1] * (new.ndim - 1))), old, new)
        kv_done = jnp.repeat(done, k).reshape(1, b * k, *([1] * (new_cache["key"].ndim - 2)))
        new_cache = {**new_cache, "key": jnp.where(kv_done, cache["key"], new_cache["key"]),
                     "value": jnp.where(kv_done, cache["value"], new_cache["value"])}
        return (i + 1, new_cache, keep(tokens, new_tokens), keep(scores, new_scores), keep(lengths, new_lengths),
                keep(stopped, new_stopped), keep(last, tok))

    state = (jnp.int32(1), cache, tokens, scores, lengths, stopped, first)
    _, _, tokens, scores, lengths, _, _ = jax.lax.while_loop(cond, body, state)
    norm = scores / lengths
    order = jnp.argsort(-norm, axis=1, stable=True)
    tokens = jnp.take_along_axis(tokens, order[..., None], axis=1)
    lengths = jnp.take_along_axis(lengths, order, axis=1).astype(jnp.int32)
    return tokens, lengths, jnp.take_along_axis(norm, order, axis=1)


@functools.partial(jax.jit, static_argnames=("model", "max_tokens", "temperature", "top_p"))
def sample(model, params, prefix, *, stop_token: int, max_tokens: int = 67, temperature: float = 1.0,
           top_p: float | None = None, rng=None):
    """Greedy decoding (``top_p`` None) or nucleus sampling (``top_p`` in (0, 1], ``rng`` required).

    Returns ``tokens`` [B, max_tokens] int32 (0 after the end) and ``lengths`` [B] int32 (the stop
    token included)."""
    b = prefix.shape[0]
    if top_p is not None and rng is None:
        raise ValueError("top_p sampling needs an rng")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    rng = jax.random.key(0) if rng is None else rng
    last_logits, cache = _prefill(model, params, prefix, max_tokens)

    def choose(logits, i):
        logits = logits.astype(jnp.float32) / (temperature if temperature > 0 else 1.0)
        if top_p is None:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        # Keep the smallest prefix of the sorted vocabulary whose mass reaches top_p (the first
        # token always).
        drop_sorted = jnp.concatenate([jnp.zeros_like(cum[:, :1], bool), cum[:, :-1] > top_p], axis=-1)
        drop = jnp.zeros_like(drop_sorted).at[jnp.arange(b)[:, None], order].set(drop_sorted)
        masked = jnp.where(drop, -jnp.inf, logits)
        return jax.random.categorical(jax.random.fold_in(rng, i), masked, axis=-1).astype(jnp.int32)

    first = choose(last_logits, 0)
    tokens = jnp.zeros((b, max_tokens), jnp.int32).at[:, 0].set(first)
    stopped = first == stop_token
    lengths = jnp.ones((b,), jnp.int32)

    def cond(state):
        i, _, _, _, stopped, _ = state
        return (i < max_tokens) & ~jnp.all(stopped)

    def body(state):
        i, cache, tokens, lengths, stopped, last = state
        logits, cache = _step(model, params, last, cache)
        tok = jnp.where(stopped, 0, choose(logits, i))
        tokens = tokens.at[:, i].set(tok)
        lengths = jnp.where(stopped, lengths, lengths + 1)
        return i + 1, cache, tokens, lengths, stopped | (tok == stop_token), tok

    state = (jnp.int32(1), cache, tokens, lengths, stopped, first)
    _, _, tokens, lengths, _, _ = jax.lax.while_loop(cond, body, state)
    return tokens, lengths
