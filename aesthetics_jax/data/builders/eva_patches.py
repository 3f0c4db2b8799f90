"""TFDS builder `eva_patches`: saliency-guided 299 x 299 patches of an existing EVA build, without TF.

Input: a prepared `eva` build (`<data_dir>/eva/<parent_config>/<version>`, or `parent_dir`), and
either a map producer (`modalities.create(producer, **producer_params)`, default `spectral`, run
in process) or `maps_dir`, a folder of map PNGs written from *that build* by
`modalities.files.compute_map_files` (`aesthetics-jax maps compute <eva build> --out DIR`,
`python data_prep/maps.py ...`): one `<parent id>.png` per parent, of the parent's stored size.

For every parent record of every split (the parent's pixels are its stored JPEG decoded by
`preprocessing.decode_jpeg`, exactly what training on the parent sees):

  1. the map: the producer's map of those pixels, or the maps_dir PNG. Maps are quantised to 16
     bits (`files.quantize_map`) before use, exactly as a 16-bit maps_dir stores them, so a build
     from a 16-bit maps_dir written by the same producer equals one that computes maps in process;
  2. `patches.extract_patches` with the rng `patches.patch_rng(seed, parent id)`: `patches_per_image`
     exact `patch_size` windows (default 5 x 299) around centres drawn from the salient region
     (`top_focus` 0.5, `threshold`, `sampling`, top-k fallback; upscaling of images with a side
     < patch_size -- all in the `data.patches` docstring);
  3. each patch is JPEG-encoded by `image_io.encode_jpeg` (OpenCV / libjpeg-turbo, 4:2:0) at
     `jpeg_quality` (default 95, the builders' re-encode quality).

Everything is a function of (parent build, map, config): a rebuild is byte-identical, and the
order in which parents are processed does not matter (one rng per parent).

Splits are inherited: the patches of a parent go to the parent's split (the parent's TFDS
splits, which follow its stored by-image split), so no parent id is in two splits. The parent's
`splits.csv` is copied beside the records (`eva.split_ids(builder)` works on this build too).

Features of one example (key `<parent id>_<patch index>`):

    image             JPEG bytes, patch_size x patch_size x 3
    parent_id         int64   the EVA / AVA image id of the parent
    patch_index       int32   0 .. patches_per_image - 1
    box               int32[4]  top, left, bottom, right (exclusive) in working-image pixels (the
                                parent's stored pixels, upscaled when a side was < patch_size)
    centre            int32[2]  the sampled (row, column), working-image pixels
    scale             float32 working / parent size (patch_size / shorter side if upscaled, else 1)
    parent_height, parent_width  int32  the parent's stored size
    coverage          float32 share of the image's salient pixels inside the patch
    salient_fraction  float32 share of the patch's pixels that are salient
    saliency_mass     float32 share of the map's total value inside the patch
    fallback          bool    the salient region is the top-k fallback (no pixel passed the threshold)
    scores, scores_raw, score_sds  float32[6]   the parent's, unchanged (its config's scales)
    mean_score        float32, num_raters int32, category int32, category_name string: the parent's

Skipped parents are listed in `skipped.csv` (id, line, file, reason, detail) as the other builders
do: the parent build's own image skips (image_io reasons, detail prefixed 'parent build: ', line
and file as the parent reported them), and this build's: undecodable_image (a parent JPEG that
does not decode), map_failed (the producer raised; detail = the exception), bad_map (non-finite
map, or a map of the wrong shape), missing_map / map_size_mismatch (maps_dir has no readable PNG
for the parent / one whose size differs from the parent's stored pixels), with file =
`<parent dir>#<split>/<record index>` (the map PNG's path for maps_dir reasons).

Metadata (`info.metadata`): producer (its `metadata()`: name, params[, weights_sha256]; from
maps_dir/producer.json when maps come from a folder), maps_dir, parent (dir, full name, config,
split settings), the patch settings, counts per split (parents, patches), num_fallback,
num_upscaled, plus the skip counts of `base.CheckedBuilder`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import image_io, patches, pipeline, preprocessing
from aesthetics_jax.data.builders import base, eva

__all__ = ["EvaPatches", "EvaPatchesConfig", "build_eva_patches", "config_for", "parent_build_dir", "DEFAULT_QUALITY"]

DEFAULT_QUALITY = image_io.REENCODE_QUALITY
_LABELS = {"scores": np.float32, "scores_raw": np.float32, "score_sds": np.float32, "mean_score": np.float32,
           "num_raters": np.int32, "category": np.int32}


@dataclasses.dataclass(eq=False)
class EvaPatchesConfig(tfds.core.BuilderConfig):
    """Parent build, patch geometry, salient-region and sampling rules, seed, map source, JPEG quality."""

    parent_config: str = "default"
    parent_dir: str = ""
    patches_per_image: int = 5
    patch_size: int = patches.PATCH_SIZE
    top_focus: float = 0.5
    threshold: str = "continuous"
    sampling: str = "component_then_pixel"
    fallback_top_k: int = patches.DEFAULT_FALLBACK_TOP_K
    seed: int = 0
    producer: str = "spectral"
    producer_params: dict = dataclasses.field(default_factory=dict)
    maps_dir: str = ""
    jpeg_quality: int = DEFAULT_QUALITY


_DEFAULTS = EvaPatchesConfig(name="_")


def _short(value) -> str:
    return f"{value:g}".replace(".", "p").replace("-", "m")


def config_for(*, parent_config: str = "default", parent_dir: str = "", patches_per_image: int = 5,
               patch_size: int = patches.PATCH_SIZE, top_focus: float = 0.5, threshold: str = "continuous",
               sampling: str = "component_then_pixel", fallback_top_k: int = patches.DEFAULT_FALLBACK_TOP_K,
               seed: int = 0, producer: str = "spectral", producer_params: dict | None = None, maps_dir: str = "",
               jpeg_quality: int = DEFAULT_QUALITY) -> EvaPatchesConfig:
    """The config with these values, named after them ('default' when every value is the default).

    Name: `<parent_config>_n<N>_p<size>_tf<top_focus>_<cp|uni>_seed<seed>_<producer>`, plus `_<hash>`
    (8 hex digits of sha256 over the remaining settings) when producer_params, maps_dir,
    parent_dir, threshold, fallback_top_k or jpeg_quality differ from the defaults. With a
    `maps_dir` holding a producer.json, producer and producer_params are the ones recorded there.
    """
    if patches_per_image < 1 or patch_size < 1:
        raise ValueError(f"need patches_per_image >= 1 and patch_size >= 1, got {patches_per_image}, {patch_size}")
    if not 0 < top_focus <= 1:
        raise ValueError(f"top_focus must be in (0, 1], got {top_focus}")
    if sampling not in patches.SAMPLINGS:
        raise ValueError(f"sampling must be one of {patches.SAMPLINGS}, got {sampling!r}")
    if threshold not in patches.THRESHOLDS:
        raise ValueError(f"threshold must be one of {patches.THRESHOLDS}, got {threshold!r}")
    if not 1 <= jpeg_quality <= 100 or fallback_top_k < 1 or seed < 0:
        raise ValueError(f"need 1 <= jpeg_quality <= 100, fallback_top_k >= 1, seed >= 0; got {jpeg_quality}, "
                         f"{fallback_top_k}, {seed}")
    producer_params = dict(producer_params or {})
    parent_dir = os.path.abspath(os.fspath(parent_dir)) if parent_dir else ""
    maps_dir = os.path.abspath(os.fspath(maps_dir)) if maps_dir else ""
    stored = _maps_producer(maps_dir)
    if stored:  # name the config after the producer that made the maps
        producer, producer_params = str(stored.get("name", producer)), dict(stored.get("params") or {})
    values = dict(parent_config=parent_config, parent_dir=parent_dir, patches_per_image=int(patches_per_image),
                  patch_size=int(patch_size), top_focus=float(top_focus), threshold=threshold, sampling=sampling,
                  fallback_top_k=int(fallback_top_k), seed=int(seed), producer=producer,
                  producer_params=producer_params, maps_dir=maps_dir, jpeg_quality=int(jpeg_quality))
    if all(values[k] == getattr(_DEFAULTS, k) for k in values):
        return EvaPatches.builder_configs["default"]
    name = (f"{parent_config}_n{patches_per_image}_p{patch_size}_tf{_short(top_focus)}_"
            f"{'cp' if sampling == 'component_then_pixel' else 'uni'}_seed{seed}_{producer}")
    extra = {k: values[k] for k in ("producer_params", "maps_dir", "parent_dir", "threshold", "fallback_top_k",
                                    "jpeg_quality") if values[k] != getattr(_DEFAULTS, k)}
    if extra:
        name += "_" + hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]
    description = ", ".join(f"{k}={v!r}" for k, v in values.items() if v != getattr(_DEFAULTS, k))
    return EvaPatchesConfig(name=name, description=f"patches of eva/{parent_config}: {description}", **values)


def _maps_producer(maps_dir: str) -> dict:
    """The producer metadata in `<maps_dir>/producer.json` ({} if none)."""
    path = os.path.join(maps_dir, "producer.json") if maps_dir else ""
    if not path or not os.path.isfile(path):
        return {}
    with open(path) as f:
        return dict(json.load(f).get("producer") or {})


def parent_build_dir(data_dir_root, config: EvaPatchesConfig) -> str:
    """The prepared EVA directory a config reads: `parent_dir`, else the newest `<root>/eva/<parent_config>/<v>`."""
    candidates = [config.parent_dir] if config.parent_dir else [os.path.join(os.fspath(data_dir_root), "eva",
                                                                              config.parent_config)]
    for path in candidates:
        if os.path.isfile(os.path.join(path, "dataset_info.json")):
            return path
        versions = []
        if os.path.isdir(path):
            for name in os.listdir(path):
                parts = name.split(".")
                if (len(parts) == 3 and all(p.isdigit() for p in parts)
                        and os.path.isfile(os.path.join(path, name, "dataset_info.json"))):
                    versions.append((tuple(int(p) for p in parts), name))
        if versions:
            return os.path.join(path, max(versions)[1])
    raise FileNotFoundError(f"no prepared EVA build at {candidates[0]}: build it first "
                            "(aesthetics-jax data build eva ..., or eva.build_eva)")


class EvaPatches(base.CheckedBuilder):
    """Seeded saliency patches of an EVA build, with the parent's labels and split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Exact 299 x 299 seeded saliency patches; splits inherited from the parent EVA build."}
    BUILDER_CONFIGS = [EvaPatchesConfig(name="default", description=(
        "5 patches of 299 x 299 per image of eva/default; spectral saliency, top_focus 0.5, "
        "component-then-pixel sampling, seed 0, JPEG quality 95"))]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.progress: str | None = None  # a label: print progress lines to stderr
        self.num_threads = 2
        self.batch_size = 32
        self._parent_dir = ""
        self._parent_splits_file = ""
        self._producer_metadata: dict = {}

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.patch_size
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Saliency-guided patches of EVA images (Aesthetics-XAI's patch stage), exact size, "
                         "seeded, splits inherited from the parent EVA build."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg"),
                "parent_id": tfds.features.Scalar(dtype=np.int64),
                "patch_index": tfds.features.Scalar(dtype=np.int32),
                "box": tfds.features.Tensor(shape=(4,), dtype=np.int32),
                "centre": tfds.features.Tensor(shape=(2,), dtype=np.int32),
                "scale": tfds.features.Scalar(dtype=np.float32),
                "parent_height": tfds.features.Scalar(dtype=np.int32),
                "parent_width": tfds.features.Scalar(dtype=np.int32),
                "coverage": tfds.features.Scalar(dtype=np.float32),
                "salient_fraction": tfds.features.Scalar(dtype=np.float32),
                "saliency_mass": tfds.features.Scalar(dtype=np.float32),
                "fallback": tfds.features.Scalar(dtype=np.bool_),
                "scores": tfds.features.Tensor(shape=(6,), dtype=np.float32),
                "scores_raw": tfds.features.Tensor(shape=(6,), dtype=np.float32),
                "score_sds": tfds.features.Tensor(shape=(6,), dtype=np.float32),
                "mean_score": tfds.features.Scalar(dtype=np.float32),
                "num_raters": tfds.features.Scalar(dtype=np.int32),
                "category": tfds.features.Scalar(dtype=np.int32),
                "category_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "scores"),
            metadata=tfds.core.MetadataDict(),
        )

    # -- TFDS hooks --------------------------------------------------------------------------------

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the parent build and the maps are local
        config = self.builder_config
        self._reset()
        self._parent_dir = parent_build_dir(self._data_dir_root, config)
        parent = tfds.builder_from_directory(self._parent_dir)
        if parent.name != "eva":
            raise ValueError(f"{self._parent_dir} is a {parent.name!r} build; eva_patches needs an EVA build")
        self._parent_splits_file = os.path.join(self._parent_dir, eva.SPLITS_FILE)
        self._carry_parent_skips(self._parent_dir)
        producer = None
        if config.maps_dir:
            from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

            if not os.path.isdir(config.maps_dir):
                raise FileNotFoundError(f"maps_dir {config.maps_dir} does not exist")
            stored = files.read_producer(config.maps_dir) or {}
            self._producer_metadata = dict(stored.get("producer") or {"name": "unknown"})
            self._stats["map_bits"] = int(stored.get("bits", 0))
        else:
            from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top

            producer = modalities.create(config.producer, **config.producer_params)
            self._producer_metadata = producer.metadata()
            self._stats["map_bits"] = 16
        self._stats.update(splits={}, num_fallback=0, num_upscaled=0)
        return {name: self._generate_examples(parent, name, producer) for name in sorted(parent.info.splits)}

    def _map(self, parent_id: int, pixels: np.ndarray, ref: str):
        """maps_dir: (map, None) or (None, (file, reason, detail))."""
        from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

        path = os.path.join(self.builder_config.maps_dir, f"{parent_id}.png")
        if not os.path.isfile(path):
            return None, (path, "missing_map", f"no map for parent {ref}")
        try:
            saliency = files.read_map_png(path)
        except ValueError as e:
            return None, (path, "missing_map", str(e))
        if saliency.shape != pixels.shape[:2]:
            return None, (path, "map_size_mismatch",
                          f"map {saliency.shape[1]}x{saliency.shape[0]}, parent pixels {pixels.shape[1]}x"
                          f"{pixels.shape[0]} (compute the maps from the build)")
        return saliency, None

    def _patches(self, parent_id: int, pixels: np.ndarray, saliency: np.ndarray):
        config = self.builder_config
        result = patches.extract_patches(
            pixels, saliency, rng=patches.patch_rng(config.seed, parent_id), num_patches=config.patches_per_image,
            size=config.patch_size, top_focus=config.top_focus, sampling=config.sampling,
            threshold=config.threshold, fallback_top_k=config.fallback_top_k)
        jpegs = [image_io.encode_jpeg(p.pixels, config.jpeg_quality) for p in result.patches]
        return result, jpegs

    def _chunk(self, source, split: str, begin: int, producer, pool) -> tuple[list, list]:
        """Parents begin .. begin + batch_size of a split: ([(record, pixels shape, PatchSet, jpegs)], skips).

        Runs in a helper thread one chunk ahead of the writer; per-parent work goes to `pool`.
        Skips come back as `_skip` argument tuples, recorded by the generator in order.
        """
        from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

        config = self.builder_config
        skips = []

        def decode(k):
            record = source[k]
            ref = f"{self._parent_dir}#{split}/{k}"
            try:
                return record, ref, preprocessing.decode_jpeg(record["image"]), None
            except ValueError as e:
                return record, ref, None, (ref, "undecodable_image", str(e))

        loaded = list(pool.map(decode, range(begin, min(len(source), begin + self.batch_size))))
        for record, _, _, problem in loaded:
            if problem is not None:
                skips.append((int(record["id"]), 0, *problem))
        good = [x for x in loaded if x[3] is None]
        work = []  # (record, pixels, map)
        if config.maps_dir:
            found = pool.map(lambda x: self._map(int(x[0]["id"]), x[2], x[1]), good)
            for (record, _, pixels, _), (saliency, problem) in zip(good, found):
                if problem is not None:
                    skips.append((int(record["id"]), 0, *problem))
                else:
                    work.append((record, pixels, saliency))
        else:
            maps = _producer_maps(producer, [x[2] for x in good], self.batch_size)
            for (record, ref, pixels, _), saliency in zip(good, maps):
                if isinstance(saliency, tuple):
                    skips.append((int(record["id"]), 0, ref, *saliency))
                elif saliency.shape != pixels.shape[:2]:
                    skips.append((int(record["id"]), 0, ref, "bad_map",
                                  f"map shape {saliency.shape}, pixels {pixels.shape[:2]}"))
                elif not np.isfinite(saliency).all():
                    skips.append((int(record["id"]), 0, ref, "bad_map", "non-finite values"))
                else:
                    work.append((record, pixels, files.quantize_map(saliency, 16)))
        made = pool.map(lambda x: self._patches(int(x[0]["id"]), x[1], x[2]), work)
        return [(record, pixels.shape[:2], *result) for (record, pixels, _), result in zip(work, made)], skips

    def _generate_examples(self, parent, split: str, producer) -> Iterator[tuple[str, dict]]:
        source = pipeline.make_source(parent, split)
        total, parents_done, patches_done = len(source), 0, 0
        start, every, next_report = time.time(), max(1, len(source) // 50), 0
        begins = list(range(0, total, self.batch_size))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.num_threads)) as pool, \
                concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
            pending = [ahead.submit(self._chunk, source, split, b, producer, pool) for b in begins[:2]]
            for n, begin in enumerate(begins):
                made, skips = pending.pop(0).result()
                if n + 2 < len(begins):  # the chunk after next, while this one is serialised by TFDS
                    pending.append(ahead.submit(self._chunk, source, split, begins[n + 2], producer, pool))
                for skip in skips:
                    self._skip(*skip)
                for record, (height, width), result, jpegs in made:
                    parent_id = int(record["id"])
                    labels = {key: np.asarray(record[key], dtype=dtype) for key, dtype in _LABELS.items()}
                    self._stats["num_fallback"] += int(result.fallback)
                    self._stats["num_upscaled"] += int(result.scale != 1.0)
                    for k, (patch, jpeg) in enumerate(zip(result.patches, jpegs)):
                        yield f"{parent_id}_{k}", {
                            "image": jpeg,
                            "parent_id": parent_id,
                            "patch_index": k,
                            "box": np.asarray(patch.box, np.int32),
                            "centre": np.asarray(patch.centre, np.int32),
                            "scale": np.float32(result.scale),
                            "parent_height": height,
                            "parent_width": width,
                            "coverage": np.float32(patch.coverage),
                            "salient_fraction": np.float32(patch.salient_fraction),
                            "saliency_mass": np.float32(patch.saliency_mass),
                            "fallback": bool(result.fallback),
                            "category_name": record["category_name"],
                            **labels,
                        }
                    parents_done += 1
                    patches_done += len(jpegs)
                done = min(total, begin + self.batch_size)
                if self.progress and (done >= next_report or done == total):
                    next_report = done + every
                    rate = done / max(time.time() - start, 1e-9)
                    print(f"[{self.progress}] {split}: {done}/{total} parents, {patches_done} patches, {rate:.1f}/s",
                          file=sys.stderr, flush=True)
        self._stats["splits"][split] = {"parents": parents_done, "patches": patches_done}

    def _download_and_prepare(self, dl_manager, download_config=None):
        super()._download_and_prepare(dl_manager, download_config)
        if os.path.isfile(self._parent_splits_file):  # into the temporary build directory, renamed by TFDS
            shutil.copyfile(self._parent_splits_file, os.path.join(os.fspath(self.data_dir), eva.SPLITS_FILE))

    def _metadata(self) -> dict:
        config = self.builder_config
        parent = tfds.builder_from_directory(self._parent_dir)
        parent_meta = parent.info.metadata or {}
        return dict(
            producer=self._producer_metadata, maps_dir=config.maps_dir,
            parent=dict(dir=self._parent_dir, full_name=parent.info.full_name, config=parent.builder_config.name
                        if parent.builder_config else "", **{k: parent_meta[k] for k in
                        ("val_fraction", "test_fraction", "seed", "unit") if k in parent_meta}),
            patches_per_image=int(config.patches_per_image), patch_size=int(config.patch_size),
            top_focus=float(config.top_focus), threshold=config.threshold, sampling=config.sampling,
            fallback_top_k=int(config.fallback_top_k), seed=int(config.seed), jpeg_quality=int(config.jpeg_quality),
            splits_file=eva.SPLITS_FILE, score_names=list(eva.SCORE_NAMES))


