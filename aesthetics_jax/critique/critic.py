"""The critic: CLIP image tower + attribute experts (ClipCap), every expert for a batch in one call.

    critic = Critic.from_bundle("cgiaa_critic")           # `aesthetics-jax convert --from cgiaa ...`
    critic.critique(pixels)    # uint8 [B, S, S, 3] (the bundle's transform applied) ->
                               # [{'color': '...', 'composition': '...', 'dof': '...', 'general': '...'}, ...]

One jitted program per batch shape: pixels -> CLIP image feature (L2-normalised projected class
token, CG-IAA's expert input) -> for every expert (`jax.vmap` over the experts' stacked parameters)
its prefix -> decoding (`decoding.beam_search`, or greedy / top-p `decoding.sample`). The experts
must share one architecture (CG-IAA's four do). Texts are the tokens up to each sequence's length
decoded with the GPT-2 tokenizer, trailing white space stripped (as the released `AesCritique`).

Critic payload of a bundle (`export/bundle.py`: written by `write_payload`, read by `from_bundle`)::

    critics.json          {"format_version", "attributes": [...], "clipcap": ClipCapConfig dict,
                           "clip": {"vision": CLIPVisionConfig dict, "text": CLIPTextConfig dict or
                           null}, "stop": ".", "decoding": {"method", "beam",
                           "max_tokens", "temperature", "top_p"}, "tokenizer": {"vocab", "merges"}}
    critics.safetensors   "clip/<path>" (the whole CLIP: image tower for the feature, text tower for
                          critique-based scoring) and "experts/<attribute>/<path>"
    gpt2_vocab.json, gpt2_merges.txt    the GPT-2 tokenizer (decoding needs nothing downloaded)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aesthetics_jax.critique import decoding
from aesthetics_jax.models import clip as clip_lib
from aesthetics_jax.models import clipcap as clipcap_lib
from aesthetics_jax.models import gpt2_tokenizer
from aesthetics_jax.models import preprocessing

PAYLOAD_JSON = "critics.json"
PAYLOAD_PARAMS = "critics.safetensors"
VOCAB, MERGES = "gpt2_vocab.json", "gpt2_merges.txt"
METHODS = ("beam", "greedy", "top_p")
DEFAULT_DECODING = {"method": "beam", "beam": 5, "max_tokens": 67, "temperature": 1.0, "top_p": 0.8}


def unflatten(flat: dict) -> dict:
    """``{"a/b/c": array}`` (a payload's safetensors keys) -> the nested parameter tree."""
    return traverse_util.unflatten_dict(flat, sep="/")


def write_payload(directory: str, *, clip_params, clip_config: clip_lib.CLIPConfig | clip_lib.CLIPVisionConfig,
                  experts: dict,
                  clipcap_config: clipcap_lib.ClipCapConfig, vocab: str, merges: str, decoding_options=None,
                  stop: str = ".") -> None:
    """Writes the critic payload files into ``directory`` (a bundle being staged)."""
    from safetensors.numpy import save_file

    flat = traverse_util.flatten_dict({"clip": clip_params, "experts": dict(experts)}, sep="/")
    arrays = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in flat.items()}
    save_file(arrays, os.path.join(directory, PAYLOAD_PARAMS))
    shutil.copyfile(vocab, os.path.join(directory, VOCAB))
    shutil.copyfile(merges, os.path.join(directory, MERGES))
    meta = {"format_version": 1, "attributes": list(experts), "clipcap": clipcap_config.to_dict(),
            "clip": _clip_meta(clip_config), "stop": stop, "decoding": {**DEFAULT_DECODING, **(decoding_options or {})},
            "tokenizer": {"vocab": VOCAB, "merges": MERGES}}
    with open(os.path.join(directory, PAYLOAD_JSON), "w") as f:
        json.dump(meta, f, indent=2)


def _clip_meta(config) -> dict:
    """critics.json's "clip": the image tower's config and, for a whole CLIP, the text tower's."""
    if isinstance(config, clip_lib.CLIPVisionConfig):
        return {"vision": dataclasses.asdict(config), "text": None}
    return config.to_dict()


