from __future__ import annotations

import pytest
import torch
from torch import nn

from orbit_lite.errors import OrbitLiteError
from orbit_lite.lite import lite_forward


def make_fn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def task_loss(rows: torch.Tensor) -> torch.Tensor:
    # couples the rows like a head does (a mean and a spread), so every row's gradient depends on the others
    centre = rows.mean(0)
    return (rows - centre).pow(2).sum(1).mean() + centre.sin().sum()


def grads(fn: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in fn.parameters()])


def full_gradient(fn: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    fn.zero_grad()
    task_loss(fn(inputs)).backward()
    return grads(fn).clone()


def test_forward_values_equal_fn_of_all_rows() -> None:
    fn, inputs = make_fn(), torch.randn(37, 6, dtype=torch.float64)
    out = lite_forward(fn, inputs, h=5, chunk_size=8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, fn(inputs), rtol=0, atol=1e-12)
    assert out.requires_grad


def test_values_do_not_depend_on_chunking_or_the_subset() -> None:
    fn, inputs = make_fn(), torch.randn(20, 6, dtype=torch.float64)
    a = lite_forward(fn, inputs, h=3, chunk_size=1, generator=torch.Generator().manual_seed(1))
    b = lite_forward(fn, inputs, h=7, chunk_size=64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_h_at_least_n_is_ordinary_backprop() -> None:
    fn, inputs = make_fn(), torch.randn(12, 6, dtype=torch.float64)
    expected = full_gradient(fn, inputs)
    for h in (12, 50):
        fn.zero_grad()
        task_loss(lite_forward(fn, inputs, h=h, chunk_size=5)).backward()
        torch.testing.assert_close(grads(fn), expected, rtol=1e-5, atol=1e-5)


def test_only_h_rows_carry_gradient_scaled_by_n_over_h() -> None:
    fn = make_fn()
    inputs = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    lite_forward(fn, inputs, h=2, chunk_size=4, generator=torch.Generator().manual_seed(3)).sum().backward()
    rows = (inputs.grad.abs().sum(1) > 0).nonzero().flatten()
    assert len(rows) == 2
    reference = torch.autograd.grad(fn(inputs[rows]).sum(), inputs)[0][rows]
    torch.testing.assert_close(inputs.grad[rows], reference * 5.0)  # N/H = 10/2


def test_lite_gradient_is_unbiased() -> None:
    # The mean of many LITE gradients converges to the full gradient: every coordinate's mean lies within
    # 4.5 standard errors of the truth (the errors are computed from the draws themselves).
    fn, inputs = make_fn(), torch.randn(16, 6, dtype=torch.float64)
    truth = full_gradient(fn, inputs)
    draws = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(3000):
        fn.zero_grad()
        task_loss(lite_forward(fn, inputs, h=3, chunk_size=16, generator=generator)).backward()
        draws.append(grads(fn).clone())
    draws = torch.stack(draws)
    mean, stderr = draws.mean(0), draws.std(0) / len(draws) ** 0.5
    assert (draws.std(0) > 0).any()  # the estimator really is noisy...
    assert ((mean - truth).abs() <= 4.5 * stderr + 1e-9).all()  # ...and unbiased
    assert (mean - truth).norm() / truth.norm() < 0.05


def test_biased_estimator_would_fail_the_same_check() -> None:
    # Sanity check of the statistical test: without the N/H factor the same draws are biased and caught.
    fn, inputs = make_fn(), torch.randn(16, 6, dtype=torch.float64)
    truth = full_gradient(fn, inputs)
    generator = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(500):
        fn.zero_grad()
        order = torch.randperm(16, generator=generator)
        with torch.no_grad():
            rest = fn(inputs[order[3:]])
        rows = torch.cat([fn(inputs[order[:3]]), rest])[torch.argsort(order)]
        task_loss(rows).backward()
        draws.append(grads(fn).clone())
    draws = torch.stack(draws)
    stderr = draws.std(0) / len(draws) ** 0.5
    assert ((draws.mean(0) - truth).abs() > 4.5 * stderr + 1e-9).any()


def test_outside_grad_mode_everything_is_chunked_without_graph() -> None:
    fn, inputs = make_fn(), torch.randn(9, 6, dtype=torch.float64)
    with torch.no_grad():
        out = lite_forward(fn, inputs, h=2, chunk_size=4)
    assert not out.requires_grad
    torch.testing.assert_close(out, fn(inputs).detach())


@pytest.mark.parametrize(("h", "chunk"), [(0, 4), (-1, 4), (2, 0)])
def test_bad_sizes_are_errors(h: int, chunk: int) -> None:
    with pytest.raises(OrbitLiteError, match="must be >= 1"):
        lite_forward(make_fn(), torch.randn(4, 6, dtype=torch.float64), h=h, chunk_size=chunk)
