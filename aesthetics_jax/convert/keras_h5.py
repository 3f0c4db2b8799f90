"""Keras weight files -> our Flax variables, read with h5py (no Keras, no TensorFlow).

Two formats:

  legacy .h5 (Keras 2 `model.save` / `save_weights`, also Keras 3's `model.save('x.h5')`):
      [model_weights/] attrs `layer_names` (model.layers order); per layer a group with attr
      `weight_names` (`conv1/kernel:0`, `conv1_bn/gamma:0`, ...; Keras 3 drops the `:0`) and the
      datasets at `<layer>/<weight_name>`. A nested model layer (a MobileNet base used as one layer)
      lists its inner layers' weights, trainable first: they are regrouped by inner layer name (the
      path component before the weight's role), so order inside the file does not matter.
  Keras 3 .weights.h5 (`model.save_weights('x.weights.h5')`):
      `layers/<key>/vars/<i>`, nested models as `layers/<key>/layers/<key>/vars/<i>`. Keys are
      *not* layer names: `<class in snake_case>[_<n>]` numbers the layers of one class in
      `model.layers` order (Keras' topological order), and vars are positional (Conv/Dense:
      kernel, bias?; BatchNorm: gamma?, beta?, moving_mean, moving_variance).

Mapping into a model from `models.create` (layer *roles* map to Flax leaves: kernel /
depthwise_kernel -> kernel (a depthwise [kh, kw, C, m] kernel is reshaped to Flax's grouped
[kh, kw, 1, C*m]), bias -> bias, gamma -> scale, beta -> bias, moving_mean / moving_variance ->
batch_stats mean / var):

  backbone, legacy .h5   by layer name. Backbone modules carry Keras layer names (MobileNet:
                         `conv_dw_3`; InceptionV3: the auto names `conv2d_<i>`); auto names in the
                         file (`conv2d[_n]`, `batch_normalization[_n]`, `depthwise_conv2d[_n]`) are
                         renumbered 0, 1, 2, ... in order of their suffix first, because Keras
                         numbers them per session (Keras 2 starts at `conv2d_1`, a second model in
                         a session continues the count) while creation order is kept.
  backbone, .weights.h5  by class and position: the backbone's modules in Keras `model.layers`
                         order (`backbone.keras_module_order()` where the graph branches, as in
                         InceptionV3; creation order otherwise) are paired with the file's
                         `conv2d_*`, `depthwise_conv2d_*`, `batch_normalization_*` keys in order.
  heads                  the file's Dense layers not used by the backbone pair, in order, with the
                         heads' Dense modules in order (idealo NIMA: `dense_1` -> `emd/dense`).

Strict (DESIGN.md): every Flax leaf is filled unless it matches a `dont_load` regex (then it keeps
its initial value, e.g. `^emd/` to re-initialise a head); every source tensor is used, or ignored by
an explicit rule (`ignore` regexes on source layer names, the file's Dense layers when every head is
in `dont_load`, or a target leaf in `dont_load`). Anything else is an error listing the keys.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping, Sequence

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

KERAS_ROLES = ("kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
_ROLE_TO_LEAF = {
    "kernel": ("params", "kernel"),
    "depthwise_kernel": ("params", "kernel"),
    "bias": ("params", "bias"),
    "gamma": ("params", "scale"),
    "beta": ("params", "bias"),
    "moving_mean": ("batch_stats", "mean"),
    "moving_variance": ("batch_stats", "var"),
}
# Keras 3 class keys per Flax module kind.
_CLASS_OF_KIND = {"conv": "conv2d", "depthwise": "depthwise_conv2d", "bn": "batch_normalization", "dense": "dense"}
_AUTO_NAME = re.compile(r"^(conv2d|batch_normalization|depthwise_conv2d)(?:_(\d+))?$")
_KERAS3_KEY = re.compile(r"^([a-z0-9_]+?)(?:_(\d+))?$")


@dataclasses.dataclass
class SourceLayer:
    """One Keras layer read from a file: `name` (legacy: layer name; Keras 3: `<container>/<key>`),
    `weights` by role (legacy) or `positional` (Keras 3), and `where` for error messages."""

    name: str
    where: str
    weights: dict[str, np.ndarray] | None = None
    positional: list[np.ndarray] | None = None


def _decode(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _role(weight_name: str, where: str) -> tuple[str, str]:
    """`'conv_dw_1/depthwise_kernel:0'` -> ('conv_dw_1', 'depthwise_kernel')."""
    parts = weight_name.split("/")
    role = parts[-1].split(":")[0]
    if role not in KERAS_ROLES or len(parts) < 2:
        raise ValueError(f"{where}: weight {weight_name!r} has no known role (expected */{'|'.join(KERAS_ROLES)})")
    return parts[-2], role


def read_legacy_h5(path: str) -> list[SourceLayer]:
    """Layers with weights of a legacy Keras .h5 file, in `layer_names` order (nested model layers
    expand into their inner layers, in order of first appearance)."""
    layers: list[SourceLayer] = []
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in g.attrs:
            raise ValueError(f"{path}: not a legacy Keras .h5 file (no 'layer_names' attribute in "
                             f"{'model_weights' if g is not f else 'the root group'})")
        for layer_name in _decode(g.attrs["layer_names"]):
            group = g[layer_name]
            weight_names = _decode(group.attrs.get("weight_names", []))
            inner: dict[str, SourceLayer] = {}
            nested = _is_nested(weight_names)
            for weight_name in weight_names:
                where = f"{path}: {g.name.rstrip('/')}/{layer_name}/{weight_name}"
                inner_name, role = _role(weight_name, where)
                key = inner_name if nested else layer_name
                layer = inner.setdefault(key, SourceLayer(key, f"{path}: layer {layer_name!r}" + (f" / {key!r}" if nested else ""), {}))
                if role in layer.weights:
                    raise ValueError(f"{where}: second {role!r} for layer {key!r}")
                layer.weights[role] = np.asarray(group[weight_name])
            layers.extend(inner.values())
    names = [layer.name for layer in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: layer names occur twice after expanding nested models: {dupes}")
    return layers


def _is_nested(weight_names: Sequence[str]) -> bool:
    """A layer group is a nested model when its weights belong to more than one inner layer."""
    return len({w.split("/")[-2] for w in weight_names if "/" in w}) > 1


def read_weights_h5(path: str) -> list[SourceLayer]:
    """Layers with weights of a Keras 3 `.weights.h5` file; names are `<container path>/<key>`
    (container '' for the top-level model), positional vars."""
    layers: list[SourceLayer] = []
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise ValueError(f"{path}: not a Keras 3 .weights.h5 file (no 'layers' group)")

        def walk(group, container: str):
            for key in group["layers"].keys():
                sub = group["layers"][key]
                name = f"{container}/{key}" if container else key
                if "layers" in sub:
                    walk(sub, name)
                vars_group = sub.get("vars")
                if vars_group is not None and len(vars_group):
                    arrays = [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]
                    layers.append(SourceLayer(name, f"{path}: {sub.name}/vars", positional=arrays))

        walk(f, "")
    return layers


def is_legacy_h5(path: str) -> bool:
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        return "layer_names" in g.attrs


# ---------------------------------------------------------------------------------------------
# Flax side


def flax_modules(variables) -> dict[str, dict[tuple[str, str], Any]]:
    """`{module path: {(collection, leaf): value}}` in insertion (creation) order."""
    modules: dict[str, dict[tuple[str, str], Any]] = {}
    for collection in ("params", "batch_stats"):
        for path, value in traverse_util.flatten_dict(dict(variables.get(collection, {}))).items():
            modules.setdefault("/".join(path[:-1]), {})[(collection, path[-1])] = value
    return modules


def module_kind(leaves: Mapping[tuple[str, str], Any]) -> str:
    """'bn' | 'dense' | 'depthwise' (grouped conv with one input channel per group) | 'conv'."""
    if ("batch_stats", "mean") in leaves:
        return "bn"
    kernel = leaves.get(("params", "kernel"))
    if kernel is None:
        return "other"
    if kernel.ndim == 2:
        return "dense"
    if kernel.ndim == 4 and kernel.shape[2] == 1:
        return "depthwise"
    return "conv"


def merge_module_weights(
    variables,
    weights: Mapping[str, Mapping[tuple[str, str], np.ndarray]],
    *,
    dont_load: Iterable[str] = (),
    source: str = "source",
):
    """Strictly fills `variables` (`{'params', 'batch_stats'}`) from
    `{module path: {(collection, leaf): array}}`.

    Every leaf must be given, unless its params-style path (`emd/dense/kernel`, batch stats too)
    matches a `dont_load` regex (`re.search`): it then keeps its value from `variables` and a given
    value is dropped. Every given module and leaf must exist with the same shape. Returns
    `(new_variables, kept)`, `kept` listing the leaves left at their initial value."""
    dont = [re.compile(p) for p in dont_load]
    targets = flax_modules(variables)
    errors, kept = [], []
    out = {c: traverse_util.flatten_dict(dict(variables.get(c, {}))) for c in ("params", "batch_stats")}
    for module, given in weights.items():
        if module not in targets:
            errors.append(f"{source}: weights for {module!r}, which the model does not have")
    for module, leaves in targets.items():
        given = weights.get(module, {})
        for extra in sorted(set(given) - set(leaves)):
            errors.append(f"{source}: {module!r} has no {extra[0]} leaf {extra[1]!r}")
        for (collection, leaf), value in leaves.items():
            path = f"{module}/{leaf}"
            if any(r.search(path) for r in dont):
                kept.append(f"{collection}:{path}")
                continue
            if (collection, leaf) not in given:
                errors.append(f"{source}: nothing for {collection} {path!r}")
                continue
            array = np.asarray(given[(collection, leaf)])
            if array.shape != tuple(value.shape):
                errors.append(f"{source}: {collection} {path!r} has shape {tuple(value.shape)}, source {array.shape}")
                continue
            out[collection][tuple(path.split("/"))] = jnp.asarray(array, dtype=value.dtype)
    if errors:
        raise ValueError("weight import failed:\n  " + "\n  ".join(errors))
    new = dict(variables)
    for collection in ("params", "batch_stats"):
        if collection in variables:
            new[collection] = traverse_util.unflatten_dict(out[collection])
    return new, kept


def _convert_roles(layer: SourceLayer, target: Mapping[tuple[str, str], Any], module: str):
    """Source layer -> `{(collection, leaf): array}` for Flax module `module`."""
    kind = module_kind(target)
    if layer.weights is not None:
        roles = dict(layer.weights)
    else:  # Keras 3 positional vars
        if kind == "bn":
            names = [r for r, leaf in (("gamma", "scale"), ("beta", "bias")) if ("params", leaf) in target]
            names += ["moving_mean", "moving_variance"]
        else:
            names = ["kernel"] + (["bias"] if ("params", "bias") in target else [])
        if len(names) != len(layer.positional):
            raise ValueError(
                f"{layer.where}: {len(layer.positional)} vars, but {module!r} ({kind}) needs {len(names)} ({', '.join(names)})"
            )
        roles = dict(zip(names, layer.positional))
    out = {}
    for role, array in roles.items():
        leaf = _ROLE_TO_LEAF[role]
        if leaf in out:
            raise ValueError(f"{layer.where}: both 'kernel' and 'depthwise_kernel'")
        if leaf not in target:
            raise ValueError(f"{layer.where}: weight {role!r} has no place in {module!r} (leaves {sorted(l for _, l in target)})")
        if leaf == ("params", "kernel") and kind == "depthwise" and array.ndim == 4:
            shape = tuple(target[leaf].shape)
            if array.shape != shape and array.shape[:2] == shape[:2] and array.shape[2] * array.shape[3] == shape[3]:
                array = array.reshape(shape)
        out[leaf] = array
    return out


def _renumber_auto_names(layers: list[SourceLayer]) -> None:
    groups: dict[str, list[tuple[int, SourceLayer]]] = {}
    for layer in layers:
        m = _AUTO_NAME.match(layer.name)
        if m:
            groups.setdefault(m.group(1), []).append((int(m.group(2) or 0), layer))
    for prefix, items in groups.items():
        for i, (_, layer) in enumerate(sorted(items, key=lambda t: t[0])):
            layer.name = prefix if i == 0 else f"{prefix}_{i}"


def creation_order(model, image_size: int = 75) -> list[str]:
    """Module paths of `model` in the order the modules were created (Flax records variables in
    creation order while tracing; jit/eval_shape outputs are key-sorted, so the order is read
    inside the traced function)."""
    order: list[str] = []

    def init(rng, x):
        variables = model.init({"params": rng, "dropout": rng}, x, train=False)
        for collection in ("params", "batch_stats"):
            for path in traverse_util.flatten_dict(dict(variables.get(collection, {}))):
                name = "/".join(path[:-1])
                if name not in order:
                    order.append(name)
        return variables

    jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3), jnp.float32))
    return order


def _keras_order(model, modules: Mapping[str, Any], image_size: int) -> tuple[list[str], list[str]]:
    """(backbone module names without 'backbone/' in Keras model.layers order, head module paths
    in creation order)."""
    created = creation_order(model, image_size)
    if sorted(created) != sorted(modules):
        raise ValueError("the variables do not belong to the model")
    names = [m[len("backbone/"):] for m in created if m.startswith("backbone/")]
    heads = [m for m in created if not m.startswith("backbone/")]
    order = getattr(model.backbone, "keras_module_order", None)
    if order is None:
        return names, heads
    ordered = list(order())
    if sorted(ordered) != sorted(names):
        raise ValueError(f"{type(model.backbone).__name__}.keras_module_order() does not list the backbone's modules")
    return ordered, heads


def keras_file_weights(
    path: str,
    model,
    variables,
    *,
    dont_load: Iterable[str] = (),
    ignore: Iterable[str] = (),
    image_size: int = 75,
):
    """Reads Keras file `path` (legacy .h5 or Keras 3 .weights.h5) and pairs its layers with the
    modules of `model` (an `AestheticsModel`), whose variables `variables` are (from
    `model.init`; `image_size` is only used to trace the model for its module creation order). Returns `(weights, ignored)`: weights as
    `{module path: {(collection, leaf): array}}` for :func:`merge_module_weights`, and
    `[(source layer, rule)]` for the source layers deliberately left out."""
    dont_load = list(dont_load)
    ignore_res = [re.compile(p) for p in ignore]
    legacy = is_legacy_h5(path)
    layers = read_legacy_h5(path) if legacy else read_weights_h5(path)
    modules = flax_modules(variables)
    backbone_order, head_modules = _keras_order(model, modules, image_size)
    head_dense = [m for m in head_modules if module_kind(modules[m]) == "dense"]
    other_heads = [m for m in head_modules if module_kind(modules[m]) != "dense"]
    if other_heads:
        raise ValueError(f"{path}: head modules {other_heads} are not Dense layers; list them in dont_load")
    ignored: list[tuple[str, str]] = []
    kept_layers = []
    for layer in layers:
        rule = next((r.pattern for r in ignore_res if r.fullmatch(layer.name)), None)
        if rule is not None:
            ignored.append((layer.name, f"ignore pattern {rule!r}"))
        else:
            kept_layers.append(layer)
    layers = kept_layers

    pairs: list[tuple[str, SourceLayer]] = []
    errors = []
    if legacy:
        by_name = {layer.name: layer for layer in layers}
        if not all(name in by_name for name in backbone_order):
            _renumber_auto_names(layers)
            by_name = {layer.name: layer for layer in layers}
        for name in backbone_order:
            if name in by_name:
                pairs.append(("backbone/" + name, by_name.pop(name)))
            else:
                errors.append(f"{path}: no layer {name!r} for backbone module {name!r}")
        rest = [layer for layer in layers if layer.name in by_name]
        dense = [layer for layer in rest if layer.weights.get("kernel", np.zeros((1, 1, 1))).ndim == 2]
        unknown = [layer.name for layer in rest if layer not in dense]
    else:
        per_class: dict[str, list[tuple[str, int, SourceLayer]]] = {}
        unknown = []
        for layer in layers:
            container, _, key = layer.name.rpartition("/")
            m = _KERAS3_KEY.match(key)
            cls, index = m.group(1), int(m.group(2) or 0)
            if cls not in _CLASS_OF_KIND.values():
                unknown.append(layer.name)
                continue
            per_class.setdefault(cls, []).append((container, index, layer))
        ordered: dict[str, list[SourceLayer]] = {}
        for cls, items in per_class.items():
            containers = sorted({c for c, _, _ in items})
            if len(containers) > 1:
                raise ValueError(f"{path}: {cls!r} layers in several nested models {containers}; cannot order them")
            ordered[cls] = [layer for _, _, layer in sorted(items, key=lambda t: t[1])]
        by_class: dict[str, list[str]] = {}
        for name in backbone_order:
            by_class.setdefault(_CLASS_OF_KIND[module_kind(modules["backbone/" + name])], []).append(name)
        for cls, names in by_class.items():
            sources = ordered.pop(cls, [])
            if len(sources) < len(names):
                errors.append(f"{path}: {len(names)} backbone {cls} modules but {len(sources)} {cls!r} layers in the file")
                continue
            if cls != "dense" and len(sources) != len(names):
                errors.append(f"{path}: {len(sources)} {cls!r} layers in the file, backbone has {len(names)}: "
                              f"unused {[s.name for s in sources[len(names):]]}")
            pairs.extend(("backbone/" + n, s) for n, s in zip(names, sources))
            ordered[cls] = sources[len(names):] if cls == "dense" else []
        dense = ordered.pop("dense", [])
        unknown += [layer.name for rest in ordered.values() for layer in rest]
    if unknown:
        errors.append(f"{path}: layers with weights that fit no module: {unknown} (add an `ignore` pattern to drop them)")
    dont = [re.compile(p) for p in dont_load]
    all_heads_reinit = head_dense and all(
        all(any(r.search(f"{m}/{leaf}") for r in dont) for _, leaf in modules[m]) for m in head_dense
    )
    if all_heads_reinit or not head_dense:
        ignored.extend((layer.name, "Dense layer of a head re-initialised by dont_load") for layer in dense)
    elif len(dense) == len(head_dense):
        pairs.extend(zip(head_dense, dense))
    else:
        errors.append(f"{path}: {len(dense)} Dense layers {[d.name for d in dense]} for {len(head_dense)} head "
                      f"Dense modules {head_dense}; put the heads in dont_load (e.g. '^emd/') to re-initialise them")
    if errors:
        raise ValueError("Keras import failed:\n  " + "\n  ".join(errors))
    weights = {}
    for module, layer in pairs:
        try:
            weights[module] = _convert_roles(layer, modules[module], module)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ValueError("Keras import failed:\n  " + "\n  ".join(errors))
    return weights, ignored


def init_variables(model, image_size: int = 75, seed: int = 0, *, only: Iterable[str] | None = None):
    """`model.init` on a zero image batch (rng `PRNGKey(seed)` for 'params' and 'dropout').

    `only=None`: all initial variables. `only=[regexes]`: only the leaves whose path
    (`emd/dense/kernel`, searched as `merge_module_weights` does with `dont_load`) matches get their
    initial value; every other leaf is a `jax.ShapeDtypeStruct` placeholder, for a strict merge to
    fill. The values are the ones the full init gives, but XLA then drops the initialisers nobody
    asked for: compiling InceptionV3's full init takes ~15 s on two CPU cores, a head's a fraction."""
    images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    rng = jax.random.PRNGKey(seed)

    def init(r):
        return model.init({"params": r, "dropout": r}, images, train=False)

    if only is None:
        return dict(jax.jit(init)(rng))
    patterns = [re.compile(p) for p in only]
    shapes = jax.eval_shape(init, rng)
    flat = {(c,) + path: leaf for c in shapes for path, leaf in traverse_util.flatten_dict(dict(shapes[c])).items()}
    wanted = [k for k in flat if any(r.search("/".join(k[1:])) for r in patterns)]
    if wanted:

        def pick(r):
            variables = init(r)
            return [traverse_util.flatten_dict(dict(variables[k[0]]))[k[1:]] for k in wanted]

        flat.update(zip(wanted, jax.jit(pick)(rng)))
    out = {}
    for (collection, *path), leaf in flat.items():
        out.setdefault(collection, {})[tuple(path)] = leaf
    return {c: traverse_util.unflatten_dict(leaves) for c, leaves in out.items()}


def load_keras_file(
    path: str,
    model,
    variables=None,
    *,
    dont_load: Iterable[str] = (),
    ignore: Iterable[str] = (),
    image_size: int = 75,
):
    """Keras file -> variables for `model`. Leaves matching `dont_load` keep their value from
    `variables`, or with `variables=None` their initial value (`init_variables(model, image_size,
    only=dont_load)`: seed 0). Returns `(variables, report)` with report `{'ignored': [(source layer,
    rule)], 'kept_init': [leaf paths]}`."""
    if variables is None:
        variables = init_variables(model, image_size, only=dont_load)
    weights, ignored = keras_file_weights(path, model, variables, dont_load=dont_load, ignore=ignore,
                                          image_size=image_size)
    new, kept = merge_module_weights(variables, weights, dont_load=dont_load, source=path)
    return new, {"ignored": ignored, "kept_init": kept}
