"""InceptionV3 backbone: `keras.applications.InceptionV3` structure, or torchvision's `inception_v3`.

Structure (Keras 3.15 `keras/src/applications/inception_v3.py`, `include_top=False`; torchvision
0.29 `torchvision/models/inception.py` builds the same graph)::

    stem       conv 3x3/2 valid 32, conv 3x3 valid 32, conv 3x3 same 64, maxpool 3x3/2,
               conv 1x1 valid 80, conv 3x3 valid 192, maxpool 3x3/2
    mixed0-2   InceptionA (torch Mixed_5b/5c/5d; pool branch 32, 64, 64 filters)
    mixed3     InceptionB (Mixed_6a, grid reduction)
    mixed4-7   InceptionC (Mixed_6b-6e; 7x7 factorised, c7 = 128, 160, 160, 192)
    mixed8     InceptionD (Mixed_7a, grid reduction)
    mixed9-10  InceptionE (Mixed_7b/7c)

Every convolution is conv (no bias) -> BatchNorm -> ReLU (Keras `conv2d_bn`, torch `BasicConv2d`).

Names: the i-th conv/BN pair *in creation order* (the order of the Keras source above, which is
also torchvision's module registration order, AuxLogits excluded) is the Flax module
`conv2d` / `batch_normalization` (i = 0) or `conv2d_{i}` / `batch_normalization_{i}` -- the names
Keras gives the layers in a fresh session. The converters map by this index:
  * legacy Keras .h5 files store layer names, whose numeric suffixes give creation order (an offset,
    e.g. Keras 2's `conv2d_1` first, is normalised away);
  * Keras 3 `.weights.h5` files key layers by class and position in `model.layers`, which is
    Keras' topological order, not creation order: :func:`keras_layer_order` reproduces Keras'
    `map_graph` ordering on this graph, so `Inception.keras_module_order()` lists our modules in
    `model.layers` order;
  * torchvision state dicts: :func:`torchvision_conv_names` lists `BasicConv2d` prefixes
    (`Mixed_5b.branch5x5_1`, ...) in the same creation order.

Layouts (`layout`):
  keras        BN eps 1e-3, no gamma (`scale=False`), momentum 0.99; 3x3/1 average pooling with
               padding 'same' that excludes the padded zeros from the mean (TF/Keras semantics).
  torchvision  BN eps 1e-3 *with* gamma, momentum 0.9 (torch momentum 0.1); average pooling
               `F.avg_pool2d(x, 3, stride=1, padding=1)`, i.e. count_include_pad=True.
`transform_input` (torchvision's option, True for its ImageNet weights) maps ImageNet-mean/std
normalised input to the [-1, 1] scaling the Google weights expect, channel by channel, exactly as
`Inception3._transform_input`.

`num_mixed` (0..11) keeps the stem and the first `num_mixed` mixed blocks: a tiny variant for tests
with the same names as the full model (Keras parity: a sub-model ending at `mixed{num_mixed-1}`).
`width` multiplies every convolution's filter count (`scaled_filters`: rounded to a multiple of 8,
at least 8; width 1 is the published model, the only one with ImageNet weights): with `num_mixed`
it makes the reduced InceptionV3 that demos train from scratch on a CPU (same graph and names,
fewer channels). Minimum input size is 75 px (Keras' `min_size`).

Variable layer freezing: `frozen_blocks = k` runs the first k blocks in input order (0 = the stem,
then mixed0, mixed1, ...) as Keras runs `trainable = False` layers: BatchNorm in inference mode and
no gradient into them (`stop_gradient` after block k-1); `freeze_regex(k)` selects their
parameters for `config.schedule` (frozen in the optimiser too). k = num_mixed + 1: head only.

Output: `{'feature_map': output of the last kept mixed block [B, h, w, C] (8x8x2048 at 299 px),
compute dtype -- the Grad-CAM target, 'pooled': its global average [B, C] float32}`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LAYOUTS = ("keras", "torchvision")
BN_EPSILON = 1e-3
BN_MOMENTUM = {"keras": 0.99, "torchvision": 0.9}
KERNEL_INIT = nn.initializers.glorot_uniform()
NUM_MIXED = 11

# (torchvision module name, block type, block argument)
MIXED = (
    ("Mixed_5b", "A", 32),
    ("Mixed_5c", "A", 64),
    ("Mixed_5d", "A", 64),
    ("Mixed_6a", "B", None),
    ("Mixed_6b", "C", 128),
    ("Mixed_6c", "C", 160),
    ("Mixed_6d", "C", 160),
    ("Mixed_6e", "C", 192),
    ("Mixed_7a", "D", None),
    ("Mixed_7b", "E", None),
    ("Mixed_7c", "E", None),
)


def scaled_filters(filters: int, width: float) -> int:
    """`filters * width` rounded to the nearest multiple of 8, at least 8 (width 1: unchanged)."""
    return max(8, int(filters * width / 8 + 0.5) * 8)


def keras_conv_name(i: int) -> str:
    return "conv2d" if i == 0 else f"conv2d_{i}"


def keras_bn_name(i: int) -> str:
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


def _forward(ops, x, num_mixed: int):
    """The InceptionV3 graph, written once against `ops` (Flax execution or graph recording)."""
    cb = ops.conv_bn
    x = cb(x, "Conv2d_1a_3x3", 32, (3, 3), 2, "VALID")
    x = cb(x, "Conv2d_2a_3x3", 32, (3, 3), 1, "VALID")
    x = cb(x, "Conv2d_2b_3x3", 64, (3, 3), 1, "SAME")
    x = ops.max_pool(x)
    x = cb(x, "Conv2d_3b_1x1", 80, (1, 1), 1, "VALID")
    x = cb(x, "Conv2d_4a_3x3", 192, (3, 3), 1, "VALID")
    x = ops.max_pool(x)
    x = ops.block_end(x, 0)
    for block, (name, kind, arg) in enumerate(MIXED[:num_mixed], start=1):
        p = name + "."
        if kind == "A":
            b1 = cb(x, p + "branch1x1", 64, (1, 1))
            b5 = cb(x, p + "branch5x5_1", 48, (1, 1))
            b5 = cb(b5, p + "branch5x5_2", 64, (5, 5))
            b3 = cb(x, p + "branch3x3dbl_1", 64, (1, 1))
            b3 = cb(b3, p + "branch3x3dbl_2", 96, (3, 3))
            b3 = cb(b3, p + "branch3x3dbl_3", 96, (3, 3))
            bp = cb(ops.avg_pool(x), p + "branch_pool", arg, (1, 1))
            x = ops.concat([b1, b5, b3, bp])
        elif kind == "B":
            b3 = cb(x, p + "branch3x3", 384, (3, 3), 2, "VALID")
            bd = cb(x, p + "branch3x3dbl_1", 64, (1, 1))
            bd = cb(bd, p + "branch3x3dbl_2", 96, (3, 3))
            bd = cb(bd, p + "branch3x3dbl_3", 96, (3, 3), 2, "VALID")
            x = ops.concat([b3, bd, ops.max_pool(x)])
        elif kind == "C":
            b1 = cb(x, p + "branch1x1", 192, (1, 1))
            b7 = cb(x, p + "branch7x7_1", arg, (1, 1))
            b7 = cb(b7, p + "branch7x7_2", arg, (1, 7))
            b7 = cb(b7, p + "branch7x7_3", 192, (7, 1))
            bd = cb(x, p + "branch7x7dbl_1", arg, (1, 1))
            bd = cb(bd, p + "branch7x7dbl_2", arg, (7, 1))
            bd = cb(bd, p + "branch7x7dbl_3", arg, (1, 7))
            bd = cb(bd, p + "branch7x7dbl_4", arg, (7, 1))
            bd = cb(bd, p + "branch7x7dbl_5", 192, (1, 7))
            bp = cb(ops.avg_pool(x), p + "branch_pool", 192, (1, 1))
            x = ops.concat([b1, b7, bd, bp])
        elif kind == "D":
            b3 = cb(x, p + "branch3x3_1", 192, (1, 1))
            b3 = cb(b3, p + "branch3x3_2", 320, (3, 3), 2, "VALID")
            b7 = cb(x, p + "branch7x7x3_1", 192, (1, 1))
            b7 = cb(b7, p + "branch7x7x3_2", 192, (1, 7))
            b7 = cb(b7, p + "branch7x7x3_3", 192, (7, 1))
            b7 = cb(b7, p + "branch7x7x3_4", 192, (3, 3), 2, "VALID")
            x = ops.concat([b3, b7, ops.max_pool(x)])
        else:  # "E"
            b1 = cb(x, p + "branch1x1", 320, (1, 1))
            b3 = cb(x, p + "branch3x3_1", 384, (1, 1))
            b3 = ops.concat([cb(b3, p + "branch3x3_2a", 384, (1, 3)), cb(b3, p + "branch3x3_2b", 384, (3, 1))])
            bd = cb(x, p + "branch3x3dbl_1", 448, (1, 1))
            bd = cb(bd, p + "branch3x3dbl_2", 384, (3, 3))
            bd = ops.concat([cb(bd, p + "branch3x3dbl_3a", 384, (1, 3)), cb(bd, p + "branch3x3dbl_3b", 384, (3, 1))])
            bp = cb(ops.avg_pool(x), p + "branch_pool", 192, (1, 1))
            x = ops.concat([b1, b3, bd, bp])
        x = ops.block_end(x, block)
    return x


class _GraphOps:
    """Records the Keras functional graph of `_forward`: conv, BN, Activation, pooling, concat
    nodes, each with its input nodes, so Keras' layer ordering can be recomputed."""

    def __init__(self):
        self.inputs: list[list[int]] = [[]]  # node 0: the input layer
        self.conv_of: dict[int, int] = {}  # node -> conv creation index
        self.bn_of: dict[int, int] = {}
        self.torch_names: list[str] = []

    def _node(self, inputs):
        self.inputs.append(list(inputs))
        return len(self.inputs) - 1

    def conv_bn(self, x, torch_name, filters, kernel, stride=1, padding="SAME"):
        i = len(self.torch_names)
        self.torch_names.append(torch_name)
        conv = self._node([x])
        self.conv_of[conv] = i
        bn = self._node([conv])
        self.bn_of[bn] = i
        return self._node([bn])  # Activation('relu')

    def block_end(self, x, index):
        del index
        return x

    def max_pool(self, x):
        return self._node([x])

    def avg_pool(self, x):
        return self._node([x])

    def concat(self, xs):
        return self._node(xs)


