"""Demo critiques: CG-IAA-format captions derived from the demo renderer's manifest.

Two references: a hand-written manifest whose rows pin every class, precedence rule and severity
tier (expected labels and words spelled out per row), and a tiny real demo build checked image by
image against rules written here from the manifest, then built by the `cgiaa` captions builder.
"""

import colorsys
import csv
import json
import os

import cv2

import numpy as np
import pytest
from PIL import Image

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import base, captions, demo
from aesthetics_jax.data.builders import demo_captions as dc

GROUPS = ("color", "composition", "dof", "general")
KINDS = ("haze", "blur", "exposure", "cast", "noise", "jpeg")
WORDS = (("slightly", "mildly", "a little", "slight", "faint", "mild"),
         ("noticeably", "clearly", "visibly", "noticeable", "clear", "visible"),
         ("badly", "heavily", "severely", "strong", "heavy", "severe"))
# First-sentence keywords of each class, and words a class's first sentence must not use.
KEYWORDS = {
    ("color", "clean"): ("natural",), ("color", "hazy"): ("haz", "washed out"),
    ("color", "overexposed"): ("overexpos", "too bright"), ("color", "underexposed"): ("underexpos", "too dark"),
    ("color", "color_cast"): ("cast",),
    ("dof", "sharp"): ("sharp", "crisp"), ("dof", "soft"): ("soft",), ("dof", "very_blurred"): ("blurred",),
    ("general", "clean"): ("clean",), ("general", "noisy"): ("nois", "grain"),
    ("general", "compressed"): ("compression", "blocky"),
    ("composition", "tight"): ("tight", "close"), ("composition", "wide"): ("wide",),
}


def _first(caption: str) -> str:
    return caption.split(". ")[0].lower()


def _class_of(group: str, caption: str) -> str:
    """The class whose keywords (and no other class's) the caption's first sentence holds."""
    first = _first(caption)
    hits = [name for (g, name), words in KEYWORDS.items() if g == group and any(w in first for w in words)]
    assert len(hits) == 1, (group, caption, hits)
    return hits[0]


# -- a hand-written manifest ---------------------------------------------------------------------

COLUMNS = ["id", "split", "base_photo", "crop_x", "crop_y", "crop_w", "crop_h", "width", "height", "channels",
           "degradations", *(f"sev_{k}" for k in KINDS), "exposure_ev", "cast_angle_deg", "jpeg_quality",
           *(f"penalty_{k}" for k in KINDS), "mean_score"]
WEIGHT = {"haze": 1.5, "blur": 4.5, "exposure": 2.0, "cast": 1.0, "noise": 4.0, "jpeg": 4.0}

# astronaut.png is 512 x 512. (id, split, channels, crop x/y/w/h, {kind: severity}, ev, angle, mean,
#  expected labels, words the caption of each group must contain)
ROWS = [
    (1, "train", 3, (0, 64, 512, 384), {}, 0, 0, 7.0,
     dict(color="clean", composition="wide", dof="sharp", general="clean"),
     dict(color=("colours",), composition=("landscape 4:3", "centred"), general=("strong",))),
    (2, "train", 3, (94, 94, 324, 324), {"haze": 0.2, "cast": 0.9}, 0, 225.0, 5.0,  # cast costs more
     dict(color="color_cast", composition="tight", dof="sharp", general="clean"),
     dict(color=("blue", "haz"), composition=("square 1:1", "centred"), general=("average",))),
    (3, "test", 3, (0, 0, 512, 512), {"haze": 0.8, "exposure": 0.6}, 1.5, 0, 3.0,  # equal cost: haze first
     dict(color="hazy", composition="wide", dof="sharp", general="clean"),
     dict(color=("overexpos",), general=("weak",))),
    (4, "train", 3, (0, 0, 512, 512), {"exposure": 0.33, "blur": 0.85, "noise": 0.3, "jpeg": 0.3}, -1.0, 0, 4.0,
     dict(color="underexposed", composition="wide", dof="very_blurred", general="noisy"),  # noise/jpeg tie: noise
     dict(general=("compression",))),
    (5, "train", 3, (0, 0, 512, 512), {"blur": 0.5, "noise": 0.2, "jpeg": 0.7}, 0, 0, 4.0,
     dict(color="clean", composition="wide", dof="soft", general="compressed"),
     dict(general=("nois",))),
    (6, "train", 1, (0, 0, 324, 324), {"haze": 0.5}, 0, 0, 6.0,  # greyscale; crop towards the upper left
     dict(color="hazy", composition="tight", dof="sharp", general="clean"),
     dict(color=("tones",), composition=("upper left",))),
    (7, "test", 3, (312, 100, 200, 300), {"blur": 0.65, "cast": 0.15}, 0, 90.0, 6.5,  # portrait 2:3, area 0.34
     dict(color="color_cast", composition="tight", dof="soft", general="clean"),
     dict(color=("yellow-green",), composition=("portrait 2:3", "towards the right"))),
]


