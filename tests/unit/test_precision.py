import pytest

from emnist_lightning import precision
from emnist_lightning.training.precision import resolve_precision


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_uses_bf16_only_on_cpus_that_compute_it_natively(
    monkeypatch, native: bool, expected: str
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("auto", "auto") == expected


def test_explicit_precision_is_kept() -> None:
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"


def test_gpu_auto_prefers_bf16_where_supported(monkeypatch) -> None:
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
