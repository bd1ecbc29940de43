"""The benchmark's cached exact reference (samplers/bench/chain.py), on an ODE whose solution is known.

`Halving` solves x(sigma) = x0 * sigma / sigma_start exactly and records every solve, so a test can tell which
cached state each new sigma was solved from; its denoiser is D = x / 4, recorded too.
"""

from __future__ import annotations

import pytest
import torch

from samplers.bench.chain import ChainedReference


class Halving(ChainedReference):
    def __init__(self, sigma_start: float, x: torch.Tensor) -> None:
        super().__init__(sigma_start, x)
        self.solves: list[tuple[float, float]] = []
        self.denoised: list[float] = []

    def solve(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        assert sigma_to < sigma_from * (1 - 1e-12), "a zero-length solve would divide by zero in lambda"
        self.solves.append((sigma_from, sigma_to))
        return x * (sigma_to / sigma_from)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.denoised.append(sigma)
        return x / 4


def test_a_sigma_within_rounding_of_a_cached_one_is_that_one() -> None:
    ref = Halving(1.0, torch.ones(3))
    at_half = ref.state_at(0.5)
    assert ref.state_at(0.5 * (1 - 1e-15)) is at_half and ref.state_at(0.5 * (1 + 1e-15)) is at_half
    assert torch.equal(ref.state_at(0.25), torch.full((3,), 0.25))
    assert ref.solves == [(1.0, 0.5), (0.5, 0.25)]


def test_a_sigma_just_above_a_cached_one_finds_it_with_more_cached_below() -> None:
    """The cached sigma just below the asked one is found among several, not only when it is the last."""
    ref = Halving(1.0, torch.ones(3))
    at_half = ref.state_at(0.5)
    ref.state_at(0.25)
    assert ref.state_at(0.5 * (1 + 1e-15)) is at_half
    assert ref.solves == [(1.0, 0.5), (0.5, 0.25)]


def test_the_start_rounded_up_is_the_initial_batch() -> None:
    """A one-step Karras grid's sigma_max^(1/rho)^rho can land a rounding above the start: that is the start."""
    x = torch.ones(3)
    ref = Halving(1.0, x)
    assert ref.state_at(1.0 * (1 + 1e-15)) is x and ref.state_at(1.0) is x
    assert ref.solves == []


@pytest.mark.parametrize("sigma", [0.0, -0.5, 1.5])
def test_a_sigma_outside_the_reference_is_refused(sigma: float) -> None:
    ref = Halving(1.0, torch.ones(3))
    with pytest.raises(ValueError, match=r"0 < sigma <= 1\.0, got"):
        ref.state_at(sigma)


def test_each_new_sigma_is_solved_from_the_nearest_cached_state_above_it() -> None:
    ref = Halving(2.0, torch.ones(2))
    ref.state_at(0.25)
    ref.state_at(1.0)
    ref.state_at(0.5)
    assert ref.solves == [(2.0, 0.25), (2.0, 1.0), (1.0, 0.5)]
    assert torch.equal(ref.state_at(0.5), torch.full((2,), 0.25))


def test_the_target_is_the_last_state_or_its_denoised_value_once_per_grid_end() -> None:
    ref = Halving(1.0, torch.ones(2))
    assert torch.equal(ref.target(torch.tensor([1.0, 0.75, 0.5])), torch.full((2,), 0.5))
    at_zero = ref.target(torch.tensor([1.0, 0.5, 0.0]))
    assert torch.equal(at_zero, torch.full((2,), 0.125))
    assert ref.target(torch.tensor([1.0, 0.75, 0.5, 0.0])) is at_zero  # the same end: cached, denoised once
    assert ref.denoised == [0.5]
    assert ref.solves == [(1.0, 0.5)]
    assert torch.equal(ref.target(torch.tensor([1.0, 0.25])), torch.full((2,), 0.25))  # not the denoised 0.5
