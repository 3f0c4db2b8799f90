"""Entry points are quiet by default: progress lines and summaries, no library INFO records.

`launch.py` runs the demo smoke config in a child process twice on one shared dataset: quiet by
default (the build, steps and metrics table are reported; no absl/Orbax INFO record, no TFDS
progress bar), and with `--log_level=info` (Orbax's checkpoint records come back).
"""

import os
import re
import subprocess
import sys

import pytest

from aesthetics_jax import cli, logging_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSL_RECORD = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d", re.M)  # absl's record prefix, e.g. I1201 08:07:05


def _launch(tmp_path, name, *extra):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    env.pop(logging_setup.ENV, None)
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "--config", os.path.join(ROOT, "configs/nima_demo.py:smoke"),
           "--workdir", str(tmp_path / name), "--config.data.data_dir", str(tmp_path / "data"),
           "--config.total_steps=2", "--config.ckpt_every=2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=str(tmp_path))


def test_launch_is_quiet_by_default_and_verbose_on_request(tmp_path):
    quiet = _launch(tmp_path, "quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "[data] building ava/" in quiet.stderr and "step 2/2" in quiet.stdout and "test/emd/srcc" in quiet.stdout
    assert not ABSL_RECORD.search(quiet.stderr), quiet.stderr[:2000]
    assert "orbax" not in quiet.stderr.lower() and "Generating splits" not in quiet.stderr
    assert "Downloading and preparing" not in quiet.stdout
    verbose = _launch(tmp_path, "verbose", "--log_level=info")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert ABSL_RECORD.search(verbose.stderr) and "checkpoint" in verbose.stderr.lower()


def test_cli_global_options(monkeypatch):
    monkeypatch.delenv(logging_setup.ENV, raising=False)
    assert cli._global_options(["--log_level=info", "predict", "x"]) == ("info", None, ["predict", "x"])
    assert cli._global_options(["--verbosity", "1", "models", "list"]) == (None, 1, ["models", "list"])
    assert logging_setup.resolve("INFO") == 20 and logging_setup.resolve(None, 1) == 10
    assert logging_setup.resolve(None, None) == 30  # quiet by default
    monkeypatch.setenv(logging_setup.ENV, "debug")
    assert logging_setup.resolve(None, None) == 10
    with pytest.raises(ValueError, match="log level 'loud'"):
        logging_setup.resolve("loud")
    assert cli.main(["--log_level=loud", "models", "list"]) == 2