def _producer_maps(producer, images: list[np.ndarray], batch_size: int) -> list:
    """The producer's maps (numpy float32); a failure is isolated to its image: ('map_failed', detail)."""
    from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top

    if not images:
        return []
    try:
        return modalities.compute_maps(producer, images, batch_size=batch_size)
    except Exception:  # pylint: disable=broad-except
        out = []
        for image in images:
            try:
                out.append(modalities.compute_maps(producer, [image], batch_size=1)[0])
            except Exception as e:  # pylint: disable=broad-except
                out.append(("map_failed", f"{type(e).__name__}: {e}"[:300]))
        return out


def build_eva_patches(data_dir, *, parent_config: str = "default", parent_dir: str = "", patches_per_image: int = 5,
                      patch_size: int = patches.PATCH_SIZE, top_focus: float = 0.5, threshold: str = "continuous",
                      sampling: str = "component_then_pixel", fallback_top_k: int = patches.DEFAULT_FALLBACK_TOP_K,
                      seed: int = 0, producer: str = "spectral", producer_params: dict | None = None,
                      maps_dir: str = "", jpeg_quality: int = DEFAULT_QUALITY, progress: bool = False,
                      batch_size: int = 32, num_threads: int = 2) -> EvaPatches:
    """Prepares `eva_patches` in `data_dir` from the EVA build `<data_dir>/eva/<parent_config>` (or `parent_dir`).

    Idempotent: an existing build of the same config is reused as is (delete
    `<data_dir>/eva_patches/<config>` to rebuild after the parent or the maps changed).
    """
    config = config_for(parent_config=parent_config, parent_dir=parent_dir, patches_per_image=patches_per_image,
                        patch_size=patch_size, top_focus=top_focus, threshold=threshold, sampling=sampling,
                        fallback_top_k=fallback_top_k, seed=seed, producer=producer, producer_params=producer_params,
                        maps_dir=maps_dir, jpeg_quality=jpeg_quality)
    builder = EvaPatches(data_dir=os.fspath(data_dir), config=config)
    builder.progress = "eva_patches" if progress else None
    builder.batch_size, builder.num_threads = int(batch_size), int(num_threads)
    builder.download_and_prepare()
    return builder
