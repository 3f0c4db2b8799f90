"""Map files: a producer's maps of a folder of images or of a prepared build, as PNGs with an index.

    summary = compute_map_files(modalities.create("spectral"), ["photos/", "<data_dir>/eva/default"],
                                "maps/", bits=16, shard=(0, 1))
    saliency = read_map_png("maps/770013.png")       # float32 [H, W] in [0, 1]

Sources (`resolve_source`), in the order given:

  folder   every file directly in it whose extension is an image extension (IMAGE_EXTENSIONS,
           any case), sorted by name; read with `image_io.read_image` (the builders' checks and
           repairs: CMYK, 16-bit, alpha and EXIF orientation are fixed, hostile files refused);
           id = the file name without its extension.
  build    a prepared TFDS dataset (the directory holding dataset_info.json, its parent
           `<data_dir>/<name>/<config>` (newest version), or a name such as "eva/default" found in
           `data_dir`), read with `pipeline.make_source`, every split (or `split`) in sorted order;
           pixels are the stored JPEG decoded by `preprocessing.decode_jpeg` (what training sees);
           id = the record's `id` feature (AADB: its `name`). The map of a build record therefore has exactly the
           shape of the parent's stored pixels (what `eva_patches` needs).

Output in `out_dir`:

  <id>.png          the map, single channel, `bits` 16 (uint16, value round(m * 65535); error
                    <= 0.5 / 65535, the default) or 8 (uint8, round(m * 255); error <= 0.5 / 255).
                    `read_map_png` gives v / 65535 or v / 255 (float32).
  producer.json     {"producer": producer.metadata(), "bits": ...}; a later run into the same
                    folder with another producer, other params or other bits is refused.
  index.csv         id, source, height, width, map_file, producer (rows sorted by id, numeric ids
                    numerically); `source` = the image path, or `<build dir>#<split>/<record index>`.
  skipped.csv       id, file, reason, detail: images that got no map. Reasons: image_io's skip
                    reasons (missing_image, empty_image, not_jpeg, truncated_image,
                    decompression_bomb, undecodable_image), duplicate_id (a second image with an id
                    already seen -- across folders in this run, within a shard for builds),
                    map_failed (the producer raised), bad_map (non-finite values or wrong shape).

Resuming: an `<id>.png` already in `out_dir` that decodes as a single-channel PNG of the expected
bit depth is kept (its image is not read again); PNGs are written to a temporary name and renamed,
so a killed run leaves no half-written map. Re-run the same command to finish an interrupted job.

Sharding: `shard=(i, n)` takes every n-th item from item i of the full ordered item list (all
sources), writes `index.<i>-of-<n>.csv` and `skipped.<i>-of-<n>.csv`, and, once every shard's index
exists, merges them into index.csv / skipped.csv (the same files one unsharded run writes). Shards
can run at the same time in separate processes.

Progress: a text progress bar on stderr every ~2 % (`progress=None` silences it).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import os
import struct
import sys
import time
from typing import Iterable, Sequence

import cv2
import numpy as np

from aesthetics_jax.modalities import compute_maps

__all__ = ["IMAGE_EXTENSIONS", "INDEX_FIELDS", "SKIPPED_FIELDS", "PRODUCER_FILE", "Source", "resolve_source",
           "compute_map_files", "encode_map", "decode_map", "quantize_map", "read_map_png", "read_index",
           "read_skipped", "read_producer", "parse_shard"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
INDEX_FIELDS = ("id", "source", "height", "width", "map_file", "producer")
SKIPPED_FIELDS = ("id", "file", "reason", "detail")
PRODUCER_FILE = "producer.json"
_SCALE = {16: 65535.0, 8: 255.0}
_DTYPE = {16: np.uint16, 8: np.uint8}


# -- map encoding -----------------------------------------------------------------------------------

def encode_map(saliency: np.ndarray, bits: int = 16) -> np.ndarray:
    """uint16 (bits 16) or uint8 (bits 8) array round(clip(m, 0, 1) * (2^bits - 1)); finite maps only."""
    if bits not in _SCALE:
        raise ValueError(f"bits must be 16 or 8, got {bits}")
    saliency = np.asarray(saliency, dtype=np.float32)
    if not np.isfinite(saliency).all():
        raise ValueError("map has non-finite values")
    return np.rint(np.clip(saliency, 0.0, 1.0) * np.float32(_SCALE[bits])).astype(_DTYPE[bits])


def decode_map(values: np.ndarray) -> np.ndarray:
    """float32 map in [0, 1] of an encoded uint16 / uint8 map."""
    values = np.asarray(values)
    if values.dtype == np.uint16:
        return values.astype(np.float32) / np.float32(65535.0)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255.0)
    raise ValueError(f"encoded maps are uint16 or uint8, got {values.dtype}")


def quantize_map(saliency: np.ndarray, bits: int = 16) -> np.ndarray:
    """The map as `read_map_png` would return it after a `bits`-bit PNG round trip."""
    return decode_map(encode_map(saliency, bits))


def read_map_png(path: str | os.PathLike) -> np.ndarray:
    """float32 [H, W] map in [0, 1] of a map PNG; ValueError if it is not a single-channel 8/16-bit PNG."""
    data = np.fromfile(os.fspath(path), np.uint8)
    values = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if values is None or values.ndim != 2 or values.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: not a single-channel 8- or 16-bit PNG map")
    return decode_map(values)


def _write_png(path: str, values: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", values)
    if not ok:
        raise ValueError(f"cannot encode {values.shape} {values.dtype} as PNG")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data.tobytes())
    os.replace(tmp, path)


def _valid_png(path: str, bits: int) -> tuple[int, int] | None:
    """(height, width) of an existing map PNG: greyscale of `bits` bits, IHDR first, IEND last; else None.

    Header and end marker only (no decode): maps are written to a temporary name and renamed, so a
    file that starts and ends right is one a finished write produced.
    """
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < 33 + 12:  # signature + IHDR chunk + IEND chunk
                return None
            head = f.read(33)
            f.seek(-12, os.SEEK_END)
            tail = f.read(12)
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or tail[4:8] != b"IEND":
        return None
    width, height = struct.unpack(">II", head[16:24])
    if head[24] != bits or head[25] != 0 or width == 0 or height == 0:  # colour type 0 = greyscale
        return None
    return int(height), int(width)


# -- sources ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Source:
    """A folder of images or a prepared build (`kind` 'folder' or 'build'); `path` is a directory."""

    kind: str
    path: str


def _build_dir(path: str) -> str | None:
    """The prepared dataset directory for `path` (itself, or its newest version subdirectory)."""
    if os.path.isfile(os.path.join(path, "dataset_info.json")):
        return path
    if not os.path.isdir(path):
        return None
    versions = []
    for name in os.listdir(path):
        parts = name.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and os.path.isfile(
                os.path.join(path, name, "dataset_info.json")):
            versions.append((tuple(int(p) for p in parts), name))
    return os.path.join(path, max(versions)[1]) if versions else None


def resolve_source(spec, data_dir: str | os.PathLike | None = None) -> Source:
    """A `Source` for a folder, a prepared build directory, a TFDS builder, or a name in `data_dir`."""
    if isinstance(spec, Source):
        return spec
    if hasattr(spec, "data_dir") and hasattr(spec, "info"):  # a tfds DatasetBuilder
        return Source("build", os.fspath(spec.data_dir))
    path = os.path.abspath(os.path.expanduser(os.fspath(spec)))
    build = _build_dir(path)
    if build is not None:
        return Source("build", build)
    if os.path.isdir(path):
        return Source("folder", path)
    if data_dir is not None:
        build = _build_dir(os.path.join(os.fspath(data_dir), os.fspath(spec)))
        if build is None and "/" not in os.fspath(spec):
            build = _build_dir(os.path.join(os.fspath(data_dir), os.fspath(spec), "default"))
        if build is not None:
            return Source("build", build)
    raise FileNotFoundError(f"{spec}: neither a folder, a prepared dataset directory, nor a dataset prepared in "
                            f"data_dir {data_dir}")


@dataclasses.dataclass(frozen=True)
class _Item:
    order: int
    source: Source
    ref: str                     # file path, or 'split/index' of a build record
    id: str | None               # known for files; read from the record for builds


def _items(sources: Sequence[Source], split: str | None) -> tuple[list[_Item], dict]:
    from aesthetics_jax.data import pipeline  # pylint: disable=g-import-not-at-top

    items, readers = [], {}
    for source in sources:
        if source.kind == "folder":
            names = sorted(n for n in os.listdir(source.path)
                           if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
                           and not os.path.isdir(os.path.join(source.path, n)))
            items += [_Item(len(items) + k, source, os.path.join(source.path, n), os.path.splitext(n)[0])
                      for k, n in enumerate(names)]
            continue
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

        builder = tfds.builder_from_directory(source.path)
        splits = sorted(builder.info.splits) if split is None else [split]
        for name in splits:
            reader = pipeline.make_source(builder, name)
            readers[(source.path, name)] = reader
            items += [_Item(len(items) + k, source, f"{name}/{k}", None) for k in range(len(reader))]
    return items, readers


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(v) for v in str(text).split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise ValueError(f"shard wants I/N with 0 <= I < N, got {text!r}") from None
    return index, count


# -- the job ----------------------------------------------------------------------------------------

def _id_key(image_id: str):
    return (0, int(image_id), "") if image_id.isdigit() else (1, 0, image_id)


def _write_csv(path: str, fields: Sequence[str], rows: Iterable[dict]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_index(out_dir) -> list[dict]:
    """index.csv rows (height and width as ints)."""
    return [dict(r, height=int(r["height"]), width=int(r["width"]))
            for r in _read_csv(os.path.join(os.fspath(out_dir), "index.csv"))]


def read_skipped(out_dir) -> list[dict]:
    """skipped.csv rows."""
    return _read_csv(os.path.join(os.fspath(out_dir), "skipped.csv"))


def read_producer(out_dir) -> dict | None:
    """The producer.json of a maps directory ({'producer': metadata, 'bits': b}), or None."""
    path = os.path.join(os.fspath(out_dir), PRODUCER_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _check_producer(out_dir: str, producer, bits: int) -> dict:
    want = {"producer": producer.metadata(), "bits": bits}
    want = json.loads(json.dumps(want))  # as it reads back (tuples -> lists)
    have = read_producer(out_dir)
    if have is not None and have != want:
        raise ValueError(f"{out_dir} holds maps of {have}; this run makes {want}: use another out_dir")
    if have is None:
        tmp = os.path.join(out_dir, f"{PRODUCER_FILE}.tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(want, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(out_dir, PRODUCER_FILE))
    return want


class _Progress:
    def __init__(self, label: str | None, total: int):
        self.label, self.total, self.start = label, total, time.time()
        self.every, self.done, self.resumed, self.skipped = max(1, total // 50), 0, 0, 0
        self._next = self.every

    def update(self, done: int, resumed: int, skipped: int) -> None:
        self.done, self.resumed, self.skipped = done, resumed, skipped
        if self.label and (done >= self._next or done == self.total):
            while self._next <= done:
                self._next += self.every
            fraction = done / max(self.total, 1)
            bar = "#" * int(round(20 * fraction))
            rate = (done - resumed) / max(time.time() - self.start, 1e-9)
            print(f"[{self.label}] [{bar:<20}] {100 * fraction:3.0f}% {done}/{self.total} images "
                  f"({resumed} resumed, {skipped} skipped), {rate:.1f}/s", file=sys.stderr, flush=True)


def _merge(out_dir: str, count: int) -> bool:
    """Merges every shard's index / skipped file once all `count` exist; True if merged."""
    index_files = [os.path.join(out_dir, f"index.{i}-of-{count}.csv") for i in range(count)]
    skip_files = [os.path.join(out_dir, f"skipped.{i}-of-{count}.csv") for i in range(count)]
    if not all(os.path.isfile(p) for p in index_files + skip_files):
        return False
    rows = [r for p in index_files for r in _read_csv(p)]
    skipped = [r for p in skip_files for r in _read_csv(p)]
    _write_csv(os.path.join(out_dir, "index.csv"), INDEX_FIELDS, sorted(rows, key=lambda r: _id_key(r["id"])))
    _write_csv(os.path.join(out_dir, "skipped.csv"), SKIPPED_FIELDS,
               sorted(skipped, key=lambda r: (r["file"], _id_key(r["id"]))))
    return True


