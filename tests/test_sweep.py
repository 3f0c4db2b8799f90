"""Sweeps: member grids, the runner (names, checks, resume-safety, job scripts), the report's
statistics against independent computations, provenance, and a smoke sweep end to end whose table
is byte-identical when the sweep runs again."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aesthetics_jax import provenance
from aesthetics_jax.sweep import commands, grid, report, runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NIMA_DEMO = os.path.join(REPO, "configs", "nima_demo.py")


# ----------------------------------------------------------------------------- grid


def test_grid_product_zip_seeds_and_names():
    members = grid.product(grid.sweep("lr", [1e-3, 3e-4]), grid.sweep("config.losses.emd.r", [1, 2]))
    assert members == [{"lr": 1e-3, "losses.emd.r": 1}, {"lr": 1e-3, "losses.emd.r": 2},
                       {"lr": 3e-4, "losses.emd.r": 1}, {"lr": 3e-4, "losses.emd.r": 2}]
    assert grid.zipped(grid.sweep("lr", [1, 2]), grid.sweep("batch_size", [8, 16])) == [
        {"lr": 1, "batch_size": 8}, {"lr": 2, "batch_size": 16}]
    seeded = grid.with_seeds(["smoke", {":name": "b", ":arg": "smoke", "lr": 0.5}], [0, 1])
    assert [grid.name(m) for m in seeded] == ["smoke-seed=0", "smoke-seed=1", "b-seed=0", "b-seed=1"]
    assert [grid.variant(m) for m in seeded] == ["smoke", "smoke", "b", "b"]
    assert grid.name({":arg": "runs=/w,demo", "lr": 0.001}) == "runs=_w_demo-lr=0.001"
    assert grid.variant({}) == "base"
    with pytest.raises(ValueError, match="same length"):
        grid.zipped(grid.sweep("lr", [1, 2]), grid.sweep("seed", [0]))
    with pytest.raises(ValueError, match="twice"):
        grid.product(grid.sweep("lr", [1]), grid.sweep("lr", [2]))
    with pytest.raises(ValueError, match="sets seed itself"):
        grid.with_seeds([{"seed": 3}], [0])
    with pytest.raises(ValueError, match="dotted config field"):
        grid.sweep("losses..r", [1])


# ----------------------------------------------------------------------------- report statistics


def _exact_bootstrap_quantiles(values, level=0.95):
    """The exact bootstrap distribution of the mean (every one of the n^n resamples, equally
    likely), and its quantiles: what a Monte-Carlo bootstrap estimates."""
    means = np.array([np.mean(c) for c in itertools.product(values, repeat=len(values))])
    alpha = (1 - level) / 2
    return np.quantile(means, alpha), np.quantile(means, 1 - alpha), means


def test_bootstrap_ci_matches_the_exact_bootstrap_distribution():
    values = [0.61, 0.58, 0.66, 0.60]
    lo, hi = report.bootstrap_ci(values, "k")
    exact_lo, exact_hi, means = _exact_bootstrap_quantiles(values)
    step = np.min(np.diff(np.unique(means)))  # the distribution's atoms are this close
    assert abs(lo - exact_lo) <= step and abs(hi - exact_hi) <= step
    assert report.bootstrap_ci(values, "k") == (lo, hi)  # seeded by the key: reproducible
    assert report.bootstrap_ci([0.5], "k") == (0.5, 0.5)


def _member(root, name, variant, seed, index, metrics, fingerprint="fp0", r=2, best="val/emd/srcc"):
    workdir = os.path.join(root, name)
    os.makedirs(os.path.join(workdir, "eval"))
    with open(os.path.join(workdir, runner.MEMBER_FILE), "w") as f:
        json.dump({"name": name, "variant": variant, "seed": seed, "index": index, "arg": "", "overrides": {}}, f)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"total_steps": 10, "best_metric": best, "best_mode": "max", "losses": {"emd": {"r": r}}}, f)
    with open(os.path.join(workdir, "eval", "final_metrics.json"), "w") as f:
        json.dump({"step": 10, **metrics}, f)
    with open(os.path.join(workdir, provenance.FILENAME), "w") as f:
        json.dump({"data": {"fingerprint": fingerprint}}, f)


def _synthetic_sweep(root, fingerprints=("fp0",) * 6):
    rng = np.random.default_rng(0)
    values = {}
    for i, (variant, r) in enumerate([("a", 1), ("a", 1), ("a", 1), ("b", 2), ("b", 2), ("b", 2)]):
        metrics = {"test/emd/srcc": float(rng.uniform(0.3, 0.7)), "val/emd/srcc": float(rng.uniform(0.3, 0.7)),
                   "test/emd/emd_r2": float(rng.uniform(0.1, 0.2))}
        values.setdefault(variant, []).append(metrics)
        _member(root, f"{variant}-seed={i % 3}", variant, i % 3, i, metrics, fingerprint=fingerprints[i], r=r)
    return values


def test_report_statistics_and_files(tmp_path):
    root = str(tmp_path / "sweep")
    values = _synthetic_sweep(root)
    os.makedirs(os.path.join(root, "unfinished"))
    with open(os.path.join(root, "unfinished", "config.json"), "w") as f:
        json.dump({}, f)
    members, missing = report.collect(root)
    assert [m.name for m in members] == ["a-seed=0", "a-seed=1", "a-seed=2", "b-seed=0", "b-seed=1", "b-seed=2"]
    assert missing == ["unfinished"]
    table = report.summarize(members, missing=missing)
    assert table.metrics == ["test/emd/srcc", "val/emd/srcc"]  # default: */srcc and */plcc present
    for g in table.groups:
        test = [v["test/emd/srcc"] for v in values[g.group]]
        assert g.mean["test/emd/srcc"] == pytest.approx(sum(test) / 3, abs=1e-12)
        sd = (sum((x - sum(test) / 3) ** 2 for x in test) / 2) ** 0.5  # sample sd by hand
        assert g.sd["test/emd/srcc"] == pytest.approx(sd, abs=1e-12)
        lo, hi = g.ci["test/emd/srcc"]
        assert min(test) <= lo <= g.mean["test/emd/srcc"] <= hi <= max(test)
    val_means = {v: np.mean([m["val/emd/srcc"] for m in ms]) for v, ms in values.items()}
    assert table.select == "val/emd/srcc" and table.best == max(val_means, key=val_means.get)

    paths = report.write(table, str(tmp_path / "out"))
    md = open(paths["md"]).read()
    assert f"| **{table.best}** (best) | 3 |" in md and "unfinished" in md
    rows = open(paths["csv"]).read().splitlines()
    assert rows[0].startswith("group,n,metric,mean,sd,ci_low,ci_high,best")
    assert len(rows) == 1 + 2 * 2
    tex = open(paths["tex"]).read()
    assert r"\textbf{" + table.best + "}" in tex and r"\toprule" in tex
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    by_r = report.summarize(members, metrics=["test/emd/emd_r2"], group_by="losses.emd.r", select="test/emd/emd_r2",
                            select_mode="min")
    assert [g.group for g in by_r.groups] == ["losses.emd.r=1", "losses.emd.r=2"]
    means = [np.mean([m["test/emd/emd_r2"] for m in values[v]]) for v in ("a", "b")]
    assert by_r.best == ["losses.emd.r=1", "losses.emd.r=2"][int(np.argmin(means))]
    with pytest.raises(ValueError, match="no metric"):
        report.summarize(members, metrics=["test/nope"])


def test_report_refuses_mixed_data_unless_told(tmp_path):
    root = str(tmp_path / "sweep")
    _synthetic_sweep(root, fingerprints=("fp0",) * 5 + ("fp1",))
    members, _ = report.collect(root)
    with pytest.raises(ValueError, match="different data.*fp1: b-seed=2"):
        report.summarize(members)
    assert report.summarize(members, allow_mixed_data=True).best is not None
    assert commands.main(["report", root]) == 1
    assert commands.main(["report", root, "--allow_mixed_data", "--out", str(tmp_path / "o")]) == 0


# ----------------------------------------------------------------------------- runner


def _sweep_file(tmp_path, body):
    path = tmp_path / "configs" / "toy.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text("import sys\nsys.path.insert(0, %r)\nfrom configs import nima_demo\n" % REPO
                    + "get_config = nima_demo.get_config\n" + body)
    return str(path)


def test_plan_checks_names_overrides_and_only(tmp_path):
    config = _sweep_file(tmp_path, "def get_sweep(arg):\n    return [arg, {':arg': arg, 'lr': 0.01}]\n")
    p = runner.plan(f"{config}:smoke", str(tmp_path / "r"), seeds=[0, 1], common={"config.batch_size": 4})
    assert [m.name for m in p.members] == ["smoke-seed=0", "smoke-seed=1", "smoke-lr=0.01-seed=0",
                                           "smoke-lr=0.01-seed=1"]
    assert p.members[3].overrides == {"batch_size": 4, "lr": 0.01, "seed": 1}
    cmd = runner.command(p, p.members[3], "launch.py", python="py")
    assert cmd == ["py", "launch.py", f"--config={config}:smoke", f"--workdir={p.members[3].workdir}",
                   "--config.batch_size=4", "--config.lr=0.01", "--config.seed=1"]
    assert [m.index for m in runner.plan(f"{config}:smoke", str(tmp_path / "r"), seeds=[0, 1], only=[1, 3]).members] == [1, 3]
    with pytest.raises(ValueError, match="members 0..3"):
        runner.plan(f"{config}:smoke", str(tmp_path / "r"), seeds=[0, 1], only=[4])
    bad = _sweep_file(tmp_path, "def get_sweep(arg):\n    return [{':name': 'typo', 'losses.emd.rr': 1}]\n")
    with pytest.raises(ValueError, match="'typo'.*no field 'losses.emd.rr'"):
        runner.plan(bad, str(tmp_path / "r"))
    same = _sweep_file(tmp_path, "def get_sweep(arg):\n    return [{':name': 'x'}, {':name': 'x', 'lr': 1.0}]\n")
    with pytest.raises(ValueError, match="same name 'x'"):
        runner.plan(same, str(tmp_path / "r"))
    with pytest.raises(ValueError, match="defines no get_sweep"):
        runner.plan(os.path.join(REPO, "configs", "xai_demo.py"), str(tmp_path / "r"))


@pytest.mark.parametrize("spec, n, first", [
    ("nima_ava.py", 4, "idealo_two_stage-seed=0"), ("nima_demo.py:steps=100", 3, "recipe-seed=0"),
    ("modality_nima.py", 12, "rgb_freeze=0-seed=0"), ("xai_eva.py", 4, "full_inception-seed=0"),
    ("cgiaa.py:demo,runs=/w", 6, "demo_runs=_w-seed=0"), ("clip_demo.py:runs=/w", 6, "cgiaa_runs=_w-seed=0")])
def test_paper_sweeps_plan(spec, n, first, tmp_path):
    """Every config's sweep resolves: each member's config argument and overrides are valid."""
    p = runner.plan(os.path.join(REPO, "configs", spec), str(tmp_path), seeds=[0])
    assert len(p.members) == n and p.members[0].name == first


def test_emit_job_scripts(tmp_path):
    p = runner.plan(f"{NIMA_DEMO}:smoke", str(tmp_path / "r"), seeds=[0])
    paths = runner.emit(p, "slurm", launcher=os.path.join(REPO, "launch.py"), slurm_options=["--gres=gpu:1"])
    assert [os.path.basename(x) for x in paths] == ["000_recipe-seed=0.slurm", "001_two_stage-seed=0.slurm",
                                                    "002_emd_only-seed=0.slurm"]
    text = open(paths[2]).read()
    assert "#SBATCH --job-name=emd_only-seed=0" in text and "#SBATCH --gres=gpu:1" in text
    assert "srun " in text and "--config.losses.emd.mean_weight=0.0" in text and "--config.seed=0" in text
    submit = open(os.path.join(os.path.dirname(paths[0]), "submit_all.sh")).read()
    assert submit.count("sbatch ") == 3
    sh = runner.emit(p, "sh", launcher=os.path.join(REPO, "launch.py"))
    for path in sh + paths:
        assert subprocess.run(["bash", "-n", path]).returncode == 0  # valid shell
    assert json.load(open(os.path.join(p.members[1].workdir, runner.MEMBER_FILE)))["arg"] == "smoke,two_stage"


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke_sweeps(tmp_path_factory):
    """The demo ablation's smoke version, 2 variants x 2 seeds, run twice in two roots (one shared
    compilation cache: the second run reuses the first's executables)."""
    base = tmp_path_factory.mktemp("sweeps")
    env = {"JAX_COMPILATION_CACHE_DIR": str(base / "cache"), "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    roots, logs = [str(base / "a"), str(base / "b")], []
    try:
        for root in roots:
            argv = ["run", f"{NIMA_DEMO}:smoke", "--root", root, "--seeds", "0,1", "--only", "0,1,4,5",
                    f"--config.data.data_dir={base / 'data'}"]
            logs.append(subprocess.run([sys.executable, "-m", "aesthetics_jax.cli", "sweep", *argv], cwd=REPO,
                                       capture_output=True, text=True, timeout=900))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for log in logs:
        assert log.returncode == 0, log.stdout + log.stderr
    return roots, logs, argv


def test_smoke_sweep_table_is_identical_on_a_second_run(smoke_sweeps, tmp_path):
    roots, logs, _ = smoke_sweeps
    assert "4 of 4 member(s) finished" in logs[0].stdout
    tables = []
    for root in roots:
        members, missing = report.collect(root)
        assert [m.name for m in members] == ["recipe-seed=0", "recipe-seed=1", "emd_only-seed=0", "emd_only-seed=1"]
        assert missing == []
        table = report.summarize(members, metrics=["test/emd/emd_r2", "test/emd/mae", "val/emd/emd_r2"],
                                 select="val/emd/emd_r2", select_mode="min")
        out = report.write(table, str(tmp_path / os.path.basename(root)))
        tables.append({k: open(v, "rb").read() for k, v in out.items() if k != "png"})
        recipe = next(g for g in table.groups if g.group == "recipe")
        assert recipe.values["test/emd/mae"][0] != recipe.values["test/emd/mae"][1]  # the seeds differ
    assert tables[0] == tables[1]
    for name in ("recipe-seed=0", "emd_only-seed=1"):  # and the metrics themselves, bit for bit
        finals = [open(os.path.join(r, name, "eval", "final_metrics.json")).read() for r in roots]
        assert finals[0] == finals[1]
    # the emd_only members really ran without the mean/sd terms, the others with them
    cfg = json.load(open(os.path.join(roots[0], "emd_only-seed=0", "config.json")))
    assert (cfg["losses"]["emd"]["mean_weight"], cfg["seed"]) == (0.0, 0)
    cfg = json.load(open(os.path.join(roots[0], "recipe-seed=1", "config.json")))
    assert (cfg["losses"]["emd"]["mean_weight"], cfg["seed"]) == (0.1, 1)


def test_provenance_in_workdir(smoke_sweeps):
    roots, _, _ = smoke_sweeps
    record = provenance.read(os.path.join(roots[0], "recipe-seed=0"))
    assert record["config"]["seed"] == 0 and record["config"]["data"]["name"] == "demo"
    data = record["data"]
    assert data["name"] == "ava" and data["version"] == "1.0.0" and data["num_skipped"] == 0
    # the record counts are the splits' real sizes (read back from the build with TFDS)
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder_from_directory(data["data_dir"])
    assert data["splits"] == {k: v.num_examples for k, v in builder.info.splits.items()}
    assert data["fingerprint"] == provenance.fingerprint(data)
    assert record["devices"]["platform"] == "cpu" and record["devices"]["count"] == 1
    assert record["versions"]["jax"] == __import__("jax").__version__
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0:
        assert record["code"]["commit"] == git.stdout.strip()
    (session,) = record["sessions"]
    assert session["finished"] and session["end_step"] == record["config"]["total_steps"]
    assert 0 < session["first_step_s"] <= session["process_start_to_first_step_s"] and session["wall_s"] > 0
    assert record["wall_s"] == session["wall_s"]


def test_second_run_skips_done_members_and_resumes_a_partial_one(smoke_sweeps):
    roots, _, argv = smoke_sweeps
    root = roots[1]
    partial = os.path.join(root, "recipe-seed=1")
    final = os.path.join(partial, "eval", "final_metrics.json")
    want = open(final).read()
    os.remove(final)  # as if killed after its last checkpoint, before the final evaluation
    proc = subprocess.run([sys.executable, "-m", "aesthetics_jax.cli", "sweep", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1] recipe-seed=1: resuming" in proc.stdout
    assert "recipe-seed=0: started" not in proc.stdout and "emd_only" not in proc.stdout.split("finished")[0]
    assert "resuming from step" in open(os.path.join(partial, runner.LOG_FILE)).read()
    assert open(final).read() == want
    assert len(provenance.read(partial)["sessions"]) == 2
    # a different sweep member under an existing name is refused, not mixed in
    other = subprocess.run([sys.executable, "-m", "aesthetics_jax.cli", "sweep", *argv, "--set", "lr=0.5"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert other.returncode == 1 and "use another --root" in other.stderr
