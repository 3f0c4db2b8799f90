"""Runs a config's sweep: one ``launch.py`` process per member in ``ROOT/<member name>/``.

``plan(spec, root, ...)`` loads ``get_sweep(arg)`` from the config file of ``spec``
(``configs/x.py:arg``), adds the seed axis, checks every override against the member's resolved
config (a typo fails before anything runs) and gives each member its workdir. ``run`` starts the
members as ``python launch.py --config FILE:ARG --workdir ROOT/NAME --config.k=v ...``
subprocesses, ``parallel`` at a time, so each member has ``launch.py``'s semantics: a finished
member (``eval/final_metrics.json`` at its ``total_steps``) is skipped, an interrupted one resumes
from its last checkpoint. ``emit`` writes the same commands as job scripts (``sh`` or ``slurm``)
for a cluster instead.

Every member's workdir holds ``sweep_member.json`` (its name, variant, seed, config argument and
overrides): a later ``run`` with different overrides for the same name is refused (two members
would share a workdir), and ``sweep report`` groups by it.

Members share one JAX persistent compilation cache (``ROOT/.jax_cache``) unless turned off: an
identical model compiles once per sweep (BENCHMARKS.md, "Sweep overhead"). The dataset is
prepared once, in this process, before any member starts, so parallel members never build it
concurrently.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Sequence

from aesthetics_jax.sweep import grid

MEMBER_FILE = "sweep_member.json"
SWEEP_FILE = "sweep.json"
LOG_FILE = "launch.log"
CACHE_DIR = ".jax_cache"


@dataclasses.dataclass
class Member:
    index: int
    name: str
    variant: str
    seed: int | None
    arg: str
    overrides: dict
    workdir: str

    def record(self, config_file: str) -> dict:
        return {"index": self.index, "name": self.name, "variant": self.variant, "seed": self.seed,
                "config_file": config_file, "arg": self.arg, "overrides": self.overrides}


@dataclasses.dataclass
class Plan:
    config_file: str
    arg: str
    root: str
    members: list[Member]
    common: dict  # overrides applied to every member (--set / --config.k=v)
    module: Any = dataclasses.field(default=None, repr=False)  # the imported config file


def split_spec(spec: str) -> tuple[str, str]:
    """``"configs/x.py:a,b"`` -> (absolute file path, "a,b")."""
    path, _, arg = spec.partition(":")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sweep config file {path} does not exist")
    return path, arg


def load_module(path: str):
    """Imports a config file (its directory's parent on sys.path, as ``launch.py`` run from the
    repository root has it, so ``from configs import common`` works)."""
    root = os.path.dirname(os.path.dirname(path))
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"_sweep_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan(spec: str, root: str, *, seeds: Sequence[int] | None = None, only: Sequence[int] | None = None,
         common: dict | None = None) -> Plan:
    """The members of ``spec``'s sweep with their workdirs under ``root`` (``only``: those indices)."""
    config_file, arg = split_spec(spec)
    module = load_module(config_file)
    if not hasattr(module, "get_sweep"):
        raise ValueError(f"{config_file} defines no get_sweep(arg): nothing to sweep")
    members = [grid.normalize(m) for m in module.get_sweep(arg or None)]
    if not members:
        raise ValueError(f"{config_file}: get_sweep({arg!r}) returned no members")
    if seeds:
        members = grid.with_seeds(members, seeds)
    common = {grid.field(k): v for k, v in (common or {}).items()}
    out, seen = [], {}
    for i, m in enumerate(members):
        name = grid.name(m)
        if name in seen:
            raise ValueError(f"sweep members {seen[name]} and {i} have the same name {name!r}; give them ':name's")
        seen[name] = i
        member_arg = m.get(grid.ARG, arg) or ""
        overrides = {**common, **grid.overrides(m)}
        _check_overrides(module, member_arg, overrides, name)
        out.append(Member(index=i, name=name, variant=grid.variant(m), seed=m.get(grid.SEED), arg=member_arg,
                          overrides=overrides, workdir=os.path.join(os.path.abspath(root), name)))
    if only is not None:
        bad = [k for k in only if not 0 <= k < len(out)]
        if bad:
            raise ValueError(f"--only {bad}: the sweep has members 0..{len(out) - 1}")
        out = [out[k] for k in only]
    return Plan(config_file=config_file, arg=arg, root=os.path.abspath(root), members=out, common=common,
                module=module)


