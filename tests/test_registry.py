"""The sampler registry as released: every entry's name, label, solver and metadata pinned (saved ComfyUI workflows
and WebUI infotexts name samplers, the hosts list them by label, and the calibration node and the benchmarks choose
among them by their metadata), and the entries frozen."""

from __future__ import annotations

import dataclasses

import pytest

from samplers import SAMPLERS
from samplers.bench.accuracy import deterministic
from samplers.bench.comparison import default_candidates

RELEASED = {
    # name: (label, calls per step, stochastic, solves the ODE, (structure, order, prediction, noise, corrector))
    "dpm_solver_1": ("DPM-Solver-1", 1, False, True, ("singlestep", 1, "noise", "none", False)),
    "dpm_solver_2": ("DPM-Solver-2", 2, False, True, ("singlestep", 2, "noise", "none", False)),
    "dpm_solver_3": ("DPM-Solver-3", 3, False, True, ("singlestep", 3, "noise", "none", False)),
    "dpm_solver_2m": ("DPM-Solver 2M", 1, False, True, ("multistep", 2, "noise", "none", False)),
    "dpm_solver_3m": ("DPM-Solver 3M", 1, False, True, ("multistep", 3, "noise", "none", False)),
    "dpm_solver_pp_2s": ("DPM-Solver++ 2S", 2, False, True, ("singlestep", 2, "data", "none", False)),
    "dpm_solver_pp_3s": ("DPM-Solver++ 3S", 3, False, True, ("singlestep", 3, "data", "none", False)),
    "dpm_solver_pp_2m": ("DPM-Solver++ 2M", 1, False, True, ("multistep", 2, "data", "none", False)),
    "dpm_solver_pp_3m": ("DPM-Solver++ 3M", 1, False, True, ("multistep", 3, "data", "none", False)),
    "dpm_solver_fast": ("DPM-Solver-fast", 1, False, True, ("fast", 3, "noise", "none", False)),
    "dpm_solver_pp_sde": ("DPM-Solver++ SDE", 2, True, True, ("singlestep", 2, "data", "sde", False)),
    "dpm_solver_pp_2m_sde": ("DPM-Solver++ 2M SDE", 1, True, True, ("multistep", 2, "data", "sde", False)),
    "dpm_solver_pp_3m_sde": ("DPM-Solver++ 3M SDE", 1, True, True, ("multistep", 3, "data", "sde", False)),
    "dpm_solver_pp_2s_ancestral": ("DPM-Solver++ 2S ancestral", 2, True, True,
                                   ("singlestep", 2, "data", "ancestral", False)),
    "dpm_solver_adaptive": ("DPM-Solver adaptive", 3, False, True, ("adaptive", 3, "noise", "none", False)),
    "dpm_solver_pp_adaptive": ("DPM-Solver++ adaptive", 3, False, True, ("adaptive", 3, "data", "none", False)),
    "dpm_solver_pp_pc": ("DPM-Solver++ PC", 1, False, True, ("multistep", 3, "data", "none", True)),
    "dpm_solver_sds": ("DPM-Solver SDS", 1, False, False, None),
}
"""Names in release order (the hosts list them in this order): add at the end, never rename or reorder."""


def test_the_registry_is_the_released_one() -> None:
    assert list(SAMPLERS) == list(RELEASED)
    for name, entry in SAMPLERS.items():
        spec = None if entry.spec is None else (entry.spec.structure, entry.spec.order, entry.spec.prediction,
                                               entry.spec.noise, entry.spec.corrector)
        assert (entry.label, entry.calls_per_step, entry.stochastic, entry.solves_ode, spec) == RELEASED[name], name
        assert entry.name == name


def test_the_benchmarks_rank_the_deterministic_ode_solvers() -> None:
    """Stochastic samplers and score distillation (which optimises a latent) have no ODE error to rank."""
    ode = [name for name, (_, _, stochastic, solves_ode, _) in RELEASED.items() if solves_ode and not stochastic]
    assert list(deterministic(SAMPLERS)) == ode
    assert [c.sampler for c in default_candidates(SAMPLERS)] == ode
    assert "dpm_solver_sds" not in ode and "dpm_solver_pp_sde" not in ode and "dpm_solver_pp_pc" in ode


def test_the_entries_and_the_table_are_read_only() -> None:
    entry = SAMPLERS["dpm_solver_pp_2m"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.label = "renamed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SAMPLERS["dpm_solver_pp_2m"] = entry  # type: ignore[index]
    with pytest.raises(TypeError):
        entry.defaults["eta"] = 0.5  # type: ignore[index]
