"""Precise batch norm: batch-norm statistics recomputed over N training batches before evaluation.

During training a BatchNorm layer's running statistics are an exponential moving average
(``ra = momentum * ra + (1 - momentum) * batch_stat``, momentum 0.99 / 0.999 in our backbones) of
batch statistics computed with *earlier* parameters. At a high learning rate the weights move faster
than the average forgets, so the stored statistics lag the network: BENCHMARKS.md's demo section
measured eval-mode predictions with sd 0.05 against 0.7 in train mode at step 400 (an earlier
recipe; the current demo shows little lag: BENCHMARKS.md, "Precise batch norm"). "Precise BN"
(Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021; fvcore's ``update_bn_stats``) replaces the
moving average, just before an evaluation, by the statistics of the current (frozen) parameters:
the model runs in train mode (each BatchNorm normalises with its batch's statistics, exactly as in
a training step) over N batches, and every layer's running mean / variance become the population
statistics of its inputs over those N batches.

Statistic: the exact pooled moments over all N batches, i.e. over every example and spatial
position the layer saw (``mean = E[x]``, ``var = E[(x - mean)^2]``, biased like flax's batch
variance). Per batch b we compute the layer input's mean ``m_b`` and (two-pass) variance ``v_b``
over its ``n_b`` values on device; the host pools them in float64:
``mean = sum(n_b m_b) / n``, ``var = sum(n_b (v_b + m_b^2)) / n - mean^2``. fvcore instead
averages the per-batch variances, which leaves out the spread of the batch means
(``var - mean(v_b)`` = the variance of the ``m_b``, about ``var / (B*H*W)`` for independent
positions): the pooled variance is the variance of the data evaluation feeds the layer.

How: a flax method interceptor (``nn.intercept_methods``) sees every ``nn.BatchNorm.__call__`` (of any
backbone, whatever its momentum, however nested) and, when that call normalises with batch
statistics, ``sow``s the moments of its input; nothing in the models changes. Layers that run in
inference mode even in train mode (the blocks a schedule freezes, ``frozen_blocks``) keep their
stored statistics, as training does; a model without BatchNorm (CLIP, cgiaa) has empty
``batch_stats`` and is returned unchanged without reading any data. The moments function is jitted
with the trainer's shardings (batch split over the mesh): as in ``steps.train_step``, BN reduces
over the *global* batch (jit SPMD semantics, no ``axis_name``), so the statistics are the same on 1
or 8 devices.

Trainer (``config.precise_bn = N``, 0 or absent = off; ``for_evaluation``): before every
evaluation (mid-run and final) the statistics are recomputed from a SEPARATE train-mode iterator
(seed ``config.seed + SEED_OFFSET``, made afresh each time, so each evaluation sees the same N
batches) and the evaluation reads a copy of the state. The training stream is untouched: the
training iterator is never read, the mid-run train state and its checkpoints keep the moving
averages the next training steps update, so a run with the option trains to bit-identical
parameters as one without, and a killed run still resumes exactly. The FINAL checkpoint stores the
recomputed statistics (training is over, nothing updates the moving averages any more), so the
model that export / predict / ``evaluate`` read from the workdir is the model whose metrics the run
reported. Caveat: a mid-run checkpoint holds the moving averages, while the metrics saved with it
(and the best-checkpoint choice) were measured with recomputed statistics. Recomputing is
idempotent: train-mode BN does not read the stored statistics, so a run resumed after its final
checkpoint reports the same numbers.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aesthetics_jax.data import datasets, pipeline
from aesthetics_jax.train import sharding, steps

#: Added to ``config.seed`` for the iterator of the batches the statistics are computed on: it
#: shuffles and augments differently from the training iterator (seed ``config.seed``) and is
#: never the training iterator itself.
SEED_OFFSET = 7919

_COLLECTION = "precise_bn_moments"


def _bn_interceptor(next_fun, args, kwargs, context):
    """Records (mean, var, count) of the input of every BatchNorm call that uses batch statistics."""
    module = context.module
    if not (isinstance(module, nn.BatchNorm) and context.method_name == "__call__") or module.is_initializing():
        return next_fun(*args, **kwargs)
    x = args[0] if args else kwargs["x"]
    use_running_average = args[1] if len(args) > 1 else kwargs.get("use_running_average")
    use_running_average = nn.merge_param("use_running_average", module.use_running_average, use_running_average)
    if not use_running_average:
        if kwargs.get("mask") is not None:
            raise ValueError(f"precise_bn: BatchNorm {'/'.join(module.scope.path)} is called with a mask; "
                             "masked statistics are not supported")
        if module.axis_name is not None:
            raise ValueError(f"precise_bn: BatchNorm {'/'.join(module.scope.path)} has axis_name "
                             f"{module.axis_name!r}; only jit (SPMD) batch statistics are supported")
        axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
        feature_axes = {a % x.ndim for a in axis}
        reduce = tuple(i for i in range(x.ndim) if i not in feature_axes)
        xf = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
        mean = xf.mean(reduce)
        var = jnp.square(xf - xf.mean(reduce, keepdims=True)).mean(reduce)
        count = jnp.asarray(np.prod([x.shape[i] for i in reduce]), jnp.float32)
        module.sow(_COLLECTION, "moments", (mean, var, count))
    return next_fun(*args, **kwargs)


def batch_moments(params, batch_stats, inputs: dict, rng, *, model) -> dict:
    """Pure: one train-mode forward pass with frozen ``params``; for every BatchNorm layer that
    normalised with batch statistics, ``{layer path: (mean, var, count)}`` of its input (a layer
    called k times has k entries in each). Parameters and the stored statistics are not changed
    (the updated moving averages the forward pass produces are dropped).

    ``inputs``: ``image`` and any of ``steps.MODEL_INPUTS``; ``rng``: the dropout key (train mode).
    """
    extra = {k: inputs[k] for k in steps.MODEL_INPUTS if k in inputs}
    with nn.intercept_methods(_bn_interceptor):
        _, new_vars = model.apply({"params": params, "batch_stats": batch_stats}, inputs["image"], train=True,
                                  rngs={"dropout": rng}, mutable=["batch_stats", _COLLECTION], **extra)
    flat = traverse_util.flatten_dict(new_vars.get(_COLLECTION, {}))
    out = {}
    for key, calls in flat.items():  # key = (*layer path, "moments"), calls = ((mean, var, count), ...)
        out["/".join(key[:-1])] = tuple(calls)
    return out


def recompute(model, params, batch_stats, batches: Iterable[dict], *, rng, num_batches: int,
              mesh=None, moments_fn=None) -> Any:
    """``batch_stats`` with the running mean / var of every BatchNorm that runs in train mode
    replaced by the pooled statistics of its inputs over ``num_batches`` batches of ``batches``
    (module docstring); other entries are returned as they are. Pure in effect: ``params`` and
    ``batch_stats`` are not modified (new arrays are returned, placed like ``batch_stats``).

    ``mesh``: when given, batches are split over it like training batches (``sharding.put_batch``).
    ``moments_fn``: a jitted ``batch_moments`` to reuse across calls (else one is made here).
    Raises if ``batches`` ends before ``num_batches``.
    """
    if num_batches < 1:
        raise ValueError(f"precise_bn: the number of batches must be >= 1, got {num_batches}")
    if not jax.tree.leaves(batch_stats):
        return batch_stats  # no BatchNorm in the model: nothing to recompute
    if moments_fn is None:
        moments_fn = jax.jit(functools.partial(batch_moments, model=model))
    sums: dict[str, list] = {}  # layer path -> [n, sum n_b m_b, sum n_b (v_b + m_b^2)] in float64
    it = iter(batches)
    for i in range(num_batches):
        try:
            batch = next(it)
        except StopIteration:
            raise ValueError(f"precise_bn: the data ended after {i} of {num_batches} batches") from None
        batch = {k: v for k, v in batch.items() if k == "image" or k in steps.MODEL_INPUTS}
        if mesh is not None:
            batch = sharding.put_batch(batch, mesh)
        moments = jax.device_get(moments_fn(params, batch_stats, batch, jax.random.fold_in(rng, i)))
        for path, calls in moments.items():
            acc = sums.setdefault(path, [0.0, 0.0, 0.0])
            for mean, var, count in calls:
                mean, var, count = np.float64(mean), np.float64(var), float(count)
                acc[0] += count
                acc[1] = acc[1] + count * mean
                acc[2] = acc[2] + count * (var + mean * mean)

    flat = traverse_util.flatten_dict(batch_stats)
    for path, (n, s1, s2) in sums.items():
        key = tuple(path.split("/"))
        if key + ("mean",) not in flat or key + ("var",) not in flat:
            raise ValueError(f"precise_bn: BatchNorm {path} has no mean/var in batch_stats")
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        for name, value in (("mean", mean), ("var", var)):
            old = flat[key + (name,)]
            value = np.asarray(value, old.dtype).reshape(old.shape)
            # Placed like the statistics they replace (the train state's sharding in the trainer).
            flat[key + (name,)] = jax.device_put(value, old.sharding) if isinstance(old, jax.Array) else value
    return traverse_util.unflatten_dict(flat)


class PreciseBN:
    """The trainer's helper for ``config.precise_bn = N``: ``for_evaluation(state)`` returns the
    state evaluation should read (module docstring). Off (N = 0 or absent) or for a model without
    BatchNorm it returns ``state`` itself and reads no data.

    ``make_batches()`` returns a fresh iterable of training-mode batches (the trainer passes a
    train-mode iterator over the training split, seed ``config.seed + SEED_OFFSET``, never the
    training iterator).
    """

    def __init__(self, config, model, mesh, make_batches):
        n = config.get("precise_bn", 0) or 0
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"config.precise_bn must be a number of batches >= 0 (0 = off), got {n!r}")
        self.num_batches = int(n)
        self.model = model
        self.mesh = mesh
        self.make_batches = make_batches
        self.rng = jax.random.fold_in(jax.random.key(config.seed), SEED_OFFSET)
        out = {} if mesh is None else {"out_shardings": sharding.replicated(mesh)}  # every host reads them
        self._moments_fn = jax.jit(functools.partial(batch_moments, model=model), **out)

    def for_evaluation(self, state):
        """``state`` with recomputed BN statistics (a new state; ``state`` is not modified)."""
        if not self.num_batches or not jax.tree.leaves(state.batch_stats):
            return state
        stats = recompute(self.model, state.params, state.batch_stats, self.make_batches(), rng=self.rng,
                          num_batches=self.num_batches, mesh=self.mesh, moments_fn=self._moments_fn)
        return state.replace(batch_stats=stats)

    @classmethod
    def for_trainer(cls, config, model, mesh, train_source) -> "PreciseBN":
        """The trainer's instance: batches of ``config.batch_size`` (global, split over ``mesh`` and
        the hosts like training batches) from a fresh train-mode iterator over ``train_source``
        with seed ``config.seed + SEED_OFFSET`` (same crops, flips and order at every evaluation)."""
        data = config.data

        def make_batches():
            return pipeline.make_iterator(
                train_source,
                train=True,
                batch_size=sharding.local_batch_size(config.batch_size, mesh),
                image_size=data.image_size,
                resize_size=data.resize_size,
                seed=config.seed + SEED_OFFSET,
                shard_index=jax.process_index(),
                shard_count=jax.process_count(),
                num_threads=data.get("num_threads", 4),
                keys=datasets.label_keys(train_source),
                text_transform=datasets.text_transform(train_source, data),
            )

        return cls(config, model, mesh, make_batches)