def _check_overrides(module, arg: str, overrides: dict, name: str):
    config = module.get_config(arg or None)
    for key, value in overrides.items():
        node = config
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not hasattr(node, "keys") or part not in node:
                raise ValueError(f"sweep member {name!r}: the config ({arg or 'default'}) has no field "
                                 f"{'.'.join(parts[:i + 1])!r} (override {key}={value!r})")
            node = node[part]


def resolved_config(module, member: Member):
    """The member's config with its overrides applied (what ``launch.py`` will run)."""
    config = module.get_config(member.arg or None)
    for key, value in member.overrides.items():
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def format_value(value: Any) -> str:
    """A value as ``--config.k=`` text that ml_collections parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return repr(value)
    return str(value)


def command(p: Plan, member: Member, launcher: str, python: str = sys.executable) -> list[str]:
    config = p.config_file + (f":{member.arg}" if member.arg else "")
    return [python, launcher, f"--config={config}", f"--workdir={member.workdir}",
            *[f"--config.{k}={format_value(v)}" for k, v in member.overrides.items()]]


def default_launcher() -> str:
    """``launch.py`` of the checkout this package runs from."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "launch.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no launch.py at {path} (the package is not run from a checkout): pass --launcher")
    return path


def status(member: Member, config_file: str) -> str:
    """'done' (final metrics of the last step), 'partial' (a workdir exists) or 'new'.

    A workdir whose ``sweep_member.json`` names other overrides is an error."""
    record_path = os.path.join(member.workdir, MEMBER_FILE)
    if os.path.exists(record_path):
        with open(record_path) as f:
            record = json.load(f)
        if (record.get("arg"), record.get("overrides")) != (member.arg, json.loads(json.dumps(member.overrides))):
            raise ValueError(f"{member.workdir} holds sweep member {record.get('arg')!r} {record.get('overrides')} "
                             f"but this sweep's member {member.name!r} is {member.arg!r} {member.overrides}: "
                             "use another --root or remove the directory")
    final = os.path.join(member.workdir, "eval", "final_metrics.json")
    if os.path.exists(final):
        with open(os.path.join(member.workdir, "config.json")) as f:
            config = json.load(f)
        with open(final) as f:
            step = json.load(f).get("step")
        if step is not None and step == (config.get("total_steps") or step):
            return "done"
    return "partial" if os.path.isdir(member.workdir) else "new"


def member_env(p: Plan, compilation_cache: bool) -> dict:
    env = dict(os.environ)
    if compilation_cache:
        env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(p.root, CACHE_DIR))  # a user's own cache wins
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return env


def prepare_data(p: Plan) -> None:
    """Builds each distinct dataset the members read, once, before they start."""
    from aesthetics_jax.data import datasets  # pylint: disable=g-import-not-at-top

    done = set()
    for member in p.members:
        data = resolved_config(p.module, member).data
        key = json.dumps(data.to_dict() if hasattr(data, "to_dict") else dict(data), sort_keys=True, default=str)
        if key not in done:
            done.add(key)
            datasets.prepare(data)


def _write_records(p: Plan) -> None:
    os.makedirs(p.root, exist_ok=True)
    with open(os.path.join(p.root, SWEEP_FILE), "w") as f:
        json.dump({"config_file": p.config_file, "arg": p.arg, "common": p.common,
                   "members": [m.record(p.config_file) for m in p.members]}, f, indent=2)
    for m in p.members:
        os.makedirs(m.workdir, exist_ok=True)
        with open(os.path.join(m.workdir, MEMBER_FILE), "w") as f:
            json.dump(m.record(p.config_file), f, indent=2)