def _graph(num_mixed: int) -> tuple[_GraphOps, int]:
    ops = _GraphOps()
    out = _forward(ops, 0, num_mixed)
    return ops, out


def keras_layer_order(num_mixed: int = NUM_MIXED) -> tuple[list[int], list[int]]:
    """Creation indices of the Conv2D and of the BatchNormalization layers in the order Keras 3
    lists them in `model.layers` (`keras/src/ops/function.py` `map_graph`: depth-first traversal
    from the output assigns each layer an index on first visit; layers are sorted by decreasing
    depth -- longest path to the output -- then by that index)."""
    ops, out = _graph(num_mixed)
    index: dict[int, int] = {}
    done: set[int] = set()
    post: list[int] = []
    stack = [(out, False)]
    while stack:  # iterative form of keras' recursive `_build_map_helper`
        node, expanded = stack.pop()
        if expanded:
            if node not in done:
                done.add(node)
                post.append(node)
            continue
        if node in done:
            continue
        index.setdefault(node, len(index))
        stack.append((node, True))
        for parent in reversed(ops.inputs[node]):
            stack.append((parent, False))
    depth: dict[int, int] = {}
    for node in reversed(post):
        d = depth.setdefault(node, 0)
        for parent in ops.inputs[node]:
            depth[parent] = max(d + 1, depth.get(parent, 0))
    order = sorted(post, key=lambda n: (-depth[n], index[n]))
    return [ops.conv_of[n] for n in order if n in ops.conv_of], [ops.bn_of[n] for n in order if n in ops.bn_of]


