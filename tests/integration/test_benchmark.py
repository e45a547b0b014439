"""The benchmark script runs end to end in a tiny configuration on fixtures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.emnist_fixtures import write_emnist_fixture

from emnist_lightning.training.run import train

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_runs_every_recipe_and_writes_table_and_plot(tmp_path: Path) -> None:
    data = write_emnist_fixture(tmp_path / "data", train_per_class=8, test_per_class=2)
    out = tmp_path / "results"
    stale = out / "runs" / "ours_best" / "checkpoints" / "epoch_027-val_acc_0.9999.ckpt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier benchmark run's best checkpoint")
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/run_benchmark.py",
            "--data-dir",
            str(data),
            "--seed-epochs",
            "2",
            "--ours-epochs",
            "1",
            "--out",
            str(out),
            "--publish",
            str(tmp_path / "published"),
            "--overrides",
            "data.batch_size=32",  # several steps per epoch on the tiny fixture
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "results.md").read_text()
    for label in (
        "seed recipe (faithful)",
        "experiment=seed_recipe",
        "default",
        "experiment=fast",
        "experiment=best",
    ):
        assert label in table
    # Every target is stated as met or missed.
    targets = [line for line in table.splitlines() if line.startswith("- Target")]
    assert len(targets) == 3 and all(("**met**" in t) != ("**missed**" in t) for t in targets)
    results = json.loads((out / "results.json").read_text())
    assert [r["recipe"] for r in results] == [
        "seed",
        "ours_seed",
        "ours_default",
        "ours_fast",
        "ours_best",
    ]
    seed = results[0]
    assert len(seed["curve"]) == 2 and seed["images_seen"] == 2 * 47 * 8
    for r in results[1:]:
        assert (
            len(r["curve"]) == 1 and r["images_seen"] == 47 * 8 - 47
        )  # train split minus validation
        assert r["final"]["acc"] > 1 / 47 and r["peak_rss_mb"] > 0  # learnt something
    assert (out / "time_vs_accuracy.png").stat().st_size > 5_000
    assert not stale.exists()  # each recipe trains into a fresh run folder
    assert (tmp_path / "published" / "results.md").read_text() == table


def _validation_scores(data_dir: Path, *models: Path) -> subprocess.CompletedProcess:
    """benchmarks/validation_scores.py on model files; it must succeed."""
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/validation_scores.py",
            "--data-dir",
            str(data_dir),
            "--resamples=200",
            *map(str, models),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_validation_scores_prints_plain_and_shifted_rows(
    make_train_cfg, tiny_emnist: Path, tmp_path: Path
) -> None:
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=tmp_path / "run"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = _validation_scores(tiny_emnist, last)
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {last} |")]
    assert [row.split("|")[2].strip() for row in rows] == ["0", "1"]
    assert all(row.count("%") == 3 for row in rows)
    assert "paired bootstrap" not in result.stdout  # one model: nothing to compare
    # The same model against itself: the paired resamples cancel exactly.
    twice = _validation_scores(tiny_emnist, last, last).stdout
    assert "paired bootstrap, 200 resamples" in twice
    assert twice.rstrip().endswith(f"- {last}: +0.00 points, 95% interval [+0.00, +0.00]")


@pytest.mark.slow
def test_validation_scores_scores_an_ensemble_and_each_member_alone(
    make_train_cfg, tiny_emnist: Path, tmp_path: Path
) -> None:
    overrides = ("model=bn_cnn_ensemble", "model.net.widths=[4,8]", "model.net.fc1_neurons=16")
    train(make_train_cfg(*overrides, "trainer.max_epochs=1", "test=false", output_dir=tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    result = _validation_scores(tiny_emnist, last)
    table = [line for line in result.stdout.splitlines()[2:] if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table]
    assert names == [str(last)] * 2 + [f"{last} member 1"] * 2 + [f"{last} member 2"] * 2
    # Each member alone against the ensemble, on the interval the split allows.
    compared = [line.split(":")[0] for line in result.stdout.splitlines() if line[:2] == "- "]
    assert compared == [f"- {last} member 1", f"- {last} member 2"]


def test_validation_scores_refuses_a_damaged_model_file_in_one_line(
    tiny_emnist: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"PK\x03\x04 not a checkpoint")
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/validation_scores.py",
            "--data-dir",
            str(tiny_emnist),
            str(damaged),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {damaged} is not a readable checkpoint")