def run(p: Plan, *, launcher: str | None = None, parallel: int = 1, compilation_cache: bool = True,
        dry_run: bool = False, log=print) -> dict[str, str]:
    """Runs the members not done yet (``parallel`` at a time); returns ``{name: outcome}`` with
    outcome 'skipped (done)', 'ok', or 'failed (exit N; see LOG)'."""
    launcher = launcher or default_launcher()
    todo, outcomes = [], {}
    for m in p.members:
        state = status(m, p.config_file)
        if state == "done":
            outcomes[m.name] = "skipped (done)"
        else:
            todo.append((m, state))
    if dry_run:
        for m, state in todo:
            log(f"[{m.index}] {m.name} ({state}): {shlex.join(command(p, m, launcher))}")
        for name, outcome in outcomes.items():
            log(f"    {name}: {outcome}")
        return outcomes
    if todo:
        prepare_data(p)
    _write_records(p)
    env = member_env(p, compilation_cache)
    running: list[tuple[Member, subprocess.Popen, Any, float]] = []
    queue = list(todo)
    while queue or running:
        while queue and len(running) < max(parallel, 1):
            m, state = queue.pop(0)
            logf = open(os.path.join(m.workdir, LOG_FILE), "a")  # pylint: disable=consider-using-with
            proc = subprocess.Popen(command(p, m, launcher), stdout=logf, stderr=subprocess.STDOUT, env=env,
                                    cwd=os.path.dirname(launcher))
            log(f"[{m.index}] {m.name}: {'resuming' if state == 'partial' else 'started'} (log {logf.name})")
            running.append((m, proc, logf, time.time()))
        time.sleep(0.2)
        for item in list(running):
            m, proc, logf, t0 = item
            if proc.poll() is None:
                continue
            logf.close()
            running.remove(item)
            wall = time.time() - t0
            if proc.returncode == 0:
                outcomes[m.name] = "ok"
                log(f"[{m.index}] {m.name}: done in {wall:.0f} s")
            else:
                outcomes[m.name] = f"failed (exit {proc.returncode}; see {logf.name})"
                log(f"[{m.index}] {m.name}: FAILED (exit {proc.returncode}) after {wall:.0f} s; see {logf.name}")
    return outcomes


SLURM_HEADER = """#!/bin/bash
#SBATCH --job-name={job}
#SBATCH --output={log}
{extra}
"""


def emit(p: Plan, kind: str, *, launcher: str | None = None, outdir: str | None = None,
         slurm_options: Sequence[str] = (), compilation_cache: bool = True, python: str = sys.executable) -> list[str]:
    """Writes one job script per member (``sh`` or ``slurm``) and ``submit_all.sh``; returns the
    scripts' paths. The scripts run the same ``launch.py`` command as ``run`` (so a re-submitted
    member resumes)."""
    if kind not in ("sh", "slurm"):
        raise ValueError(f"--emit must be sh or slurm, got {kind!r}")
    launcher = launcher or default_launcher()
    outdir = os.path.abspath(outdir or os.path.join(p.root, "jobs"))
    os.makedirs(outdir, exist_ok=True)
    _write_records(p)
    cache = (f"export JAX_COMPILATION_CACHE_DIR={shlex.quote(os.path.join(p.root, CACHE_DIR))}\n"
             "export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0\n") if compilation_cache else ""
    paths = []
    for m in p.members:
        cmd = shlex.join(command(p, m, launcher, python=python))
        if kind == "slurm":
            extra = "\n".join(f"#SBATCH {opt}" for opt in slurm_options)
            head = SLURM_HEADER.format(job=m.name, log=os.path.join(m.workdir, "slurm-%j.log"), extra=extra)
            body = f"{cache}cd {shlex.quote(os.path.dirname(launcher))}\nsrun {cmd}\n"
        else:
            head = "#!/bin/bash\nset -euo pipefail\n"
            body = f"{cache}cd {shlex.quote(os.path.dirname(launcher))}\n{cmd} >> {shlex.quote(os.path.join(m.workdir, LOG_FILE))} 2>&1\n"
        path = os.path.join(outdir, f"{m.index:03d}_{m.name}.{kind}")
        with open(path, "w") as f:
            f.write(head + body)
        os.chmod(path, 0o755)
        paths.append(path)
    submit = "sbatch" if kind == "slurm" else "bash"
    with open(os.path.join(outdir, "submit_all.sh"), "w") as f:
        f.write("#!/bin/bash\nset -euo pipefail\n" + "".join(f"{submit} {shlex.quote(path)}\n" for path in paths))
    os.chmod(os.path.join(outdir, "submit_all.sh"), 0o755)
    return paths
