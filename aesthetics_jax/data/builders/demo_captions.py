"""Critiques of the embedded demo images, in CG-IAA's format, derived from what the renderer did.

`write_demo_critiques(demo_dir)` reads `<demo_dir>/demo_manifest.csv` (written by
`demo.build_demo_ava`: every image's crop, degradations, severities and parameters) and writes

    <demo_dir>/critiques/
      color.json, composition.json, dof.json, general.json
                            CG-IAA's released layout (SCIENCE.md section 6): a JSON list of
                            {"id": <0-based position in the file>, "img_id": "<AVA id>", "caption": str},
                            exactly one caption per image per file, images in id order
      labels.csv            id, split, color, composition, dof, general: the class of every caption
      .critiques_complete.json   completion marker (parameters + summary)

so the `cgiaa` captions builder (`captions.build_captions(demo_dir, data_dir, format="cgiaa",
captions_path=f"{demo_dir}/critiques")`) builds the demo's image-critique pairs like the real ones.

Classes (`ATTRIBUTE_CLASSES`: one canonical prompt per class, for zero-shot evaluation;
`demo_attribute_labels(demo_dir)` = the class of every image, by the rules below, which are also the
rules the captions follow). Severities s are the manifest's `sev_<kind>` (U[0.1, 1] when applied):

    color        the colour-and-light degradations applied (haze, exposure, cast). With several, the
                 *primary* one is the largest `penalty_<kind>` (the renderer's own score cost,
                 weight x severity: exposure 2.0 > haze 1.5 > cast 1.0 per unit severity), ties in
                 renderer order (haze, exposure, cast). Class: none -> clean; haze -> hazy;
                 exposure -> overexposed (exposure_ev > 0) / underexposed (ev < 0); cast -> color_cast.
    dof          blur: none -> sharp; s < 0.7 -> soft; s >= 0.7 (the top severity tertile) -> very_blurred.
    general      noise and JPEG: none -> clean; else the larger penalty (equal weights, so the larger
                 severity; ties: noise) -> noisy / compressed.
    composition  the crop: its area as a fraction of the largest crop of its aspect ratio in the base
                 photo (the renderer draws it from [0.35, 1]): < 0.675 (the middle of that range) ->
                 tight, else wide.

Captions. Each caption's FIRST sentence states its class, with its keyword (clean colour ->
natural; hazy -> haze / washed out; overexposed -> overexposed / too bright; underexposed ->
underexposed / too dark; color_cast -> "<hue> ... cast"; sharp -> sharp / crisp; soft -> soft;
very_blurred -> blurred; clean general -> clean; noisy -> noise / grain; compressed -> compression /
blocky; tight -> tight / close; wide -> wide) and no other class's. Later sentences add what else
is true: the other colour-and-light or artefact degradations of the image, each with its keyword
and severity word ("It is also slightly hazy.", "There is also a faint blue cast."), and in
`general` a last sentence with an overall impression from the mean score (< 4.5 weak, < 6.0
average, else strong, the word appearing in it: a real "General Feelings" critique judges the
whole photo too). Composition captions also give the orientation and nearest crop ratio
(landscape > 1.05 > square > 0.95 > portrait; 4:3, 3:2, 1:1, 3:4, 2:3) and where the crop sits in
the scene (its centre more than 10 % of the photo's width / height from the photo's centre:
"towards the upper left of the scene", else "centred on the scene").

Severity words by severity tertile of U[0.1, 1]: s < 0.4 slightly / mildly / a little (slight,
faint, mild), s < 0.7 noticeably / clearly / visibly (noticeable, clear, visible), else badly /
heavily / severely (strong, heavy, severe). A colour cast is named by its hue: the renderer's gain
direction `demo._chroma_gains(angle)` applied to grey has hue = cast_angle_deg exactly (0 = the red
axis, 90 = yellow-green, 180 = cyan, 270 = violet), named by the nearest of red 0, orange 30,
yellow 60, yellow-green 90, green 130, cyan 180, blue 225, purple 270, magenta 315 degrees (no
round angle is a boundary). Greyscale images without
a cast say "tones" where colour images say "colours".

Variation: every fact has three paraphrase templates and three words per severity tier, chosen by
`numpy.random.default_rng([seed, image id, group index])`, so the wording varies between images
while the class stays recoverable from the first sentence; the same seed gives byte-identical files.
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import json
import math
import os
from typing import Sequence

import numpy as np

from aesthetics_jax.data.builders import demo

__all__ = ["ATTRIBUTE_CLASSES", "CLASS_KEYWORDS", "CRITIQUES_DIR", "GROUPS", "LABELS_FILE", "MARKER", "TOKENIZER_DIR",
           "cast_hue_name", "critique_class", "demo_attribute_labels", "write_demo_critiques", "write_demo_tokenizer"]

GROUPS = ("color", "composition", "dof", "general")
CRITIQUES_DIR = "critiques"
TOKENIZER_DIR = "gpt2_tokenizer"
LABELS_FILE = "labels.csv"
MARKER = ".critiques_complete.json"
_MANIFEST = "demo_manifest.csv"
_FORMAT_VERSION = 1

_SEVERITY_CUTS = (0.4, 0.7)  # tertiles of U[0.1, 1]
_VERY_BLURRED = 0.7  # blur severity from which the class is very_blurred (top tertile)
_TIGHT_AREA = 0.675  # crop area fraction below which the framing is tight (middle of [0.35, 1])
_OFF_CENTRE = 0.1  # crop-centre offset (fraction of the photo's side) that counts as off-centre
_IMPRESSION_CUTS = (4.5, 6.0)  # mean score: weak < 4.5 <= average < 6.0 <= strong
_HUES = ((0, "red"), (30, "orange"), (60, "yellow"), (90, "yellow-green"), (130, "green"), (180, "cyan"), (225, "blue"),
         (270, "purple"), (315, "magenta"))
_RATIOS = ((4 / 3, "4:3"), (3 / 2, "3:2"), (1.0, "1:1"), (3 / 4, "3:4"), (2 / 3, "2:3"))

ATTRIBUTE_CLASSES: dict[str, dict[str, str]] = {
    "color": {
        "clean": "a photo with natural, well-balanced colours and good exposure.",
        "hazy": "a hazy, washed-out photo with low contrast.",
        "overexposed": "an overexposed photo that is too bright, with blown-out highlights.",
        "underexposed": "an underexposed photo that is too dark.",
        "color_cast": "a photo with a strong colour cast.",
    },
    "composition": {
        "tight": "a tightly cropped, close-up photo.",
        "wide": "a photo with wide framing that shows the whole scene.",
    },
    "dof": {
        "sharp": "a sharp photo in crisp focus.",
        "soft": "a slightly soft photo, not quite in focus.",
        "very_blurred": "a very blurred photo, completely out of focus.",
    },
    "general": {
        "clean": "a clean photo with smooth tones and no artefacts.",
        "noisy": "a grainy, noisy photo.",
        "compressed": "a photo with blocky JPEG compression artefacts.",
    },
}

_ADVERBS = (("slightly", "mildly", "a little"), ("noticeably", "clearly", "visibly"), ("badly", "heavily", "severely"))
_ADJECTIVES = (("slight", "faint", "mild"), ("noticeable", "clear", "visible"), ("strong", "heavy", "severe"))

# First sentences, per group and class. Fields: {adv} {adj} (severity), {hue}, {tones}, {frame}, {where}.
_TEMPLATES = {
    "color": {
        "clean": ("The {tones} are natural and the light is well balanced.",
                  "Good exposure and well-balanced, natural {tones}.",
                  "Well exposed, with natural, true-to-life {tones}."),
        "hazy": ("The {tones} look {adv} washed out, as if seen through a hazy veil.",
                 "A {adj} haze lowers the contrast and washes out the {tones}.",
                 "Contrast is {adv} weak: the {tones} look hazy and washed out."),
        "overexposed": ("The shot is {adv} overexposed, with blown-out highlights.",
                        "{adj} overexposure burns the highlights out to white.",
                        "It is {adv} too bright: overexposed, the highlights are blown."),
        "underexposed": ("The shot is {adv} underexposed and too dark.",
                         "{adj} underexposure leaves the picture murky and too dark.",
                         "It is {adv} too dark: underexposed, with the shadows blocked up."),
        "color_cast": ("There is a {adj} {hue} colour cast over the whole image.",
                       "The white balance is off, leaving a {adj} {hue} cast.",
                       "A {adj} {hue} cast tints the {tones}."),
    },
    "dof": {
        "sharp": ("The image is sharp, with crisp focus throughout.",
                  "Focus is crisp and the fine detail is sharp.",
                  "Sharply focused; the details are crisp and clear."),
        "soft": ("The focus is {adv} soft and fine detail is lost.",
                 "The picture is {adv} soft, not quite in focus.",
                 "A {adj} softness takes the edge off the details."),
        "very_blurred": ("The image is {adv} blurred; nothing is in focus.",
                         "{adj} blur: the picture is completely out of focus.",
                         "Everything is {adv} blurred and out of focus."),
    },
    "general": {
        "clean": ("The image quality is clean, with smooth tones and fine detail.",
                  "Technically clean: smooth, artefact-free rendering.",
                  "Clean rendering with smooth gradients."),
        "noisy": ("The image is {adv} noisy, with visible grain everywhere.",
                  "{adj} sensor noise makes the picture grainy.",
                  "There is {adj} grainy noise across the frame."),
        "compressed": ("{adj} JPEG compression has left blocky artefacts.",
                       "The image is {adv} blocky from JPEG compression.",
                       "Compression artefacts make the picture {adv} blocky."),
    },
    "composition": {
        "tight": ("A tight crop in {frame} format, {where}.",
                  "Cropped in close to a {frame} frame, {where}.",
                  "The framing is tight and close: a {frame} frame {where}."),
        "wide": ("A wide framing that takes in most of the view, in {frame} format, {where}.",
                 "Wide framing showing the whole view in {frame} format, {where}.",
                 "The composition is wide: a {frame} frame {where}."),
    },
}
# Later sentences: the other degradations of the same group.
_ALSO = {
    "hazy": ("It also looks {adv} hazy.", "There is also a {adj} haze.", "A {adj} haze washes it out too."),
    "overexposed": ("It is also {adv} overexposed.", "It is also {adv} overexposed and too bright.",
                    "There is {adj} overexposure too."),
    "underexposed": ("It is also {adv} underexposed.", "It is also {adv} underexposed and too dark.",
                     "There is {adj} underexposure too."),
    "color_cast": ("There is also a {adj} {hue} cast.", "A {adj} {hue} cast is visible too.",
                   "The white balance also shows a {adj} {hue} cast."),
    "noisy": ("It is also {adv} noisy.", "There is {adj} grainy noise too.", "Some {adj} noise is visible as well."),
    "compressed": ("It also shows {adj} compression artefacts.", "JPEG compression blocking is {adv} visible too.",
                   "There are {adj} compression artefacts as well."),
}
_IMPRESSIONS = {
    "weak": ("Overall a weak image.", "A weak picture overall.", "Overall the photo is weak."),
    "average": ("Overall an average image.", "An average picture overall.", "Overall the photo is average."),
    "strong": ("Overall a strong image.", "A strong picture overall.", "Overall the photo is strong."),
}
_COLOR_CLASS = {"haze": "hazy", "cast": "color_cast"}  # exposure: by the sign of exposure_ev
_GENERAL_CLASS = {"noise": "noisy", "jpeg": "compressed"}


def _tier(severity: float) -> int:
    return int(severity >= _SEVERITY_CUTS[0]) + int(severity >= _SEVERITY_CUTS[1])


def cast_hue_name(angle_deg: float) -> str:
    """The colour word of a cast the renderer drew at `cast_angle_deg` (module docstring)."""
    gains = 1.0 + 0.3 * demo._chroma_gains(math.radians(angle_deg))[::-1]  # pylint: disable=protected-access
    hue = colorsys.rgb_to_hsv(*gains)[0] * 360.0
    return min(_HUES, key=lambda h: min(abs(hue - h[0]), 360.0 - abs(hue - h[0])))[1]


class _Fact:
    """One degradation as a caption states it: class name, severity, extra words."""

    def __init__(self, name: str, severity: float = 0.0, hue: str = ""):
        self.name, self.severity, self.hue = name, severity, hue


def _read_manifest(demo_dir: str) -> list[dict]:
    path = os.path.join(demo_dir, _MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: write the demo first (demo.build_demo_ava({demo_dir!r}))")
    needed = ("id", "split", "base_photo", "crop_x", "crop_y", "crop_w", "crop_h", "channels", "degradations",
              "exposure_ev", "cast_angle_deg", "mean_score",
              *(f"sev_{k}" for k in demo.DEGRADATIONS), *(f"penalty_{k}" for k in demo.DEGRADATIONS))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in needed if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(missing)} (not a demo_manifest.csv of this version?)")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            kinds = [k for k in row["degradations"].split("+") if k]
            unknown = [k for k in kinds if k not in demo.DEGRADATIONS]
            if unknown:
                raise ValueError(f"{path} line {line_no}: unknown degradation(s) {unknown}")
            try:
                numbers = {c: float(row[c]) for c in needed if c not in ("id", "split", "base_photo", "degradations")}
                parsed = dict(row, id=int(row["id"]), kinds=kinds, **numbers)
            except ValueError as e:
                raise ValueError(f"{path} line {line_no}: {e}") from None
            rows.append(parsed)
    return sorted(rows, key=lambda r: r["id"])


def _photo_sizes(rows) -> dict[str, tuple[int, int]]:
    """(width, height) of every base photo the manifest names, read from the installed files."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    photos = {p.name: p for p in demo.BASE_PHOTOS}
    sizes = {}
    for name in sorted({r["base_photo"] for r in rows}):
        if name not in photos or photos[name].path() is None:
            raise FileNotFoundError(f"demo base photo {name!r} not found in the installed packages")
        with Image.open(photos[name].path()) as image:
            sizes[name] = image.size
    return sizes


