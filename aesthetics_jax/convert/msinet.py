"""MSI-Net weights from the released TensorFlow formats -> `models.msinet.MSINet` params.

    params, report = load_msinet("model_salicon_cpu.pb")       # or a .ckpt prefix / .index, or a
                                                               # SavedModel directory
    meta = convert(SRC, OUT)          # what `aesthetics-jax convert --from msi-net SRC --out OUT` runs
    params, meta = load_converted(OUT)                         # no TensorFlow needed

Sources (detected from the path; alexanderkroner/saliency `model.py` and `main.py` describe how
they were written):

  tf-checkpoint     `model_<data>_<device>.ckpt` (`.index` + `.data-*`), written by a
                    `tf.compat.v1.train.Saver()` *after* the Adam optimiser was built, so it also
                    holds `<var>/Adam`, `<var>/Adam_1`, `beta1_power`, `beta2_power` (ignored by
                    rule). Pass the prefix, the `.index` / `.data-*` file, or a directory holding
                    one checkpoint. TF2 object-based checkpoints are read through their object
                    graph (`full_name` of each variable).
  frozen-graphdef   `model_<data>_<device>.pb`: `freeze_graph` output (VariableV2 -> Const of the
                    same name, e.g. `conv1/conv1_1/kernel`) passed through TransformGraph's
                    `remove_nodes(op=Identity)` and `fold_constants`; a `/read` suffix and an
                    `import/`-style prefix (one, the same for all weights) are accepted. The cpu
                    build is NHWC; the gpu build (NCHW) stores the same HWIO kernels.
  saved-model       a SavedModel directory (the HF-hub / Kaggle TF2 export): the frozen graph
                    wrapped in functions, weights as `Const` nodes inside `saved_model.pb`'s function
                    library; variables under `variables/` are read too (through the object graph).
                    The same name in several functions is accepted only with identical values.

Strict (DESIGN.md): each of the 46 tensors of `models.msinet.PARAM_SHAPES` must be found exactly
once with its shape; every other *weight* tensor is an error naming it, unless a rule explains it
(`report['ignored']` lists `(name, rule)`): optimiser slots and counters in checkpoints, scalar
float constants of a graph (epsilon, ...), and the input mean constant, whose value is checked
against `models.msinet.MEAN` (a different mean is an error: the Flax model would compute something
else). Non-float constants (shapes, axes, paddings) are graph plumbing, not weights. `ignore=`
regexes drop further source tensors explicitly.

TensorFlow is imported here only, lazily, by the readers and by :func:`tf_reference_graph`
(install the `[tf]` extra); `load_converted` and the model need none of it.

Output directory of :func:`convert` (must be empty or absent)::

    OUT/msinet.safetensors   the 46 tensors, float32, keys '/'-joined param paths = TF names
                             (`conv1/conv1_1/kernel`, HWIO kernels)
    OUT/convert.json         {"format_version": 1, "model": "msinet", "format": <source format>,
                              "source": {"path", "sha256", "size_bytes", "files"?},
                              "tensor_count": 46, "parameter_count", "created" (UTC ISO),
                              "conversion": {"ignored", "prefix", "duplicates", "data_format",
                              "source_dtypes"}, "weights": {"file", "sha256", "size_bytes"}}

A source of several files (checkpoint, SavedModel directory) is hashed as `sha256sum` would list
it: `source.files` maps each relative path to its sha256 and size, and `source.sha256` is the
sha256 of the lines "<sha256>  <relative path>\\n" sorted by path.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import re
from typing import Callable, Iterable

import numpy as np
from flax import traverse_util

from aesthetics_jax.models import msinet as msinet_model

EXPECTED = msinet_model.PARAM_SHAPES
WEIGHTS_FILE = msinet_model.WEIGHTS_FILE
META_FILE = msinet_model.META_FILE
FORMATS = ("tf-checkpoint", "frozen-graphdef", "saved-model")

# Checkpoint entries that are not weights: (regex on the variable name, reason).
CHECKPOINT_RULES = (
    (r"^(?P<var>.+)/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|ExponentialMovingAverage)$",
     "optimiser slot of a model variable"),
    (r"^beta[12]_power(_\d+)?$", "Adam's beta power accumulator"),
    (r"^global_step$", "training step counter"),
    (r"^_CHECKPOINTABLE_OBJECT_GRAPH$", "TF2 object-graph metadata"),
    (r"^save_counter(/|$)", "TF2 checkpoint counter"),
    (r"\.OPTIMIZER_SLOT/", "TF2 optimiser slot"),
    (r"^optimizer/", "TF2 optimiser state"),
)
_MEAN_RULE = "the input mean constant (value checked against models.msinet.MEAN)"
_SCALAR_RULE = "scalar float constant (epsilon / factor of the graph), not a weight"


def _require_tf():
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            "reading MSI-Net's TensorFlow formats (.ckpt, .pb, SavedModel) needs TensorFlow: "
            "pip install 'aesthetics_jax[tf]'. Running a converted model (load_converted) does not."
        ) from e
    return tf


# ----------------------------------------------------------------------------- source detection


def _checkpoint_prefix(path: str) -> str | None:
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    m = re.match(r"^(.*)\.data-\d+-of-\d+$", path)
    if m and os.path.isfile(path):
        return m.group(1)
    if not os.path.exists(path) and os.path.isfile(path + ".index"):
        return path
    return None


def detect(src: str) -> tuple[str, str]:
    """`(format, path)`: path is the checkpoint prefix, the .pb file or the SavedModel directory."""
    src = os.fspath(src)
    prefix = _checkpoint_prefix(src)
    if prefix is not None:
        return "tf-checkpoint", prefix
    if os.path.isdir(src):
        if any(os.path.isfile(os.path.join(src, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            return "saved-model", src
        indexes = sorted(glob.glob(os.path.join(src, "*.index")))
        if len(indexes) == 1:
            return "tf-checkpoint", indexes[0][: -len(".index")]
        listing = sorted(os.listdir(src))[:20]
        raise ValueError(f"{src}: a directory, but neither a SavedModel (no saved_model.pb) nor one TF checkpoint "
                         f"({len(indexes)} *.index files); it holds {listing}")
    if os.path.isfile(src):
        if os.path.basename(src) in ("saved_model.pb", "saved_model.pbtxt"):
            return "saved-model", os.path.dirname(os.path.abspath(src))
        if src.endswith(".pb"):
            return "frozen-graphdef", src
        raise ValueError(f"{src}: not an MSI-Net source; expected a frozen GraphDef (.pb), a TF checkpoint "
                         "(prefix, .index or .data-* file) or a SavedModel directory")
    raise FileNotFoundError(f"{src}: no such file, directory or checkpoint prefix (looked for {src}.index too)")


# ----------------------------------------------------------------------------- candidates

class _Candidate:
    """One source tensor: `name` (normalised), `origin` (for messages), `shape`, lazy `load()`."""

    def __init__(self, name: str, origin: str, shape: tuple, dtype: str, load: Callable[[], np.ndarray],
                 digest: Callable[[], str] | None = None):
        self.name, self.origin, self.shape, self.dtype, self.load = name, origin, tuple(shape), dtype, load
        self.digest = digest


def _match_expected(name: str) -> tuple[str, str] | None:
    """`(expected name, prefix)` if `name` is an expected name or ends with '/' + one."""
    if name in EXPECTED:
        return name, ""
    best = None
    for key in EXPECTED:
        if name.endswith("/" + key) and (best is None or len(key) > len(best)):
            best = key
    return (best, name[: -len(best) - 1]) if best else None


def _checkpoint_candidates(tf, prefix: str, label: str) -> list[_Candidate]:
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    names = {key: key for key in shapes}  # checkpoint key -> variable name
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in shapes:
        from tensorflow.core.protobuf import trackable_object_graph_pb2

        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        for node in graph.nodes:
            for attr in node.attributes:
                if attr.name == "VARIABLE_VALUE" and attr.full_name and attr.checkpoint_key in names:
                    names[attr.checkpoint_key] = attr.full_name
    out = []
    for key, shape in shapes.items():
        name = names[key]
        name = name[:-2] if name.endswith(":0") else name
        out.append(_Candidate(name, f"{label}: {key}", tuple(shape), dtypes[key].name,
                              lambda key=key: np.asarray(reader.get_tensor(key))))
    return out


def _const_candidates(tf, nodes: Iterable, origin: str) -> list[_Candidate]:
    """Float `Const` nodes of a GraphDef / FunctionDef (names without ':0' and '/read')."""
    from tensorflow.core.framework import types_pb2

    floats = {types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_DOUBLE, types_pb2.DT_BFLOAT16}
    out = []
    for node in nodes:
        if node.op != "Const" or "value" not in node.attr:
            continue
        proto = node.attr["value"].tensor
        if proto.dtype not in floats:
            continue
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
        name = node.name
        name = name[:-2] if name.endswith(":0") else name
        name = name[: -len("/read")] if name.endswith("/read") else name
        out.append(_Candidate(name, f"{origin} node {node.name!r}", shape, tf.dtypes.as_dtype(proto.dtype).name,
                              lambda proto=proto: np.asarray(tf.make_ndarray(proto)),
                              digest=lambda proto=proto: hashlib.sha256(proto.SerializeToString()).hexdigest()))
    return out


def _data_format(nodes: Iterable) -> set[str]:
    """Layouts of the Conv2D nodes (an absent attr is TF's default NHWC; SavedModels strip defaults)."""
    return {n.attr["data_format"].s.decode() if "data_format" in n.attr else "NHWC" for n in nodes if n.op == "Conv2D"}


def _graphdef_candidates(tf, path: str):
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    with open(path, "rb") as f:
        data = f.read()
    try:
        graph.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"{path}: not a binary GraphDef ({e}); a SavedModel is passed as its directory") from None
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    return _const_candidates(tf, nodes, os.path.basename(path)), _data_format(nodes)


