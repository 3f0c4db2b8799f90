"""Train state and the pure step functions.

``train_step(state, batch, rng, *, model, tx, loss_config, frozen=()) -> (state, metrics)`` and
``eval_step(state, batch, *, model) -> outputs`` are pure: everything they depend on is an
argument, so the trainer jits them with explicit in/out shardings and donates the state. The
per-step dropout key is ``fold_in(rng, state.step)``, so a resumed run draws the same keys as an
uninterrupted one.

``frozen``: the parameter paths (``a/b/c``) the schedule freezes. The logged ``grad_norm`` counts
the other gradients only, so that nothing reads a frozen gradient and XLA drops its computation:
with a norm over every gradient, a frozen backbone's weight gradients are computed each step
anyway (the CG-IAA demo's fusion stage, four frozen expert towers, ran about 3x slower that way).

A batch with ``tokens`` (caption token ids, one caption per image) passes them to the model
(``model.apply(v, image, tokens=..., train=True)``): contrastive CLIP training uses the same step.
``critique_tokens`` (generated critiques, `datasets.CritiqueSource`) reach the model in training and
evaluation alike.

Batches hold raw uint8 pixels; the model normalises them itself (see ``models``), so the same
parameters are fed identically in training, evaluation, export and prediction.
"""

from __future__ import annotations

from typing import Any

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import optax

from aesthetics_jax import losses


#: Batch keys passed to the model as keyword arguments next to the image when present: caption
#: tokens (contrastive and caption training) and generated critiques' tokens (critique scoring).
MODEL_INPUTS = ("tokens", "critique_tokens")


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


@flax.struct.dataclass
class EvalState:
    """What `eval_step` reads: a trained model's variables without optimiser state."""

    params: Any
    batch_stats: Any


def create_state(model, tx, rng: jax.Array, image_shape, inputs=None) -> TrainState:
    """Initialise parameters on a dummy batch (jit this with out_shardings to place them).
    ``inputs``: ``{key: (shape, dtype)}`` of the model's other inputs (one example each), e.g. the
    generated critiques' tokens of a critique scorer."""
    params_rng, dropout_rng = jax.random.split(rng)
    images = jnp.zeros((1, *image_shape), jnp.uint8)
    extra = {k: jnp.zeros((1, *shape), dtype) for k, (shape, dtype) in (inputs or {}).items()}
    variables = model.init({"params": params_rng, "dropout": dropout_rng}, images, train=False, **extra)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
    )


def flatten_outputs(outputs: dict[str, Any]) -> dict[str, jax.Array]:
    """``{head: {key: x}}`` -> ``{"head.key": x}`` (feature maps are left out)."""
    flat = {}
    for head, values in outputs.items():
        if head == "features":
            continue
        for key, value in values.items():
            flat[f"{head}.{key}"] = value
    return flat


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, model, tx, loss_config, frozen=()):
    step_rng = jax.random.fold_in(rng, state.step)
    mask = batch.get("mask")
    # Model inputs beyond the image: caption tokens for contrastive models (`ContrastiveCLIP`).
    inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}

    def loss_fn(params):
        outputs, new_vars = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            batch["image"],
            train=True,
            rngs={"dropout": step_rng},
            **inputs,
            mutable=["batch_stats"],
        )
        loss, terms = losses.total_loss(outputs, batch, loss_config, mask=mask)
        return loss, (terms, new_vars.get("batch_stats", {}))

    (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    frozen = frozenset(frozen)
    trained = [g for path, g in traverse_util.flatten_dict(grads, sep="/").items() if path not in frozen]
    metrics = {"loss": loss, "grad_norm": optax.global_norm(trained), **{f"loss/{k}": v for k, v in terms.items()}}
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, metrics


def eval_step(state: TrainState | EvalState, batch: dict, *, model) -> dict[str, jax.Array]:
    # Inputs the model reads in evaluation too (generated critiques); caption tokens are train-only.
    inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch and key != "tokens"}
    outputs = model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False, **inputs
    )
    return flatten_outputs(outputs)
