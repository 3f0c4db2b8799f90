"""GPT-2's byte-level BPE tokenizer from local `vocab.json` + `merges.txt`, offline.

The files are those of any transformers GPT-2 tokenizer / model directory (they are not shipped
here and never downloaded: on a machine with internet, `huggingface-cli download gpt2 vocab.json
merges.txt --local-dir DIR`). The algorithm is OpenAI's GPT-2 encoder, run by the `tokenizers`
package (Rust): no normaliser; the GPT-2 regex pre-tokenisation (contractions 's 't 're 've 'm
'll 'd, optional-space + letters, optional-space + digits, optional-space + other symbols,
whitespace runs) without an added prefix space; every byte mapped to a printable unicode
character; greedy lowest-rank merges from `merges.txt`. Decoding maps the characters back to
bytes and decodes UTF-8 with replacement (like transformers' `errors='replace'`), so
`decode(encode(text)) == text` for any string.

`<|endoftext|>`, when in the vocabulary, is registered as a special token (as transformers does
for GPT-2's bos/eos/unk): the literal string in a text encodes to its single id (`eos_token_id`),
and `decode(..., skip_special_tokens=True)` drops it. No BOS / EOS is added by `encode`.

    tok = GPT2Tokenizer.from_dir("gpt2_dir")          # or from_files(vocab_json, merges_txt)
    ids = tok.encode("A photo of a cat.")             # list[int], same ids as transformers' GPT-2
    text = tok.decode(ids)                            # 'A photo of a cat.'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

EOT = "<|endoftext|>"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"


class GPT2Tokenizer:
    """Byte-level BPE (GPT-2); build with `from_files` or `from_dir`."""

    def __init__(self, tokenizer):
        """Wraps a configured `tokenizers.Tokenizer` (use the class methods)."""
        self._tok = tokenizer
        self._eos = tokenizer.token_to_id(EOT)

    @classmethod
    def from_files(cls, vocab_json, merges_txt) -> "GPT2Tokenizer":
        from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
        from tokenizers.models import BPE

        vocab_json, merges_txt = Path(vocab_json), Path(merges_txt)
        for path in (vocab_json, merges_txt):
            if not path.is_file():
                raise FileNotFoundError(f"GPT-2 tokenizer file {path} not found")
        try:
            json.loads(vocab_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{vocab_json}: not a JSON vocabulary ({e})") from None
        try:
            model = BPE.from_file(str(vocab_json), str(merges_txt))
        except Exception as e:  # tokenizers raises its own exception type for malformed files
            raise ValueError(f"GPT-2 BPE files {vocab_json} / {merges_txt} could not be read: {e}") from None
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        if tokenizer.token_to_id(EOT) is not None:
            tokenizer.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
        return cls(tokenizer)

    @classmethod
    def from_dir(cls, directory) -> "GPT2Tokenizer":
        """A transformers tokenizer / model directory holding `vocab.json` and `merges.txt`."""
        directory = Path(directory)
        for name in (VOCAB_FILE, MERGES_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory}: no {name} (GPT-2's tokenizer needs {VOCAB_FILE} and {MERGES_FILE}). Get them on a "
                    f"machine with internet with `huggingface-cli download gpt2 {VOCAB_FILE} {MERGES_FILE} "
                    f"--local-dir DIR` (or from any transformers GPT-2 `save_pretrained` directory) and copy them here"
                )
        return cls.from_files(directory / VOCAB_FILE, directory / MERGES_FILE)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eos_token_id(self) -> int | None:
        """The id of `<|endoftext|>`, None when the vocabulary lacks it."""
        return self._eos

    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary entry (byte-level form, e.g. 'Ġcat' for ' cat'); None if absent."""
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(int(token_id))

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"encode_batch expects strings, got {type(t).__name__}")
        return [list(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Ids (any int sequence or 1-D array) -> text; invalid UTF-8 becomes U+FFFD."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Iterable[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]