def _saved_model_candidates(tf, path: str):
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    pb = os.path.join(path, "saved_model.pb")
    if os.path.isfile(pb):
        with open(pb, "rb") as f:
            model.ParseFromString(f.read())
    else:
        from google.protobuf import text_format

        with open(os.path.join(path, "saved_model.pbtxt")) as f:
            text_format.Parse(f.read(), model)
    out, formats = [], set()
    for i, meta in enumerate(model.meta_graphs):
        tags = ",".join(meta.meta_info_def.tags) or str(i)
        out += _const_candidates(tf, meta.graph_def.node, f"saved_model.pb [{tags}] graph")
        formats |= _data_format(meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            out += _const_candidates(tf, fn.node_def, f"saved_model.pb [{tags}] function {fn.signature.name!r}")
            formats |= _data_format(fn.node_def)
    variables = os.path.join(path, "variables", "variables")
    if os.path.isfile(variables + ".index"):
        out += _checkpoint_candidates(tf, variables, "variables/variables")
    return out, formats


# ----------------------------------------------------------------------------- strict mapping


def _explain(c: _Candidate, fmt: str) -> str | None:
    if c.origin.startswith("variables/") or fmt == "tf-checkpoint":
        for pattern, reason in CHECKPOINT_RULES:
            m = re.search(pattern, c.name)
            if m and ("var" not in m.groupdict() or _match_expected(m.group("var"))):
                return reason
        return None
    if int(np.prod(c.shape, dtype=np.int64)) == 1:
        return _SCALAR_RULE
    return None


def _is_mean(c: _Candidate) -> bool:
    return int(np.prod(c.shape, dtype=np.int64)) == 3 and c.shape[-1] == 3 and all(d == 1 for d in c.shape[:-1])


def map_candidates(candidates: list[_Candidate], fmt: str, *, ignore: Iterable[str] = (), source: str = "source"):
    """Strict mapping of source tensors onto `EXPECTED`: `(flat {name: float32 array}, report)`."""
    ignore_res = [re.compile(p) for p in ignore]
    found: dict[str, list[_Candidate]] = {}
    prefixes: dict[str, list[str]] = {}
    ignored, unexplained, errors, mean_ok = [], [], [], None
    for c in candidates:
        if any(r.search(c.name) for r in ignore_res):
            ignored.append((c.name, "matched an ignore= pattern"))
            continue
        match = _match_expected(c.name)
        if match:
            found.setdefault(match[0], []).append(c)
            prefixes.setdefault(match[1], []).append(c.name)
            continue
        if fmt != "tf-checkpoint" and not c.origin.startswith("variables/") and _is_mean(c):
            value = c.load().astype(np.float64).reshape(-1)
            if np.allclose(value, msinet_model.MEAN, atol=1e-3):
                ignored.append((c.name, _MEAN_RULE))
                mean_ok = True
            else:
                errors.append(f"{source}: {c.origin} has the shape of the input mean but holds {value.tolist()}, "
                              f"not {list(msinet_model.MEAN)}: this graph preprocesses differently")
            continue
        reason = _explain(c, fmt)
        if reason:
            ignored.append((c.name, reason))
        else:
            unexplained.append(c)
    duplicates = []
    for name, cs in found.items():
        if len(cs) > 1 and all(c.digest is not None for c in cs) and len({c.digest() for c in cs}) == 1:
            duplicates.append((name, [c.origin for c in cs]))
            found[name] = cs[:1]
    for name, shape in EXPECTED.items():
        cs = found.get(name, [])
        if not cs:
            errors.append(f"{source}: missing tensor {name!r} {shape}")
        elif len(cs) > 1:
            errors.append(f"{source}: tensor {name!r} found {len(cs)} times: {[c.origin for c in cs]}")
        elif cs[0].shape != shape:
            errors.append(f"{source}: tensor {name!r} has shape {cs[0].shape}, MSI-Net needs {shape} ({cs[0].origin})")
    if len(prefixes) > 1:
        errors.append(f"{source}: weights under different name prefixes {sorted(prefixes)} "
                      f"(e.g. {[v[0] for v in prefixes.values()]}); expected one graph")
    if unexplained:
        errors.append(f"{source}: unexpected weight tensors (not part of MSI-Net): "
                      + ", ".join(f"{c.name!r} {c.shape}" for c in unexplained)
                      + " -- pass ignore=[regex] to drop them on purpose")
    if errors:
        raise ValueError("MSI-Net import failed:\n  " + "\n  ".join(errors))
    flat, dtypes = {}, {}
    for name in EXPECTED:
        c = found[name][0]
        flat[name] = np.ascontiguousarray(c.load(), dtype=np.float32)
        dtypes[c.dtype] = dtypes.get(c.dtype, 0) + 1
    report = {
        "found": {name: found[name][0].origin for name in EXPECTED},
        "ignored": ignored,
        "prefix": next(iter(prefixes), ""),
        "duplicates": duplicates,
        "mean_constant": bool(mean_ok) if fmt != "tf-checkpoint" else None,
        "source_dtypes": dtypes,
    }
    return flat, report


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """`{'conv1/conv1_1/kernel': a}` -> `{'conv1': {'conv1_1': {'kernel': a}}}`."""
    return traverse_util.unflatten_dict(flat, sep="/")


def load_msinet(src: str, *, ignore: Iterable[str] = ()) -> tuple[dict, dict]:
    """Reads MSI-Net weights from a released TF format -> `(params, report)`.

    `params` is the nested `MSINet` params dict of float32 numpy arrays (`model.apply({'params':
    params}, images)`); `report` has `format`, `path`, `found` (name -> where it was read),
    `ignored` ([(source name, rule)]), `prefix`, `duplicates`, `mean_constant`, `data_format`,
    `source_dtypes`. Raises ValueError naming every missing, duplicated, misshapen or unexplained
    tensor; ImportError without TensorFlow."""
    fmt, path = detect(src)
    tf = _require_tf()
    formats: set[str] = set()
    if fmt == "tf-checkpoint":
        candidates = _checkpoint_candidates(tf, path, os.path.basename(path))
    elif fmt == "frozen-graphdef":
        candidates, formats = _graphdef_candidates(tf, path)
    else:
        candidates, formats = _saved_model_candidates(tf, path)
    flat, report = map_candidates(candidates, fmt, ignore=ignore, source=f"{src} ({fmt})")
    report = {"format": fmt, "path": os.path.abspath(path), **report,
              "data_format": sorted(formats) if formats else None}
    return unflatten(flat), report


# ----------------------------------------------------------------------------- convert / load


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_files(fmt: str, path: str) -> list[str]:
    """The files a source consists of."""
    if fmt == "frozen-graphdef":
        return [path]
    if fmt == "tf-checkpoint":
        return sorted([path + ".index"] + glob.glob(glob.escape(path) + ".data-*"))
    return sorted(os.path.join(root, f) for root, _, files in os.walk(path) for f in files)


def source_digest(fmt: str, path: str) -> dict:
    """`{'sha256', 'size_bytes', 'files'?}` of a source (see the module docstring)."""
    files = source_files(fmt, path)
    if fmt == "frozen-graphdef":
        return {"sha256": _sha256(path), "size_bytes": os.path.getsize(path)}
    base = os.path.dirname(path) if fmt == "tf-checkpoint" else path
    listing = {os.path.relpath(f, base): {"sha256": _sha256(f), "size": os.path.getsize(f)} for f in files}
    lines = "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(listing.items()))
    return {"sha256": hashlib.sha256(lines.encode()).hexdigest(),
            "size_bytes": sum(v["size"] for v in listing.values()), "files": listing}


def convert(src: str, out_dir: str, *, ignore: Iterable[str] = ()) -> dict:
    """Reads `src` (any released format) and writes `OUT/msinet.safetensors` + `OUT/convert.json`.

    `out_dir` must be empty or absent. Returns the metadata written to convert.json."""
    from safetensors.numpy import save_file

    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ValueError(f"output directory {out_dir} exists and is not empty")
    params, report = load_msinet(src, ignore=ignore)
    flat = {name: params_leaf(params, name) for name in EXPECTED}
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, WEIGHTS_FILE)
    save_file(flat, weights, metadata={"model": "msinet", "format": report["format"]})
    meta = {
        "format_version": 1,
        "model": "msinet",
        "format": report["format"],
        "source": {"path": report["path"], **source_digest(report["format"], report["path"])},
        "tensor_count": len(flat),
        "parameter_count": int(sum(v.size for v in flat.values())),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "conversion": {k: report[k] for k in ("ignored", "prefix", "duplicates", "mean_constant", "data_format",
                                             "source_dtypes")},
        "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(weights), "size_bytes": os.path.getsize(weights)},
    }
    meta["conversion"]["ignored"] = [list(x) for x in meta["conversion"]["ignored"]]
    meta["conversion"]["duplicates"] = [list(x) for x in meta["conversion"]["duplicates"]]
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return meta


