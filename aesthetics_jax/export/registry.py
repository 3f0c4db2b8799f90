"""A local model zoo without downloads: named, verified bundles in one directory.

    aesthetics-jax models list [--json]
    aesthetics-jax models add nima_idealo/ --name nima-idealo      # copies + verifies the bundle
    aesthetics-jax models remove nima-idealo
    aesthetics-jax predict photos/ --model nima-idealo              # resolves the name

The registry is the directory ``$AESTHETICS_JAX_MODELS`` (default
``~/.cache/aesthetics_jax/models``); entry ``NAME`` is the bundle directory ``NAME.bundle`` in it
(``add`` unpacks archives). Older registries may also hold ``NAME``, ``NAME.tar.gz`` or
``NAME.bundle.tar.gz``; ``resolve`` finds those too. Nothing is ever downloaded: a name that is
not there is an error listing what was tried.

``list`` verifies nothing (it reads each bundle's JSON files only) but shows each entry's manifest
sha256 -- the fingerprint to compare with the one the bundle's author gives -- and ``add``
verifies every file against the manifest before copying, so a tampered bundle never enters.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

from aesthetics_jax.export import bundle as bundle_lib

SUFFIX = ".bundle"
_LEGACY_SUFFIXES = ("", ".tar.gz", ".bundle.tar.gz", ".tgz")
_NAME_SUFFIXES = (".bundle.tar.gz", ".tar.gz", ".tgz", SUFFIX)  # stripped from file names, longest first
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def registry_dir() -> str:
    return os.path.expanduser(os.environ.get("AESTHETICS_JAX_MODELS", "~/.cache/aesthetics_jax/models"))


def resolve(model: str | os.PathLike) -> str:
    """A bundle path as given, or the path of registry entry ``model``; FileNotFoundError listing the tries."""
    path = os.fspath(model)
    if os.path.exists(path):
        return path
    tried = [path]
    if os.sep not in path and "/" not in path:
        for suffix in (SUFFIX, *_LEGACY_SUFFIXES):
            candidate = os.path.join(registry_dir(), path + suffix)
            if os.path.exists(candidate):
                return candidate
            tried.append(candidate)
    raise FileNotFoundError(f"model {path!r} not found; tried {tried} (nothing is downloaded; "
                            "`aesthetics-jax models list` shows the registry)")


def _entries() -> list[tuple[str, str]]:
    """[(name, path)] of the registry, sorted by name."""
    root = registry_dir()
    if not os.path.isdir(root):
        return []
    out = {}
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith("."):
            continue
        for suffix in _NAME_SUFFIXES:
            if entry.endswith(suffix):
                out.setdefault(entry[: -len(suffix)], path)
                break
        else:
            if os.path.isfile(os.path.join(path, bundle_lib.MANIFEST)):
                out.setdefault(entry, path)
    return sorted(out.items())


def _headline_metrics(metrics: dict) -> dict:
    """The test-split metrics of a bundle's metrics.json (``test/...`` keys), else its note."""
    found = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            found.update({f"{key}/{k}": v for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[key] = value
    test = {k: v for k, v in found.items() if k.startswith("test") or "/test" in k}
    return test or ({"note": metrics["note"]} if "note" in metrics else {})


def describe(path: str) -> dict:
    """One registry row: architecture, heads, source, manifest sha256 and test metrics of a bundle."""
    info = bundle_lib.info(path)
    model_json, provenance, metrics, digest = info["model"], info["provenance"], info["metrics"], info["sha256"]
    model = model_json["model"]
    arch = model["name"] + "".join(f" {k}={model[k]}" for k in ("width", "layout", "num_mixed") if k in model)
    heads = {name: config.get("type") for name, config in model["heads"].items()}
    source = provenance.get("source")
    if source:
        origin = f"converted from {source.get('format')} {os.path.basename(source.get('path', ''))} " \
                 f"(sha256 {str(source.get('sha256'))[:12]})"
    elif provenance.get("workdir"):
        origin = f"trained: {provenance['workdir']} step {provenance.get('step')}"
    else:
        origin = "unknown"
    transform = model_json["input"].get("transform")
    return {"architecture": arch, "heads": heads, "image_size": model_json["input"]["image_size"],
            "transform": transform.get("name") if isinstance(transform, dict) else "resize_center_crop",
            "source": origin, "sha256": digest, "metrics": _headline_metrics(metrics)}


def list_models() -> list[dict]:
    """Every registry entry with `describe`'s fields (or an ``error`` for a broken entry)."""
    rows = []
    for name, path in _entries():
        try:
            rows.append({"name": name, "path": path, **describe(path)})
        except (bundle_lib.BundleError, OSError, KeyError, ValueError) as e:
            rows.append({"name": name, "path": path, "error": str(e)})
    return rows


def add(path: str, name: str | None = None, *, force: bool = False) -> str:
    """Verifies the bundle at ``path`` and copies it into the registry as ``name``; returns its path."""
    path = os.fspath(path)
    if not bundle_lib.is_bundle(path):
        hint = bundle_lib.not_a_model_hint(path)
        raise bundle_lib.BundleError(hint or f"{path}: not a bundle (no {bundle_lib.MANIFEST}, not a .tar.gz); "
                                     "pack a training workdir first: aesthetics-jax bundle pack WORKDIR --out B")
    if name is None:
        name = os.path.basename(os.path.normpath(path))
        for suffix in _NAME_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits and . _ + - (no path separators)")
    root = registry_dir()
    os.makedirs(root, exist_ok=True)
    existing = dict(_entries()).get(name)
    if existing and not force:
        raise FileExistsError(f"registry already has {name!r} ({existing}); choose --name or pass --force")
    target = os.path.join(root, name + SUFFIX)
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
    try:
        if bundle_lib.is_archive(path):
            directory = bundle_lib.unpack(path, staging)
        else:
            directory = os.path.join(staging, "bundle")
            shutil.copytree(path, directory, symlinks=True)
        bundle_lib.verify(directory)  # the copy, not the original: what enters is what was checked
        if existing:
            (shutil.rmtree if os.path.isdir(existing) else os.remove)(existing)
        os.replace(directory, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def remove(name: str) -> str:
    path = dict(_entries()).get(name)
    if path is None:
        raise FileNotFoundError(f"registry {registry_dir()} has no model {name!r}")
    (shutil.rmtree if os.path.isdir(path) else os.remove)(path)
    return path


def _format_metrics(metrics: dict) -> str:
    if "note" in metrics:
        return "-"
    return ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in sorted(metrics.items())[:4]) or "-"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax models",
                                     description=f"The local model registry ({registry_dir()}); nothing is downloaded.")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="show the registered bundles")
    ls.add_argument("--json", action="store_true", help="one JSON object per model")
    a = sub.add_parser("add", help="verify a bundle and copy it into the registry")
    a.add_argument("bundle", help="bundle directory or .tar.gz (e.g. written by aesthetics-jax convert)")
    a.add_argument("--name", default=None, help="registry name (default: the bundle's file name)")
    a.add_argument("--force", action="store_true", help="replace an entry of the same name")
    r = sub.add_parser("remove", help="delete a registry entry")
    r.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            target = add(args.bundle, args.name, force=args.force)
            name = os.path.basename(target)[: -len(SUFFIX)]
            print(f"added {args.bundle} as {name!r} ({target}); use it: aesthetics-jax predict PHOTOS --model {name}")
        elif args.command == "remove":
            print(f"removed {remove(args.name)}")
        else:
            rows = list_models()
            if args.json:
                for row in rows:
                    print(json.dumps(row))
            elif not rows:
                print(f"no models in {registry_dir()} (add one: aesthetics-jax models add BUNDLE --name NAME)")
            else:
                print(f"models in {registry_dir()}:")
                print("| name | architecture | heads | input | source | sha256 | test metrics |")
                print("|---|---|---|---|---|---|---|")
                for row in rows:
                    if "error" in row:
                        print(f"| {row['name']} | BROKEN: {row['error']} | | | | | |")
                        continue
                    heads = ", ".join(f"{k}:{v}" for k, v in row["heads"].items())
                    print(f"| {row['name']} | {row['architecture']} | {heads} | {row['image_size']} px, "
                          f"{row['transform']} | {row['source']} | {row['sha256'][:16]} | "
                          f"{_format_metrics(row['metrics'])} |")
    except (bundle_lib.BundleError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"aesthetics-jax models {args.command}: {e}", file=sys.stderr)
        return 1
    return 0
