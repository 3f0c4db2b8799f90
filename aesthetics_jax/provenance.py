"""Where a result came from: code, packages, config, data, devices and time.

Every training workdir holds ``provenance.json`` (written by the trainer on process 0)::

    code        {"commit": sha, "dirty": bool} of the checkout the package runs from
                (or {"commit": null, "note": why} outside a git checkout)
    versions    python and the packages that decide the numbers (jax, jaxlib, flax, optax, ...)
    config      the full resolved experiment config (as config.json)
    data        the dataset build: builder name, config, version, directory, the record count of
                every split the run reads, the skipped-record counts of the build, and
                ``fingerprint`` = sha256 of (builder, config, version, split counts)
    devices     platform, device kind, device and process counts
    sessions    one entry per start of the run (a resumed run adds one): its start time, code,
                devices, first and last step, wall seconds (updated at every checkpoint), and
                its start-up: seconds to the first finished step from the trainer's start
                (``first_step_s``) and from the process start (``process_start_to_first_step_s``)
    wall_s      the sum of the sessions' wall seconds

Bundles packed from a workdir carry it (``bundle.json``'s ``provenance.training``), and
``aesthetics-jax sweep report`` compares the data fingerprints of the members it pools.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata

FILENAME = "provenance.json"

#: The packages whose versions decide a run's numbers (those installed are recorded).
PACKAGES = ("aesthetics_jax", "jax", "jaxlib", "jax-cuda12-plugin", "libtpu", "flax", "optax", "orbax-checkpoint",
            "grain", "numpy", "opencv-python-headless", "opencv-python", "tensorflow-datasets", "ml_collections",
            "safetensors", "scipy")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def code() -> dict:
    """``{"commit", "dirty"}`` of the git checkout this package is imported from."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "note": "code is not in a git checkout"}
        status = subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "note": f"git unavailable ({e})"}


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def devices() -> dict:
    import jax  # pylint: disable=g-import-not-at-top

    devs = jax.devices()
    return {"platform": devs[0].platform, "kind": devs[0].device_kind, "count": len(devs),
            "local_count": jax.local_device_count(), "process_count": jax.process_count()}


def data(builder, split_counts: dict[str, int]) -> dict:
    """The dataset build's identity, ``split_counts`` ({split: records the run reads}) and the
    build's skipped counts; ``fingerprint`` hashes what decides which records a run sees."""
    info = builder.info
    meta = dict(info.metadata or {}) if info.metadata is not None else {}
    config = getattr(builder, "builder_config", None)
    out = {
        "name": builder.name,
        "config": getattr(config, "name", None),
        "version": str(builder.version),
        "data_dir": os.fspath(builder.data_dir),
        "splits": {str(k): int(v) for k, v in sorted(split_counts.items())},
        "num_skipped": int(meta.get("num_skipped", 0) or 0),
        "skipped": {str(k): int(v) for k, v in dict(meta.get("skipped") or {}).items()},
    }
    out["fingerprint"] = fingerprint(out)
    return out


def fingerprint(data_record: dict) -> str:
    """sha256 over the builder name, config, version and the split record counts."""
    key = {k: data_record.get(k) for k in ("name", "config", "version", "splits")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def read(workdir: str) -> dict | None:
    path = os.path.join(workdir, FILENAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write(workdir: str, record: dict) -> None:
    path = os.path.join(workdir, FILENAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2, default=str)
    os.replace(tmp, path)  # a crash never leaves half a file


def _process_age() -> float | None:
    """Seconds since this process started, from /proc (Linux; None elsewhere)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime, clock ticks after boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Recorder:
    """Writes ``WORKDIR/provenance.json`` for one session of a run (a start or a resume).

    ``start`` records the code, packages, config, data and devices (a resumed run keeps the first
    session's record and appends a session; a changed data fingerprint or commit is noted in the
    session), ``update(step)`` the session's progress and wall time (called at checkpoints, so an
    interrupted run still says how long it ran), ``finish(step)`` the end.
    """

    def __init__(self, workdir: str, *, active: bool = True):
        self.workdir = workdir
        self.active = active
        self._t0 = time.time()
        self._record: dict | None = None

    def start(self, config: dict, data_record: dict, step: int) -> dict:
        session = {"started": _now(), "start_step": int(step), "end_step": int(step), "wall_s": 0.0,
                   "finished": False, "code": code(), "devices": devices()}
        record = read(self.workdir) if step > 0 else None
        if record is None:
            record = {"code": session["code"], "versions": versions(), "config": config, "data": data_record,
                      "devices": session["devices"], "sessions": []}
        elif record.get("data", {}).get("fingerprint") != data_record["fingerprint"]:
            session["data_changed"] = data_record
        now = versions()
        session["versions"] = now if record["versions"] != now else "unchanged"
        record["sessions"].append(session)
        self._record = record
        self._flush()
        return record

    def update(self, step: int, *, finished: bool = False) -> None:
        if self._record is None:
            return
        session = self._record["sessions"][-1]
        session.update(end_step=int(step), wall_s=round(time.time() - self._t0, 3), finished=finished)
        self._flush()

    def first_step(self) -> None:
        """Records the session's start-up: seconds from the process start (imports, data, model,
        restore, compilation) to the first finished training step."""
        if self._record is None:
            return
        session = self._record["sessions"][-1]
        session["first_step_s"] = round(time.time() - self._t0, 3)
        age = _process_age()
        if age is not None:
            session["process_start_to_first_step_s"] = round(age, 3)
        self._flush()

    def finish(self, step: int) -> None:
        self.update(step, finished=True)

    def _flush(self) -> None:
        self._record["wall_s"] = round(sum(s["wall_s"] for s in self._record["sessions"]), 3)
        if self.active:
            _write(self.workdir, self._record)
