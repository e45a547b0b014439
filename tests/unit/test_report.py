"""The evaluation report on hand-made predictions: every number checked, no data needed."""

import csv
from pathlib import Path

import pytest
import torch

from emnist_lightning.evaluation.report import row_rates, write_report

CLASSES = ["a", "b", "c"]
# true:      a a a a b b c c c c c
# predicted: a a b c b b c c c a a
TARGETS = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
PREDICTIONS = torch.tensor([0, 0, 1, 2, 1, 1, 2, 2, 2, 0, 0])


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, list]:
    pairs = write_report(PREDICTIONS, TARGETS, CLASSES, tmp_path)
    return tmp_path, pairs


def _rows(path: Path) -> list[list[str]]:
    with path.open() as f:
        return list(csv.reader(f))


def test_confusion_csv_holds_the_counts_row_by_true_class(report) -> None:
    folder, _ = report
    rows = _rows(folder / "confusion_matrix.csv")
    assert rows[0] == ["true \\ predicted", "a", "b", "c"]
    assert rows[1:] == [["a", "2", "1", "1"], ["b", "0", "2", "0"], ["c", "2", "0", "3"]]
    assert (folder / "confusion_matrix.png").stat().st_size > 1_000


def test_per_class_scores_and_supports_are_exact(report) -> None:
    folder, _ = report
    with (folder / "per_class_metrics.csv").open() as f:
        rows = {r["character"]: r for r in csv.DictReader(f)}
    assert list(rows) == CLASSES  # every class, none missing
    assert [rows[c]["support"] for c in CLASSES] == ["4", "2", "5"]
    # precision: of what was predicted c, how much was c
    assert float(rows["a"]["precision"]) == pytest.approx(2 / 4, abs=1e-4)
    assert float(rows["b"]["precision"]) == pytest.approx(2 / 3, abs=1e-4)
    assert float(rows["c"]["precision"]) == pytest.approx(3 / 4, abs=1e-4)
    assert float(rows["a"]["recall"]) == pytest.approx(2 / 4, abs=1e-4)
    assert float(rows["c"]["recall"]) == pytest.approx(3 / 5, abs=1e-4)
    assert float(rows["b"]["f1"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1), abs=1e-4)


def test_most_confused_pairs_are_the_largest_off_diagonal_cells(report) -> None:
    folder, pairs = report
    assert pairs[0] == ("c", "a", 2)
    assert sorted(pairs[1:]) == [("a", "b", 1), ("a", "c", 1)]
    assert _rows(folder / "most_confused_pairs.csv")[1] == ["c", "a", "2"]


def test_plotted_rows_are_shares_of_each_true_class() -> None:
    confusion = torch.tensor([[2, 1, 1], [0, 2, 0], [0, 0, 0]])
    rates = row_rates(confusion)
    assert torch.allclose(rates[0], torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(rates[1], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(rates[2], torch.zeros(3))  # a class with no images is not NaN
