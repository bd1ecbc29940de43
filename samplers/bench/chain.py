"""A cached exact-ODE reference: states of one batch at any sigma, each solved from the nearest state above it."""

from __future__ import annotations

import bisect
import math

import torch

SAME_SIGMA_RTOL = 1e-12
"""Sigmas this close to a cached one are that one: the ODE moves x by O(rtol) there, far below the reference's
tolerance, and a solver step of zero length in half-log-SNR would divide by zero."""


class ChainedReference:
    """x(sigma) on the sampling ODE from one batch at `sigma_start`, and what an exact solver returns on a grid.

    Subclasses provide `solve` (the ODE from one sigma to a lower one) and `denoise` (the model's D). Every new
    sigma starts from the nearest cached state above it, so the references of all step counts cost one solve.
    """

    def __init__(self, sigma_start: float, x: torch.Tensor) -> None:
        self._keys: list[float] = [-sigma_start]  # negated sigmas, ascending for bisect
        self._states: list[torch.Tensor] = [x]
        self._targets: dict[tuple[float, bool], torch.Tensor] = {}

    def solve(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        raise NotImplementedError

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        raise NotImplementedError

    def state_at(self, sigma: float) -> torch.Tensor:
        """x(sigma) on the sampling ODE from the initial batch."""
        key = -sigma
        i = bisect.bisect_right(self._keys, key) - 1  # largest cached sigma >= sigma
        if i < 0 and math.isclose(sigma, -self._keys[0], rel_tol=SAME_SIGMA_RTOL, abs_tol=0.0):
            i = 0  # the start itself, rounded up (a one-step Karras grid's sigma_max^(1/rho)^rho)
        if i < 0 or sigma <= 0:
            raise ValueError(f"the reference covers 0 < sigma <= {-self._keys[0]}, got {sigma}")
        for j in (i, i + 1):  # the cached sigmas on either side
            if j < len(self._keys) and math.isclose(-self._keys[j], sigma, rel_tol=SAME_SIGMA_RTOL, abs_tol=0.0):
                return self._states[j]
        x = self.solve(self._states[i], -self._keys[i], sigma)
        self._keys.insert(i + 1, key)
        self._states.insert(i + 1, x)
        return x

    def target(self, sigmas: torch.Tensor) -> torch.Tensor:
        """What an exact solver returns on `sigmas`: x(sigma_last), then D(x, sigma_last) if the grid ends at 0."""
        values = sigmas.tolist()
        ends_at_zero = values[-1] == 0.0
        last = values[-2] if ends_at_zero else values[-1]
        key = (last, ends_at_zero)
        if key not in self._targets:
            x = self.state_at(last)
            if ends_at_zero:
                with torch.no_grad():
                    x = self.denoise(x, last)
            self._targets[key] = x
        return self._targets[key]
