"""Dataset categories of a build's records, as ``{image id: [group names]}`` for the modality analysis.

    source = pipeline.make_source("<data_dir>/ava/default/1.0.0", "test")
    table = read_groups(source, "tags")        # GroupTable(groups={"953619": ["Landscape"], ...}, ...)

Groupings (``by``) and the build family each needs (told apart by the build's features):

    tags        AVA (``tags`` int32[2], ``tag_names``): an image is in the group of each of its
                non-zero semantic tags (up to two; a tag listed twice counts once). Group name: the
                tag's name from ``tags.txt``, ``tag <id>`` when the build has no name for it.
                An image without tags is in no tag group (only in ``all``).
    challenge   AVA (``challenge``, ``challenge_name``): the photo challenge the image was entered
                in; ``challenge <id>`` without a name. Challenge 0 (none) is no group.
    category    EVA (``category``, ``category_name``): the content category (animals,
                architectures and city scenes, human, natural and rural scenes, still life, other).
                Category 0 -- an image missing from ``image_content_category.csv`` -- is its own
                group ``uncategorised`` (kept visible rather than silently dropped; it is rarely
                large enough to be ranked).
    factors     EVA (``factor_rates`` float32[4]: the fraction of the image's raters who ticked
                "this mattered most" for light and colour, composition and depth, quality,
                semantic -- DATA_FORMATS.md). The image is in factor f's group when
                ``factor_rates[f] >= factor_threshold`` (default 0.5: at least half of the raters
                named it). Groups may overlap; an image with no factor at the threshold is in
                none. Names: ``eva.FACTOR_NAMES`` with ``_`` as spaces.
    attributes  AADB (``attributes`` float32[11] in ``aadb.ATTRIBUTE_NAMES`` order, in [-1, 1]):
                per attribute a group ``<attr> high`` (value > ``attr_threshold``) and ``<attr>
                low`` (value < -``attr_threshold``); default threshold 0, so the sign of the
                raters' mean judgement decides, and the many images whose attribute is exactly 0
                (no rater marked it) are in neither group -- comparing what a modality explains
                where an attribute is judged present vs absent, which a median split of mostly-zero
                attributes could not do.

The records' identifiers are ``id`` (AVA, EVA: the integer image id, as text) or ``name`` (AADB:
the image file name), matching the ``id`` column of the predictions CSVs.

Reading: a TFDS array_record source deserialises whole records, so the JPEG bytes are read from
disk too (``pipeline.make_source`` only skips *decoding* them); only the few fields above are kept.
Records are read in batches (``__getitems__``); the AVA test split (~20k records, ~1-2 GB of
JPEG bytes) then takes about as long as reading those bytes from disk.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from aesthetics_jax.data.builders.modality import record_id

__all__ = ["read_groups", "check_grouping", "family_of", "find_build", "grouping_help", "GroupTable", "BY",
           "FAMILY_GROUPINGS", "UNCATEGORISED"]

#: Groupings, in the order the CLI lists them.
BY = ("tags", "challenge", "category", "factors", "attributes")
#: Build family -> the groupings it has.
FAMILY_GROUPINGS = {"AVA": ("tags", "challenge"), "EVA": ("category", "factors"), "AADB": ("attributes",)}
_OWNER = {by: family for family, bys in FAMILY_GROUPINGS.items() for by in bys}
_FIELDS = {"tags": ("tags", "tag_names"), "challenge": ("challenge", "challenge_name"),
           "category": ("category", "category_name"), "factors": ("factor_rates",), "attributes": ("attributes",)}
UNCATEGORISED = "uncategorised"
_BATCH = 256


@dataclasses.dataclass
class GroupTable:
    """``groups``: id -> group names; ``order``: the display order when the grouping fixes one (``None``
    = by size); ``known``: every group the build's records define; ``num_records``: records read;
    ``description``: what was read (build and split)."""

    groups: dict[str, list[str]]
    order: list[str] | None
    known: list[str]
    num_records: int
    description: str


def family_of(feature_names) -> str | None:
    """``'AVA'``, ``'EVA'`` or ``'AADB'`` from a build's feature names (None if none fits)."""
    names = set(feature_names)
    if {"tags", "challenge"} <= names:
        return "AVA"
    if "factor_rates" in names or "category" in names:
        return "EVA"
    if "attributes" in names and "name" in names:
        return "AADB"
    return None


def check_grouping(by: str, feature_names, dataset: str = "") -> None:
    """``ValueError`` unless the build's features support grouping ``by`` (message says who has it)."""
    if by not in BY:
        raise ValueError(f"unknown grouping {by!r}; known: {', '.join(BY)}")
    names = set(feature_names)
    if all(f in names for f in _FIELDS[by]):
        return
    family = family_of(names)
    label = f" ({dataset})" if dataset else ""
    if family is None:
        raise ValueError(f"the build{label} has none of the fields of an AVA, EVA or AADB build (features: "
                         f"{', '.join(sorted(names))}); {by} needs {', '.join(_FIELDS[by])}")
    raise ValueError(f"{family} builds have {'/'.join(FAMILY_GROUPINGS[family])}; {by} is {_OWNER[by]}'s{label}")