def _by_cost(row, kinds: Sequence[str]) -> list[str]:
    """`kinds` applied to the image, largest penalty first, ties in renderer order."""
    applied = [k for k in demo.DEGRADATIONS if k in kinds and k in row["kinds"]]
    return sorted(applied, key=lambda k: -row[f"penalty_{k}"])  # stable: renderer order on ties


def _facts(row, sizes) -> dict:
    """Per group, the facts a caption states (first = the class), by the module docstring's rules."""
    color = []
    for kind in _by_cost(row, ("haze", "exposure", "cast")):
        severity = row[f"sev_{kind}"]
        if kind == "exposure":
            color.append(_Fact("overexposed" if row["exposure_ev"] > 0 else "underexposed", severity))
        else:
            color.append(_Fact(_COLOR_CLASS[kind], severity,
                               cast_hue_name(row["cast_angle_deg"]) if kind == "cast" else ""))
    blur = row["sev_blur"] if "blur" in row["kinds"] else 0.0
    dof = [_Fact("sharp" if not blur else "soft" if blur < _VERY_BLURRED else "very_blurred", blur)]
    general = [_Fact(_GENERAL_CLASS[k], row[f"sev_{k}"]) for k in _by_cost(row, ("noise", "jpeg"))]

    width, height = sizes[row["base_photo"]]
    crop_w, crop_h = row["crop_w"], row["crop_h"]
    ratio = crop_w / crop_h
    max_h = min(height, width / ratio)
    area = min(1.0, crop_w * crop_h / (max_h * ratio * max_h))
    dx = (row["crop_x"] + crop_w / 2) / width - 0.5
    dy = (row["crop_y"] + crop_h / 2) / height - 0.5
    horizontal = "left" if dx < -_OFF_CENTRE else "right" if dx > _OFF_CENTRE else ""
    vertical = "top" if dy < -_OFF_CENTRE else "bottom" if dy > _OFF_CENTRE else ""
    if horizontal and vertical:
        where = f"towards the {'upper' if vertical == 'top' else 'lower'} {horizontal} of the scene"
    elif horizontal or vertical:
        where = f"towards the {horizontal or vertical} of the scene"
    else:
        where = "centred on the scene"
    orientation = "landscape" if ratio > 1.05 else "portrait" if ratio < 0.95 else "square"
    nearest = min(_RATIOS, key=lambda r: abs(math.log(r[0] / ratio)))[1]
    composition = dict(name="tight" if area < _TIGHT_AREA else "wide", frame=f"{orientation} {nearest}",
                       where=where, area=area)
    return dict(color=color or [_Fact("clean")], dof=dof, general=general or [_Fact("clean")],
                composition=composition)