def params_leaf(params: dict, name: str) -> np.ndarray:
    node = params
    for part in name.split("/"):
        node = node[part]
    return np.asarray(node)


def load_converted(out_dir: str) -> tuple[dict, dict]:
    """`(params, meta)` from a `convert` output directory, sha256-verified; no TensorFlow."""
    return msinet_model.load_weights(out_dir)


# ----------------------------------------------------------------------------- TF reference


def tf_reference_graph(weights: dict[str, np.ndarray] | None = None, *, seed: int = 0):
    """The published MSI-Net graph (alexanderkroner/saliency `model.py`, cpu/NHWC build) in TF.

    Returns `(graph, session)` with variables named as released (`conv1/conv1_1/kernel`, ...),
    placeholder `input:0` ([None, None, None, 3], RGB 0..255) and output `output:0`. Weights are
    `weights` (flat '/'-joined names) or random: kernels He-normal (truncated, variance 2/fan_in),
    biases uniform(-0.1, 0.1), from `seed`. Written with TF ops directly from the reference
    (`tf.nn.convolution`, `tf.compat.v1.image.resize_bilinear` with its TF1 defaults), sharing no
    code with the Flax model: the independent reference for parity tests and the benchmark."""
    tf = _require_tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        values = {}

        def conv(x, scope, name, filters, k, dilation=1, relu=True):
            cin = int(x.shape[-1])
            full = f"{scope}/{name}"
            with v1.variable_scope(full):
                # TF1 reference variables (VariableV2), as the released graphs hold
                kernel = v1.get_variable("kernel", (k, k, cin, filters), tf.float32, v1.zeros_initializer(),
                                         use_resource=False)
                bias = v1.get_variable("bias", (filters,), tf.float32, v1.zeros_initializer(), use_resource=False)
            if weights is not None:
                values[kernel], values[bias] = weights[full + "/kernel"], weights[full + "/bias"]
            else:
                std = np.sqrt(2.0 / (k * k * cin))
                values[kernel] = rng.standard_normal((k, k, cin, filters)).clip(-2, 2) * std
                values[bias] = rng.uniform(-0.1, 0.1, filters)
            y = tf.nn.convolution(x, kernel, padding="SAME", dilations=dilation)
            y = tf.nn.bias_add(y, bias)
            return tf.nn.relu(y) if relu else y

        images = v1.placeholder(tf.float32, (None, None, None, 3), name="input")
        x = images - tf.reshape(tf.constant([103.939, 116.779, 123.68]), [1, 1, 1, 3])
        x = conv(x, "conv1", "conv1_1", 64, 3)
        x = conv(x, "conv1", "conv1_2", 64, 3)
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = conv(x, "conv2", "conv2_1", 128, 3)
        x = conv(x, "conv2", "conv2_2", 128, 3)
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = conv(x, "conv3", "conv3_1", 256, 3)
        x = conv(x, "conv3", "conv3_2", 256, 3)
        x = conv(x, "conv3", "conv3_3", 256, 3)
        pool3 = x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = conv(x, "conv4", "conv4_1", 512, 3)
        x = conv(x, "conv4", "conv4_2", 512, 3)
        x = conv(x, "conv4", "conv4_3", 512, 3)
        pool4 = x = tf.nn.max_pool2d(x, 2, 1, "SAME")
        x = conv(x, "conv5", "conv5_1", 512, 3, 2)
        x = conv(x, "conv5", "conv5_2", 512, 3, 2)
        x = conv(x, "conv5", "conv5_3", 512, 3, 2)
        pool5 = tf.nn.max_pool2d(x, 2, 1, "SAME")
        features = tf.concat([pool3, pool4, pool5], axis=3)

        b1 = conv(features, "aspp", "conv1_1", 256, 1)
        b2 = conv(features, "aspp", "conv1_2", 256, 3, 4)
        b3 = conv(features, "aspp", "conv1_3", 256, 3, 8)
        b4 = conv(features, "aspp", "conv1_4", 256, 3, 12)
        b5 = conv(tf.reduce_mean(features, axis=(1, 2), keepdims=True), "aspp", "conv1_5", 256, 1)
        shape = tf.shape(features)
        b5 = v1.image.resize_bilinear(b5, (shape[1], shape[2]))
        x = conv(tf.concat([b1, b2, b3, b4, b5], axis=3), "aspp", "conv2", 256, 1)

        for name, filters in (("conv1", 128), ("conv2", 64), ("conv3", 32)):
            shape = tf.shape(x)
            x = v1.image.resize_bilinear(x, (shape[1] * 2, shape[2] * 2))
            x = conv(x, "decoder", name, filters, 3)
        x = conv(x, "decoder", "conv4", 1, 3, relu=False)

        x -= tf.reduce_min(x, axis=(1, 2, 3), keepdims=True)
        tf.divide(x, 1e-7 + tf.reduce_max(x, axis=(1, 2, 3), keepdims=True), name="output")
        init = v1.global_variables_initializer()
        session = v1.Session(graph=graph)
        session.run(init)
        for variable, value in values.items():
            variable.load(np.asarray(value, np.float32), session)
    return graph, session


def tf_graph_weights(graph, session) -> dict[str, np.ndarray]:
    """Flat `{name: array}` of a :func:`tf_reference_graph`'s variables."""
    with graph.as_default():
        variables = graph.get_collection("variables")
    values = session.run(variables)
    return {v.op.name: np.asarray(a) for v, a in zip(variables, values)}
