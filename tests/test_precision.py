"""Training precision: bf16 autocast only where this CPU's bf16 matmul is measured faster."""

import pytest
import torch

from world import precision


@pytest.mark.parametrize("speedup,expected", [(0.26, "fp32"), (1.2, "fp32"), (4.6, "bf16")])
def test_auto_takes_bf16_only_where_it_is_measured_faster(monkeypatch, speedup, expected):
    monkeypatch.setattr(precision, "bf16_speedup", lambda: speedup)
    assert precision.resolve("auto") == (expected, speedup)


def test_explicit_precision_is_not_measured(monkeypatch):
    monkeypatch.setattr(precision, "bf16_speedup", lambda: pytest.fail("measured"))
    assert precision.resolve("fp32") == ("fp32", None)
    assert precision.resolve("bf16") == ("bf16", None)
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve("fp16")


def test_autocast_runs_matmuls_in_bf16_and_fp32_untouched():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with precision.autocast("bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with precision.autocast("fp32"):
        assert (a @ b).dtype == torch.float32