def _write_manifest(root):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "demo_manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for image_id, split, channels, crop, sev, ev, angle, mean, _, _ in ROWS:
            row = dict(id=image_id, split=split, base_photo="astronaut", crop_x=crop[0], crop_y=crop[1],
                       crop_w=crop[2], crop_h=crop[3], width=48, height=48, channels=channels,
                       degradations="+".join(k for k in KINDS if k in sev), exposure_ev=ev, cast_angle_deg=angle,
                       jpeg_quality=20 if "jpeg" in sev else 95, mean_score=mean)
            row.update({f"sev_{k}": sev.get(k, 0.0) for k in KINDS})
            row.update({f"penalty_{k}": round(WEIGHT[k] * sev.get(k, 0.0), 4) for k in KINDS})
            writer.writerow(row)


def test_hand_written_manifest(tmp_path):
    _write_manifest(tmp_path)
    summary = dc.write_demo_critiques(tmp_path)
    labels = dc.demo_attribute_labels(tmp_path)
    assert labels == {row[0]: row[8] for row in ROWS}
    files = {g: json.load(open(tmp_path / "critiques" / f"{g}.json")) for g in GROUPS}
    for group in GROUPS:
        assert [e["img_id"] for e in files[group]] == [str(row[0]) for row in ROWS]
        assert [e["id"] for e in files[group]] == list(range(len(ROWS)))
    for k, (image_id, _, _, _, sev, _, _, _, expected, words) in enumerate(ROWS):
        for group in GROUPS:
            caption = files[group][k]["caption"]
            assert _class_of(group, caption) == expected[group], (image_id, caption)
            for word in words.get(group, ()):
                assert word in caption.lower(), (image_id, group, caption)
    # Severity words by tertile: the blur of row 4 (0.85), of row 5 (0.5); row 4's exposure (0.33).
    assert any(w in files["dof"][3]["caption"].lower().split() for w in WORDS[2])
    assert any(w in files["dof"][4]["caption"].lower() for w in WORDS[1])
    assert any(w in _first(files["color"][3]["caption"]) for w in WORDS[0])
    assert summary["class_counts"]["color"] == {"clean": 2, "hazy": 2, "overexposed": 0, "underexposed": 1,
                                                "color_cast": 2}
    with open(tmp_path / "critiques" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["id"]), r["split"], {g: r[g] for g in GROUPS}) for r in rows] == \
        [(row[0], row[1], row[8]) for row in ROWS]


def test_cast_hue_names_follow_the_rendered_colour():
    assert [dc.cast_hue_name(a) for a in (0, 30, 60, 90, 130, 180, 225, 270, 315, 350)] == \
        ["red", "orange", "yellow", "yellow-green", "green", "cyan", "blue", "purple", "magenta", "red"]
    # The renderer's own casts of flat grey: the hue of the rendered pixels, named by the nearest of
    # the documented hue centres, is the name given for the drawn angle.
    centres = {0: "red", 30: "orange", 60: "yellow", 90: "yellow-green", 130: "green", 180: "cyan", 225: "blue",
               270: "purple", 315: "magenta", 360: "red"}
    grey = np.full((16, 16, 3), 128, np.uint8)
    checked = 0
    for seed in range(12):
        jpeg, params, _ = demo.degrade(grey, ["cast"], {"cast": 1.0}, np.random.default_rng(seed))
        b, g, r = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).reshape(-1, 3).mean(0) / 255
        hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360
        if min(abs(hue - (a + c) / 2) for a, c in zip(sorted(centres), sorted(centres)[1:])) < 4:
            continue  # too close to a boundary for 8-bit pixels to decide
        assert centres[min(centres, key=lambda c: abs(c - hue))] == dc.cast_hue_name(params["cast_angle_deg"])
        checked += 1
    assert checked >= 8


def test_attribute_classes_cover_the_labels():
    assert set(dc.ATTRIBUTE_CLASSES) == set(GROUPS)
    for group, classes in dc.ATTRIBUTE_CLASSES.items():
        assert 2 <= len(classes) <= 5
        assert len(set(classes.values())) == len(classes) and all(p.strip() for p in classes.values())
        for name in classes:
            assert (group, name) in KEYWORDS


# -- a real (tiny) demo build ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    demo.build_demo_ava(root, versions_per_photo=2, image_size=48)
    return root


def _manifest(root):
    with open(os.path.join(root, "demo_manifest.csv"), newline="") as f:
        return {int(r["id"]): r for r in csv.DictReader(f)}


def _expected_labels(row, sizes) -> dict:
    """The documented rules, written out here from the manifest's raw columns."""
    kinds = [k for k in row["degradations"].split("+") if k]
    cost = {k: float(row[f"penalty_{k}"]) for k in kinds}

    def primary(candidates):
        applied = [k for k in KINDS if k in candidates and k in kinds]
        best = max((cost[k] for k in applied), default=None)
        return next((k for k in applied if cost[k] == best), None)

    color = primary(("haze", "exposure", "cast"))
    color = {None: "clean", "haze": "hazy", "cast": "color_cast",
             "exposure": "overexposed" if float(row["exposure_ev"]) > 0 else "underexposed"}[color]
    blur = float(row["sev_blur"])
    dof = "sharp" if "blur" not in kinds else ("very_blurred" if blur >= 0.7 else "soft")
    general = {None: "clean", "noise": "noisy", "jpeg": "compressed"}[primary(("noise", "jpeg"))]
    width, height = sizes[row["base_photo"]]
    w, h = float(row["crop_w"]), float(row["crop_h"])
    largest_h = min(height, width * h / w)
    area = (w * h) / (largest_h * largest_h * w / h)
    return dict(color=color, composition="tight" if area < 0.675 else "wide", dof=dof, general=general)