def find_build(path: str) -> str:
    """The prepared build directory (holding ``dataset_info.json``) at or below ``path`` (3 levels)."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"build directory {path} does not exist")
    if os.path.isfile(os.path.join(path, "dataset_info.json")):
        return path
    found = []
    base_depth = path.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(path):
        if root.count(os.sep) - base_depth >= 3:
            dirs[:] = []
        if "dataset_info.json" in files:
            found.append(root)
            dirs[:] = []
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"{path} holds no prepared TFDS build (no dataset_info.json in it or 3 levels below; "
                                "e.g. <data_dir>/ava/default/1.0.0)")
    raise ValueError(f"{path} holds several builds; name one: {', '.join(sorted(found))}")


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _tags(record, **_) -> list[str]:
    names = list(record["tag_names"])
    out = []
    for tag, name in zip(np.asarray(record["tags"]).tolist(), names):
        if tag:
            out.append(_text(name) or f"tag {tag}")
    return list(dict.fromkeys(out))


def _challenge(record, **_) -> list[str]:
    challenge = int(record["challenge"])
    return [_text(record["challenge_name"]) or f"challenge {challenge}"] if challenge else []


def _category(record, **_) -> list[str]:
    category = int(record["category"])
    return [_text(record["category_name"]) or f"category {category}"] if category else [UNCATEGORISED]


def _factor_labels() -> list[str]:
    from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

    return [name.replace("_", " ") for name in eva.FACTOR_NAMES]


def _factors(record, *, labels, factor_threshold, **_) -> list[str]:
    rates = np.asarray(record["factor_rates"], np.float64)
    if rates.shape != (len(labels),):
        raise ValueError(f"factor_rates of record {record_id(record)} has shape {rates.shape}, expected "
                         f"({len(labels)},)")
    return [label for label, rate in zip(labels, rates) if rate >= factor_threshold]


def _attribute_names() -> list[str]:
    from aesthetics_jax.data.builders import aadb  # pylint: disable=g-import-not-at-top

    return list(aadb.ATTRIBUTE_NAMES)


def _attributes(record, *, labels, attr_threshold, **_) -> list[str]:
    values = np.asarray(record["attributes"], np.float64)
    if values.shape != (len(labels),):
        raise ValueError(f"attributes of record {record_id(record)} has shape {values.shape}, expected "
                         f"({len(labels)},)")
    out = []
    for name, v in zip(labels, values):
        if v > attr_threshold:
            out.append(f"{name} high")
        elif v < -attr_threshold:
            out.append(f"{name} low")
    return out


def _order(by: str, labels: list[str], seen: set[str]) -> list[str] | None:
    if by == "factors":
        return labels
    if by == "attributes":
        return [f"{a} {side}" for a in labels for side in ("high", "low")]
    if by == "category":
        from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

        fixed = [eva.CATEGORY_NAMES[c] for c in sorted(eva.CATEGORY_NAMES)]
        return fixed + sorted(seen - set(fixed) - {UNCATEGORISED}) + ([UNCATEGORISED] if UNCATEGORISED in seen else [])
    return None  # tags, challenge: by size


def read_groups(source, by: str, *, factor_threshold: float = 0.5, attr_threshold: float = 0.0,
                progress: Callable[[int, int], None] | None = None, dataset: str = "") -> GroupTable:
    """Every record's groups under ``by`` (module docstring). ``source``: random access records
    (``pipeline.make_source``) with ``dataset_info`` (TFDS) or a plain sequence of record dicts."""
    if not 0.0 <= factor_threshold <= 1.0:
        raise ValueError(f"factor threshold must be in [0, 1], got {factor_threshold}")
    if attr_threshold < 0.0:
        raise ValueError(f"attribute threshold must be >= 0, got {attr_threshold}")
    info = getattr(source, "dataset_info", None)
    n = len(source)
    if info is not None:
        feature_names = list(info.features.keys())
        dataset = dataset or info.full_name
    elif n:
        feature_names = list(source[0].keys())
    else:
        feature_names = []
    if by not in BY:
        raise ValueError(f"unknown grouping {by!r}; known: {', '.join(BY)}")
    if feature_names:
        check_grouping(by, feature_names, dataset)
    labels = _factor_labels() if by == "factors" else _attribute_names() if by == "attributes" else []
    fn = {"tags": _tags, "challenge": _challenge, "category": _category, "factors": _factors,
          "attributes": _attributes}[by]
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    getitems = getattr(source, "__getitems__", None)
    for start in range(0, n, _BATCH):
        keys = list(range(start, min(n, start + _BATCH)))
        records = getitems(keys) if getitems is not None else [source[i] for i in keys]
        for record in records:
            image_id = record_id(record)
            if image_id in groups:
                raise ValueError(f"id {image_id} occurs twice in {dataset or 'the build'}")
            names = fn(record, labels=labels, factor_threshold=factor_threshold, attr_threshold=attr_threshold)
            groups[image_id] = names
            seen.update(names)
        if progress is not None:
            progress(min(n, start + _BATCH), n)
    split = getattr(source, "split", "")
    description = f"{dataset}" + (f" split {split}" if split else "")
    order = _order(by, labels, seen)
    known = list(order) if order is not None else sorted(seen)
    return GroupTable(groups=groups, order=order, known=known, num_records=n, description=description)


def grouping_help() -> str:
    """Which build family has which grouping, for help texts."""
    return "; ".join(f"{by} ({_OWNER[by]})" for by in BY)
