"""The local model registry (`aesthetics-jax models list|add|remove`, `predict --model NAME`)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax import models
from aesthetics_jax import predict as predict_lib
from aesthetics_jax.cli import main
from aesthetics_jax.export import bundle as bundle_lib
from aesthetics_jax.export import registry

CONFIG = dict(name="mobilenet", width=0.25, num_blocks=2, dropout=0.0,
              heads={"emd": {"type": "emd"}, "scores": {"type": "scores", "num_outputs": 2, "names": ["a", "b"]}})


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("AESTHETICS_JAX_MODELS", str(tmp_path / "zoo"))
    model = models.create(**CONFIG)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))
    path = str(tmp_path / "tiny.bundle")
    bundle_lib.write(path, model_config=CONFIG, variables=variables, image_size=32, resize_size=36,
                     metrics={"step": 9, "test/emd/srcc": 0.61, "val/emd/srcc": 0.5},
                     provenance={"source": {"format": "keras-legacy-h5", "path": "/w/weights.hdf5", "sha256": "ab" * 32}})
    return tmp_path, path


def test_add_list_resolve_remove(zoo, capsys):
    tmp, path = zoo
    assert main(["models", "list"]) == 0
    assert "no models in" in capsys.readouterr().out
    assert main(["models", "add", path, "--name", "nima-tiny"]) == 0
    assert "predict PHOTOS --model nima-tiny" in capsys.readouterr().out
    target = registry.resolve("nima-tiny")
    assert target == os.path.join(str(tmp / "zoo"), "nima-tiny.bundle") and bundle_lib.verify(target)
    bundle_lib.write(str(tmp / "b.bundle.tar.gz"), model_config=CONFIG, image_size=32, variables=bundle_lib.load(path).variables)
    assert main(["models", "add", str(tmp / "b.bundle.tar.gz")]) == 0  # archive; name from the file
    assert main(["models", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()[-2:]]
    assert [r["name"] for r in rows] == ["b", "nima-tiny"]
    tiny = rows[1]
    assert tiny["architecture"] == "mobilenet width=0.25" and tiny["heads"] == {"emd": "emd", "scores": "scores"}
    assert tiny["sha256"] == bundle_lib.manifest_digest(path) and tiny["metrics"] == {"test/emd/srcc": 0.61}
    assert tiny["source"].startswith("converted from keras-legacy-h5 weights.hdf5 (sha256 abababababab")
    assert tiny["transform"] == "resize_center_crop" and rows[0]["metrics"] == {"note": rows[0]["metrics"]["note"]}
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "| nima-tiny | mobilenet width=0.25 | emd:emd, scores:scores | 32 px, resize_center_crop |" in table
    assert "srcc 0.610" in table
    # predict resolves the name; the same scores as the bundle path
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    by_name = predict_lib.predict(image, "nima-tiny")[0]
    assert by_name == predict_lib.predict(image, path)[0]
    # collisions need --force; bad names and non-bundles are refused
    assert main(["models", "add", path, "--name", "nima-tiny"]) == 1
    assert "already has 'nima-tiny'" in capsys.readouterr().err
    assert main(["models", "add", path, "--name", "nima-tiny", "--force"]) == 0
    assert main(["models", "add", path, "--name", "../evil"]) == 1
    assert main(["models", "add", str(tmp), "--name", "x"]) == 1
    assert main(["models", "remove", "b"]) == 0 and main(["models", "remove", "b"]) == 1
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        registry.resolve("b")


def test_add_refuses_a_tampered_bundle(zoo, capsys):
    tmp, path = zoo
    with open(os.path.join(path, "metrics.json"), "a") as f:
        f.write(" ")
    assert main(["models", "add", path, "--name", "t"]) == 1
    assert "modified or corrupted" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(str(tmp / "zoo"), "t.bundle"))
    assert os.listdir(tmp / "zoo") == []  # no staging directory left behind
