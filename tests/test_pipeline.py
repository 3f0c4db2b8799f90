"""Preprocessing and the grain pipeline: shapes, determinism, crop/flip, checkpointing, sharding."""

import os

import cv2
import grain
import numpy as np
import pytest

from aesthetics_jax.data import pipeline, preprocessing
from aesthetics_jax.data.builders import ava
from ava_fixture import write_ava_fixture

N = 37  # not a multiple of any batch size used below


def _record(i: int, rng: np.random.Generator) -> dict:
    size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
    greyscale = i % 5 == 0
    pixels = rng.integers(0, 256, size if greyscale else (*size, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png" if i % 7 == 0 else ".jpg", pixels)  # decode_jpeg takes any cv2 format
    histogram = rng.integers(0, 20, 10) + 1
    return {"image": data.tobytes(), "distribution": (histogram / histogram.sum()).astype(np.float32),
            "mean_score": float(np.dot(np.arange(1, 11), histogram) / histogram.sum()),
            "votes": int(histogram.sum()), "id": 5000 + i}


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(0)
    return [_record(i, rng) for i in range(N)]


def _collect(it, n=None):
    out = []
    for batch in it:
        out.append(batch)
        if n is not None and len(out) == n:
            break
    return out


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


EVAL = dict(train=False, batch_size=8, image_size=16, resize_size=20, shard_index=0, shard_count=1, num_threads=2)
TRAIN = dict(train=True, batch_size=8, image_size=16, resize_size=20, seed=3, shard_index=0, shard_count=1, num_threads=2)


def test_decode_jpeg_rgb_and_greyscale():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    ok, data = cv2.imencode(".png", rgb[..., ::-1])  # cv2 writes BGR
    np.testing.assert_array_equal(preprocessing.decode_jpeg(data.tobytes()), rgb)
    grey = np.full((5, 7), 90, np.uint8)
    ok, data = cv2.imencode(".jpg", grey)
    out = preprocessing.decode_jpeg(data.tobytes())
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and np.abs(out.astype(int) - 90).max() <= 1
    with pytest.raises(ValueError):
        preprocessing.decode_jpeg(b"not an image")


def test_transforms_match_numpy_reference():
    image = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    # resize_size == image size: no resampling, so the reference is pure slicing.
    centre = preprocessing.eval_transform(image, resize_size=20, image_size=12)
    np.testing.assert_array_equal(centre, image[4:16, 4:16])
    for seed in range(20):
        out = preprocessing.train_transform(image, np.random.default_rng(seed), resize_size=20, image_size=12)
        ref_rng = np.random.default_rng(seed)  # documented draw order: row, column, flip
        top, left, flip = ref_rng.integers(0, 9), ref_rng.integers(0, 9), ref_rng.random() < 0.5
        ref = image[top : top + 12, left : left + 12]
        np.testing.assert_array_equal(out, ref[:, ::-1] if flip else ref)
    big = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocessing.resize(big, 20), cv2.resize(big, (20, 20), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(preprocessing.resize(image[:10], 20),
                                  cv2.resize(image[:10], (20, 20), interpolation=cv2.INTER_LINEAR))
    # Shrinking by at most 2x on both sides (AVA's 500x375 -> 256) is bilinear; beyond 2x, area.
    mid = big[:, :40]  # 50x40 -> 20x20 needs 2.5x vertically: area
    np.testing.assert_array_equal(preprocessing.resize(mid, 20), cv2.resize(mid, (20, 20), interpolation=cv2.INTER_AREA))
    ava_like = big[:38, :40]  # 1.9x and 2x: bilinear
    np.testing.assert_array_equal(preprocessing.resize(ava_like, 20),
                                  cv2.resize(ava_like, (20, 20), interpolation=cv2.INTER_LINEAR))


def test_eval_batches_shapes_order_and_determinism(source):
    batches = _collect(pipeline.make_iterator(source, **EVAL))
    assert [len(b["id"]) for b in batches] == [8, 8, 8, 8, 5]  # single pass, remainder kept
    b = batches[0]
    assert b["image"].shape == (8, 16, 16, 3) and b["image"].dtype == np.uint8
    assert b["distribution"].shape == (8, 10) and b["distribution"].dtype == np.float32
    assert b["mean_score"].dtype == np.float32 and b["votes"].dtype == np.int32 and b["id"].dtype == np.int64
    assert b["mask"].dtype == bool and b["mask"].all()
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in batches]), [r["id"] for r in source])
    for i, record in enumerate(source[:8]):  # image = centre crop of the resized decode
        ref = preprocessing.resize(preprocessing.decode_jpeg(record["image"]), 20)[2:18, 2:18]
        np.testing.assert_array_equal(b["image"][i], ref)
        np.testing.assert_allclose(b["mean_score"][i], record["mean_score"], rtol=1e-6)
    _assert_batches_equal(batches, _collect(pipeline.make_iterator(source, **dict(EVAL, num_threads=0))))


