"""On CUDA, every sampler: same seed, same image, bit for bit and for any batch size, and the CPU's image up to float32
rounding; half-precision latents; the sync counter of samplers/bench/syncs.py sees a host read and none in our step
loops; learn_plan learns on the GPU what it learns on the CPU. Skipped where no CUDA device is present
(tests/test_no_sync.py proves the no-sync property on CPU too)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_edges import NAMES, gaussian_model, start, structure

from samplers import SAMPLERS, grids
from samplers.bench.overhead import SHAPE, trivial_model
from samplers.bench.syncs import count_syncs
from samplers.learned import learn_plan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
SIGMAS = grids.karras(8, 0.03, 14.6)


def run(name: str, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The sampler on the exact Gaussian denoiser, the seed where ComfyUI passes it (every sampler takes it)."""
    return SAMPLERS[name](gaussian_model(), x, SIGMAS.to(x.device), extra_args={"seed": seed}, disable=True)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_image_on_cuda_and_close_to_cpu(name: str) -> None:
    x = start(n=3, dtype=torch.float32)
    gpu = run(name, x.cuda(), 7)
    assert gpu.is_cuda and torch.isfinite(gpu).all()
    assert torch.equal(gpu, run(name, x.cuda(), 7))
    torch.testing.assert_close(gpu.cpu(), run(name, x, 7), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_latents_on_cuda(name: str, dtype: torch.dtype) -> None:
    """A half-precision latent on the GPU (what a host with an fp16 model may hand over): integrated in float32,
    returned in its dtype, close to the float32 run from the same rounded start (fixed steps only: an adaptive
    sampler's accept/reject decisions turn the model's half-precision rounding into another trajectory)."""
    x = start(n=3, dtype=torch.float32).to(dtype).cuda()
    out = run(name, x, 5)
    assert out.dtype == dtype and out.is_cuda and torch.isfinite(out).all()
    if structure(name) == "adaptive":
        return
    tol = 1e-2 if dtype == torch.float16 else 6e-2
    torch.testing.assert_close(out.float(), run(name, x.float(), 5), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", [n for n in NAMES if structure(n) != "adaptive"])
def test_image_b_of_a_cuda_batch_is_the_image_of_seed_plus_b(name: str) -> None:
    """Adaptive samplers choose one step size for the whole batch, so they are left out (as on CPU)."""
    x = start(n=3, dtype=torch.float32).cuda()
    batch = run(name, x, 11)
    for b in range(3):
        assert torch.equal(batch[b:b + 1], run(name, x[b:b + 1], 11 + b)), f"{name}: image {b}"


def _counts(name: str, model: Callable[..., torch.Tensor] = trivial_model) -> list[int]:
    """Synchronising calls of one run (after a warm-up run: plans cached) on the 10- and 20-step Karras grids."""
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).cuda()
    counts = []
    for steps in (10, 20):
        sigmas = grids.karras(steps, 0.029, 14.6).to(torch.float32).cuda()
        SAMPLERS[name](model, x, sigmas, disable=True)
        counts.append(count_syncs(lambda s=sigmas: SAMPLERS[name](model, x, s, disable=True)))
    return counts


def test_the_sync_counter_sees_host_reads_and_nothing_else() -> None:
    x = torch.ones(4, device="cuda")
    assert count_syncs(lambda: float(x.sum())) == 1
    assert count_syncs(lambda: torch.arange(3.0).to("cuda")) == 1  # a blocking upload
    assert count_syncs(lambda: x * 2 + 1) == 0

    def reading(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert float(sigma[0]) > 0.0  # one host read per model call
        return trivial_model(x, sigma)

    few, many = _counts("dpm_solver_pp_2m", reading)
    assert many - few >= 10  # ten more calls, ten more reads: the per-step check below can fail


@pytest.mark.parametrize("name", [n for n in NAMES if structure(n) != "adaptive"])
def test_our_syncs_per_run_do_not_grow_with_the_steps(name: str) -> None:
    """Whatever a run reads on the host (the grid, the final NaN flag) or copies to the device (the sigmas, the
    noise keys) it does once before or after the loop, not once per step."""
    few, many = _counts(name)
    assert few == many <= 6, (few, many)  # measured: 3 (grid read, sigma upload, NaN check), +3 with noise


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
@pytest.mark.parametrize("history", [0, 4])
def test_learn_plan_on_cuda_learns_what_it_learns_on_the_cpu(history: int) -> None:
    """The plan's recursion runs where the noises are (the model gets its sigmas there too); the coefficients,
    shifts and grid stay float64 on the host, so the two devices give the same plan up to reduction order (with
    the stages widened to the 4 newest calls too)."""
    x = start(n=16, seed=3)
    learned = {device: learn_plan(gaussian_model(), "dpm_solver_pp_3m", SIGMAS, x.to(device), "ve", steps=12,
                                  learn_grid=True, history=history) for device in ("cpu", "cuda")}
    cpu, cuda = learned["cpu"], learned["cuda"]
    assert cpu.objective_after < 0.9 * cpu.objective_before
    assert cuda.objective_before == pytest.approx(cpu.objective_before, rel=1e-9)
    assert cuda.objective_after == pytest.approx(cpu.objective_after, rel=1e-6)
    for field in ("corrections", "shifts", "sigmas"):
        assert getattr(cuda, field) == pytest.approx(getattr(cpu, field), rel=1e-6, abs=1e-9), field
