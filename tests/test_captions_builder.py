"""Captions TFDS builder: the four published caption formats over a tiny AVA root, hostile entries included.

The AVA root is `ava_fixture.write_ava_fixture` (good ids 1001-1012, 1010-1012 in the test list,
3001 without image, 3005 not a JPEG, zero-vote row 2006) plus a valid image 5001 that has no
AVA.txt row. Each format's files tell the same story, written by hand in that format's exact
layout; the expected records and skip rows are spelled out per format below.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aesthetics_jax import cli
from aesthetics_jax.data import commands, pipeline
from aesthetics_jax.data.builders import base, captions
from ava_fixture import write_ava_fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = {"color": "color", "composition": "composition", "dof": "dof", "general": "general",
         "color_lighting": "color", "depth_and_focus": "dof", "impression_and_subject": "general",
         "use_of_camera": "general"}


@pytest.fixture(scope="module")
def ava_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    expected = write_ava_fixture(root)
    with open(root / "images" / "1001.jpg", "rb") as f:  # a valid image without an AVA.txt row
        data = f.read()
    with open(root / "images" / "5001.jpg", "wb") as f:
        f.write(data)
    return dict(root=root, good=expected["good"])


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def _cgiaa(d):
    _write(d / "color.json", [
        {"id": 1, "img_id": "1001", "caption": "  Lovely   warm\ttones. "},
        {"id": 2, "img_id": "1001", "caption": "Lovely warm tones."},  # duplicate after collapsing
        {"id": 3, "img_id": "1002", "caption": ""},  # empty_caption
        {"id": 4, "img_id": "12a", "caption": "x"},  # bad_id
        {"id": 5, "img_id": "1003"},  # malformed_entry (no caption)
        {"id": 6, "img_id": "1010", "caption": "Cold blue cast."},  # test list
        {"id": 7, "img_id": "3001", "caption": "Nice."},  # missing_image
        {"id": 8, "img_id": "5001", "caption": "Good colour."},  # no AVA.txt row
        {"id": 9, "img_id": "1004", "caption": " \n "},  # empty_caption -> no_captions
        "just a string",  # malformed_entry
    ])
    _write(d / "composition.json", [
        {"id": 1, "img_id": "1001", "caption": "Centred subject."},
        {"id": 2, "img_id": 1002, "caption": "Tilted horizon."},
        {"id": 3, "img_id": "3005", "caption": "x"},  # not_jpeg
    ])
    _write(d / "dof.json", [
        {"id": 1, "img_id": "1001", "caption": "Lovely warm tones."},  # duplicate of a color caption
        {"id": 2, "img_id": "1001", "caption": "Sharp eyes."},
    ])
    _write(d / "general.json", [
        {"id": 1, "img_id": "1002", "caption": "Great shot!"},
        {"id": 2, "img_id": "1001", "caption": "Great shot!"},  # same text, other image: kept
    ])
    _write(d / "notes.json", {"not": "read"})
    records = {
        1001: [("Lovely warm tones.", "color"), ("Centred subject.", "composition"), ("Sharp eyes.", "dof"),
               ("Great shot!", "general")],
        1002: [("Tilted horizon.", "composition"), ("Great shot!", "general")],
        1010: [("Cold blue cast.", "color")],
        5001: [("Good colour.", "color")],
    }
    skipped = [("12a", 4, "color.json", "bad_id"), ("1003", 5, "color.json", "malformed_entry"),
               ("", 10, "color.json", "malformed_entry"), ("1002", 3, "color.json", "empty_caption"),
               ("1004", 9, "color.json", "empty_caption"), ("1004", 9, "color.json", "no_captions"),
               ("3001", 7, "images/3001.jpg", "missing_image"), ("3005", 3, "images/3005.jpg", "not_jpeg")]
    files = [dict(file="color.json", attribute="color", entries=10, captions=4),
             dict(file="composition.json", attribute="composition", entries=3, captions=3),
             dict(file="dof.json", attribute="dof", entries=2, captions=1),
             dict(file="general.json", attribute="general", entries=2, captions=2)]
    return d, records, skipped, dict(files=files, duplicate_captions=2, ignored_files=["notes.json"])


def _dpc(d):
    _write(d / "color_lighting.json", {
        "1001.jpg": ["Lovely  warm tones.", "Lovely warm tones.", ""],  # duplicate; empty (comment 3)
        "1010.jpg": ["Cold blue cast."],
        "abc.jpg": ["x"],  # bad_id
        "1003.jpg": "not a list",  # malformed_entry
        "3001.jpg": ["Nice."],  # missing_image
        "5001.jpg": ["Good colour.", 7],  # the 7 is malformed (comment 2); the rest is kept
    })
    _write(d / "composition.json", {"1002.jpg": ["Tilted horizon."], "1004.jpg": []})  # 1004: no_captions
    _write(d / "depth_and_focus.json", {"1001.jpg": ["Sharp eyes."]})
    _write(d / "impression_and_subject.json", {"1002.jpg": ["Great shot!"]})
    _write(d / "use_of_camera.json", {"1001.jpg": ["Good use of a long lens."]})
    records = {
        1001: [("Lovely warm tones.", "color_lighting"), ("Sharp eyes.", "depth_and_focus"),
               ("Good use of a long lens.", "use_of_camera")],
        1002: [("Tilted horizon.", "composition"), ("Great shot!", "impression_and_subject")],
        1010: [("Cold blue cast.", "color_lighting")],
        5001: [("Good colour.", "color_lighting")],
    }
    skipped = [("1001", 1, "color_lighting.json", "empty_caption"), ("abc.jpg", 3, "color_lighting.json", "bad_id"),
               ("1003", 4, "color_lighting.json", "malformed_entry"),
               ("5001", 6, "color_lighting.json", "malformed_entry"),
               ("1004", 2, "composition.json", "no_captions"), ("3001", 5, "images/3001.jpg", "missing_image")]
    files = [dict(file="color_lighting.json", attribute="color_lighting", entries=6, captions=4),
             dict(file="composition.json", attribute="composition", entries=2, captions=1),
             dict(file="depth_and_focus.json", attribute="depth_and_focus", entries=1, captions=1),
             dict(file="impression_and_subject.json", attribute="impression_and_subject", entries=1, captions=1),
             dict(file="use_of_camera.json", attribute="use_of_camera", entries=1, captions=1)]
    return d, records, skipped, dict(files=files, duplicate_captions=1)


def _ava_captions(d):
    path = d / "CLEAN_AVA_FULL_COMMENTS.json"

    def sentence(raw):
        return {"raw": raw, "tokens": raw.lower().split(), "imgid": 0, "sentid": ""}

    _write(path, {"dataset": "AVA", "images": [
        {"filename": "1001.jpg", "imgid": 1001, "split": "train",
         "sentences": [sentence("Lovely warm tones."), sentence("lovely  warm tones."),
                       sentence("Lovely warm tones. ")]},
        {"filename": "1010.jpg", "imgid": 1010, "split": "train", "sentences": [sentence("Cold blue cast.")]},
        {"filename": "x1.jpg", "imgid": 0, "split": "train", "sentences": [sentence("x")]},  # bad_id
        {"filename": "1003.jpg", "imgid": 1003, "split": "val"},  # malformed_entry: no sentences
        {"filename": "1002.jpg", "imgid": 1002, "split": "test",
         "sentences": [{"tokens": ["a"]}, sentence("Great shot!")]},  # sentence 1 malformed
        {"filename": "1004.jpg", "imgid": 1004, "split": "train", "sentences": [sentence("\t")]},
        {"filename": "5001.jpg", "imgid": 5001, "split": "train", "sentences": [sentence("Good colour.")]},
        {"filename": "3001.jpg", "imgid": 3001, "split": "train", "sentences": [sentence("Nice.")]},
    ]})
    records = {
        1001: [("Lovely warm tones.", "general"), ("lovely warm tones.", "general")],
        1002: [("Great shot!", "general")],
        1010: [("Cold blue cast.", "general")],
        5001: [("Good colour.", "general")],
    }
    name = "CLEAN_AVA_FULL_COMMENTS.json"
    skipped = [("x1.jpg", 3, name, "bad_id"), ("1003", 4, name, "malformed_entry"),
               ("1002", 5, name, "malformed_entry"),
               ("1004", 6, name, "empty_caption"), ("1004", 6, name, "no_captions"),
               ("3001", 8, "images/3001.jpg", "missing_image")]
    return path, records, skipped, dict(files=[dict(file=name, attribute="general", entries=8, captions=6)],
                                         duplicate_captions=1)


def _ava_comments(d):
    os.makedirs(d, exist_ok=True)
    path = d / "AVA_Comments_Full.txt"
    lines = [
        b"1#1001#Lovely   warm tones.#Lovely warm tones.##Sharp eyes.\n",  # duplicate; 1 empty field
        b"2# 1010 #Cold blue cast.\n",  # the id is stripped
        b"3#abc#x\n",  # bad_id
        b"4\n",  # malformed_entry: no id field
        b"5#1004##   #\n",  # three empty fields -> no_captions
        b"6#5001#Good colour.\n",
        b"7#3001#Nice.\n",  # missing_image
        b"8#1002#Great shot!\r\n",  # CRLF
        b"\n",  # blank: not a record
        b"9#1005#Caf\xe9 au lait.#\n",  # an undecodable byte (replaced); a trailing empty field
    ]
    with open(path, "wb") as f:
        f.writelines(lines)
    records = {
        1001: [("Lovely warm tones.", "general"), ("Sharp eyes.", "general")],
        1002: [("Great shot!", "general")],
        1005: [("Caf\ufffd au lait.", "general")],
        1010: [("Cold blue cast.", "general")],
        5001: [("Good colour.", "general")],
    }
    name = "AVA_Comments_Full.txt"
    skipped = [("abc", 3, name, "bad_id"), ("", 4, name, "malformed_entry"), ("1004", 5, name, "no_captions"),
               ("3001", 7, "images/3001.jpg", "missing_image")]
    return path, records, skipped, dict(files=[dict(file=name, attribute="general", entries=9, captions=7)],
                                        duplicate_captions=1, empty_fields_ignored=5)


FORMATS = {"cgiaa": _cgiaa, "dpc": _dpc, "ava_captions": _ava_captions, "ava_comments": _ava_comments}
TEST_IDS = {1010}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def built(request, ava_root, tmp_path_factory):
    fmt = request.param
    path, records, skipped, meta = FORMATS[fmt](tmp_path_factory.mktemp(f"captions_{fmt}"))
    data_dir = tmp_path_factory.mktemp(f"tfds_{fmt}")
    builder = captions.build_captions(ava_root["root"], data_dir, format=fmt, captions_path=path)
    return dict(format=fmt, path=path, data_dir=data_dir, builder=builder, records=records, skipped=skipped,
                meta=meta, **ava_root)


def _texts(values):
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read(build_dir, split):
    source = pipeline.make_source(build_dir, split)
    return [source[i] for i in range(len(source))]


def test_records_read_back_as_training_reads_them(built, tensorflow_imports):
    build_dir = built["builder"].data_dir
    assert os.path.isfile(os.path.join(build_dir, "dataset_info.json"))
    assert set(built["builder"].info.splits) == {"train", "test"}
    seen = {}
    for split in ("train", "test"):
        records = _read(build_dir, split)  # a prepared directory, as training opens it
        ids = [int(r["id"]) for r in records]
        assert ids == sorted(ids)  # deterministic order: by id
        expected = sorted(i for i in built["records"] if (i in TEST_IDS) == (split == "test"))
        assert ids == expected, split
        for r in records:
            seen[int(r["id"])] = (split, r)
    assert tensorflow_imports == []
    assert seen[1010][0] == "test"  # a test-list image is never in train
    for image_id, pairs in built["records"].items():
        r = seen[image_id][1]
        assert _texts(r["captions"]) == [t for t, _ in pairs]
        assert _texts(r["caption_attributes"]) == [a for _, a in pairs]
        assert _texts(r["caption_groups"]) == [GROUP[a] for _, a in pairs]
        with open(os.path.join(built["root"], "images", f"{image_id}.jpg"), "rb") as f:
            assert r["image"] == f.read()  # plain JPEGs are stored byte for byte
        good = built["good"].get(image_id)
        assert bool(r["has_labels"]) == (good is not None)
        assert r["distribution"].dtype == np.float32 and r["distribution"].shape == (10,)
        if good is None:  # 5001: an image without an AVA.txt row
            assert r["votes"] == 0 and r["mean_score"] == 0.0 and not r["distribution"].any()
        else:
            histogram = np.asarray(good["histogram"], np.float64)
            np.testing.assert_allclose(r["distribution"], histogram / histogram.sum(), rtol=1e-6)
            assert r["votes"] == histogram.sum()
            assert r["mean_score"] == pytest.approx(np.repeat(np.arange(1, 11), good["histogram"]).mean(), rel=1e-6)


def test_skipped_report_and_metadata(built):
    report = base.skipped_report(built["builder"])
    assert sorted((r["id"], r["line"], r["file"], r["reason"]) for r in report) == sorted(built["skipped"])
    by_reason = {}
    for *_, reason in built["skipped"]:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    meta = built["builder"].info.metadata
    assert meta["skipped"] == by_reason and meta["num_skipped"] == len(built["skipped"])
    assert meta["format"] == built["format"] and meta["captions_path"] == os.path.abspath(built["path"])
    for key, value in built["meta"].items():
        assert meta[key] == value, key
    per_group = {g: 0 for g in ("color", "composition", "dof", "general")}
    for pairs in built["records"].values():
        for _, attribute in pairs:
            per_group[GROUP[attribute]] += 1
    assert meta["captions_per_group"] == per_group
    n_test = len(TEST_IDS & set(built["records"]))
    assert meta["images_per_split"] == {"train": len(built["records"]) - n_test, "test": n_test}
    assert meta["images_with_labels"] == len(set(built["records"]) & set(built["good"]))
    assert meta["test_list"] == {"ids": 4, "bad_entries": 1}  # the fixture's list: 3 good + 3003, one bad line
    assert meta["ava_txt"]["rejected"]["zero_votes"] == 1  # AVA.txt problems are counted, not reported
    missing = next(r for r in report if r["reason"] == "missing_image")
    assert "first caption in" in missing["detail"]


def test_config_names_do_not_collide(built):
    name = built["builder"].builder_config.name
    assert name.startswith(built["format"] + "_") and len(name) == len(built["format"]) + 9
    assert built["builder"].data_dir == os.path.join(built["data_dir"], "captions", name, "1.0.0")
    other = captions.config_for(built["format"], built["data_dir"])  # another path: another name
    assert other.name != name
    assert captions.config_for(built["format"], built["path"], 0.25, 1, 64).name == f"{name}_val0p25_seed1_s64"


def test_validation_carve_out(ava_root, tmp_path):
    path, records, _, _ = _cgiaa(tmp_path / "cg")
    plain = captions.build_captions(ava_root["root"], tmp_path / "a", format="cgiaa", captions_path=path)
    b1 = captions.build_captions(ava_root["root"], tmp_path / "b", format="cgiaa", captions_path=path,
                                 val_fraction=0.5, seed=3)
    b2 = captions.build_captions(ava_root["root"], tmp_path / "c", format="cgiaa", captions_path=path,
                                 val_fraction=0.5, seed=3)
    ids = {split: [int(r["id"]) for r in _read(b1.data_dir, split)] for split in ("train", "validation", "test")}
    train_all = [int(r["id"]) for r in _read(plain.data_dir, "train")]
    assert train_all == [1001, 1002, 5001]
    assert len(ids["validation"]) == 2 and not set(ids["validation"]) & set(ids["train"])
    assert sorted(ids["train"] + ids["validation"]) == train_all
    assert ids["test"] == [1010]
    # The AVA builder's rule: the first round(f * n) of a seeded permutation of the sorted train ids.
    assert set(ids["validation"]) == set(np.random.default_rng(3).permutation(train_all)[:2].tolist())
    assert [int(r["id"]) for r in _read(b2.data_dir, "validation")] == ids["validation"]
    assert b1.info.metadata["images_per_split"] == {"train": 1, "validation": 2, "test": 1}


def test_unparsable_json_names_the_file(ava_root, tmp_path):
    d = tmp_path / "cg"
    _cgiaa(d)
    with open(d / "dof.json", "w") as f:
        f.write('[{"id": 1, "img_id": "1001", "caption": "cut off')
    with pytest.raises(ValueError, match=r"dof\.json.*not valid JSON"):
        captions.build_captions(ava_root["root"], tmp_path / "t", format="cgiaa", captions_path=d)
    _write(d / "dof.json", {"img_id": "1001"})  # valid JSON, wrong top level
    with pytest.raises(ValueError, match=r"dof\.json.*expected a list"):
        captions.build_captions(ava_root["root"], tmp_path / "t2", format="cgiaa", captions_path=d)
    _write(tmp_path / "karpathy.json", [{"filename": "1001.jpg"}])
    with pytest.raises(ValueError, match=r"karpathy\.json"):
        captions.build_captions(ava_root["root"], tmp_path / "t3", format="ava_captions",
                                captions_path=tmp_path / "karpathy.json")
    with pytest.raises(FileNotFoundError, match="none of color.json"):
        os.makedirs(tmp_path / "empty")
        captions.build_captions(ava_root["root"], tmp_path / "t4", format="cgiaa", captions_path=tmp_path / "empty")


def test_single_file_and_cli(ava_root, tmp_path, capsys):
    d, _, _, _ = _cgiaa(tmp_path / "cg")
    data_dir = tmp_path / "tfds"
    argv = ["data", "build", "captions", "--format", "cgiaa", "--captions", str(d / "composition.json"),
            "--manual_dir", str(ava_root["root"]), "--data_dir", str(data_dir), "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    name = captions.config_for("cgiaa", d / "composition.json").name
    assert f"captions/{name}/1.0.0 train: 2 examples" in out  # 1001, 1002 (3005 is not a JPEG)
    assert "skipped: 1 {'not_jpeg': 1}" in out and "skipped.csv" in out
    build_dir = os.path.join(data_dir, "captions", name, "1.0.0")
    assert f"data_dir: {build_dir}" in out
    records = _read(build_dir, "train")
    assert [_texts(r["captions"]) for r in records] == [["Centred subject."], ["Tilted horizon."]]
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["data", "build", "captions", "--format", "cgiaa", "--captions", str(d / "x.json"),
                  "--manual_dir", str(ava_root["root"]), "--data_dir", str(data_dir)])
    with pytest.raises(SystemExit, match="--format and --captions"):
        cli.main(["data", "build", "captions", "--manual_dir", str(ava_root["root"]), "--data_dir", str(data_dir)])
    assert commands.CAPTION_FORMATS == captions.FORMATS


def test_data_prep_script(ava_root, tmp_path):
    d, _, _, _ = _dpc(tmp_path / "dpc")
    result = subprocess.run(
        [sys.executable, "data_prep/captions.py", "--format", "dpc", "--captions", str(d), "--manual_dir",
         str(ava_root["root"]), "--data_dir", str(tmp_path / "tfds"), "--val_fraction", "0.34", "--seed", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    name = captions.config_for("dpc", d, 0.34, 1).name
    assert name.endswith("_val0p34_seed1")
    assert f"captions/{name}/1.0.0 validation: 1 examples" in result.stdout  # round(0.34 * 3)
    assert "skipped: 6" in result.stdout