def test_train_crops_and_flips_are_exact(source):
    """Every training image is one of the (offset, flip) crops of its resized decode, and both
    flips and many offsets occur."""
    batches = _collect(pipeline.make_iterator(source, **TRAIN), 12)
    by_id = {r["id"]: preprocessing.resize(preprocessing.decode_jpeg(r["image"]), 20) for r in source}
    seen_flip, offsets = set(), set()
    for batch in batches:
        assert batch["image"].shape == (8, 16, 16, 3)
        for image, image_id in zip(batch["image"], batch["id"]):
            full = by_id[int(image_id)]
            matches = [(t, l, f) for t in range(5) for l in range(5) for f in (False, True)
                       if np.array_equal(image, (full[t : t + 16, l : l + 16])[:, ::-1] if f else full[t : t + 16, l : l + 16])]
            assert matches, f"image {image_id} is not a crop/flip of its source"
            seen_flip |= {m[2] for m in matches}
            offsets |= {m[:2] for m in matches}
    assert seen_flip == {False, True} and len(offsets) > 10


def test_train_order_is_seeded_and_epochs_reshuffle(source):
    ids = lambda seed: np.concatenate([b["id"] for b in _collect(
        pipeline.make_iterator(source, **dict(TRAIN, seed=seed, batch_size=37, image_size=8, resize_size=8)), 2)])
    a, b = ids(3), ids(3)
    np.testing.assert_array_equal(a, b)
    assert sorted(a[:37]) == sorted(a[37:]) == [r["id"] for r in source]  # each epoch is a permutation
    assert not np.array_equal(a[:37], a[37:])  # reshuffled
    assert not np.array_equal(a, ids(4))


def test_state_restore_gives_identical_batches(source):
    it = pipeline.make_iterator(source, **TRAIN)
    _collect(it, 6)  # past the first epoch boundary (37 examples / 8 per batch)
    state = it.get_state()
    expected = _collect(it, 5)
    restored = pipeline.make_iterator(source, **TRAIN)
    restored.set_state(state)
    _assert_batches_equal(_collect(restored, 5), expected)

    ev = pipeline.make_iterator(source, **EVAL)
    next(ev)
    state = ev.get_state()
    rest = _collect(ev)
    fresh = pipeline.make_iterator(source, **EVAL)
    fresh.set_state(state)
    _assert_batches_equal(_collect(fresh), rest)


def test_orbax_checkpoint_of_iterator(source, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    it = pipeline.make_iterator(source, **TRAIN)
    _collect(it, 3)
    manager = ocp.CheckpointManager(tmp_path, item_names=("state", "data"))
    manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave({"w": np.arange(3.0)}),
                                            data=grain.checkpoint.CheckpointSave(it)))
    expected = _collect(it, 3)  # the saved state must not move with the live iterator
    manager.wait_until_finished()
    manager.close()

    fresh = pipeline.make_iterator(source, **TRAIN)
    manager = ocp.CheckpointManager(tmp_path, item_names=("state", "data"))
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore({"w": np.zeros(3)}), data=grain.checkpoint.CheckpointRestore(fresh)))
    manager.close()
    np.testing.assert_array_equal(restored["state"]["w"], np.arange(3.0))
    _assert_batches_equal(_collect(restored["data"], 3), expected)


def _concat(batches):
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


@pytest.mark.parametrize("count", [2, 3])
def test_shards_are_row_slices_of_the_one_host_global_batches(source, count):
    """Host k of `count` (batch_size b each) reads rows [k*b, (k+1)*b) of every global batch that one
    host with batch size b*count reads: same examples, same augmentation, same order."""
    b = 4 if count == 2 else 2
    single = _collect(pipeline.make_iterator(source, **dict(TRAIN, batch_size=b * count)), 12)
    hosts = [_collect(pipeline.make_iterator(source, **dict(TRAIN, batch_size=b, shard_index=k, shard_count=count)),
                      12) for k in range(count)]
    for step, want in enumerate(single):  # 12 global batches > 37 examples: epochs 1 and 2
        got = _concat([hosts[k][step] for k in range(count)])
        _assert_batches_equal([got], [want])


