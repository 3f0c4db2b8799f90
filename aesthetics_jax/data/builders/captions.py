"""TFDS builder `captions`: image-text pairs (critiques, comments) over AVA's images, no TensorFlow.

The image-comment data of CG-IAA's pretraining and attribute experts (SCIENCE.md sections 6-7):
captions from one of four published formats, joined to the AVA images they talk about.

    build_captions(manual_dir="/data/AVA", data_dir="/data/tfds", format="cgiaa",
                   captions_path="/data/CG-IAA/data")

Input
    `manual_dir`: an AVA root, exactly as the AVA builder reads it (`ava.py`): `AVA.txt`,
    `images/<id>.jpg`, `aesthetics_image_lists/generic_test.jpgl` (the demo's `build_demo_ava`
    output is one too). `captions_path`, by `format` (one config family per format):

    cgiaa         CG-IAA's released critiques: a directory holding any of `color.json`,
                  `composition.json`, `dof.json`, `general.json` (or one of those files). Each is a
                  JSON list of `{"id": int, "img_id": "773931", "caption": str}`; `img_id` is the AVA
                  id as text. Only `img_id` and `caption` are read (`id` numbers the critiques and is
                  not needed). Source attribute = the file stem.
    dpc           DPC-Captions: a directory of per-attribute JSON files (or one of them),
                  `color_lighting.json`, `composition.json`, `depth_and_focus.json`,
                  `impression_and_subject.json`, `use_of_camera.json`, each
                  `{"<AVA id>.jpg": [comment, ...]}`. Source attribute = the file stem.
    ava_captions  AVA-Captions (Ghosal et al. 2019), one Karpathy-style JSON file
                  `{"images": [{"filename": "<id>.jpg", "imgid", "split", "sentences":
                  [{"raw": str, "tokens": [...]}, ...]}, ...]}`; the caption is `raw` (the
                  file's own `split` is not used, see Splits). Source attribute `general`.
    ava_comments  the raw `AVA_Comments_Full.txt`, one image per line: the line (without its line
                  break) split on `#`; field 1 (0-based) is the image id, fields 2.. the comments,
                  empty fields ignored (field 0 is not read). As the AVA-Captions preparation
                  scripts read it, which also strip the id and drop lines whose id is not an
                  integer (reported here). Read as UTF-8, undecodable bytes replaced. A comment that
                  itself holds `#` is cut in two there too: the format has no escaping. Source
                  attribute `general`.

    In a directory, the known files of the format are read in the order listed above; other
    `.json` files are ignored (named in the metadata's `ignored_files`). An image id may be given
    as `773931`, `"773931"` or `"773931.jpg"` in every format (a basename is taken of a filename).

Groups
    Every caption also gets one of CG-IAA's four attribute groups (`GROUPS`: color = Color & Light,
    composition, dof = Depth & Focus, general = General Feelings) by the constant `ATTRIBUTE_GROUPS`.
    DPC's `use_of_camera` goes to `general`: its comments mix exposure (colour & light), focus and
    lens choice (depth & focus) and technique in general, so no specific group fits them all, and
    putting them in one would pollute that group's expert; `impression_and_subject` is general by
    content.

Records (one per image that keeps at least one caption), written in increasing `id` order:

    image               JPEG bytes of images/<id>.jpg as the AVA builder stores them (image_io checks,
                        re-encoding of repairable oddities, optional `resize_shorter`)
    id                  int64    AVA image id
    captions            Sequence(Text)  the image's captions in file order (files in the order
                        above, entries in file order, comments in list order), whitespace runs
                        collapsed to one space and stripped; a caption identical to an earlier one
                        of the same image (whatever its attribute) is dropped (counted in
                        `duplicate_captions`)
    caption_attributes  Sequence(Text)  the source attribute of each caption (same length)
    caption_groups      Sequence(Text)  the group of each caption (same length)
    has_labels          bool     the id is an accepted row of AVA.txt (the AVA builder's parser:
                                 rows it rejects, e.g. zero_votes, count as absent)
    distribution        float32[10]  histogram / votes, as the AVA builder computes it
    mean_score          float32  sum_i i * distribution[i-1]
    votes               int32    total votes
                        (the last three are zeros when has_labels is False)

Splits
    `test` = the ids of AVA's official test list (generic_test.jpgl), so that no test image is ever
    used for pretraining; `train` = all other records. Configs with `val_fraction > 0` add
    `validation` exactly as the AVA builder does: round(val_fraction * n) of the n train records,
    `numpy.random.default_rng(seed).permutation` of their sorted ids. (That is a carve-out of the
    caption images, not the AVA build's validation split: the two differ.) A caption file's own
    split (AVA-Captions' `split`) is ignored. A split without records (caption files that name
    no test image, say) is not written (TFDS cannot write an empty split); `images_per_split` in the
    metadata lists it with 0. A build with no record at all is an error.

Skipped (`skipped.csv`: id, line, file, reason, detail; counts in the metadata). `line` is the
1-based line of a text file, and for a JSON file the 1-based position of the entry (list item of
cgiaa, key of dpc's object, item of ava_captions' `images`; `line - 1` indexes it); `detail` names
the comment / sentence within an entry. `file` is the caption file's name relative to
`captions_path` (a file path: its basename), or `images/<id>.jpg` for image problems.

    malformed_entry   an entry without the keys / types its format needs (cgiaa: a dict with
                      `img_id` and a string `caption`; dpc: a list of strings; ava_captions: a dict
                      with a string `filename` and a list `sentences` of dicts with a string `raw`;
                      ava_comments: a line with fewer than 2 fields). Only the bad comment or
                      sentence is dropped when the rest of the entry is sound.
    bad_id            the image id is not a non-negative integer
    empty_caption     a caption that is empty after whitespace collapsing (the caption is dropped;
                      ava_comments' empty fields are no captions and are only counted, as
                      `empty_fields_ignored`)
    no_captions       an image none of whose captions remains (reported at its first entry)
    + the image reasons of aesthetics_jax.data.image_io (missing_image, empty_image, not_jpeg,
      truncated_image, decompression_bomb, undecodable_image), `file` = images/<id>.jpg and
      `line` = the image's first caption entry (its file in `detail`).

A caption file that is not valid JSON, or whose top level has the wrong type, is an error naming
the file (not a skip: the whole file would be lost). AVA.txt rows and test-list lines the AVA
parser rejects are not records of this build: they are counted in the metadata (`ava_txt`,
`test_list`) and make the image `has_labels = False` resp. not a test id.

Metadata (`info.metadata`, besides the skip counts): format, captions_path, `files` (per file:
attribute, entries, captions kept before the image checks), `ignored_files`, `attribute_groups` (the mapping used),
`captions_per_group` / `captions_per_attribute` (captions written), `images_per_split`,
`images_with_labels`, `duplicate_captions`, `empty_fields_ignored`, `ava_txt` (rows, rejected by
reason), `test_list` (ids, bad entries), val_fraction, seed.

Config name `<format>_<8 hex of sha256(absolute captions_path)>` (+ `_val<f>_seed<s>` when
val_fraction > 0, + `_s<N>` with resize_shorter), so builds of different caption sets, formats or
splits never collide. Like `build_ava`, a finished build is reused as is: delete
`<data_dir>/captions/<config>` to rebuild after changing the input files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterator, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import image_io
from aesthetics_jax.data.builders import ava, base

__all__ = ["ATTRIBUTE_GROUPS", "FORMATS", "FORMAT_FILES", "GROUPS", "Captions", "CaptionsConfig", "build_captions",
           "config_for"]

GROUPS = ("color", "composition", "dof", "general")
FORMATS = ("cgiaa", "dpc", "ava_captions", "ava_comments")
# The attribute files of the directory formats, in reading order.
FORMAT_FILES = {
    "cgiaa": ("color", "composition", "dof", "general"),
    "dpc": ("color_lighting", "composition", "depth_and_focus", "impression_and_subject", "use_of_camera"),
}
# Source attribute -> CG-IAA group (module docstring: use_of_camera is `general`).
ATTRIBUTE_GROUPS = {
    "color": "color",
    "color_lighting": "color",
    "composition": "composition",
    "dof": "dof",
    "depth_and_focus": "dof",
    "general": "general",
    "impression_and_subject": "general",
    "use_of_camera": "general",
}

_AVA_TXT = "AVA.txt"
_TEST_LIST = "aesthetics_image_lists/generic_test.jpgl"
_SKIP_FIELDS = ("id", "line", "file", "reason", "detail")


@dataclasses.dataclass(eq=False)
class CaptionsConfig(tfds.core.BuilderConfig):
    """Source `format`, the caption file(s) at `captions_path`, split and storage options."""

    format: str = "cgiaa"
    captions_path: str = ""
    val_fraction: float = 0.0
    seed: int = 0
    resize_shorter: int = 0  # > 0: store images with their shorter side shrunk to this


class _Entry(NamedTuple):
    """One caption as read: raw image id (validated later), text, attribute, where it came from."""

    raw_id: object
    text: str
    attribute: str
    file: str
    line: int
    detail: str  # which comment / sentence of the entry ('' when the entry is the caption)


class _Image(NamedTuple):
    image_id: int
    captions: tuple[str, ...]
    attributes: tuple[str, ...]
    file: str  # the image's first caption entry
    line: int


def _image_id(raw) -> int | None:
    """The AVA id of `raw` (int, '773931' or '773931.jpg', surrounding whitespace allowed), else None."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if raw >= 0 else None
    if not isinstance(raw, str):
        return None
    text = os.path.basename(raw.strip())
    if text.lower().endswith(".jpg"):
        text = text[:-4]
    return int(text) if text.isascii() and text.isdigit() else None