def torchvision_conv_names(num_mixed: int = NUM_MIXED) -> list[str]:
    """torchvision `BasicConv2d` module prefixes (`Conv2d_1a_3x3`, `Mixed_5b.branch1x1`, ...) in
    creation order: entry i is our `conv2d_{i}` / `batch_normalization_{i}`."""
    return list(_graph(num_mixed)[0].torch_names)


def block_conv_indices(block: str, num_mixed: int = NUM_MIXED) -> list[int]:
    """Creation indices i of the conv/BN pairs (`conv2d_{i}`, `batch_normalization_{i}`) of one mixed
    block, named the torchvision way (`Mixed_7c`) or the Keras way (`mixed10`)."""
    names = [m[0] for m in MIXED]
    if block.startswith("mixed") and block[5:].isdigit() and int(block[5:]) < len(names):
        block = names[int(block[5:])]
    if block not in names[:num_mixed]:
        raise ValueError(f"no mixed block {block!r} among the {num_mixed} kept ({names[:num_mixed]})")
    return [i for i, n in enumerate(torchvision_conv_names(num_mixed)) if n.split(".")[0] == block]


def top_blocks_regex(num_blocks: int, num_mixed: int = NUM_MIXED, prefix: str = "backbone/") -> str:
    """A regex (`re.search`) matching exactly the parameters (and batch statistics) of the top
    `num_blocks` kept mixed blocks: their convolution kernels and BatchNorm parameters.

    `top_blocks_regex(2)` = the Keras fine-tuning guide's "top 2 inception blocks" (Keras `mixed9`,
    `mixed10` = torchvision `Mixed_7b`, `Mixed_7c`, everything after Keras layer 249): conv/BN
    pairs 76..93, i.e. `backbone/conv2d_76/kernel` ... `backbone/conv2d_93/kernel` and
    `backbone/batch_normalization_76/bias` ... `_93/bias` (+ `/scale` in the torchvision layout).
    """
    if not 1 <= num_blocks <= num_mixed:
        raise ValueError(f"num_blocks must be in 1..num_mixed={num_mixed}, got {num_blocks}")
    indices = [i for m in MIXED[num_mixed - num_blocks:num_mixed] for i in block_conv_indices(m[0], num_mixed)]
    return f"^{prefix}(conv2d|batch_normalization)_({'|'.join(map(str, indices))})/"


