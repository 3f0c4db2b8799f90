"""``train_and_evaluate(config, workdir)``: the one training loop.

Flow: prepare the dataset (idempotent) → mesh → model + optimiser → train state (restored from
``WORKDIR/checkpoints`` when one exists, else initialised, optionally from another run's params) →
loop of jitted ``train_step`` with periodic logging, evaluation and checkpointing → final
checkpoint and evaluations that write metrics JSON, predictions CSV and plots into
``WORKDIR/eval``.

A run killed at any point and started again with the same command resumes from its latest
checkpoint, including the data iterator position, and ends with the same parameters as an
uninterrupted run (``tests/test_trainer.py`` checks this).
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import traverse_util
from jax.experimental import multihost_utils

from aesthetics_jax import models, provenance
from aesthetics_jax.data import datasets, pipeline
from aesthetics_jax.convert import clip as clip_convert
from aesthetics_jax.evaluate import get_evaluator
from aesthetics_jax.models import clip as clip_model
from aesthetics_jax.train import checkpointing, distributed, optimizer, precise_bn, sharding, steps, writers


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


#: ``config.task`` values: "aesthetic" = an `AestheticsModel` (backbone + heads) trained on labels;
#: "contrastive" = a `ContrastiveCLIP` (both towers) trained on image-caption pairs; "caption" = a
#: `clipcap.ClipCapCaptioner` (CLIP image tower + ClipCap expert) trained on caption tokens.
TASKS = ("aesthetic", "contrastive", "caption")


def _task(config) -> str:
    task = config.get("task", "aesthetic")
    if task not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {task!r}")
    return task


def _create_model(config):
    cfg = config.model.to_dict() if hasattr(config.model, "to_dict") else dict(config.model)
    name = cfg.pop("name")
    dtype = cfg.pop("dtype", "float32")
    if _task(config) == "contrastive":
        if name != "clip":
            raise ValueError(f"task 'contrastive' trains a CLIP (config.model.name 'clip'), not {name!r}")
        return clip_model.create_contrastive(dtype=jnp.dtype(dtype), **cfg)
    if _task(config) == "caption":
        if name != "clipcap":
            raise ValueError(f"task 'caption' trains a ClipCap captioner (config.model.name 'clipcap'), not {name!r}")
        from aesthetics_jax.models import clipcap  # pylint: disable=g-import-not-at-top

        return clipcap.ClipCapCaptioner(dtype=jnp.dtype(dtype), **cfg)
    return models.create(name, dtype=jnp.dtype(dtype), **cfg)


def _init_inputs(config) -> dict:
    """The model inputs besides the image that initialisation needs, ``{key: (shape, dtype)}``:
    generated critiques' tokens when ``config.data.critiques`` names a file."""
    critiques = config.data.get("critiques") or {}
    if not critiques.get("path"):
        return {}
    shape = (len(tuple(critiques.get("attributes") or ())), int(critiques.get("context_length", 77)))
    return {"critique_tokens": (shape, jnp.int32)}


def _init_sources(init_cfg) -> tuple[list[dict], list[str]]:
    """``config.init_from`` as ``(sources, dont_load)``, each source ``{workdir, step, rename}``.

    The single-source form ``{workdir, step, dont_load}`` is one source without ``rename``; the
    multi-source form is ``{sources: [{workdir, step, rename}, ...], dont_load}``.
    """
    cfg = init_cfg.to_dict() if hasattr(init_cfg, "to_dict") else dict(init_cfg)
    dont_load = list(cfg.get("dont_load") or [])
    if cfg.get("sources"):
        if cfg.get("workdir"):
            raise ValueError("config.init_from: give either workdir or sources, not both")
        sources = [dict(src) for src in cfg["sources"]]
    else:
        sources = [dict(workdir=cfg["workdir"], step=cfg.get("step", -1))]
    for i, src in enumerate(sources):
        unknown = sorted(set(src) - {"workdir", "step", "rename"})
        if unknown or not src.get("workdir"):
            raise ValueError(f"config.init_from source {i}: needs workdir (and optionally step, rename); "
                             f"unknown field(s) {unknown}")
        src["rename"] = [tuple(pair) for pair in (src.get("rename") or [])]
    return sources, dont_load


def _load_source(src) -> dict:
    """``{'params', 'batch_stats'}`` of one init source: a training workdir (its checkpoint ``step``,
    -1 = latest), a model bundle (checked against its sha256 manifest first; critique experts under
    ``critics/clip/...`` and ``critics/experts/<attribute>/...``), a CLIP conversion directory
    (``aesthetics-jax convert ... --arch clip``: the whole CLIP, ``visual/``, ``text/``,
    ``logit_scale``) or a transformers GPT-2 directory (``gpt/...``)."""
    from aesthetics_jax.export import bundle as bundle_lib

    from aesthetics_jax.convert import gpt2 as gpt2_convert  # pylint: disable=g-import-not-at-top

    path, step = src["workdir"], src.get("step", -1)
    if bundle_lib.is_bundle(path):
        bundle = bundle_lib.load(path)
        variables = dict(bundle.variables)
        if bundle.critics is not None:  # critique experts: params critics/clip/..., critics/experts/<attr>/...
            from aesthetics_jax.critique import critic  # pylint: disable=g-import-not-at-top

            variables["params"] = {**variables["params"], "critics": critic.unflatten(bundle.critics["arrays"])}
        return variables
    if gpt2_convert.is_pretrained_dir(path):  # a transformers GPT-2 directory: params gpt/...
        return {"params": {"gpt": gpt2_convert.load_pretrained(path)[0]}, "batch_stats": {}}
    if clip_convert.is_conversion(path):
        return {"params": clip_convert.load_conversion(path)[1], "batch_stats": {}}
    return checkpointing.restore_variables(os.path.join(path, "checkpoints"),
                                           None if step is None or step < 0 else step)[0]


def _renamed(flat: dict, rename: list[tuple[str, str]], where: str) -> dict:
    """Source paths -> target paths: each ``(regex, replacement)`` of ``rename`` is tried in order
    (``re.sub`` on the '/'-joined path, first match wins); with a ``rename`` list, source entries
    no pattern matches are not taken from this source."""
    if not rename:
        return flat
    out = {}
    for key, value in flat.items():
        path = "/".join(key)
        for pattern, replacement in rename:
            if re.search(pattern, path):
                new = tuple(re.sub(pattern, replacement, path, count=1).split("/"))
                if new in out:
                    raise ValueError(f"init_from {where}: two source entries map to {'/'.join(new)}")
                out[new] = value
                break
    return out


def _merge_init(state: steps.TrainState, init_cfg) -> steps.TrainState:
    """Loads params/batch stats of other runs into ``state`` (strict, with ``dont_load``).

    Sources (``_init_sources``): training workdirs, model bundles or CLIP conversion directories,
    each with an optional ``rename`` list of ``(regex, replacement)`` mapping its parameter paths
    onto the model's (e.g. ``("^visual/", "backbone/base/")`` puts a VLAP CLIP's image tower into a
    `cgiaa` fusion model). Every model parameter must come from exactly one source unless a
    ``dont_load`` regex names it (then it keeps its initial value), and every source entry taken
    must land on a model parameter. A 3-channel input convolution loaded into a model that takes
    more channels (RGB + a modality map) is widened by ``models.extend_input_kernel`` (each new
    channel = the mean of the RGB kernels); any other shape difference is an error.
    """
    sources, dont_load = _init_sources(init_cfg)
    dont_load = [re.compile(p) for p in dont_load]
    loaded = []
    for src in sources:
        variables = _load_source(src)
        loaded.append({what: _renamed(traverse_util.flatten_dict(variables.get(what) or {}), src["rename"],
                                      f"{src['workdir']} {what}")
                       for what in ("params", "batch_stats")})
    names = ", ".join(src["workdir"] for src in sources)

    def merge(target, what):
        flat_t = traverse_util.flatten_dict(target)
        missing, out, taken = [], {}, set()
        for key, value in flat_t.items():
            path = "/".join(key)
            if any(p.search(path) for p in dont_load):
                out[key] = value
                continue
            hits = [i for i, flat in enumerate(loaded) if key in flat[what]]
            if not hits:
                missing.append(path)
                continue
            if len(hits) > 1:
                raise ValueError(f"init_from: {what} {path} is in more than one source "
                                 f"({', '.join(sources[i]['workdir'] for i in hits)}); narrow their rename lists")
            saved = loaded[hits[0]][what][key]
            taken.add((hits[0], key))
            if _input_kernel(saved.shape, value.shape):  # RGB kernel -> RGB + map input
                out[key] = models.extend_input_kernel(saved, value.shape[2]).astype(value.dtype)
                logging.info("init_from: %s extended from %d to %d input channels (mean of the RGB kernels)",
                             path, saved.shape[2], value.shape[2])
            elif tuple(saved.shape) != tuple(value.shape):
                raise ValueError(f"init_from {what} {path}: shape {saved.shape} in the checkpoint, "
                                 f"{value.shape} in the model")
            else:
                out[key] = jnp.asarray(saved, value.dtype)
        unused = ["/".join(k) for i, flat in enumerate(loaded) for k in flat[what]
                  if (i, k) not in taken and not any(p.search("/".join(k)) for p in dont_load)]
        if missing or unused:
            raise ValueError(
                f"init_from {names}: {what} missing from the checkpoint {missing[:10]}, "
                f"unused checkpoint {what} {unused[:10]} (list them in init_from.dont_load, or map them "
                "with a source's rename)"
            )
        return traverse_util.unflatten_dict(out)

    return state.replace(params=merge(state.params, "params"), batch_stats=merge(state.batch_stats, "batch_stats"))


def _input_kernel(saved: tuple, wanted: tuple) -> bool:
    """Whether a checkpoint conv kernel of shape `saved` is a 3-channel input kernel that the model
    (`wanted`) takes with extra input channels: same spatial size and filters, 3 -> more inputs."""
    return (len(saved) == 4 and len(wanted) == 4 and saved[2] == 3 and wanted[2] > 3
            and tuple(saved[:2]) == tuple(wanted[:2]) and saved[3] == wanted[3])


class _Predictor:
    """Runs a jitted ``eval_step`` over a split: pads the last batch, gathers, unpads."""

    def __init__(self, model, mesh, config):
        self.model = model
        self.mesh = mesh
        self.config = config
        self.batch_size = config.get("eval_batch_size") or config.batch_size
        self.local_batch_size = sharding.local_batch_size(self.batch_size, mesh)
        self._step = jax.jit(
            functools.partial(steps.eval_step, model=model),
            out_shardings=sharding.replicated(mesh),
        )

    def __call__(self, state, source):
        """``(predictions, labels)`` of every example of ``source``, in source order."""
        data = self.config.data
        it = pipeline.make_iterator(
            source,
            train=False,
            batch_size=self.local_batch_size,
            image_size=data.image_size,
            resize_size=data.resize_size,
            seed=0,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
            num_threads=data.get("num_threads", 4),
            pad_remainder=True,
            keys=datasets.label_keys(source),
            eval_transform=data.get("eval_transform"),
        )
        preds, targets = [], []
        for batch in it:
            keep = batch["mask"]
            image = sharding.put_batch({k: batch[k] for k in ("image", "critique_tokens") if k in batch}, self.mesh)
            out = jax.device_get(self._step(state, image))  # replicated: the global batch
            labels = {k: v for k, v in batch.items() if k not in ("image", "mask")}
            if jax.process_count() > 1:  # every host pads to the same number of batches
                keep, labels = multihost_utils.process_allgather((keep, labels), tiled=True)
            preds.append({k: np.asarray(v)[keep] for k, v in out.items()})
            targets.append({k: np.asarray(v)[keep] for k, v in labels.items()})
        cat = lambda rows: {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
        return cat(preds), cat(targets)


def evaluate(state, predictor, sources, config, workdir, *, final: bool) -> dict[str, float]:
    """Runs every ``config.evals`` entry due now; returns ``{"<name>/<metric>": value}``."""
    results = {}
    heads = config.model.get("heads") or {}
    heads = heads.to_dict() if hasattr(heads, "to_dict") else dict(heads)
    outdir = os.path.join(workdir, "eval")
    for name, ev in config.evals.items():
        preds, targets = predictor(state, sources[ev.split])
        evaluator = get_evaluator(ev.type)
        # An evaluator that needs more than one split's predictions (e.g. `patches`: the full images
        # beside the patches) says so with `inputs(...)`, returning extra keyword arguments of `run`.
        extra = {}
        if hasattr(evaluator, "inputs"):
            extra = evaluator.inputs(ev, source=sources[ev.split], predict=functools.partial(predictor, state),
                                     data_config=config.data, heads=heads, final=final, model=predictor.model,
                                     variables={"params": state.params, "batch_stats": state.batch_stats})
        metrics = evaluator.run(
            predictions=preds,
            targets=targets,
            ids=targets["id"],
            outdir=outdir,
            prefix=name,
            heads=heads,
            write_files=final and jax.process_index() == 0,
            plots=final and ev.get("plots", True),
            **extra,
        )
        results.update({f"{name}/{k}": v for k, v in metrics.items()})
    return results


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint) and evaluates it."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    recorder = provenance.Recorder(workdir, active=is_main)  # provenance.json; its clock starts here
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    # Data. Process 0 builds the dataset first (on a shared filesystem the others then find it
    # built; on per-host disks each host builds its own copy afterwards), never two at once.
    prepared = datasets.prepare(config.data) if is_main else None
    if jax.process_count() > 1:
        distributed.barrier("dataset prepared")
        if prepared is None:
            prepared = datasets.prepare(config.data)
    sources = {split: datasets.source(prepared, split, config.data) for split in datasets.splits(prepared)}
    train_source = sources[config.data.train_split]
    steps_per_epoch = max(len(train_source) // config.batch_size, 1)
    total_steps = config.get("total_steps") or int(config.num_epochs * steps_per_epoch)
    logging.info("train examples %d, %d steps/epoch, %d total steps", len(train_source), steps_per_epoch, total_steps)

    # Model, optimiser, mesh, state.
    mesh = sharding.make_mesh(config.get("fsdp", 1))
    model = _create_model(config)
    image_shape = (config.data.image_size, config.data.image_size, datasets.input_channels(config.data))
    rng = jax.random.key(config.seed)
    init_rng, train_rng = jax.random.split(rng)
    init_inputs = _init_inputs(config)
    abstract_params = jax.eval_shape(
        lambda r: steps.create_state(model, optax.identity(), r, image_shape, init_inputs).params, init_rng)
    tx, schedules = optimizer.make_optimizer(config, abstract_params, total_steps)
    frozen = optimizer.frozen_for_run(abstract_params, config)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params))
    logging.info("model %s: %d parameters, %d tensors frozen", config.model.name, n_params, len(frozen))

    abstract_state = jax.eval_shape(functools.partial(steps.create_state, model, tx, image_shape=image_shape,
                                                      inputs=init_inputs), init_rng)
    state_sharding = sharding.state_shardings(mesh, abstract_state)
    train_step = jax.jit(
        functools.partial(steps.train_step, model=model, tx=tx, loss_config=config.losses.to_dict(), frozen=frozenset(frozen)),
        in_shardings=(state_sharding, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )

    local_bs = sharding.local_batch_size(config.batch_size, mesh)
    train_iter = pipeline.make_iterator(
        train_source,
        train=True,
        batch_size=local_bs,
        image_size=config.data.image_size,
        resize_size=config.data.resize_size,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        num_threads=config.data.get("num_threads", 4),
        num_workers=config.data.get("num_workers", 0),
        keys=datasets.label_keys(train_source),
        text_transform=datasets.text_transform(train_source, config.data),
    )
    # Only the model inputs and the loss targets go to the devices (ids etc. stay on the host).
    device_keys = {"image", *steps.MODEL_INPUTS} | {
        term["target"] for term in config.losses.to_dict().values() if "target" in term}

    ckpt = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep=config.get("keep_ckpts", 2),
        best_metric=config.get("best_metric"),
        best_mode=config.get("best_mode", "max"),
        async_save=config.get("async_checkpointing", True),
    )
    if ckpt.latest_step() is not None:
        target = jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract_state, state_sharding
        )
        state = ckpt.restore(target, train_iter)  # every process: its own iterator position
        if is_main:
            print(f"resuming from step {int(state.step)}", flush=True)
    else:
        state = jax.jit(
            functools.partial(steps.create_state, model, tx, image_shape=image_shape, inputs=init_inputs),
            out_shardings=state_sharding,
        )(init_rng)
        if config.get("init_from") and (config.init_from.get("workdir") or config.init_from.get("sources")):
            state = jax.device_put(_merge_init(state, config.init_from), state_sharding)
            if is_main:
                print("initialised params from " + ", ".join(src["workdir"] for src in _init_sources(config.init_from)[0]),
                      flush=True)

    start_step = int(jax.device_get(state.step))
    recorder.start(json.loads(config.to_json_best_effort()),
                   provenance.data(prepared, {split: len(src) for split, src in sources.items()}), step=start_step)
    writer = writers.create_default_writer(workdir, active=is_main)
    predictor = _Predictor(model, mesh, config)
    precise = precise_bn.PreciseBN.for_trainer(config, model, mesh, train_source)  # config.precise_bn
    log_every = config.get("log_every", 50)
    ckpt_every = config.get("ckpt_every", 500)
    eval_every = config.get("eval_every", 0)

    # Training loop.
    acc, acc_n = {}, 0
    t_last, step_last = None, start_step
    t_start = time.time()
    for step in range(start_step + 1, total_steps + 1):
        batch = sharding.put_batch({k: v for k, v in next(train_iter).items() if k in device_keys}, mesh)
        state, metrics = train_step(state, batch, train_rng)
        for k, v in metrics.items():
            acc[k] = acc.get(k, 0.0) + v
        acc_n += 1
        if t_last is None:  # First step done (compilation included): start the clock now.
            jax.block_until_ready(metrics)
            t_last, step_last, acc, acc_n = time.time(), step, {}, 0
            logging.info("first step compiled and ran in %.1fs", t_last - t_start)
            recorder.first_step()
            if is_main:
                print(f"step {step}/{total_steps} (compiled in {t_last - t_start:.1f}s)", flush=True)

        if acc_n and (step % log_every == 0 or step == total_steps):
            scalars = {k: float(v) / acc_n for k, v in jax.device_get(acc).items()}
            now = time.time()
            img_s = (step - step_last) * config.batch_size / max(now - t_last, 1e-9)
            eta = (total_steps - step) * config.batch_size / max(img_s, 1e-9)
            for name, fn in schedules.items():
                scalars[f"lr/group{name}"] = float(fn(step))
            scalars["img_per_sec"] = img_s
            writer.write_scalars(step, scalars)
            if is_main:
                print(
                    f"step {step}/{total_steps} | loss {scalars['loss']:.4f} | {img_s:.1f} img/s | "
                    f"ETA {_format_duration(eta)}",
                    flush=True,
                )
            acc, acc_n, t_last, step_last = {}, 0, now, step

        eval_metrics = None
        if eval_every and step % eval_every == 0 and step != total_steps:
            # A copy with recomputed BN statistics when config.precise_bn (training keeps its own).
            eval_metrics = evaluate(precise.for_evaluation(state), predictor, sources, config, workdir, final=False)
            writer.write_scalars(step, eval_metrics)
            t_last = time.time()  # Keep evaluation time out of img/s.
        if step % ckpt_every == 0 and step != total_steps:
            ckpt.save(step, state, train_iter, metrics=eval_metrics)
            recorder.update(step)

    # Final evaluation and checkpoint (with config.precise_bn, both hold the recomputed BN statistics).
    state = precise.for_evaluation(state)
    results = evaluate(state, predictor, sources, config, workdir, final=True)
    writer.write_scalars(total_steps, results)
    if ckpt.latest_step() != total_steps:
        ckpt.save(total_steps, state, train_iter, metrics=results, force=True)
    ckpt.close()
    writer.close()
    recorder.finish(total_steps)
    if is_main:
        final_path = os.path.join(workdir, "eval", "final_metrics.json")
        os.makedirs(os.path.dirname(final_path), exist_ok=True)  # also when config.evals is empty
        with open(final_path, "w") as f:
            json.dump({"step": total_steps, **{k: v if np.isfinite(v) else None for k, v in results.items()}}, f, indent=2)
        _print_report(results, workdir, config, ckpt.directory, final_path)
    return results


def _print_report(results, workdir, config, ckpt_dir, final_path):
    from aesthetics_jax.evaluate.aesthetic import format_table

    evaldir = os.path.join(workdir, "eval")
    lines = ["", format_table(results), "", "artefacts:"]
    lines.append(f"  checkpoints      {ckpt_dir}")
    lines.append(f"  tensorboard      {os.path.join(workdir, 'tensorboard')}   (tensorboard --logdir {workdir})")
    lines.append(f"  metrics log      {os.path.join(workdir, 'metrics.jsonl')}")
    lines.append(f"  final metrics    {final_path}")
    for name, ev in config.evals.items():
        lines.append(f"  {name} metrics     {os.path.join(evaldir, name + '_metrics.json')}")
        if ev.type == "retrieval":
            lines.append(f"  {name} rankings    {os.path.join(evaldir, name + '_retrieval.csv')}")
            continue
        if ev.type == "critique":
            lines.append(f"  {name} critiques   {os.path.join(evaldir, name + '_critiques.csv')}")
            continue
        lines.append(f"  {name} predictions {os.path.join(evaldir, name + '_predictions.csv')}")
        if ev.type == "patches":
            lines.append(f"  {name} table       {os.path.join(evaldir, name + '_table.md')}, "
                         f"{os.path.join(evaldir, name + '_table.json')}")
        if ev.get("plots", True):
            plots = ("scatter",) if ev.type == "patches" else ("scatter", "hist")
            lines.append(f"  {name} plots       " + ", ".join(os.path.join(evaldir, f"{name}_{kind}.png")
                                                            for kind in plots))
    print("\n".join(lines), flush=True)
