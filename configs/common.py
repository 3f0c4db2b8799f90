"""Building blocks shared by the experiment configs (data, model, loss and eval sections)."""

from __future__ import annotations

import os

import ml_collections


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """``"smoke,stage1"`` -> ``{"smoke", "stage1"}``; unknown names are an error."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(known)
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; known: {list(known)}")
    return variants


def default_data_dir() -> str:
    return os.environ.get("AESTHETICS_JAX_DATA", os.path.expanduser("~/aesthetics_jax_data"))


def ava_data() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="ava",
        manual_dir="",  # the AVA directory (AVA.txt, images/, aesthetics_image_lists/)
        data_dir=default_data_dir(),  # where the TFDS array_record build goes
        train_split="train",
        val_fraction=0.05,
        split_seed=0,
        image_size=224,
        resize_size=256,
        num_threads=4,  # grain read threads (decode in parallel; OpenCV releases the GIL)
        num_workers=0,  # > 0: batches built in that many processes (grain mp_prefetch)
    ))


def demo_data(versions_per_photo: int) -> ml_collections.ConfigDict:
    c = ava_data()
    c.name = "demo"
    # first_version / first_id: a later render of the same photos (`demo.build_demo_ava`).
    c.demo = ml_collections.ConfigDict(dict(seed=0, versions_per_photo=versions_per_photo, first_version=0,
                                            first_id=100000))
    return c


def nima_model(name: str, width: float, dropout: float) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name=name,
        width=width,
        dropout=dropout,
        dtype="float32",  # "bfloat16": bf16 compute, fp32 params
        heads=dict(emd=dict(type="emd", num_bins=10)),
    ))


def emd_losses(r: int = 2) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        emd=dict(type="emd", output="emd.distribution", target="distribution", weight=1.0, r=r),
    ))


def evals(val_split: str, test_split: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        val=dict(type="aesthetic", split=val_split, plots=False),
        test=dict(type="aesthetic", split=test_split, plots=True),
    ))


def make_smoke(c: ml_collections.ConfigDict) -> None:
    """Shrinks a config to run in seconds on CPU (8 simulated devices included)."""
    c.data.image_size = 32
    c.data.resize_size = 36
    c.data.num_threads = 2
    if c.data.name == "demo":
        c.data.demo.versions_per_photo = 3
        c.data.demo.image_size = 48
    c.model.width = 0.25
    c.batch_size = 8
    c.eval_batch_size = 8
    c.total_steps = 6
    c.log_every = 2
    c.eval_every = 3
    c.ckpt_every = 2
    c.schedule = [(p, dict(s, warmup_steps=1) if s is not None else None) for p, s in c.schedule]


def distribution_aware_losses(r: int = 2, mean_weight: float = 0.1, sd_weight: float = 0.1) -> ml_collections.ConfigDict:
    """EMD (r) + mean_weight * MSE(mean) + sd_weight * MSE(sd) of the score distributions, one term
    (`losses.distribution_aware`; the defaults and why are in its docstring). Any EMD-head config
    can use it in place of `emd_losses`."""
    return ml_collections.ConfigDict(dict(
        emd=dict(type="distribution_aware", output="emd.distribution", target="distribution", weight=1.0, r=r,
                 mean_weight=mean_weight, sd_weight=sd_weight),
    ))


def parse_options(arg: str | None, flags: tuple[str, ...], options: dict[str, tuple[str, ...] | type]
                  ) -> tuple[set[str], dict[str, object]]:
    """``"blur,inception,freeze=4"`` -> ({"blur", "inception"}, {"freeze": 4}).

    `flags` are the bare names allowed; `options` maps a ``key=value`` key to its allowed values
    (a tuple) or to a type (int, float) the value is converted to. Unknown names are an error.
    """
    names, values = set(), {}
    for token in (t.strip() for t in (arg or "").split(",")):
        if not token:
            continue
        key, sep, value = token.partition("=")
        if not sep:
            if token not in flags:
                raise ValueError(f"unknown config variant {token!r}; known: {list(flags)} and "
                                 f"{[k + '=...' for k in options]}")
            names.add(token)
            continue
        if key not in options:
            raise ValueError(f"unknown config option {key!r}; known: {list(options)}")
        allowed = options[key]
        if isinstance(allowed, tuple):
            if value not in allowed:
                raise ValueError(f"config option {key}={value!r}: must be one of {list(allowed)}")
            values[key] = value
        else:
            try:
                values[key] = allowed(value)
            except ValueError:
                raise ValueError(f"config option {key}={value!r}: not a {allowed.__name__}") from None
    return names, values


def option_dict(arg: str | None, flags: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, object]:
    """``"runs=W,demo"`` -> ``{"runs": "W", "demo": True}``: `parse_options` with free-text values
    (paths, names checked by the caller) and the bare flags as True."""
    names, values = parse_options(arg, flags=flags, options={key: str for key in keys})
    return {**{name: True for name in names}, **values}


def two_stage_phases(head: str, head_lr: float, schedule, fraction: float = 0.25) -> list[dict]:
    """idealo's NIMA schedule as ``config.phases`` (``train/optimizer.py``): the head (params
    matching ``head``) alone at a constant ``head_lr`` for ``fraction`` of the run, then every
    layer with ``schedule`` at ``config.lr``, each phase from a fresh optimiser state."""
    return [dict(fraction=fraction, lr=head_lr, schedule=[(head, dict(decay_type="constant")), (".*", None)]),
            dict(schedule=list(schedule))]
