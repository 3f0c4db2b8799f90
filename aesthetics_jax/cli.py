"""``aesthetics-jax <command> ...``: one entry point, one module per command.

Each command module exposes ``main(argv: list[str]) -> int``; it is imported only when its command
runs, so ``aesthetics-jax predict`` never pays for the data builders and vice versa.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("aesthetics_jax.data.commands", "build datasets: data build ava|eva|aadb|demo ..."),
    "convert": ("aesthetics_jax.convert.commands", "import Keras / torch / CLIP weights"),
    "evaluate": ("aesthetics_jax.evaluate.commands", "score a dataset split with a bundle or workdir"),
    "export": ("aesthetics_jax.export.commands", "export a model to ONNX or TF SavedModel"),
    "predict": ("aesthetics_jax.predict", "score images with a model bundle"),
    "bundle": ("aesthetics_jax.export.bundle", "pack / verify shareable model bundles"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: aesthetics-jax <command> [args]\n\ncommands:")
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