def _id_text(raw) -> str:
    """How a report names the image of an entry: its id when it parses, else the raw value."""
    image_id = _image_id(raw)
    return str(image_id) if image_id is not None else ("" if raw is None else str(raw))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _load_json(path: str, display: str, top: type):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"caption file {path}: not valid JSON ({e})") from None
    if not isinstance(data, top):
        raise ValueError(f"caption file {path}: the top level is a {type(data).__name__}, expected a "
                         f"{top.__name__} ({display})")
    return data


class Captions(base.CheckedBuilder):
    """Image-caption pairs over AVA's images, with AVA's labels where present (module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG bytes + captions with attributes and groups in array_record; skip report."}
    BUILDER_CONFIGS = [CaptionsConfig(name=fmt, format=fmt, description=f"{fmt} captions: set captions_path "
                                      "(captions.config_for)") for fmt in FORMATS]
    DEFAULT_CONFIG_NAME = "cgiaa"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at an AVA directory holding AVA.txt, images/<id>.jpg and "
        "aesthetics_image_lists/generic_test.jpgl; the caption files are named by the config's captions_path."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._inspections: dict[int, image_io.Inspection] = {}
        self._summary: dict = {}
        self._file_entries = 0  # entries of the caption file being read (set by the readers)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Image-caption pairs over AVA images (CG-IAA critiques, DPC-Captions, AVA-Captions or "
                         "raw AVA comments), each caption with its source attribute and CG-IAA group."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "id": tfds.features.Scalar(dtype=np.int64),
                "captions": tfds.features.Sequence(tfds.features.Text()),
                "caption_attributes": tfds.features.Sequence(tfds.features.Text()),
                "caption_groups": tfds.features.Sequence(tfds.features.Text()),
                "has_labels": tfds.features.Scalar(dtype=np.bool_),
                "distribution": tfds.features.Tensor(shape=(10,), dtype=np.float32),
                "mean_score": tfds.features.Scalar(dtype=np.float32),
                "votes": tfds.features.Scalar(dtype=np.int32),
            }),
            disable_shuffling=True,  # records in increasing id order
            metadata=tfds.core.MetadataDict(),
        )

    # -- reading the caption files -----------------------------------------------------------------

    def _caption_files(self) -> list[tuple[str, str, str]]:
        """(path, display name, attribute) of every caption file to read, in reading order."""
        config = self.builder_config
        path = config.captions_path
        if not path:
            raise ValueError(f"captions config {config.name!r} names no caption files: use "
                             "captions.config_for(format, captions_path) or build_captions(...)")
        self._summary["ignored_files"] = []
        if config.format in FORMAT_FILES:
            known = FORMAT_FILES[config.format]
            if os.path.isfile(path):
                stem = os.path.splitext(os.path.basename(path))[0]
                if stem not in known:
                    raise ValueError(f"{path}: a {config.format} caption file is one of "
                                     f"{', '.join(k + '.json' for k in known)}")
                return [(path, os.path.basename(path), stem)]
            if not os.path.isdir(path):
                raise FileNotFoundError(f"{config.format} captions: {path} is neither a directory nor a file")
            files = [(os.path.join(path, f"{stem}.json"), f"{stem}.json", stem) for stem in known
                     if os.path.isfile(os.path.join(path, f"{stem}.json"))]
            if not files:
                raise FileNotFoundError(f"{config.format} captions: none of {', '.join(k + '.json' for k in known)} "
                                        f"in {path}")
            self._summary["ignored_files"] = sorted(
                name for name in os.listdir(path)
                if name.endswith(".json") and os.path.splitext(name)[0] not in known)
            return files
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{config.format} captions: {path} is not a file")
        return [(path, os.path.basename(path), "general")]

    def _read_cgiaa(self, path: str, name: str, attribute: str) -> Iterator[_Entry]:
        data = _load_json(path, "a list of {id, img_id, caption}", list)
        self._file_entries = len(data)
        for k, item in enumerate(data, start=1):
            if not isinstance(item, dict) or "img_id" not in item or not isinstance(item.get("caption"), str):
                raw_id = item.get("img_id", "") if isinstance(item, dict) else ""
                self._skip(_id_text(raw_id), k, name, "malformed_entry",
                           _describe(item, "needs img_id and a string caption"))
                continue
            yield _Entry(item["img_id"], item["caption"], attribute, name, k, "")

    def _read_dpc(self, path: str, name: str, attribute: str) -> Iterator[_Entry]:
        data = _load_json(path, 'an object {"<id>.jpg": [comment, ...]}', dict)
        self._file_entries = len(data)
        for k, (key, comments) in enumerate(data.items(), start=1):
            if not isinstance(comments, list):
                self._skip(_id_text(key), k, name, "malformed_entry", _describe(comments, "needs a list of comments"))
                continue
            yield _Entry(key, None, attribute, name, k, "")
            for j, comment in enumerate(comments, start=1):
                if not isinstance(comment, str):
                    self._skip(_id_text(key), k, name, "malformed_entry",
                               f"comment {j}: " + _describe(comment, "not a string"))
                    continue
                yield _Entry(key, comment, attribute, name, k, f"comment {j}")

    def _read_ava_captions(self, path: str, name: str, attribute: str) -> Iterator[_Entry]:
        data = _load_json(path, '{"images": [...]}', dict)
        images = data.get("images")
        if not isinstance(images, list):
            raise ValueError(f"caption file {path}: no 'images' list at the top level (AVA-Captions' Karpathy format)")
        self._file_entries = len(images)
        for k, item in enumerate(images, start=1):
            if (not isinstance(item, dict) or not isinstance(item.get("filename"), str)
                    or not isinstance(item.get("sentences"), list)):
                raw_id = item.get("filename", "") if isinstance(item, dict) else ""
                self._skip(_id_text(raw_id), k, name, "malformed_entry",
                           _describe(item, "needs a string filename and a list of sentences"))
                continue
            yield _Entry(item["filename"], None, attribute, name, k, "")
            for j, sentence in enumerate(item["sentences"], start=1):
                if not isinstance(sentence, dict) or not isinstance(sentence.get("raw"), str):
                    self._skip(_id_text(item["filename"]), k, name, "malformed_entry",
                               f"sentence {j}: " + _describe(sentence, "needs a string raw"))
                    continue
                yield _Entry(item["filename"], sentence["raw"], attribute, name, k, f"sentence {j}")

    def _read_ava_comments(self, path: str, name: str, attribute: str) -> Iterator[_Entry]:
        entries = 0
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for line_no, text in enumerate(f, start=1):
                text = text.rstrip("\r\n")
                if not text.strip():
                    continue  # blank line: not a record
                entries += 1
                fields = text.split("#")
                if len(fields) < 2:
                    self._skip("", line_no, name, "malformed_entry", f"no '#'-separated id field: {text[:60]!r}")
                    continue
                yield _Entry(fields[1], None, attribute, name, line_no, "")
                for j, comment in enumerate(fields[2:], start=1):
                    if comment.strip():
                        yield _Entry(fields[1], comment, attribute, name, line_no, f"comment {j}")
                    else:
                        self._summary["empty_fields_ignored"] += 1
        self._file_entries = entries

    def _read_captions(self) -> list[_Image]:
        """Every image with at least one caption left, sorted by id; the rest is reported.

        Readers yield, per entry, first `text=None` (the entry names this image: it is reported as
        no_captions if nothing of it is kept) and then one _Entry per caption.
        """
        reader = {"cgiaa": self._read_cgiaa, "dpc": self._read_dpc, "ava_captions": self._read_ava_captions,
                  "ava_comments": self._read_ava_comments}[self.builder_config.format]
        captions: dict[int, list[tuple[str, str]]] = {}  # id -> [(text, attribute)]
        seen: dict[int, set[str]] = {}
        first: dict[int, tuple[str, int]] = {}
        files, duplicates = [], 0
        self._summary["empty_fields_ignored"] = 0
        for path, name, attribute in self._caption_files():
            kept, bad_id_lines = 0, set()
            self._file_entries = 0
            for entry in reader(path, name, attribute):
                image_id = _image_id(entry.raw_id)
                if image_id is None:
                    if entry.line not in bad_id_lines:  # one report per entry
                        bad_id_lines.add(entry.line)
                        self._skip(entry.raw_id, entry.line, name, "bad_id", f"id {entry.raw_id!r}")
                    continue
                first.setdefault(image_id, (name, entry.line))
                captions.setdefault(image_id, [])
                if entry.text is None:
                    continue
                text = _collapse(entry.text)
                if not text:
                    self._skip(image_id, entry.line, name, "empty_caption", entry.detail)
                    continue
                if text in seen.setdefault(image_id, set()):
                    duplicates += 1
                    continue
                seen[image_id].add(text)
                captions[image_id].append((text, entry.attribute))
                kept += 1
            files.append(dict(file=name, attribute=attribute, entries=self._file_entries, captions=kept))
        self._summary.update(files=files, duplicate_captions=duplicates)
        images = []
        for image_id in sorted(first):
            name, line = first[image_id]
            if not captions[image_id]:
                self._skip(image_id, line, name, "no_captions", "no caption left")
                continue
            texts, attributes = zip(*captions[image_id])
            images.append(_Image(image_id, texts, attributes, name, line))
        return images

    # -- TFDS hooks --------------------------------------------------------------------------------

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        for required in (_AVA_TXT, _TEST_LIST):
            if not os.path.exists(os.path.join(root, required)):
                raise FileNotFoundError(f"{required} not found in manual_dir {root}")
        self._reset()
        self._summary = {}
        config = self.builder_config
        if config.format not in FORMATS:
            raise ValueError(f"unknown captions format {config.format!r}; one of {', '.join(FORMATS)}")

        images = self._read_captions()
        # AVA.txt / test-list lines the AVA parser rejects are counted, not records of this build.
        rejected_rows, bad_entries = [], []
        parsed, num_rows = ava.parse_ava_txt(os.path.join(root, _AVA_TXT),
                                             lambda *a: rejected_rows.append(dict(zip(_SKIP_FIELDS, a))))
        rows = {row.image_id: row for row in parsed}
        test_ids = ava.parse_test_list(os.path.join(root, _TEST_LIST), lambda *a: bad_entries.append(a))
        self._summary["ava_txt"] = dict(rows=int(num_rows), rejected=_reason_counts(rejected_rows))
        self._summary["test_list"] = dict(ids=len(test_ids), bad_entries=len(bad_entries))

        before = len(self._skipped)
        inspections = self._check_images([
            (im.image_id, im.line, _image_relpath(im.image_id), os.path.join(root, _image_relpath(im.image_id)))
            for im in images])
        first_file = {str(im.image_id): im.file for im in images}
        for record in self._skipped[before:]:  # an image skip's `line` is in its first caption file: name it
            record["detail"] = f"first caption in {first_file[record['id']]}; {record['detail']}"
        self._inspections = {im.image_id: ins for im, ins in zip(images, inspections) if ins}
        images = [im for im, ins in zip(images, inspections) if ins]

        splits = {"train": [im for im in images if im.image_id not in test_ids],
                  "test": [im for im in images if im.image_id in test_ids]}
        if config.val_fraction > 0:
            train_ids = np.array([im.image_id for im in splits["train"]], np.int64)  # sorted (images are)
            n_val = int(round(config.val_fraction * len(train_ids)))
            val_ids = set(np.random.default_rng(config.seed).permutation(train_ids)[:n_val].tolist())
            splits["validation"] = [im for im in splits["train"] if im.image_id in val_ids]
            splits["train"] = [im for im in splits["train"] if im.image_id not in val_ids]

        per_group = {group: 0 for group in GROUPS}
        per_attribute: dict[str, int] = {}
        for im in images:
            for attribute in im.attributes:
                per_group[ATTRIBUTE_GROUPS[attribute]] += 1
                per_attribute[attribute] = per_attribute.get(attribute, 0) + 1
        self._summary.update(
            captions_per_group=per_group, captions_per_attribute=per_attribute,
            images_per_split={name: len(split) for name, split in splits.items()},
            images_with_labels=sum(im.image_id in rows for im in images))
        if not images:
            raise ValueError(f"no record to write: no image of {config.captions_path} has a caption left and a usable "
                             f"image in {root} ({len(self._skipped)} skipped: {_reason_counts(self._skipped)})")
        # TFDS cannot write an empty split: a split without records (e.g. caption files that name no
        # test image) is left out; images_per_split still lists it with 0.
        return {name: self._generate_examples(root, split, rows) for name, split in splits.items() if split}

    def _generate_examples(self, root: str, images: list[_Image], rows: dict) -> Iterator[tuple[int, dict]]:
        for im in images:
            jpeg = image_io.storage_bytes(os.path.join(root, _image_relpath(im.image_id)),
                                          self._inspections[im.image_id],
                                          resize_shorter=self.builder_config.resize_shorter or None)
            row = rows.get(im.image_id)
            if row is None:
                distribution, votes, mean = np.zeros(10, np.float32), 0, np.float32(0.0)
            else:
                votes = int(row.histogram.sum())
                distribution = row.histogram / votes
                mean = np.float32(np.dot(ava._SCORES, distribution))  # pylint: disable=protected-access
            yield im.image_id, {
                "image": jpeg,
                "id": im.image_id,
                "captions": list(im.captions),
                "caption_attributes": list(im.attributes),
                "caption_groups": [ATTRIBUTE_GROUPS[a] for a in im.attributes],
                "has_labels": row is not None,
                "distribution": np.asarray(distribution, np.float32),
                "mean_score": mean,
                "votes": votes,
            }

    def _metadata(self) -> dict:
        config = self.builder_config
        return dict(format=config.format, captions_path=config.captions_path, attribute_groups=dict(ATTRIBUTE_GROUPS),
                    val_fraction=float(config.val_fraction), seed=int(config.seed), **self._summary)


def _reason_counts(records: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record["reason"]] = counts.get(record["reason"], 0) + 1
    return counts


def _describe(value, problem: str) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"{problem}: {text[:80]}"


def _image_relpath(image_id: int) -> str:
    return f"images/{image_id}.jpg"


def _config_name(fmt: str, captions_path: str, val_fraction: float, seed: int, resize_shorter: int) -> str:
    name = f"{fmt}_{hashlib.sha256(captions_path.encode()).hexdigest()[:8]}"
    if val_fraction:
        name += f"_val{val_fraction:g}_seed{seed}".replace(".", "p").replace("-", "m")
    if resize_shorter:
        name += f"_s{int(resize_shorter)}"
    return name


def config_for(format: str, captions_path, val_fraction: float = 0.0,  # pylint: disable=redefined-builtin
               seed: int = 0, resize_shorter: int = 0) -> CaptionsConfig:
    """The config for the `format` captions at `captions_path` (made absolute) with these options."""
    if format not in FORMATS:
        raise ValueError(f"unknown captions format {format!r}; one of {', '.join(FORMATS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if resize_shorter < 0:
        raise ValueError(f"resize_shorter must be >= 0 (0 = original size), got {resize_shorter}")
    captions_path = os.path.abspath(os.path.expanduser(os.fspath(captions_path)))
    if not os.path.exists(captions_path):
        raise FileNotFoundError(f"{format} captions: {captions_path} does not exist")
    split = f"validation {val_fraction:g} of train, seed {seed}" if val_fraction else "train / test"
    size = f", shorter side {resize_shorter}" if resize_shorter else ""
    return CaptionsConfig(
        name=_config_name(format, captions_path, val_fraction, seed, resize_shorter), format=format,
        captions_path=captions_path, val_fraction=float(val_fraction), seed=int(seed),
        resize_shorter=int(resize_shorter), description=f"{format} captions from {captions_path}; {split}{size}")


def build_captions(manual_dir, data_dir, *, format: str,  # pylint: disable=redefined-builtin
                   captions_path, val_fraction: float = 0.0, seed: int = 0, resize_shorter: int = 0,
                   progress: bool = False) -> Captions:
    """Prepares the `format` captions at `captions_path` over the AVA root `manual_dir` into
    `<data_dir>/captions/<config>` (nothing is downloaded) and returns the builder.

    Idempotent: an existing build of the same config is reused as is (delete it to rebuild after
    changing the input files).
    """
    builder = Captions(data_dir=os.fspath(data_dir),
                       config=config_for(format, captions_path, val_fraction, seed, resize_shorter))
    builder.inspect_progress = "captions" if progress else None
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder
