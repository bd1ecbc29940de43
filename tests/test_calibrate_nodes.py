"""The grid calibration nodes: loading and file names on the stand-in comfy package; calibrating inside a real
ComfyUI in-process (skipped without COMFYUI_PATH) with a random-weight SD1.5-shaped UNet, with CFG, both families."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from comfy_inprocess import conditioning, real_comfy_models
from test_comfy_support import FakePatcher, fake_comfy_package, load_package, make_model_sampling, purge_package

from samplers import grids
from samplers.calibrate import CalibratedGrid, load_grid, save_grid

PACKAGE = "dpm_solver_samplers_calibrate_test"
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")


@pytest.fixture
def package(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with fake_comfy_package(monkeypatch, PACKAGE) as (_, loaded):
        yield loaded


def _saved(path: Path) -> Path:
    sigmas = grids.karras(6, 0.029, 14.6)
    return save_grid(path, CalibratedGrid(sigmas, "dpm_solver_3m", 6, "ve", 0.2, 0.1, 10))


def test_load_node_returns_the_saved_grid(package: Any, tmp_path: Path) -> None:
    path = _saved(tmp_path / "mine")
    node = package.NODE_CLASS_MAPPINGS["DPMSolverLoadGrid"]()
    (sigmas,) = node.load(str(path), "dpm_solver_3m", 6)
    assert sigmas.dtype == torch.float32
    assert torch.allclose(sigmas.double(), grids.karras(6, 0.029, 14.6), rtol=1e-6)
    (same,) = node.load(str(tmp_path / "mine"), "any", 0)  # the suffix is optional
    assert torch.equal(same, sigmas)


def test_load_node_refuses_mismatches(package: Any, tmp_path: Path) -> None:
    path = str(_saved(tmp_path / "mine"))
    node = package.NODE_CLASS_MAPPINGS["DPMSolverLoadGrid"]()
    with pytest.raises(ValueError, match="not 'dpm_solver_pp_3m'"):  # the package's own CalibrationError
        node.load(path, "dpm_solver_pp_3m", 0)
    with pytest.raises(ValueError, match="nfe=6, not 10"):
        node.load(path, "any", 10)
    with pytest.raises(ValueError, match="sampler_name 'dpm_solver_pp_2m_sde' is not one of"):
        node.load(path, "dpm_solver_pp_2m_sde", 0)


def test_load_node_refuses_a_grid_of_another_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a model connected, a grid of the other family or above the model's sigma_max is refused (a flow grid,
    sigma 1 -> 0, used to run on an SD model without a word)."""
    with fake_comfy_package(monkeypatch, PACKAGE) as (modules, package):
        node = package.NODE_CLASS_MAPPINGS["DPMSolverLoadGrid"]()
        sd, flow = (FakePatcher(make_model_sampling(modules, kind)) for kind in ("eps", "flow"))
        path = str(_saved(tmp_path / "sd_grid"))
        (sigmas,) = node.load(path, "any", 0, sd)
        assert torch.equal(sigmas, node.load(path, "any", 0)[0])
        assert torch.equal(sigmas, node.load(path, "any", 0, FakePatcher(make_model_sampling(modules, "v")))[0])
        with pytest.raises(ValueError, match=r"sd_grid.safetensors was calibrated for SD1.x/SDXL-type .* this model "
                                             r"is rectified-flow"):
            node.load(path, "any", 0, flow)
        flow_grid = str(save_grid(tmp_path / "flow_grid", CalibratedGrid(
            grids.karras(6, 0.02, 1.0), "dpm_solver_3m", 6, "flow", 0.2, 0.1, 10)))
        assert node.load(flow_grid, "any", 0, flow)[0][0] == 1.0
        with pytest.raises(ValueError, match=r"calibrated for rectified-flow .* this model is SD1.x/SDXL-type"):
            node.load(flow_grid, "any", 0, sd)
        high = str(save_grid(tmp_path / "high", CalibratedGrid(
            grids.karras(6, 0.029, 20.0), "dpm_solver_3m", 6, "ve", 0.2, 0.1, 10)))
        with pytest.raises(ValueError, match=r"starts at sigma 20, above this model's largest sigma 14.6"):
            node.load(high, "any", 0, sd)
        sigma_max = float(sd.get_model_object("model_sampling").sigma_max)
        for slack, fits in ((1e-4, True), (1.5e-4, False)):  # float32 tables round: 1e-4 above sigma_max is allowed
            sigmas = grids.karras(6, 0.029, 14.0)
            sigmas[0] = sigma_max * (1.0 + slack)
            edge = str(save_grid(tmp_path / "edge", CalibratedGrid(sigmas, "dpm_solver_3m", 6, "ve", 0.2, 0.1, 10)))
            if fits:
                assert node.load(edge, "any", 0, sd)[0][0] == pytest.approx(sigma_max, rel=2e-4)
            else:
                with pytest.raises(ValueError, match="above this model's largest sigma"):
                    node.load(edge, "any", 0, sd)
        assert package.NODE_CLASS_MAPPINGS["DPMSolverLoadGrid"].IS_CHANGED(path, "any", 0, sd) != "missing"


def test_grid_file_names_stay_in_the_grid_folder(package: Any, tmp_path: Path) -> None:
    grid_path = package.nodes.calibrate_nodes.grid_path
    assert grid_path("a/b", tmp_path) == tmp_path / "a" / "b.safetensors"
    assert grid_path(" g.safetensors ", tmp_path) == tmp_path / "g.safetensors"
    assert grid_path(str(tmp_path / "x"), Path("/elsewhere")) == tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match=r"no '\.\.'"):
        grid_path("../escape", tmp_path)
    with pytest.raises(ValueError, match="file_name is empty"):
        grid_path("  ", tmp_path)


def test_model_fingerprint_reads_the_first_values_of_the_first_parameters(package: Any) -> None:
    """16 hex digits from the names, shapes and first 8 values of the first 64 parameters: cheap on a large model,
    and a file's fingerprint stays comparable across versions."""
    fingerprint = package.nodes.calibrate_nodes.model_fingerprint
    net = torch.nn.Module()
    for k in range(70):
        net.register_parameter(f"p{k}", torch.nn.Parameter(torch.arange(10.0) + k))
    model = type("Patcher", (), {"model": type("Base", (), {"diffusion_model": net})()})()
    first = fingerprint(model)
    assert len(first) == 16 and int(first, 16) >= 0
    with torch.no_grad():
        net.p64[0] = -1.0  # the 65th parameter
        net.p0[8] = -1.0  # the 9th value
    assert fingerprint(model) == first
    with torch.no_grad():
        net.p63[7] = -1.0
    assert fingerprint(model) != first
    assert fingerprint(object()) == fingerprint(None) != first  # no diffusion model: the hash of nothing


@pytest.fixture(scope="module")
def comfy_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not COMFYUI_PATH:
        pytest.skip("COMFYUI_PATH is not set: needs a ComfyUI checkout")
    with real_comfy_models(COMFYUI_PATH, tmp_path_factory.mktemp("stubs")) as models:
        import folder_paths

        output = tmp_path_factory.mktemp("output")
        previous = folder_paths.get_output_directory()
        folder_paths.set_output_directory(str(output))
        package = load_package(PACKAGE + "_real")
        yield {"package": package, **models, "output": output}
        purge_package(PACKAGE + "_real")
        folder_paths.set_output_directory(previous)


@pytest.mark.parametrize(("family", "scheduler"), [("ve", "karras"), ("flow", "simple")])
def test_calibrate_node_in_comfyui(comfy_env: dict[str, Any], family: str, scheduler: str) -> None:
    import comfy.samplers

    package = comfy_env["package"]
    model = comfy_env[family]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    node = package.NODE_CLASS_MAPPINGS["DPMSolverCalibrateGrid"]()
    (sigmas,) = node.calibrate(model, conditioning(1), conditioning(2), 5.0, latent, "dpm_solver_3m", scheduler,
                               4, 2, 7, 20, 12, f"test_{family}")
    ms = model.get_model_object("model_sampling")
    standard = comfy.samplers.calculate_sigmas(ms, scheduler, 4).double()
    assert sigmas.shape == standard.shape and sigmas.dtype == torch.float32
    assert float(sigmas[0]) == pytest.approx(float(standard[0]), rel=1e-6)
    assert float(sigmas[-2]) == pytest.approx(float(standard[-2]), rel=1e-6) and float(sigmas[-1]) == 0.0
    assert bool((sigmas[:-1] > sigmas[1:]).all())
    path = comfy_env["output"] / "dpm_solver_grids" / f"test_{family}.safetensors"
    stored = load_grid(path, "dpm_solver_3m", 4)
    assert stored.schedule == family and stored.objective_after <= stored.objective_before
    assert stored.info["seeds"] == "7..8" and stored.info["initial_grid"] == scheduler
    loader = package.NODE_CLASS_MAPPINGS["DPMSolverLoadGrid"]()
    (loaded,) = loader.load(f"test_{family}", "dpm_solver_3m", 4, model)
    assert torch.equal(loaded, sigmas)
    other = comfy_env["flow" if family == "ve" else "ve"]
    with pytest.raises(ValueError, match=f"test_{family}.safetensors was calibrated for"):
        loader.load(f"test_{family}", "dpm_solver_3m", 4, other)


def test_calibrate_writes_only_grid_files_inside_the_grid_folder(package: Any, tmp_path: Path) -> None:
    """A shared workflow's file_name must not write elsewhere or over a checkpoint; Load Grid still reads absolute
    paths."""
    output_path = package.nodes.calibrate_nodes.output_path
    assert output_path("a/b", tmp_path) == tmp_path.resolve() / "a" / "b.safetensors"
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"not a grid")
    for name, message in ((str(tmp_path / "elsewhere"), "not an absolute path"), (".", "inside output"),
                          ("/", "not an absolute path"), ("model", "exists and is not a calibrated grid"),
                          ("../model", "no '..'")):
        with pytest.raises(ValueError, match=message):
            output_path(name, tmp_path)
    assert checkpoint.read_bytes() == b"not a grid"
    _saved(tmp_path / "old_grid")
    assert output_path("old_grid", tmp_path) == tmp_path.resolve() / "old_grid.safetensors"  # a grid is replaced


def test_load_node_reads_the_file_again_when_it_changes(package: Any, tmp_path: Path) -> None:
    """ComfyUI caches a node's output until IS_CHANGED changes: a recalibrated or deleted file must be read again."""
    node = package.NODE_CLASS_MAPPINGS["DPMSolverLoadGrid"]
    path = _saved(tmp_path / "mine")
    first = node.IS_CHANGED(str(path), "any", 0)
    assert node.IS_CHANGED(str(path), "any", 0) == first
    save_grid(path, CalibratedGrid(grids.karras(8, 0.029, 14.6), "dpm_solver_3m", 8, "ve", 0.2, 0.1, 10))
    second = node.IS_CHANGED(str(path), "any", 0)
    assert second != first
    path.unlink()
    assert node.IS_CHANGED(str(path), "any", 0) == "missing"
    assert node.IS_CHANGED("../up", "any", 0) == "invalid name"


def test_calibrate_node_reports_progress_stops_on_cancel_and_starts_from_kl_optimal(comfy_env: dict[str, Any]
                                                                                   ) -> None:
    """The bar covers the reference solve and the search (it stopped at half before); Cancel stops the reference
    solve at its next model call (it ran on for all its steps); kl_optimal, which cannot make a 1-step grid, is a
    starting grid like any other."""
    import comfy.model_management
    import comfy.utils

    package = comfy_env["package"]
    node = package.NODE_CLASS_MAPPINGS["DPMSolverCalibrateGrid"]()
    calls: list[int] = []
    model = comfy_env["ve"].clone()
    model.set_model_unet_function_wrapper(
        lambda apply, args: (calls.append(1), apply(args["input"], args["timestep"], **args["c"]))[1])
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    seen: list[tuple[int, int]] = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, *rest, **kw: seen.append((value, total)))
    try:
        node.calibrate(model, conditioning(1), conditioning(2), 5.0, latent, "dpm_solver_3m", "kl_optimal", 4, 2, 7,
                       20, 12, "test_progress")
        assert {total for _, total in seen} == {20 + 12}
        values = [value for value, _ in seen]
        assert values == sorted(values) and values[0] == 1 and 20 < values[-1] <= 32
        assert 1 in values and 20 in values  # the reference solve moves the bar call by call
        calls.clear()
        comfy.model_management.interrupt_current_processing(True)
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            node.calibrate(model, conditioning(1), conditioning(2), 5.0, latent, "dpm_solver_3m", "karras", 4, 2, 7,
                           400, 12, "test_cancel")
        assert len(calls) == 1
    finally:
        comfy.model_management.interrupt_current_processing(False)
        comfy.utils.set_progress_bar_global_hook(None)
    assert not (comfy_env["output"] / "dpm_solver_grids" / "test_cancel.safetensors").exists()
    with pytest.raises(ValueError, match="nfe=3 buys dpm_solver_3 a single step, which leaves nothing to calibrate"):
        node.calibrate(model, conditioning(1), conditioning(2), 5.0, latent, "dpm_solver_3", "karras", 3, 2, 7, 20, 12,
                       "test_small")


def test_calibrate_node_runs_on_the_seeded_noises_of_the_first_latent_image(comfy_env: dict[str, Any]) -> None:
    """Calibration noises are seeds seed, seed+1, ... of the latent's first image (the rest of the batch is not
    used), the search runs the sampler at most 1 + max_evals + (interior points) times, and a budget of two steps
    is calibratable."""
    import comfy.sample

    package = comfy_env["package"]
    node = package.NODE_CLASS_MAPPINGS["DPMSolverCalibrateGrid"]()
    inputs: list[torch.Tensor] = []
    model = comfy_env["ve"].clone()

    def record(apply: Any, args: dict[str, Any]) -> torch.Tensor:
        inputs.append(args["input"].clone())
        return apply(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(record)
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    node.calibrate(model, conditioning(1), conditioning(2), 5.0, latent, "dpm_solver_3m", "karras", 4, 2, 7, 20, 12,
                   "test_seeds")
    first = inputs[0].flatten(1)  # the first model call: x = sigma_max * noise, scaled; cond and uncond rows
    noises = torch.cat([comfy.sample.prepare_noise(latent["samples"][:1], seed) for seed in (7, 8)]).flatten(1)
    cosines = (first / first.norm(dim=1, keepdim=True)) @ (noises / noises.norm(dim=1, keepdim=True)).T
    assert torch.allclose(cosines.max(1).values, torch.ones(len(first)), atol=1e-5)  # every row is one of them
    assert torch.allclose(cosines.max(0).values, torch.ones(2), atol=1e-5)  # and both are there
    stored = load_grid(comfy_env["output"] / "dpm_solver_grids" / "test_seeds.safetensors")
    assert 12 < stored.evaluations <= 1 + 12 + 2  # the first grid's run, then one search, whose last step may shrink
    (two_steps,) = node.calibrate(model, conditioning(1), conditioning(2), 5.0, latent, "dpm_solver_3", "karras", 6,
                                  2, 7, 20, 12, "test_two_steps")
    assert two_steps.shape == (3,) and float(two_steps[-1]) == 0.0