def compute_map_files(producer, sources, out_dir, *, bits: int = 16, shard: tuple[int, int] = (0, 1),
                      batch_size: int = 16, split: str | None = None, data_dir=None, lenient: bool = False,
                      max_pixels: int | None = None, progress: str | None = "maps",
                      num_threads: int | None = None) -> dict:
    """Writes the maps of `sources` (folders / builds) into `out_dir` (see the module docstring).

    Returns a summary dict: total (items in this shard), computed, resumed, skipped (counts),
    skipped_by_reason, index (path of this shard's index file), merged (whether index.csv is
    complete), seconds.
    """
    from aesthetics_jax.data import image_io, preprocessing  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.data.builders.modality import record_id  # pylint: disable=g-import-not-at-top

    if bits not in _SCALE:
        raise ValueError(f"bits must be 16 or 8, got {bits}")
    index, count = shard if not isinstance(shard, str) else parse_shard(shard)
    if not 0 <= index < count:
        raise ValueError(f"shard ({index}, {count}) not 0 <= i < n")
    if isinstance(sources, (str, os.PathLike, Source)) or hasattr(sources, "info"):
        sources = [sources]
    sources = [resolve_source(s, data_dir) for s in sources]
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    _check_producer(out_dir, producer, bits)
    producer_name = str(producer.metadata().get("name", getattr(producer, "name", "")))
    max_pixels = max_pixels or image_io.DEFAULT_MAX_PIXELS
    start = time.time()

    items, readers = _items(sources, split)
    seen_file_ids: dict[str, str] = {}
    duplicates: set[int] = set()
    for item in items:  # file ids are known up front: duplicates are found across shards alike
        if item.id is not None:
            if item.id in seen_file_ids:
                duplicates.add(item.order)
            else:
                seen_file_ids[item.id] = item.ref
    mine = items[index::count]
    rows: list[dict] = []
    skipped: list[dict] = []
    seen_ids: dict[str, str] = {}
    bar = _Progress(progress, len(mine))
    resumed = computed = done = 0

    def skip(image_id, file, reason, detail=""):
        skipped.append(dict(id=image_id, file=file, reason=reason, detail=detail))

    def load(item: _Item):
        """(id, source text, pixels, skip (reason, detail), shape of an existing valid map); 2 of 3 None."""
        if item.source.kind == "folder":
            try:
                pixels = image_io.read_image(item.ref, lenient=lenient, max_pixels=max_pixels)
                return item.id, item.ref, pixels, None, None
            except image_io.ImageError as e:
                return item.id, item.ref, None, (e.reason, e.detail), None
        split_name, k = item.ref.rsplit("/", 1)
        record = readers[(item.source.path, split_name)][int(k)]
        ref = f"{item.source.path}#{item.ref}"
        image_id = record_id(record)
        shape = _valid_png(os.path.join(out_dir, f"{image_id}.png"), bits)
        if shape is not None:
            return image_id, ref, None, None, shape  # resumed: no decode
        try:
            return image_id, ref, preprocessing.decode_jpeg(record["image"]), None, None
        except ValueError as e:
            return image_id, ref, None, ("undecodable_image", str(e)), None

    threads = num_threads or max(2, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        chunk = max(1, batch_size) * 2
        for begin in range(0, len(mine), chunk):
            todo = []
            for item in mine[begin:begin + chunk]:
                if item.order in duplicates:
                    skip(item.id, item.ref, "duplicate_id", f"id already used by {seen_file_ids[item.id]}")
                    continue
                if item.id is not None:
                    shape = _valid_png(os.path.join(out_dir, f"{item.id}.png"), bits)
                    if shape is not None:
                        rows.append(dict(id=item.id, source=item.ref, height=shape[0], width=shape[1],
                                         map_file=f"{item.id}.png", producer=producer_name))
                        seen_ids[item.id] = item.ref
                        resumed += 1
                        continue
                todo.append(item)
            loaded = list(pool.map(load, todo))
            images, owners = [], []
            for image_id, ref, pixels, problem, shape in loaded:
                if image_id in seen_ids:
                    skip(image_id, ref, "duplicate_id", f"id already used by {seen_ids[image_id]}")
                    continue
                seen_ids[image_id] = ref
                if problem is not None:
                    skip(image_id, ref, *problem)
                elif shape is not None:  # a build record whose map already exists
                    rows.append(dict(id=image_id, source=ref, height=shape[0], width=shape[1],
                                     map_file=f"{image_id}.png", producer=producer_name))
                    resumed += 1
                else:
                    images.append(pixels)
                    owners.append((image_id, ref))
            maps = _maps(producer, images, batch_size)
            writes = []
            for (image_id, ref), pixels, saliency in zip(owners, images, maps):
                if isinstance(saliency, tuple):
                    skip(image_id, ref, *saliency)
                    continue
                if saliency.shape != pixels.shape[:2]:
                    skip(image_id, ref, "bad_map", f"map shape {saliency.shape} for an image of {pixels.shape[:2]}")
                    continue
                if not np.isfinite(saliency).all():
                    skip(image_id, ref, "bad_map", "non-finite values")
                    continue
                path = os.path.join(out_dir, f"{image_id}.png")
                writes.append(pool.submit(_write_png, path, encode_map(saliency, bits)))
                rows.append(dict(id=image_id, source=ref, height=pixels.shape[0], width=pixels.shape[1],
                                 map_file=f"{image_id}.png", producer=producer_name))
                computed += 1
            for future in writes:
                future.result()
            done = min(begin + chunk, len(mine))
            bar.update(done, resumed, len(skipped))
    if not mine:
        bar.update(0, 0, 0)

    rows.sort(key=lambda r: _id_key(r["id"]))
    skipped.sort(key=lambda r: (r["file"], _id_key(r["id"] or "")))
    if count == 1:
        index_path = os.path.join(out_dir, "index.csv")
        _write_csv(index_path, INDEX_FIELDS, rows)
        _write_csv(os.path.join(out_dir, "skipped.csv"), SKIPPED_FIELDS, skipped)
        merged = True
    else:
        index_path = os.path.join(out_dir, f"index.{index}-of-{count}.csv")
        _write_csv(os.path.join(out_dir, f"skipped.{index}-of-{count}.csv"), SKIPPED_FIELDS, skipped)
        _write_csv(index_path, INDEX_FIELDS, rows)
        merged = _merge(out_dir, count)
    reasons: dict[str, int] = {}
    for r in skipped:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return dict(total=len(mine), computed=computed, resumed=resumed, skipped=len(skipped), skipped_by_reason=reasons,
                index=index_path, merged=merged, out_dir=out_dir, seconds=time.time() - start)


def _maps(producer, images: list[np.ndarray], batch_size: int) -> list:
    """Maps of `images`; a producer failure is isolated to its image(s): ('map_failed', detail) entries."""
    if not images:
        return []
    try:
        return compute_maps(producer, images, batch_size=batch_size)
    except Exception:  # pylint: disable=broad-except  (find the image(s) it fails on)
        out = []
        for image in images:
            try:
                out.append(compute_maps(producer, [image], batch_size=1)[0])
            except Exception as e:  # pylint: disable=broad-except
                out.append(("map_failed", f"{type(e).__name__}: {e}"[:300]))
        return out
