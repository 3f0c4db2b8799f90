"""``aesthetics-jax <command> ...``: one entry point, one module per command.

Each command module exposes ``main(argv: list[str]) -> int``; it is imported only when its command
runs, so ``aesthetics-jax predict`` never pays for the data builders and vice versa.

    aesthetics-jax [--log_level=info | --verbosity=N] <command> ...

Quiet by default: commands print progress lines and summaries; library log records (absl, Orbax,
TFDS) show only with ``--log_level`` / ``--verbosity`` (see ``logging_setup``).
"""

from __future__ import annotations

import importlib
import sys

from aesthetics_jax import logging_setup

COMMANDS = {
    "data": ("aesthetics_jax.data.commands", "build datasets: data build ava|eva|aadb|demo|demo_eva|eva_patches ..."),
    "maps": ("aesthetics_jax.modalities.commands", "saliency / modality maps of folders or builds as PNGs"),
    "convert": ("aesthetics_jax.convert.commands", "import Keras / torch / CLIP weights"),
    "evaluate": ("aesthetics_jax.evaluate.commands", "score a dataset split with a bundle or workdir"),
    "export": ("aesthetics_jax.export.commands", "export a model to ONNX or TF SavedModel"),
    "predict": ("aesthetics_jax.predict", "score images with a model bundle"),
    "critique": ("aesthetics_jax.critique.commands", "attribute critiques of images (CG-IAA's ClipCap experts)"),
    "explain": ("aesthetics_jax.explain.commands", "Grad-CAM maps per output, agreement with human saliency, faithfulness"),
    "bundle": ("aesthetics_jax.export.bundle", "pack / verify shareable model bundles"),
    "models": ("aesthetics_jax.export.registry", "the local model registry: models list | add | remove"),
    "sweep": ("aesthetics_jax.sweep.commands", "run a config's get_sweep over seeds, tabulate it: sweep run | report"),
    "analyze": ("aesthetics_jax.analysis.commands", "what each modality model explains: analyze modalities --run NAME=WORKDIR ..."),
}


def _global_options(argv: list[str]) -> tuple[str | None, int | None, list[str]]:
    """Strips leading ``--log_level=L`` / ``--verbosity=N`` (or ``-v N``) options."""
    log_level = verbosity = None
    while argv and argv[0].startswith(("--log_level", "--verbosity", "-v")):
        option, sep, value = argv[0].partition("=")
        if not sep:
            if len(argv) < 2:
                raise ValueError(f"{option} needs a value")
            value, argv = argv[1], argv[1:]
        argv = argv[1:]
        if option == "--log_level":
            log_level = value
        elif option in ("--verbosity", "-v"):
            verbosity = int(value)
        else:
            raise ValueError(f"unknown option {option}")
    return log_level, verbosity, argv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        log_level, verbosity, argv = _global_options(list(argv))
        level = logging_setup.resolve(log_level, verbosity)
    except ValueError as e:
        print(f"aesthetics-jax: {e}", file=sys.stderr)
        return 2
    logging_setup.configure(level)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: aesthetics-jax [--log_level=info|--verbosity=N] <command> [args]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<9} {help_text}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"aesthetics-jax: unknown command {name!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