def freeze_regex(frozen_blocks: int, num_mixed: int = NUM_MIXED, prefix: str = "backbone/") -> str | None:
    """Regex over parameter paths selecting the first `frozen_blocks` blocks from the input (None for 0).

    Blocks in input order: 0 = the stem (the five convolutions before mixed0, conv/BN pairs 0..4),
    then mixed0 .. mixed{num_mixed-1}. `freeze_regex(num_mixed + 1)` is the whole backbone;
    `freeze_regex(k)` is the complement of `top_blocks_regex(num_mixed + 1 - k)` within the backbone.
    """
    if not 0 <= frozen_blocks <= num_mixed + 1:
        raise ValueError(f"frozen_blocks must be in 0..{num_mixed + 1} (stem + {num_mixed} mixed blocks), "
                         f"got {frozen_blocks}")
    if frozen_blocks == 0:
        return None
    indices = list(range(5)) + [i for m in MIXED[:frozen_blocks - 1] for i in block_conv_indices(m[0], num_mixed)]
    names = [keras_conv_name(i) for i in indices] + [keras_bn_name(i) for i in indices]
    return f"^{prefix}({'|'.join(names)})/"


class _FlaxOps:
    def __init__(self, module: "Inception", train: bool):
        self.module = module
        self.requested_train = train
        self.train = train and module.frozen_blocks <= 0  # block 0 (the stem) first
        self.count = 0

    def block_end(self, x, index):
        """After block `index`: the next block trains unless frozen; gradients stop after the last frozen one."""
        self.train = self.requested_train and index + 1 >= self.module.frozen_blocks
        return jax.lax.stop_gradient(x) if index == self.module.frozen_blocks - 1 else x

    def conv_bn(self, x, torch_name, filters, kernel, stride=1, padding="SAME"):
        m = self.module
        i = self.count
        self.count += 1
        x = nn.Conv(
            scaled_filters(filters, m.width),
            kernel,
            strides=(stride, stride),
            padding=padding,
            use_bias=False,
            kernel_init=KERNEL_INIT,
            dtype=m.dtype,
            param_dtype=jnp.float32,
            name=keras_conv_name(i),
        )(x)
        x = nn.BatchNorm(
            use_running_average=not self.train,
            momentum=BN_MOMENTUM[m.layout],
            epsilon=BN_EPSILON,
            use_scale=m.layout == "torchvision",
            dtype=m.dtype,
            param_dtype=jnp.float32,
            name=keras_bn_name(i),
        )(x)
        return nn.relu(x)

    def max_pool(self, x):
        # window_shape as a keyword and string padding: the forms jax2onnx exports (DESIGN.md).
        return nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="VALID")

    def avg_pool(self, x):
        if self.module.layout == "keras":
            return nn.avg_pool(x, window_shape=(3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)
        # count_include_pad=True == zero-pad explicitly, then a VALID pool (exports correctly to ONNX).
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return nn.avg_pool(x, window_shape=(3, 3), strides=(1, 1), padding="VALID")

    def concat(self, xs):
        return jnp.concatenate(xs, axis=-1)


def transform_input(x):
    """torchvision `Inception3._transform_input` on NHWC input (ImageNet mean/std normalised)."""
    scale = jnp.asarray([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], x.dtype)
    shift = jnp.asarray([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], x.dtype)
    return x * scale + shift


class Inception(nn.Module):
    """InceptionV3 feature extractor (see module docstring)."""

    layout: str = "keras"
    transform_input: bool = False
    num_mixed: int = NUM_MIXED
    width: float = 1.0
    dtype: Any = jnp.float32
    frozen_blocks: int = 0  # blocks (stem, mixed0, ...) run frozen from the input; see freeze_regex

    def keras_module_order(self) -> list[str]:
        """Our module names in Keras `model.layers` order (for Keras 3 `.weights.h5` files)."""
        conv_order, bn_order = keras_layer_order(self.num_mixed)
        return [keras_conv_name(i) for i in conv_order] + [keras_bn_name(i) for i in bn_order]

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not 0 <= self.num_mixed <= NUM_MIXED:
            raise ValueError(f"num_mixed must be in 0..{NUM_MIXED}, got {self.num_mixed}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if not 0 <= self.frozen_blocks <= self.num_mixed + 1:
            raise ValueError(f"frozen_blocks must be in 0..{self.num_mixed + 1}, got {self.frozen_blocks}")
        if self.transform_input and x.shape[-1] != 3:
            raise ValueError(f"transform_input (torchvision layout) is defined for RGB input, got {x.shape[-1]} channels")
        if min(x.shape[1:3]) < 75:
            raise ValueError(f"InceptionV3 needs inputs of at least 75x75 pixels, got {x.shape[1:3]}")
        if self.transform_input:
            x = transform_input(x.astype(jnp.float32))
        x = _forward(_FlaxOps(self, train), x.astype(self.dtype), self.num_mixed)
        return {"feature_map": x, "pooled": jnp.mean(x.astype(jnp.float32), axis=(1, 2))}