def test_padded_eval_gives_equal_batches_on_every_shard(source):
    hosts = []
    for k in range(3):  # 37 examples, global batches of 24: 2 per host, the last 11 rows padding
        batches = list(pipeline.make_iterator(source, **dict(EVAL, shard_index=k, shard_count=3, pad_remainder=True)))
        assert [len(b["id"]) for b in batches] == [8, 8]
        hosts.append(batches)
    stream = _concat([_concat([hosts[k][step] for k in range(3)]) for step in range(2)])
    mask = stream["mask"]
    assert mask.sum() == N and mask[:N].all()  # every example once, in source order, then padding
    assert stream["id"][:N].tolist() == [r["id"] for r in source]
    assert not stream["image"][~mask].any()
    single = _concat(list(pipeline.make_iterator(source, **dict(EVAL, pad_remainder=True))))
    for key in single:  # one host: the same examples and images, padded to whole batches of 8 only
        np.testing.assert_array_equal(stream[key][:N], single[key][:N], err_msg=key)
    with pytest.raises(ValueError):
        pipeline.make_iterator(source, **dict(TRAIN, pad_remainder=True))


def test_unpadded_eval_shards_cover_every_example_once(source):
    ids = [np.concatenate([b["id"] for b in pipeline.make_iterator(source, **dict(EVAL, shard_index=k, shard_count=3))])
           for k in range(3)]  # 37 = 24 + 13: the last global batch gives hosts 8, 5 and 0 rows
    assert [len(x) for x in ids] == [16, 13, 8]
    assert sorted(np.concatenate(ids).tolist()) == [r["id"] for r in source]


def test_tfds_source_end_to_end(tmp_path):
    write_ava_fixture(tmp_path / "raw")
    builder = ava.build_ava(tmp_path / "raw", tmp_path / "tfds")
    for source in (pipeline.make_source("ava", "train", tmp_path / "tfds"),
                   pipeline.make_source(builder.data_dir, "train"),
                   pipeline.make_source(builder, "train")):
        assert len(source) == 9 and isinstance(source[0]["image"], bytes)
    batch = next(pipeline.make_iterator(source, **dict(TRAIN, batch_size=4, image_size=16, resize_size=24)))
    assert batch["image"].shape == (4, 16, 16, 3) and batch["distribution"].shape == (4, 10)
    np.testing.assert_allclose(batch["distribution"].sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(batch["mean_score"], (batch["distribution"] * np.arange(1, 11)).sum(1), rtol=1e-5)


class _PidSource:
    """Records stamped with the id of the process that read them (picklable, for worker tests)."""

    def __init__(self, records):
        self._records = records

    def __len__(self):
        return len(self._records)

    def __getitem__(self, index):
        return dict(self._records[index], pid=os.getpid())


def test_worker_processes_give_the_same_examples_and_resume(source):
    """num_workers > 0 (grain mp_prefetch) reads in other processes, yields the same (id -> image)
    examples as the threaded pipeline, and its iterator state restores to identical batches."""
    stamped = _collect(pipeline.make_iterator(_PidSource(source), **dict(TRAIN, num_workers=2, keys=("id", "pid"))), 2)
    pids = {int(p) for b in stamped for p in b["pid"]}
    assert pids and os.getpid() not in pids
    threaded = _collect(pipeline.make_iterator(source, **dict(TRAIN, num_threads=2)), 4)
    it = pipeline.make_iterator(source, **dict(TRAIN, num_threads=2, num_workers=2))
    procs = _collect(it, 4)
    by_id = lambda batches: {int(i): img.tobytes() for b in batches for i, img in zip(b["id"], b["image"])}
    assert sorted(np.concatenate([b["id"] for b in procs])) == sorted(np.concatenate([b["id"] for b in threaded]))
    assert by_id(procs) == by_id(threaded)
    state = it.get_state()
    expected = _collect(it, 3)
    restored = pipeline.make_iterator(source, **dict(TRAIN, num_threads=2, num_workers=2))
    restored.set_state(state)
    _assert_batches_equal(_collect(restored, 3), expected)
