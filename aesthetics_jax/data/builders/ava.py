"""TFDS builder for AVA (Aesthetic Visual Analysis), built and read without TensorFlow.

Input (the `manual_dir`; real AVA and `demo.build_demo_ava` output look the same):

    AVA.txt                                   row  id  n1..n10  tag1  tag2  challenge  (15 columns)
    tags.txt, challenges.txt                  `id name` (optional: names are '' without them)
    images/<id>.jpg
    aesthetics_image_lists/generic_test.jpgl  one test id per line

Output: `<data_dir>/ava/<config>/1.0.0/` in array_record format (random access through
`tfds.data_source` / grain; TensorFlow is never imported), plus `skipped.csv`.

Features of one example:

    image           JPEG bytes, stored as read from images/<id>.jpg (tfds.features.Image,
                    encoding 'jpeg'; read it with `pipeline.make_source(...)`, which skips decoding)
    distribution    float32[10]   histogram / votes
    histogram       int32[10]     raw vote counts for scores 1..10
    votes           int32         total number of votes
    mean_score      float32       sum_i i * distribution[i-1], i = 1..10
    tags            int32[2]      semantic tag ids (0 = no tag)
    tag_names       string[2]     names from tags.txt ('' for 0 or unknown)
    challenge       int32
    challenge_name  string
    id              int64         AVA image id (also the example key)

Splits: `test` = ids listed in generic_test.jpgl, `train` = all other valid records. Configs with
`val_fraction > 0` add `validation`: a seeded carve-out of exactly round(val_fraction * n) of the
n valid train records (numpy `default_rng(seed).permutation` over their sorted ids).
`config_for(val_fraction, seed)` names the config: `default` (no validation split) or e.g.
`val0p05_seed0`; each config is its own directory.

Bad records are skipped and listed, never dropped silently and never fatal. `skipped.csv`
(columns id, line, file, reason, detail; `line` is the record's 1-based line in AVA.txt, or in
the test list for a bad test-list entry; `file` is the file at fault) lives next to the
array_record files, and its counts are in `builder.info.metadata` (`skipped` = {reason: count},
`num_skipped`, `num_rows`, `test_list_ids`, `test_list_ids_not_in_ava_txt`). Reasons:

    wrong_column_count   AVA.txt row without exactly 15 whitespace-separated columns
    bad_id               image id not a non-negative integer
    bad_votes            a vote count not a non-negative integer
    zero_votes           all ten vote counts are 0
    bad_tag_or_challenge tag/challenge id not a non-negative integer
    duplicate_id         id already seen on an earlier row (the first row is kept)
    bad_test_list_entry  a line of generic_test.jpgl that is not an integer id
    missing_image        images/<id>.jpg does not exist
    empty_image          zero bytes
    not_jpeg             no JPEG start-of-image marker and no other known image format
    truncated_image      no end-of-image marker after the last scan (cut-off download)
    decompression_bomb   the header declares more than image_io.DEFAULT_MAX_PIXELS pixels
    undecodable_image    the header or the pixels cannot be decoded

Images go through `aesthetics_jax.data.image_io` (see there): plain RGB / greyscale JPEGs are stored
byte for byte; PNG or other formats behind .jpg, CMYK, alpha, 16-bit and EXIF-rotated images are
stored re-encoded as upright RGB JPEG (quality 95), and `metadata['reencoded']` counts them by cause.
Configs with `resize_shorter = N > 0` store every image whose shorter side exceeds N shrunk to N
(aspect kept; names end in `_s<N>`); the default keeps the original size.

Images are checked before the splits are made (so the validation size is exact), in a thread pool;
the decodability check of kept JPEGs decodes at 1/8 scale (libjpeg still entropy-decodes every
block), several times cheaper than a full decode on the 255k real images. Check results are cached
in `<data_dir>/ava/_inspect_cache/` so an interrupted build resumes without re-checking, and
`aesthetics-jax data build ava --inspect_shard i/n` lets n processes share the checking first.
Records are ordered in the array_record files by TFDS's key hash (key = id), not by AVA.txt order.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import image_io
from aesthetics_jax.data.builders import base

__all__ = ["Ava", "AvaConfig", "build_ava", "config_for"]

_AVA_TXT = "AVA.txt"
_TEST_LIST = "aesthetics_image_lists/generic_test.jpgl"
_NUM_COLUMNS = 15
_SCORES = np.arange(1, 11, dtype=np.float64)


@dataclasses.dataclass(eq=False)
class AvaConfig(tfds.core.BuilderConfig):
    """`val_fraction` of the train ids (seeded by `seed`) form a `validation` split when > 0."""

    val_fraction: float = 0.0
    seed: int = 0
    resize_shorter: int = 0  # > 0: store images with their shorter side shrunk to this


def _config_name(val_fraction: float, seed: int, resize_shorter: int = 0) -> str:
    name = "default" if val_fraction == 0 else f"val{val_fraction:g}_seed{seed}".replace(".", "p").replace("-", "m")
    return name if not resize_shorter else f"{name}_s{int(resize_shorter)}"


class _Row(NamedTuple):
    line: int
    image_id: int
    histogram: np.ndarray  # int64[10]
    tags: tuple[int, int]
    challenge: int


def parse_ava_txt(path: str, skip) -> tuple[list[_Row], int]:
    """The accepted rows of AVA.txt and the number of non-blank lines; every rejected line is passed
    to `skip(id, line, file, reason, detail)` (the builders' `_skip`)."""
    rows, first_line, rejected = [], {}, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, text in enumerate(f, start=1):
            fields = text.split()
            if not fields:
                continue  # blank line: not a record
            image_id = fields[1] if len(fields) > 1 else ""
            problem = None
            if len(fields) != _NUM_COLUMNS:
                problem = ("wrong_column_count", f"{len(fields)} columns, expected {_NUM_COLUMNS}")
            elif not image_id.isdigit():
                problem = ("bad_id", f"id {image_id!r}")
            elif not all(v.isdigit() for v in fields[2:12]):
                problem = ("bad_votes", " ".join(fields[2:12]))
            elif sum(int(v) for v in fields[2:12]) == 0:
                problem = ("zero_votes", "")
            elif not all(v.isdigit() for v in fields[12:15]):
                problem = ("bad_tag_or_challenge", " ".join(fields[12:15]))
            elif int(image_id) in first_line:
                problem = ("duplicate_id", f"first on line {first_line[int(image_id)]}")
            if problem:
                skip(image_id if problem[0] != "duplicate_id" else int(image_id), line_no, _AVA_TXT, *problem)
                rejected += 1
                continue
            image_id = int(image_id)
            first_line[image_id] = line_no
            histogram = np.array([int(v) for v in fields[2:12]], np.int64)
            rows.append(_Row(line_no, image_id, histogram, (int(fields[12]), int(fields[13])), int(fields[14])))
    return rows, len(rows) + rejected


def parse_test_list(path: str, skip) -> set[int]:
    """The image ids of an AVA test list (one per line); other non-blank lines go to `skip`."""
    ids = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, text in enumerate(f, start=1):
            text = text.strip()
            if text.isdigit():
                ids.add(int(text))
            elif text:
                skip(text, line_no, _TEST_LIST, "bad_test_list_entry", f"{text[:40]!r}")
    return ids


class Ava(base.CheckedBuilder):
    """AVA: JPEG bytes + 10-bin vote histograms, standard generic_test split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG bytes in array_record; skipped-record report."}
    BUILDER_CONFIGS = [
        AvaConfig(name="default", description="train / test (generic_test.jpgl)"),
        AvaConfig(name=_config_name(0.05, 0), val_fraction=0.05, seed=0,
                  description="train / validation (5 % of train, seed 0) / test"),
    ]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at an AVA directory holding AVA.txt, tags.txt, challenges.txt, "
        "images/<id>.jpg and aesthetics_image_lists/generic_test.jpgl."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._inspections: dict[int, image_io.Inspection] = {}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="AVA: Aesthetic Visual Analysis (Murray et al., CVPR 2012).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "distribution": tfds.features.Tensor(shape=(10,), dtype=np.float32),
                "histogram": tfds.features.Tensor(shape=(10,), dtype=np.int32),
                "votes": tfds.features.Scalar(dtype=np.int32),
                "mean_score": tfds.features.Scalar(dtype=np.float32),
                "tags": tfds.features.Tensor(shape=(2,), dtype=np.int32),
                "tag_names": tfds.features.Tensor(shape=(2,), dtype=np.str_),
                "challenge": tfds.features.Scalar(dtype=np.int32),
                "challenge_name": tfds.features.Text(),
                "id": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "distribution"),
            citation=(
                "@inproceedings{murray2012ava, title={AVA: A large-scale database for aesthetic visual "
                "analysis}, author={Murray, Naila and Marchesotti, Luca and Perronnin, Florent}, "
                "booktitle={CVPR}, year={2012}}"
            ),
            metadata=tfds.core.MetadataDict(),
        )

    # -- reading the text files ------------------------------------------------------------------

    def _parse_ava_txt(self, path: str) -> list[_Row]:
        rows, num_rows = parse_ava_txt(path, self._skip)
        self._stats["num_rows"] = num_rows
        return rows

    def _parse_test_list(self, path: str) -> set[int]:
        return parse_test_list(path, self._skip)

    @staticmethod
    def _parse_names(path: str) -> dict[int, str]:
        """`id name` lines (names may contain spaces); a missing file gives no names."""
        names = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                for text in f:
                    parts = text.strip().split(maxsplit=1)
                    if len(parts) == 2 and parts[0].isdigit():
                        names[int(parts[0])] = parts[1]
        return names

    # -- TFDS hooks --------------------------------------------------------------------------------

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        for required in (_AVA_TXT, _TEST_LIST):
            if not os.path.exists(os.path.join(root, required)):
                raise FileNotFoundError(f"{required} not found in manual_dir {root}")
        self._reset()
        self._inspections = {}
        parsed = self._parse_ava_txt(os.path.join(root, _AVA_TXT))
        test_ids = self._parse_test_list(os.path.join(root, _TEST_LIST))
        self._stats["test_list_ids"] = len(test_ids)
        self._stats["test_list_ids_not_in_ava_txt"] = len(test_ids - {r.image_id for r in parsed})
        rows = self._check_images_of(root, parsed)
        tag_names = self._parse_names(os.path.join(root, "tags.txt"))
        challenge_names = self._parse_names(os.path.join(root, "challenges.txt"))

        splits = {"train": [r for r in rows if r.image_id not in test_ids],
                  "test": [r for r in rows if r.image_id in test_ids]}
        config = self.builder_config
        if config.val_fraction > 0:
            train_ids = np.array(sorted(r.image_id for r in splits["train"]), np.int64)
            n_val = int(round(config.val_fraction * len(train_ids)))
            val_ids = set(np.random.default_rng(config.seed).permutation(train_ids)[:n_val].tolist())
            splits["validation"] = [r for r in splits["train"] if r.image_id in val_ids]
            splits["train"] = [r for r in splits["train"] if r.image_id not in val_ids]
        return {name: self._generate_examples(root, split_rows, tag_names, challenge_names)
                for name, split_rows in splits.items()}

    def _check_images_of(self, root: str, rows: list[_Row]) -> list[_Row]:
        """The rows whose image is a complete, decodable JPEG; the others are reported.

        Checked before the split so that the validation carve-out is exact; threads overlap file
        reads and libjpeg (which releases the GIL).
        """
        inspections = self._check_images([(row.image_id, row.line, _image_relpath(row.image_id),
                                           os.path.join(root, _image_relpath(row.image_id))) for row in rows])
        self._inspections = {row.image_id: inspection for row, inspection in zip(rows, inspections) if inspection}
        return [row for row, inspection in zip(rows, inspections) if inspection]

    def _generate_examples(self, root, rows, tag_names, challenge_names) -> Iterator[tuple[int, dict]]:
        for row in rows:
            jpeg = image_io.storage_bytes(os.path.join(root, _image_relpath(row.image_id)),
                                          self._inspections[row.image_id],
                                          resize_shorter=self.builder_config.resize_shorter or None)
            votes = int(row.histogram.sum())
            distribution = row.histogram / votes
            yield row.image_id, {
                "image": jpeg,
                "distribution": distribution.astype(np.float32),
                "histogram": row.histogram.astype(np.int32),
                "votes": votes,
                "mean_score": np.float32(np.dot(_SCORES, distribution)),
                "tags": np.array(row.tags, np.int32),
                "tag_names": np.array([tag_names.get(t, "") if t else "" for t in row.tags], dtype=object),
                "challenge": row.challenge,
                "challenge_name": challenge_names.get(row.challenge, ""),
                "id": row.image_id,
            }

    def _report_order(self, record: dict):
        return record["file"] == _TEST_LIST, record["line"], record["file"]

    def _metadata(self) -> dict:
        return dict(val_fraction=float(self.builder_config.val_fraction), seed=int(self.builder_config.seed))


def _image_relpath(image_id: int) -> str:
    return f"images/{image_id}.jpg"


def config_for(val_fraction: float = 0.0, seed: int = 0, resize_shorter: int = 0) -> AvaConfig:
    """The predefined config with these values, or a custom one named after them."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if resize_shorter < 0:
        raise ValueError(f"resize_shorter must be >= 0 (0 = original size), got {resize_shorter}")
    name = _config_name(val_fraction, seed, resize_shorter)
    predefined = Ava.builder_configs.get(name)
    if predefined is not None:
        return predefined
    size = f", shorter side {resize_shorter}" if resize_shorter else ""
    return AvaConfig(name=name, val_fraction=float(val_fraction), seed=int(seed), resize_shorter=int(resize_shorter),
                     description=f"train / validation ({val_fraction:g} of train, seed {seed}) / test{size}")


def build_ava(manual_dir, data_dir, *, val_fraction: float = 0.0, seed: int = 0, resize_shorter: int = 0,
              progress: bool = False) -> Ava:
    """Prepares AVA from `manual_dir` into `data_dir` (nothing is downloaded) and returns the builder.

    Idempotent: an existing build of the same config in `data_dir` is reused as is (TFDS does not
    look at `manual_dir` again, so delete `<data_dir>/ava/<config>` to rebuild after changing it).
    """
    builder = Ava(data_dir=os.fspath(data_dir), config=config_for(val_fraction, seed, resize_shorter))
    builder.inspect_progress = "ava" if progress else None
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder
