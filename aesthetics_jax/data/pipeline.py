"""Grain input pipeline over TFDS array_record sources: decode -> resize/crop/flip -> batch.

    source = make_source("ava", "train", data_dir)          # random access, image = JPEG bytes
    it = make_iterator(source, train=True, batch_size=64, image_size=224, resize_size=256, seed=0)
    batch = next(it)   # {'image': uint8[B,224,224,3], 'distribution': float32[B,10],
                       #  'mean_score': float32[B], 'votes': int32[B], 'id': int64[B], 'mask': bool[B]}

Pipeline (grain lazy-dataset API, grain 0.2.18):

    MapDataset.source(source)
      train: .seed(seed).shuffle().repeat(num_epochs)          reshuffled every epoch
             .random_map(decode + train_transform)             crop/flip rng from grain (index-seeded)
      eval:  .map(decode + eval_transform)  [+ padding]         fixed order, one pass by default
      [_GlobalBatchRows(shard_index, shard_count, batch_size)]  this host's rows of each global batch
      .to_iter_dataset(ReadOptions(num_threads, prefetch_buffer_size))  threads (cv2 drops the GIL)
      .batch(batch_size, drop_remainder)

Multi-host sharding: the example stream (shuffle order and augmentation, both functions of the
global position) is defined once for the whole job, then cut into global batches of
``batch_size * shard_count`` examples; host ``p`` reads rows ``[p * batch_size, (p + 1) * batch_size)``
of every global batch (and decodes only those). So the global batch at every step holds the same
examples, augmented the same way, in the same order, whatever the number of hosts (so 2 hosts x 4
devices reach the parameters of 1 host x 8 devices: tests/test_multihost.py). Sharding the records
before shuffling (grain's ``ShardOptions`` / ``[shard_index::shard_count]``) would not: each host
would shuffle its own subset. With one host the stream is read as is.

Batches are numpy, images uint8 (normalise on device). A record with a ``map`` (PNG bytes, from
``datasets.ModalitySource`` in "rgb+map" mode) gets it as a 4th channel, stacked before the
transforms so the map and the RGB pixels get the same resize, crop and flip: images [B, S, S, 4]. `mask` is False only on padding rows,
which exist only with `pad_remainder=True` (eval): the example stream is then padded to
ceil(N / (batch_size * shard_count)) full global batches, so every host yields the same number of
equally shaped batches (what a multi-host jitted eval step needs); padding rows are zeros, at the
end of the stream.

Determinism and checkpointing: the iterator is a `grain.DatasetIterator`; its whole position
(epoch, index, shuffle and augmentation seeds are functions of it) is `it.get_state()`, a small
JSON-able dict, and `it.set_state(state)` on a freshly made iterator with the same arguments resumes
with exactly the batches the original would have produced. With Orbax (orbax-checkpoint 0.11.36),
save the iterator beside the train state:

    import grain, orbax.checkpoint as ocp
    mngr = ocp.CheckpointManager(workdir, item_names=("state", "data"))
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=grain.checkpoint.CheckpointSave(it)))
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(it)))      # restores `it` in place
    it = restored["data"]

`grain.checkpoint.CheckpointHandler` writes `process_<i>-of-<n>.json` per host (process index from
jax), so each host restores its own shard's position. It writes the state when `save` is called,
so an async CheckpointManager still records the position at that step even if the iterator moves
on before the save finishes (tests/test_pipeline.py checks this).

OpenCV's own thread pool: `make_dataset` calls `cv2.setNumThreads(opencv_threads)` (default 1,
process-wide). cv2.resize otherwise splits every 256 x 256 resize across all cores, which on a
2-core box costs more than it gains once grain's read threads already run images in parallel
(benchmarks/input_pipeline.py: 224 -> 393 img/s with num_threads=0 on a loaded 2-core box).
Pass `opencv_threads=None` to leave OpenCV's setting alone.

Notes for callers: `id` is int64 and only for bookkeeping; with jax_enable_x64 off, keep it on the
host (device_put would truncate it to int32). Throughput measured on the 2-core box (train
transform, batch 64): AVA-sized 500x375 JPEGs -> 256 -> 224: 580 img/s with num_threads=0,
~1,100-1,160 with 2-8 threads; demo JPEGs (128 px) -> 128 -> 112: ~3,300 img/s with 0 threads,
~2,400 with 2-8 (decoding is too cheap there to pay for thread hand-offs).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import cv2
from absl import flags
import grain
import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import preprocessing

__all__ = ["DEFAULT_KEYS", "make_source", "make_dataset", "make_iterator"]

# Label keys carried into batches by default, with the dtype each is cast to.
DEFAULT_KEYS = ("distribution", "mean_score", "votes", "id")
_DTYPES = {
    "distribution": np.float32, "mean_score": np.float32, "votes": np.int32, "id": np.int64,
    "histogram": np.int32, "tags": np.int32, "challenge": np.int32,
    "scores": np.float32, "parent_id": np.int64, "patch_index": np.int32, "coverage": np.float32,
    "has_labels": np.bool_,
}


def make_source(builder_name_or_dir: str | os.PathLike | tfds.core.DatasetBuilder, split: str,
                data_dir: str | os.PathLike | None = None):
    """Random-access TFDS source of a prepared split, with every Image feature left as raw bytes.

    `builder_name_or_dir` is a builder, a prepared dataset directory (the one holding
    dataset_info.json, e.g. `<data_dir>/ava/default/1.0.0`), or a name such as "ava" or
    "ava/val0p05_seed0" looked up in `data_dir`. Nothing is downloaded or prepared here and
    the dataset's builder class need not be imported (TFDS reads the stored metadata).
    """
    if isinstance(builder_name_or_dir, tfds.core.DatasetBuilder):
        builder = builder_name_or_dir
    elif os.path.isfile(os.path.join(os.fspath(builder_name_or_dir), "dataset_info.json")):
        builder = tfds.builder_from_directory(os.fspath(builder_name_or_dir))
    else:
        builder = tfds.builder(os.fspath(builder_name_or_dir),
                               data_dir=None if data_dir is None else os.fspath(data_dir))
    if not builder.is_prepared():
        raise FileNotFoundError(f"{builder.name} is not prepared in {builder.data_dir}; build it first "
                                "(e.g. aesthetics_jax.data.builders.ava.build_ava)")
    decoders = {name: tfds.decode.SkipDecoding() for name, feature in builder.info.features.items()
                if isinstance(feature, tfds.features.Image)}
    return builder.as_data_source(split=split, decoders=decoders)


def _pixels(record: Mapping[str, Any]) -> np.ndarray:
    """The record's decoded pixels: ``image`` [H, W, 3], with a ``map`` (an 8-bit single-channel PNG
    of the same size: a modality build read as RGB + map) appended as channel 4 -> [H, W, 4]."""
    pixels = preprocessing.decode_jpeg(record["image"])
    if "map" not in record:
        return pixels
    extra = cv2.imdecode(np.frombuffer(record["map"], np.uint8), cv2.IMREAD_UNCHANGED)
    if extra is None or extra.ndim != 2 or extra.dtype != np.uint8:
        raise ValueError(f"record {record.get('id', '?')}: its map is not an 8-bit single-channel image")
    if extra.shape != pixels.shape[:2]:
        raise ValueError(f"record {record.get('id', '?')}: map {extra.shape[1]}x{extra.shape[0]} but image "
                         f"{pixels.shape[1]}x{pixels.shape[0]}")
    return np.concatenate([pixels, extra[..., None]], axis=-1)


def _labels(record: Mapping[str, Any], keys: Sequence[str]) -> dict[str, np.ndarray]:
    return {key: np.asarray(record[key], dtype=_DTYPES.get(key)) for key in keys}


class _EvalLoad(grain.transforms.Map):
    """Record -> element: decode, resize, centre crop (or the inference `transform` spec)."""

    def __init__(self, image_size: int, resize_size: int, keys: Sequence[str], transform: Mapping | None = None):
        self._image_size, self._resize_size, self._keys = image_size, resize_size, tuple(keys)
        self._transform = dict(transform) if transform else None

    def map(self, record):
        pixels = _pixels(record)
        if self._transform is not None:
            image = preprocessing.apply_transform(pixels, self._transform)
        else:
            image = preprocessing.eval_transform(pixels, resize_size=self._resize_size, image_size=self._image_size)
        return {"image": image, **_labels(record, self._keys), "mask": np.bool_(True)}


class _TrainLoad(grain.transforms.RandomMap):
    """Record -> element: decode, resize, random crop, random flip (rng supplied by grain), and with
    a `text` transform its fields (e.g. the tokens of one caption drawn with the same rng)."""

    def __init__(self, image_size: int, resize_size: int, keys: Sequence[str], text=None):
        self._image_size, self._resize_size, self._keys = image_size, resize_size, tuple(keys)
        self._text = text

    def random_map(self, record, rng: np.random.Generator):
        image = preprocessing.train_transform(_pixels(record), rng,
                                              resize_size=self._resize_size, image_size=self._image_size)
        extra = self._text(record, rng) if self._text is not None else {}
        return {"image": image, **_labels(record, self._keys), **extra, "mask": np.bool_(True)}


class _Padding:
    """`length` copies of a zero element with mask False (a grain random-access source)."""

    def __init__(self, length: int, template: Mapping[str, np.ndarray]):
        self._length = length
        self._element = {key: np.zeros_like(value) for key, value in template.items()}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int):
        return dict(self._element)


class _GlobalBatchRows(grain.MapDataset):
    """Host ``index`` of ``count``: its ``rows`` rows of every global batch of ``rows * count``
    elements of ``parent``; local element ``j`` is ``parent[(j // rows) * rows * count + index * rows
    + j % rows]``. A partial last global batch gives each host the rows it holds (maybe none), or
    nothing when ``full_batches_only`` (train: with drop_remainder every host must stop together)."""

    _MUTATES_ELEMENT_SPEC = False

    def __init__(self, parent: grain.MapDataset, index: int, count: int, rows: int, full_batches_only: bool):
        super().__init__(parent)
        self._index, self._count, self._rows = index, count, rows
        full, rest = divmod(len(parent), rows * count)
        tail = 0 if full_batches_only else min(max(rest - index * rows, 0), rows)
        self._length = full * rows + tail

    def __len__(self) -> int:
        return self._length

    def _parent_index(self, index: int) -> int:
        if not self._length:
            raise IndexError(f"{self}: no elements for this host ({len(self._parent)} in all)")
        epoch, j = divmod(index, self._length)  # grain convention: indices past the end wrap around
        batch, row = divmod(j, self._rows)
        return epoch * len(self._parent) + (batch * self._count + self._index) * self._rows + row

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self._parent_index(index)]

    def _getitems(self, indices):
        return self._parent._getitems([self._parent_index(i) for i in indices])  # pylint: disable=protected-access

    def __str__(self) -> str:
        return f"GlobalBatchRows(host {self._index} of {self._count}, {self._rows} rows)"


def _process_shard() -> tuple[int, int]:
    import jax  # pylint: disable=g-import-not-at-top  (only when the caller does not say)

    return jax.process_index(), jax.process_count()


def make_dataset(
    source,
    *,
    train: bool,
    batch_size: int,
    image_size: int,
    resize_size: int,
    seed: int = 0,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_threads: int = 8,
    prefetch_buffer_size: int = 256,
    drop_remainder: bool | None = None,
    pad_remainder: bool = False,
    keys: Sequence[str] = DEFAULT_KEYS,
    opencv_threads: int | None = 1,
    num_workers: int = 0,
    eval_transform: Mapping | None = None,
    text_transform=None,
) -> grain.IterDataset:
    """The batched grain IterDataset (see the module docstring); `iter()` it, or use `make_iterator`.

    Args:
      source: random-access source of records with an `image` (encoded bytes) and `keys`, e.g.
        `make_source(...)`; anything with __len__ and __getitem__ works.
      train: shuffle + repeat + random crop/flip; otherwise fixed order and centre crop.
      batch_size: per-host batch size (the global batch is batch_size * shard_count).
      image_size: side of the square crop fed to the network.
      resize_size: side images are first resized to (square), >= image_size.
      seed: shuffle and augmentation seed (train only).
      num_epochs: train: None = forever; eval: None or 1 = one pass, k = k passes.
      shard_index, shard_count: this host's rows of each global batch (module docstring);
        default jax.process_index() / jax.process_count().
      num_threads, prefetch_buffer_size: grain.ReadOptions (threads decode in parallel).
      drop_remainder: drop a last partial batch; default `train`.
      pad_remainder: eval only; pad to equal full batches on every host (padding has mask False).
      keys: record fields carried into batches next to `image` and `mask`.
      opencv_threads: OpenCV's own thread count (1: parallelism comes from grain's threads).
      num_workers: > 0 builds batches in that many worker processes (grain `mp_prefetch`);
        the source must then be picklable (TFDS array_record sources are). 0 = threads only.
      eval_transform: eval only; an inference transform spec (`preprocessing.apply_transform`,
        e.g. a converted model's `keras_load_img`) replacing resize + centre crop.
      text_transform: train only; a picklable `f(record, rng) -> {key: array}` run after the
        image transform with the same grain rng (`datasets.CaptionTokens`: one caption drawn per
        image per step, tokenised), so the draw is a function of the iterator position too.
    """
    if opencv_threads is not None:
        cv2.setNumThreads(int(opencv_threads))
    if shard_index is None or shard_count is None:
        shard_index, shard_count = _process_shard()
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    if drop_remainder is None:
        drop_remainder = train
    if pad_remainder and (train or drop_remainder):
        raise ValueError("pad_remainder is for single-order eval passes (train=False, drop_remainder=False)")

    ds = grain.MapDataset.source(source)
    if train:
        ds = ds.seed(seed).shuffle().repeat(num_epochs)
        ds = ds.random_map(_TrainLoad(image_size, resize_size, keys, text_transform))
    else:
        ds = ds.map(_EvalLoad(image_size, resize_size, keys, eval_transform))
        if pad_remainder:
            target = math.ceil(len(source) / (batch_size * shard_count)) * batch_size * shard_count
            if target > len(ds):
                template = _EvalLoad(image_size, resize_size, keys, eval_transform).map(source[0])
                ds = grain.MapDataset.concatenate([ds, grain.MapDataset.source(_Padding(target - len(ds), template))])
        if num_epochs not in (None, 1):
            ds = ds.repeat(num_epochs)
    if shard_count > 1:  # after the random map: augmentation rngs are seeded by the global position
        ds = _GlobalBatchRows(ds, shard_index, shard_count, batch_size, full_batches_only=drop_remainder)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if num_workers > 0:  # whole batches made in worker processes (no GIL between decodes)
        if not flags.FLAGS.is_parsed():  # grain reads its absl flags; outside an absl app use defaults
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers),
                            worker_init_fn=None if opencv_threads is None else _OpenCVThreads(int(opencv_threads)))
    return ds


class _OpenCVThreads:
    """Picklable worker_init_fn: OpenCV's own thread count in each grain worker process."""

    def __init__(self, threads: int):
        self._threads = threads

    def __call__(self, worker_index: int, worker_count: int) -> None:
        del worker_index, worker_count
        cv2.setNumThreads(self._threads)


def make_iterator(source, **kwargs) -> grain.DatasetIterator:
    """A checkpointable iterator of numpy batches, `iter(make_dataset(source, **kwargs))`."""
    return iter(make_dataset(source, **kwargs))
