"""CLIP's byte-level BPE tokenizer, offline, without torch.

The vocabulary is OpenAI's `bpe_simple_vocab_16e6.txt.gz` (49,152 entries: 256 bytes, 256
bytes + '</w>', 48,894 merges, <|startoftext|> 49406, <|endoftext|> 49407). It is not downloaded:
it is read from the installed PyPI package **openai-clip** (1.0.1, a 1.4 MB sdist whose only
dependencies are ftfy, regex and tqdm; it ships the file as `clip/bpe_simple_vocab_16e6.txt.gz`).
If that is absent, the same file inside **open_clip_torch** (`open_clip/`) is used. The packages
are located with `importlib.util.find_spec`, which does not execute them, so torch is never
imported. `bpe_path=` points at any other copy of the file.

The algorithm is OpenAI's `clip/simple_tokenizer.py`: ftfy.fix_text, double html.unescape,
whitespace collapsing, lower-casing, the same regex pre-tokenisation, byte-to-unicode mapping and
greedy lowest-rank BPE merges. `tokenize` returns what OpenAI's `clip.tokenize` returns:
`[<|startoftext|>, ids..., <|endoftext|>]` zero-padded to `context_length` (int32 numpy).

    tok = CLIPTokenizer()
    ids = tok.tokenize(["a photo of a cat", "a blurry photo"])      # [2, 77] int32
    text = tok.decode(tok.encode("a photo of a cat"))             # 'a photo of a cat '

`write_hf_files(out_dir)` writes the same vocabulary as Hugging Face's `vocab.json` +
`merges.txt`, so `transformers.CLIPTokenizer` can be built from it (the parity test does).
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
# Packages (import name, as installed from PyPI) that ship the vocabulary file, in order of use.
VOCAB_PACKAGES = (("clip", "openai-clip"), ("open_clip", "open_clip_torch"))


def default_bpe_path() -> Path:
    """Path of `bpe_simple_vocab_16e6.txt.gz` inside an installed package (see module docstring)."""
    tried = []
    for module, dist in VOCAB_PACKAGES:
        spec = importlib.util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = Path(location) / BPE_FILENAME
            if path.is_file():
                return path
        tried.append(f"{dist} ({module}/{BPE_FILENAME})")
    raise FileNotFoundError(
        f"CLIP BPE vocabulary not found in any of: {', '.join(tried)}. Install it with "
        f"`pip install openai-clip==1.0.1` (no torch needed) or pass bpe_path= to a copy of {BPE_FILENAME}."
    )


@functools.lru_cache()
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_merges(bpe_path: str | os.PathLike) -> list[tuple[str, str]]:
    """The merge list of a CLIP BPE file (gzip text; the first line is a header)."""
    with gzip.open(bpe_path) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    bad = [i + 2 for i, m in enumerate(merges) if len(m) != 2]
    if len(merges) != NUM_MERGES or bad:
        raise ValueError(f"{bpe_path}: not a CLIP BPE file ({len(merges)} merges, malformed lines {bad[:5]})")
    return merges


def _pairs(word: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(word[:-1], word[1:]))


class CLIPTokenizer:
    """OpenAI CLIP's tokenizer (see module docstring)."""

    def __init__(self, bpe_path: str | os.PathLike | None = None):
        import ftfy  # noqa: F401  (fail early with a clear message if missing)
        import regex

        self.bpe_path = Path(bpe_path) if bpe_path is not None else default_bpe_path()
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        merges = read_merges(self.bpe_path)
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.merges = merges
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._regex = regex
        self.sot_token = self.encoder[SOT]
        self.eot_token = self.encoder[EOT]

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._regex.sub(r"\s+", " ", text).strip().lower()

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without start/end tokens."""
        ids = []
        for token in self._regex.findall(self.pattern, self._clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def tokenize(self, texts: str | Sequence[str], context_length: int = 77, truncate: bool = False) -> np.ndarray:
        """`clip.tokenize`: [N, context_length] int32, SOT + ids + EOT, zero padded.

        Raises ValueError for a text longer than `context_length` unless `truncate` (which keeps
        the first `context_length` tokens and makes the last one EOT, as OpenAI does)."""
        if isinstance(texts, str):
            texts = [texts]
        result = np.zeros((len(texts), context_length), np.int32)
        for row, text in enumerate(texts):
            ids = [self.sot_token] + self.encode(text) + [self.eot_token]
            if len(ids) > context_length:
                if not truncate:
                    raise ValueError(
                        f"text {row} ({text[:40]!r}...) is {len(ids)} tokens, longer than context_length "
                        f"{context_length}; pass truncate=True"
                    )
                ids = ids[:context_length]
                ids[-1] = self.eot_token
            result[row, : len(ids)] = ids
        return result

    def write_hf_files(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Writes `vocab.json` and `merges.txt` (Hugging Face CLIPTokenizer format) to `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        vocab_path, merges_path = out / "vocab.json", out / "merges.txt"
        vocab_path.write_text(json.dumps(self.encoder, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in self.merges]
        merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return vocab_path, merges_path


@functools.lru_cache(maxsize=4)
def get_tokenizer(bpe_path: str | None = None) -> CLIPTokenizer:
    """A cached `CLIPTokenizer` (building one parses 49k merges, ~0.3 s)."""
    return CLIPTokenizer(bpe_path)


def tokenize(texts: str | Sequence[str], context_length: int = 77, truncate: bool = False) -> np.ndarray:
    """`clip.tokenize` with the default vocabulary: [N, context_length] int32."""
    return get_tokenizer().tokenize(texts, context_length=context_length, truncate=truncate)