def _labels_of(facts) -> dict[str, str]:
    return {group: facts[group]["name"] if group == "composition" else facts[group][0].name for group in GROUPS}


def _fill(template: str, fact: _Fact, rng, tones: str) -> str:
    tier = _tier(fact.severity)
    text = template.format(adv=_ADVERBS[tier][rng.integers(3)], adj=_ADJECTIVES[tier][rng.integers(3)],
                           hue=fact.hue, tones=tones)
    return text[0].upper() + text[1:]


def _caption(group: str, facts, row, seed: int) -> str:
    rng = np.random.default_rng([seed, row["id"], GROUPS.index(group)])
    if group == "composition":
        template = _TEMPLATES["composition"][facts["name"]][rng.integers(3)]
        return template.format(frame=facts["frame"], where=facts["where"])
    tones = "tones" if row["channels"] == 1 and "cast" not in row["kinds"] else "colours"
    first, *others = facts
    sentences = [_fill(_TEMPLATES[group][first.name][rng.integers(3)], first, rng, tones)]
    sentences += [_fill(_ALSO[fact.name][rng.integers(3)], fact, rng, tones) for fact in others]
    if group == "general":
        mean = row["mean_score"]
        impression = "weak" if mean < _IMPRESSION_CUTS[0] else "average" if mean < _IMPRESSION_CUTS[1] else "strong"
        sentences.append(_IMPRESSIONS[impression][rng.integers(3)])
    return " ".join(sentences)