def test_demo_critiques_match_the_manifest(demo_dir):
    summary = dc.write_demo_critiques(demo_dir)
    manifest = _manifest(demo_dir)
    photos = {p.name: p for p in demo.BASE_PHOTOS}
    sizes = {name: Image.open(photos[name].path()).size for name in {r["base_photo"] for r in manifest.values()}}
    files = {g: json.load(open(os.path.join(demo_dir, "critiques", f"{g}.json"))) for g in GROUPS}
    expected = {i: _expected_labels(r, sizes) for i, r in manifest.items()}
    for group in GROUPS:  # exactly one caption per image per group
        assert sorted(int(e["img_id"]) for e in files[group]) == sorted(manifest)
    for group in GROUPS:
        for entry in files[group]:
            image_id, caption = int(entry["img_id"]), entry["caption"]
            row = manifest[image_id]
            assert _class_of(group, caption) == expected[image_id][group], (image_id, group, caption)
            if group == "dof" and "blur" in row["degradations"]:
                tier = int(float(row["sev_blur"]) >= 0.4) + int(float(row["sev_blur"]) >= 0.7)
                assert any(w in caption.lower() for w in WORDS[tier]), caption
            if group == "color" and "cast" in row["degradations"]:
                assert dc.cast_hue_name(float(row["cast_angle_deg"])) in caption  # primary or "also" sentence
            if group == "general":
                mean = float(row["mean_score"])
                word = "weak" if mean < 4.5 else "average" if mean < 6.0 else "strong"
                assert word in caption.split(". ")[-1], caption
    assert dc.demo_attribute_labels(demo_dir) == expected
    with open(os.path.join(demo_dir, "critiques", "labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["id"]): {g: r[g] for g in GROUPS} for r in rows} == expected
    assert {int(r["id"]): r["split"] for r in rows} == {i: r["split"] for i, r in manifest.items()}
    assert summary["num_images"] == len(manifest)
    assert len({e["caption"] for e in files["dof"]}) > 2  # paraphrases vary


def test_idempotent_and_seeded(demo_dir, tmp_path):
    first = dc.write_demo_critiques(demo_dir)
    paths = [*first["files"].values(), first["labels"]]
    before = {p: (open(p, "rb").read(), os.path.getmtime(p)) for p in paths}
    assert dc.write_demo_critiques(demo_dir) == first  # marker matches: nothing rewritten
    assert all(os.path.getmtime(p) == before[p][1] for p in paths)
    os.remove(os.path.join(demo_dir, "critiques", dc.MARKER))
    dc.write_demo_critiques(demo_dir)  # rewritten from scratch: byte-identical
    assert all(open(p, "rb").read() == before[p][0] for p in paths)
    other = dc.write_demo_critiques(demo_dir, seed=1)  # other wording, same labels
    assert open(other["labels"], "rb").read() == before[first["labels"]][0]
    assert any(open(p, "rb").read() != before[p][0] for p in first["files"].values())
    dc.write_demo_critiques(demo_dir)  # back to seed 0 for the build test
    assert all(open(p, "rb").read() == before[p][0] for p in paths)


def test_cgiaa_builder_builds_the_demo_critiques(demo_dir, tmp_path):
    dc.write_demo_critiques(demo_dir)
    manifest = _manifest(demo_dir)
    critiques = {g: {int(e["img_id"]): e["caption"] for e in json.load(open(demo_dir / "critiques" / f"{g}.json"))}
                 for g in GROUPS}
    builder = captions.build_captions(demo_dir, tmp_path, format="cgiaa", captions_path=demo_dir / "critiques")
    assert base.skipped_report(builder) == []
    seen = {}
    for split in ("train", "test"):
        source = pipeline.make_source(builder.data_dir, split)
        for i in range(len(source)):
            r = source[i]
            image_id = int(r["id"])
            seen[image_id] = split
            assert [g.decode() for g in r["caption_groups"]] == list(GROUPS)
            assert [a.decode() for a in r["caption_attributes"]] == list(GROUPS)
            assert [c.decode() for c in r["captions"]] == [critiques[g][image_id] for g in GROUPS]
            assert bool(r["has_labels"]) and r["votes"] == int(manifest[image_id]["votes"])
            assert r["mean_score"] == pytest.approx(float(manifest[image_id]["mean_score"]), abs=1e-4)
            with open(demo_dir / "images" / f"{image_id}.jpg", "rb") as f:
                assert r["image"] == f.read()
    assert seen == {i: r["split"] for i, r in manifest.items()}
    assert builder.info.metadata["captions_per_group"] == {g: len(manifest) for g in GROUPS}
