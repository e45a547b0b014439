"""JSON from outside is parsed only once its size and nesting are known to be sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emnist_lightning.errors import DataFilesError, ModelFileError
from emnist_lightning.inference.model_files import CARD_NAME, export_state_dict
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.json_input import JSONInputError, nesting_depth, parse_json
from emnist_lightning.models.card import ModelCard

BOMBS = {
    "100k open brackets": "[" * 100_000,
    "50k nested objects": '{"a":' * 50_000,
    "a 5,000-digit number": "1" * 5_000,
}


@pytest.mark.parametrize("text", BOMBS.values(), ids=BOMBS.keys())
def test_json_bombs_are_refused_with_a_short_reason_not_a_crash(text: str) -> None:
    with pytest.raises(JSONInputError) as refused:
        parse_json(text, max_bytes=1_000_000)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 120


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"a": ["[[[[", {"b": '"]]]{{{\\"'}]})
    assert nesting_depth(text.encode()) == 3
    assert parse_json(text, max_bytes=1000, max_depth=3) == json.loads(text)


def test_size_is_capped_before_parsing() -> None:
    with pytest.raises(JSONInputError, match="larger than 10 bytes"):
        parse_json('{"image": "abcdef"}', max_bytes=10)


def test_a_deeply_nested_model_card_is_refused_in_one_line(tmp_path: Path) -> None:
    card = ModelCard("seed_cnn", {"fc1_neurons": 8, "dropout": 0.1}, tuple("0123456789"), 0.2, 0.3)
    weights = export_state_dict(card, card.build_net(), tmp_path)
    (tmp_path / CARD_NAME).write_text('{"net": ' * 20_000)
    with pytest.raises(ModelFileError) as refused:
        load_predictor(weights)
    message = str(refused.value)
    assert "\n" not in message and "nested more than 32 levels deep" in message, message


def test_an_unclosed_string_of_escaped_quotes_is_scanned_once() -> None:
    # Every quote of this body used to start a scan to the end of it (quadratic: 40 KB took
    # 15 s, this one would take hours); an HTTP process stalled on one such request.
    body = b'{"image": "' + b'\\"' * 200_000
    with pytest.raises(JSONInputError, match="not valid JSON"):
        parse_json(body, max_bytes=1_000_000)
    assert nesting_depth(b'{"a": "\\"[[[') == 1


def test_a_correction_record_too_deep_or_with_a_huge_number_is_one_line(tmp_path: Path) -> None:
    from emnist_lightning.data.corrections import _read_record

    for text in ('{"strokes": ' + "[" * 5_000, '{"character": ' + "9" * 5_000 + "}"):
        record = tmp_path / "bad.json"
        record.write_text(text)
        with pytest.raises(DataFilesError, match="not a correction record") as refused:
            _read_record(record, tuple("0123456789"))
        assert "\n" not in str(refused.value)
