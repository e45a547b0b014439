"""Using a trained model: report files, predict.py on images and random test samples, ONNX."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.configs import PROXY_DIR
from helpers.rendered_chars import render_character
from PIL import Image

from emnist_lightning.errors import ModelFileError
from emnist_lightning.inference.model_files import resolve_model_path
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.inference.preprocess import load_character

REPO = Path(__file__).resolve().parents[2]
# Characters whose printed and handwritten shapes agree and that have no look-alike class.
LEGIBLE = "234567ABEFHKMNRTXYbdehnqrt"


@pytest.fixture
def trained_run(proxy_trained_run: Path) -> Path:
    """A batch-norm CNN trained 300 steps on the real proxy handwriting (shared per session)."""
    return proxy_trained_run


def _predict_cli(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "predict.py"), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.proxy
def test_report_covers_the_whole_test_set(trained_run: Path) -> None:
    report = trained_run / "report"
    with (report / "confusion_matrix.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == 47 and sum(int(v) for row in rows for v in row[1:]) == 14_100
    with (report / "per_class_metrics.csv").open() as f:
        per_class = list(csv.DictReader(f))
    assert [r["character"] for r in per_class][:11] == [*"0123456789", "A"]
    assert all(r["support"] == "300" for r in per_class)
    with (report / "most_confused_pairs.csv").open() as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 10 and all(p["true"] != p["predicted"] for p in pairs)
    counts = [int(p["count"]) for p in pairs]
    assert counts == sorted(counts, reverse=True)
    for image in ("confusion_matrix.png", "learning_curves.png"):
        assert (report / image).stat().st_size > 5_000


@pytest.mark.proxy
@pytest.mark.parametrize("dark_on_light", [True, False], ids=["black-on-white", "white-on-black"])
def test_rendered_characters_are_mostly_recognised(
    trained_run: Path, tmp_path: Path, dark_on_light: bool
) -> None:
    predictor = load_predictor(trained_run / "checkpoints" / "last.ckpt")
    rng = np.random.default_rng(0)
    images = []
    for i, char in enumerate(LEGIBLE):
        size = int(rng.integers(50, 130))
        offset = (int(rng.integers(0, 60)), int(rng.integers(0, 40)))
        path = render_character(
            char,
            tmp_path / f"{i}.png",
            font_size=size,
            canvas=(260, 200),
            offset=offset,
            dark_on_light=dark_on_light,
            stroke=max(2, size // 25),
        )
        images.append(load_character(path))
    predicted = predictor.probabilities(torch.stack(images)).argmax(dim=1)
    upright_hits = sum(
        predictor.class_names[int(p)] == c for p, c in zip(predicted, LEGIBLE, strict=True)
    )
    transposed = predictor.probabilities(torch.stack(images).transpose(-2, -1)).argmax(dim=1)
    transposed_hits = sum(
        predictor.class_names[int(p)] == c for p, c in zip(transposed, LEGIBLE, strict=True)
    )
    assert upright_hits >= 0.6 * len(LEGIBLE), upright_hits
    assert upright_hits >= transposed_hits + 5  # the model sees upright images, as trained


@pytest.mark.proxy
def test_predict_cli_predicts_good_images_and_reports_bad_ones(
    trained_run: Path, tmp_path: Path
) -> None:
    good = render_character("A", tmp_path / "a.png")
    render_character("7", tmp_path / "seven.png", dark_on_light=False)
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    broken = tmp_path / "broken.jpg"
    broken.write_text("no pixels here")
    result = _predict_cli(
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"images=[{tmp_path}]",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 1  # some inputs failed, the rest were predicted
    assert f"{good}: '" in result.stdout and "top-3:" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {blank}: no ink found (the image is blank or has no contrast)",
        f"error: {broken}: not an image Pillow can read (UnidentifiedImageError)",
    ]
    with (tmp_path / "out" / "predictions.csv").open() as f:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    assert set(rows) == {"a.png", "seven.png", "blank.png", "broken.jpg"}
    assert rows["blank.png"]["error"] and not rows["a.png"]["error"]
    assert 0 < float(rows["a.png"]["probability"]) <= 1


@pytest.mark.proxy
@pytest.mark.slow
def test_random_test_grid_from_the_seed_state_dict(trained_run: Path, tmp_path: Path) -> None:
    result = _predict_cli(
        f"ckpt_path={trained_run / 'character_recognition.torch'}",
        "random_test=12",
        f"data.data_dir={PROXY_DIR}",
        "data.download=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("test image") == 12 and "/12 correct" in result.stdout
    assert (tmp_path / "random_test.png").stat().st_size > 5_000
    with (tmp_path / "random_test.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 12


@pytest.mark.proxy
@pytest.mark.slow
def test_model_of_another_class_count_is_refused_in_one_line(
    trained_run: Path, tmp_path: Path
) -> None:
    result = _predict_cli(
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        "random_test=4",
        "data.split=digits",
        f"data.data_dir={PROXY_DIR}",
        "data.download=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the model has 47 classes but data.split=digits has 10: set data.split to the split it was trained on"
    ]


@pytest.mark.proxy
def test_state_dict_with_a_mismatched_model_card_is_refused(
    trained_run: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "character_recognition.torch"
    weights.write_bytes((trained_run / "character_recognition.torch").read_bytes())
    card = json.loads((trained_run / "model_card.json").read_text())
    card["class_names"] = card["class_names"][:10]
    card.pop("look_alikes", None)  # pairs of letters the 10 classes no longer have
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(
        ModelFileError, match="the weights do not fit the model card's net .*use the pair"
    ):
        load_predictor(weights)


@pytest.mark.proxy
@pytest.mark.slow
def test_export_and_evaluate_commands_work_on_the_newest_run(
    trained_run: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    runs = logs / "train" / "runs"
    shutil.copytree(trained_run, runs / "only")
    # The best checkpoint last.ckpt names is found beside it, in the copied run.
    assert resolve_model_path("best", runs).parent == runs / "only" / "checkpoints"
    export = subprocess.run(
        [sys.executable, "export.py", f"paths.log_dir={logs}", f"hydra.run.dir={tmp_path / 'exp'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    assert {"model.onnx", "character_recognition.torch", "model_card.json"} <= {
        p.name for p in (tmp_path / "exp").iterdir()
    }
    evaluate = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"ckpt_path={tmp_path / 'exp' / 'model.onnx'}",
            f"data.data_dir={PROXY_DIR}",
            "data.download=false",
            f"paths.log_dir={logs}",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((trained_run / "metrics.json").read_text())
    assert scored["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-3)
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()