def demo_attribute_labels(demo_dir) -> dict[int, dict[str, str]]:
    """{image id: {group: class}} of a demo build, by the rules the critiques follow (module docstring)."""
    demo_dir = os.fspath(demo_dir)
    rows = _read_manifest(demo_dir)
    sizes = _photo_sizes(rows)
    return {row["id"]: _labels_of(_facts(row, sizes)) for row in rows}


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_demo_critiques(demo_dir, *, seed: int = 0) -> dict:
    """Writes `<demo_dir>/critiques/` (CG-IAA-format critiques + labels.csv) and returns a summary.

    Idempotent: when the marker records the same seed, format version and manifest (sha256), the
    files are left untouched and the recorded summary is returned; otherwise everything is
    rewritten (byte-identical for the same inputs), the marker last.
    """
    demo_dir = os.fspath(demo_dir)
    manifest = os.path.join(demo_dir, _MANIFEST)
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"{manifest} not found: write the demo first (demo.build_demo_ava({demo_dir!r}))")
    with open(manifest, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    params = dict(format_version=_FORMAT_VERSION, seed=int(seed), manifest_sha256=digest)
    out_dir = os.path.join(demo_dir, CRITIQUES_DIR)
    files = {group: os.path.join(out_dir, f"{group}.json") for group in GROUPS}
    labels_path = os.path.join(out_dir, LABELS_FILE)
    marker_path = os.path.join(out_dir, MARKER)
    try:
        with open(marker_path) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        marker = None
    if (marker is not None and marker.get("params") == params
            and all(os.path.isfile(p) for p in (*files.values(), labels_path))):
        return marker

    rows = _read_manifest(demo_dir)
    sizes = _photo_sizes(rows)
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(marker_path):
        os.remove(marker_path)  # incomplete until the marker is written again
    entries = {group: [] for group in GROUPS}
    counts = {group: {name: 0 for name in ATTRIBUTE_CLASSES[group]} for group in GROUPS}
    label_lines = ["id,split," + ",".join(GROUPS) + "\n"]
    for row in rows:
        facts = _facts(row, sizes)
        labels = _labels_of(facts)
        for group in GROUPS:
            entries[group].append(dict(id=len(entries[group]), img_id=str(row["id"]),
                                       caption=_caption(group, facts[group], row, seed)))
            counts[group][labels[group]] += 1
        label_lines.append(f"{row['id']},{row['split']}," + ",".join(labels[g] for g in GROUPS) + "\n")
    for group, path in files.items():
        _write_atomic(path, json.dumps(entries[group], indent=1, ensure_ascii=False) + "\n")
    _write_atomic(labels_path, "".join(label_lines))
    summary = dict(critiques_dir=out_dir, files=files, labels=labels_path, num_images=len(rows),
                   class_counts=counts, params=params)
    _write_atomic(marker_path, json.dumps(summary, indent=1) + "\n")
    return summary


#: The keywords of each class's first sentence (module docstring), as regexes over lower-cased text.
CLASS_KEYWORDS: dict[str, dict[str, str]] = {
    "color": {"clean": r"\bnatural\b", "hazy": r"\bhaz[ey]\b|washed out|washes out", "overexposed":
              r"overexpos|too bright", "underexposed": r"underexpos|too dark", "color_cast": r"\bcast\b"},
    "composition": {"tight": r"\btight\b|\bclose\b", "wide": r"\bwide\b"},
    "dof": {"sharp": r"\bsharp|\bcrisp\b", "soft": r"\bsoft", "very_blurred": r"\bblur"},
    "general": {"clean": r"\bclean\b", "noisy": r"\bnois|\bgrain", "compressed": r"compression|\bblocky\b"},
}


def critique_class(group: str, text: str) -> str | None:
    """The class a critique's first sentence names by its keyword (`CLASS_KEYWORDS`); None when no
    class or several classes are named (an unreadable critique counts as wrong)."""
    import re  # pylint: disable=g-import-not-at-top

    first = text.strip().lower().split(".")[0]
    hits = [name for name, pattern in CLASS_KEYWORDS[group].items() if re.search(pattern, first)]
    return hits[0] if len(hits) == 1 else None


def write_demo_tokenizer(demo_dir, *, vocab_size: int = 512) -> str:
    """A GPT-2-style byte-level BPE vocabulary (vocab.json + merges.txt, `<|endoftext|>` included)
    learnt from the demo critiques (`write_demo_critiques` first) into `<demo_dir>/gpt2_tokenizer`:
    the demo's ClipCap experts decode with it (GPT-2's own files are not shipped here). The
    `tokenizers` BPE trainer is deterministic: the same critiques give the same files. Returns the
    directory."""
    import tokenizers  # pylint: disable=g-import-not-at-top

    out = os.path.join(demo_dir, TOKENIZER_DIR)
    if os.path.isfile(os.path.join(out, "vocab.json")) and os.path.isfile(os.path.join(out, "merges.txt")):
        return out
    texts = []
    for group in GROUPS:
        with open(os.path.join(demo_dir, CRITIQUES_DIR, f"{group}.json")) as f:
            texts.extend(entry["caption"] for entry in json.load(f))
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tmp = out + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    tok.save_model(tmp)
    os.replace(tmp, out)
    return out
