"""Caption records through the input pipeline: group selection, one caption drawn per image per
step (deterministic, resumable), tokenised exactly as OpenAI's `clip.tokenize` (the independent
reference: the `openai-clip` package's own tokenizer)."""

import importlib.util

import cv2
import numpy as np
import pytest

from aesthetics_jax.data import datasets, pipeline
from aesthetics_jax.models import clip_tokenizer


def _openai_tokenize(text, context_length):
    """OpenAI's own `simple_tokenizer.py` (openai-clip package; loaded without its torch-importing
    package __init__), padded as `clip.tokenize` pads."""
    path = clip_tokenizer.default_bpe_path().parent / "simple_tokenizer.py"
    if not path.is_file():
        pytest.skip("openai-clip's simple_tokenizer.py not installed")
    spec = importlib.util.spec_from_file_location("openai_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tok = module.SimpleTokenizer(str(clip_tokenizer.default_bpe_path()))
    ids = [tok.encoder["<|startoftext|>"]] + tok.encode(text) + [tok.encoder["<|endoftext|>"]]
    return tuple(ids + [0] * (context_length - len(ids)))


def _record(i, captions, groups):
    pixels = np.full((40, 48, 3), 20 * i, np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels)
    assert ok
    return {"image": jpeg.tobytes(), "id": np.int64(100 + i),
            "captions": np.array([c.encode() for c in captions], dtype=object),
            "caption_attributes": np.array([g.encode() for g in groups], dtype=object),
            "caption_groups": np.array([g.encode() for g in groups], dtype=object),
            "distribution": np.full(10, 0.1, np.float32), "mean_score": np.float32(5.5),
            "votes": np.int32(100 + i), "has_labels": np.bool_(i % 2 == 0)}


RECORDS = [
    _record(0, ["the colours are washed out", "the subject is out of focus"], ["color", "dof"]),
    _record(1, ["tack sharp"], ["dof"]),
    _record(2, ["a warm colour cast", "nicely framed", "grainy and noisy"], ["color", "composition", "general"]),
    _record(3, ["well balanced light"], ["color"]),
]


def test_group_selection_keeps_only_that_groups_captions():
    source = datasets.CaptionSource(RECORDS, groups=("color",))
    assert len(source) == 3  # record 1 has no colour caption
    assert [int(source[i]["id"]) for i in range(3)] == [100, 102, 103]
    assert source[1]["captions"] == ["a warm colour cast"] and source[1]["caption_groups"] == ["color"]
    every = datasets.CaptionSource(RECORDS)
    assert len(every) == 4 and every[2]["captions"] == ["a warm colour cast", "nicely framed", "grainy and noisy"]
    assert every.captions()[1] == {"id": 101, "captions": ["tack sharp"], "caption_groups": ["dof"]}
    with pytest.raises(ValueError, match="unknown"):
        datasets.CaptionSource(RECORDS, groups=("colour",))


def _iterate(source, steps, state=None):
    it = pipeline.make_iterator(source, train=True, batch_size=2, image_size=32, resize_size=32, seed=3,
                                shard_index=0, shard_count=1, num_threads=0, keys=datasets.CAPTION_KEYS,
                                text_transform=datasets.CaptionTokens(context_length=16))
    if state is not None:
        it.set_state(state)
    return it, [next(it) for _ in range(steps)]


def test_batches_carry_one_tokenised_caption_per_image_deterministically():
    source = datasets.CaptionSource(RECORDS)
    _, batches = _iterate(source, 8)
    by_id = {int(r["id"]): [c.decode() for c in r["captions"]] for r in RECORDS}
    seen = {i: set() for i in by_id}
    for batch in batches:
        assert batch["tokens"].shape == (2, 16) and batch["tokens"].dtype == np.int32
        assert batch["has_labels"].dtype == np.bool_
        for image_id, tokens in zip(batch["id"], batch["tokens"]):
            options = {_openai_tokenize(c, 16): c for c in by_id[int(image_id)]}
            assert tuple(tokens.tolist()) in options  # one of *its own* captions, tokenised as OpenAI does
            seen[int(image_id)].add(options[tuple(tokens.tolist())])
    assert len(seen[102]) >= 2  # different captions of one image are drawn over epochs
    # Same seed -> same draws; a restored iterator continues with exactly the same batches.
    it, first = _iterate(source, 3)
    state = it.get_state()
    rest = [next(it) for _ in range(3)]
    _, resumed = _iterate(source, 3, state)
    for a, b in zip(first + rest, batches[:6]):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    for a, b in zip(rest, resumed):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
        np.testing.assert_array_equal(a["image"], b["image"])


def test_long_captions_are_truncated_ending_in_eot():
    long = ["a " * 40 + "photo"]
    tokens = datasets.CaptionTokens(context_length=8)({"captions": long, "id": 1}, np.random.default_rng(0))["tokens"]
    assert tokens.shape == (8,) and tokens[0] == 49406 and tokens[-1] == 49407
    with pytest.raises(ValueError, match="no captions"):
        datasets.CaptionTokens()({"captions": [], "id": 7}, np.random.default_rng(0))