class Critic:
    """Generates attribute critiques for batches of images (module docstring)."""

    def __init__(self, *, vision_config: clip_lib.CLIPVisionConfig, clip_params, clipcap_config: clipcap_lib.ClipCapConfig,
                 experts: dict, tokenizer, stop: str = ".", method: str = "beam", beam: int = 5, max_tokens: int = 67,
                 temperature: float = 1.0, top_p: float = 0.8, attributes=None, seed: int = 0, dtype="float32"):
        if method not in METHODS:
            raise ValueError(f"decoding method must be one of {METHODS}, got {method!r}")
        attributes = list(attributes) if attributes else list(experts)
        unknown = [a for a in attributes if a not in experts]
        if unknown:
            raise ValueError(f"attributes {unknown} have no expert; this critic has {sorted(experts)}")
        if beam < 1 or max_tokens < 1:
            raise ValueError(f"beam and max_tokens must be >= 1, got {beam}, {max_tokens}")
        self.attributes = attributes
        self.vision_config, self.clipcap_config = vision_config, clipcap_config
        self.tokenizer = tokenizer
        stop_ids = tokenizer.encode(stop)
        if not stop_ids:
            raise ValueError(f"the stop string {stop!r} encodes to no token")
        self.stop_token = int(stop_ids[0])
        self.method, self.beam, self.max_tokens = method, int(beam), int(max_tokens)
        self.temperature, self.top_p, self.seed = float(temperature), float(top_p), int(seed)
        dtype = jnp.dtype(dtype)
        self.visual = clip_lib.CLIPVisionTransformer(variant="vit_b16", pooled="projected", dtype=dtype,
                                                     **vars(vision_config))
        self.model = clipcap_lib.ClipCap(clipcap_config, dtype)
        self.visual_params = {"params": clip_params["visual"]}
        self.expert_params = {"params": jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                                                     *[experts[a] for a in attributes])}
        self.image_size = vision_config.image_size
        self._calls = 0

    @classmethod
    def from_bundle(cls, bundle, **options):
        """A critic from a bundle (path or `export.bundle.Bundle`) holding a critic payload."""
        from aesthetics_jax.export import bundle as bundle_lib

        b = bundle if isinstance(bundle, bundle_lib.Bundle) else bundle_lib.load(bundle, load_variables=False)
        payload = b.critics
        if payload is None:
            raise ValueError(f"{b.path}: this bundle holds no critique experts (convert CG-IAA's with "
                             "`aesthetics-jax convert --from cgiaa DIR --out OUT`)")
        meta, arrays, files = payload["meta"], payload["arrays"], payload["files"]
        tree = unflatten(arrays)
        with tempfile.TemporaryDirectory(prefix="aesthetics_jax_tokenizer_") as tmp:
            paths = []
            for key in ("vocab", "merges"):
                paths.append(os.path.join(tmp, meta["tokenizer"][key]))
                with open(paths[-1], "wb") as f:
                    f.write(files[meta["tokenizer"][key]])
            tokenizer = gpt2_tokenizer.GPT2Tokenizer.from_files(*paths)
        opts = {**meta.get("decoding", {}), **{k: v for k, v in options.items() if v is not None}}
        return cls(vision_config=clip_lib.CLIPVisionConfig(**meta["clip"]["vision"]), clip_params=tree["clip"],
                   clipcap_config=clipcap_lib.ClipCapConfig.from_dict(meta["clipcap"]), experts=tree["experts"],
                   tokenizer=tokenizer, stop=meta.get("stop", "."), **opts)

    @functools.cached_property
    def _program(self):
        model, visual = self.model, self.visual
        method, beam, max_tokens = self.method, self.beam, self.max_tokens
        temperature, top_p, stop = self.temperature, self.top_p, self.stop_token

        def run(visual_params, expert_params, pixels, rng):
            features = clipcap_lib.image_features(visual.apply(visual_params, preprocessing.normalize(pixels, "clip")))

            def one(params):
                prefix = model.apply(params, features, method="prefix")
                if method == "beam":
                    tokens, lengths, _ = decoding.beam_search(model, params, prefix, stop_token=stop, beam=beam,
                                                              max_tokens=max_tokens, temperature=temperature)
                    return tokens[:, 0], lengths[:, 0]
                return decoding.sample(model, params, prefix, stop_token=stop, max_tokens=max_tokens,
                                       temperature=temperature, top_p=top_p if method == "top_p" else None, rng=rng)

            return jax.vmap(one)(expert_params)  # [E, B, T], [E, B]

        return jax.jit(run)

    def tokens(self, pixels):
        """Token ids [E, B, max_tokens] and lengths [E, B] of every expert's critique of every image."""
        pixels = jnp.asarray(pixels)
        if pixels.ndim != 4 or pixels.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"the critic expects images [B, {self.image_size}, {self.image_size}, 3], got {pixels.shape}")
        rng = jax.random.fold_in(jax.random.key(self.seed), self._calls)
        self._calls += 1
        tokens, lengths = self._program(self.visual_params, self.expert_params, pixels, rng)
        return np.asarray(tokens), np.asarray(lengths)

    def decode(self, tokens, lengths) -> list[dict]:
        out = []
        for b in range(tokens.shape[1]):
            out.append({a: self.tokenizer.decode([int(t) for t in tokens[e, b, :lengths[e, b]]]).rstrip()
                        for e, a in enumerate(self.attributes)})
        return out

    def critique_resized(self, batch, batch_size: int) -> list[dict]:
        """Critiques of a prepared batch [N, S, S, 3] of another model's input size (a scorer's, in a
        bundle holding both): resized to the critic's size (bilinear, antialiased) when S differs,
        padded to a power of two (at most ``batch_size``) so that few shapes compile."""
        batch = np.asarray(batch, np.float32)
        n = len(batch)
        if batch.shape[1:3] != (self.image_size, self.image_size):
            batch = np.asarray(jax.image.resize(batch, (n, self.image_size, self.image_size, 3), "bilinear"))
        padded = min(max(batch_size, n), 1 << (n - 1).bit_length())
        if n < padded:
            batch = np.concatenate([batch, np.zeros((padded - n, *batch.shape[1:]), batch.dtype)])
        tokens, lengths = self.tokens(batch)
        return self.decode(tokens[:, :n], lengths[:, :n])

    def critique(self, pixels) -> list[dict]:
        """``[{attribute: critique}]`` for every image of ``pixels`` (uint8 [B, S, S, 3])."""
        return self.decode(*self.tokens(pixels))
