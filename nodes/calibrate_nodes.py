"""Nodes that calibrate a sampler's time grid on the user's own model (samplers/calibrate.py) and load it back.

DPMSolverCalibrateGrid runs the model with CFG through ComfyUI's own guider: a SAMPLER whose function receives
ComfyUI's wrapped denoiser (conditioning, CFG, model patches applied) and, instead of sampling once, runs the
reference solve and the grid search on a batch of seeded noises. The grid is saved under ComfyUI's output
folder (GRID_FOLDER) as a safetensors file and returned as SIGMAS for SamplerCustom(Advanced).
DPMSolverLoadGrid reads such a file back, checked against the sampler and budget it is meant for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ..samplers import SAMPLERS
from ..samplers.calibrate import (
    REFERENCE_STEPS,
    CalibratedGrid,
    CalibrationError,
    calibrate_grid,
    intervals_for_nfe,
    load_grid,
    reference_solution,
    save_grid,
)
from .family import FLOW, VE, family_of_model_sampling, model_sampling_of_patcher

CATEGORY = "sampling/custom_sampling/schedulers/DPM-Solver"
GRID_FOLDER = "dpm_solver_grids"
"""Sub-folder of ComfyUI's output directory where calibrated grids are written and looked up."""
CALIBRATABLE = [name for name, e in SAMPLERS.items()
                if not e.stochastic and e.spec is not None and e.spec.structure != "adaptive"]
DEFAULT_SAMPLER = "dpm_solver_pp_pc"
"""The sampler whose calibrated grid was most accurate on most benchmark cases (docs/calibrated.md)."""
FAMILY_NAMES = {VE: "SD1.x/SDXL-type (eps, v, x0, EDM)", FLOW: "rectified-flow (SD3, Flux, Wan, ...)"}
"""How an error names the two model families of nodes/family.py."""
SIGMA_MAX_SLACK = 1e-4
"""Relative tolerance on a grid's first sigma above the model's sigma_max (float32 tables round)."""
FALLBACK_SCHEDULERS = ["karras", "exponential", "simple", "normal", "sgm_uniform", "beta"]


def _scheduler_names() -> list[str]:
    import comfy.samplers

    return list(getattr(comfy.samplers, "SCHEDULER_NAMES", FALLBACK_SCHEDULERS))


def grid_folder() -> Path:
    """ComfyUI's output directory / GRID_FOLDER."""
    import folder_paths

    return Path(folder_paths.get_output_directory()) / GRID_FOLDER


def grid_path(file_name: str, folder: Path | None = None) -> Path:
    """The file a node reads: an absolute path as given, else a name inside the grid folder (".safetensors" added
    when missing; names that climb out of the folder are refused)."""
    name = file_name.strip()
    if not name:
        raise CalibrationError("file_name is empty: give a name such as 'sd15_dpm_solver_3m_10'")
    path = Path(name)
    if not path.is_absolute():
        if ".." in path.parts:
            raise CalibrationError(f"file_name {file_name!r} must stay inside the {GRID_FOLDER} folder (no '..')")
        path = (folder if folder is not None else grid_folder()) / path
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def output_path(file_name: str, folder: Path | None = None) -> Path:
    """The file DPM-Solver Calibrate Grid writes: a name inside the grid folder only (a shared workflow must not
    write elsewhere), and never over a file that is not a calibrated grid (a checkpoint, say)."""
    base = (folder if folder is not None else grid_folder()).resolve()
    if Path(file_name.strip()).is_absolute():
        raise CalibrationError(f"file_name {file_name!r} must be a name inside output/{GRID_FOLDER}, not an "
                               "absolute path (DPM-Solver Load Grid reads absolute paths)")
    path = grid_path(file_name, base)
    if base not in path.resolve().parents:
        raise CalibrationError(f"file_name {file_name!r} must name a file inside output/{GRID_FOLDER}")
    if path.exists():
        try:
            load_grid(path)
        except CalibrationError:
            raise CalibrationError(f"{str(path)!r} exists and is not a calibrated grid: choose another file_name"
                                   ) from None
    return path


def file_state(path: Path) -> str:
    """What changes when the file does (modification time and size), for ComfyUI's IS_CHANGED."""
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def model_fingerprint(model: Any) -> str:
    """A short hash of the diffusion model's parameter names, shapes and first values (identifies the weights)."""
    digest = hashlib.sha256()
    inner = getattr(getattr(model, "model", None), "diffusion_model", None)
    params = list(inner.state_dict().items())[:64] if hasattr(inner, "state_dict") else []
    for key, value in params:
        flat = value.detach().reshape(-1)[:8].to("cpu", torch.float64)
        digest.update(f"{key}{tuple(value.shape)}{flat.tolist()}".encode())
    return digest.hexdigest()[:16]


class DPMSolverCalibrateGrid:
    """Calibrate the grid of a sampler for an NFE budget on this model, conditioning and CFG."""

    RETURN_TYPES = ("SIGMAS",)
    RETURN_NAMES = ("sigmas",)
    OUTPUT_TOOLTIPS = ("The calibrated grid (also saved to output/dpm_solver_grids/<file_name>.safetensors).",)
    FUNCTION = "calibrate"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Optimises where a DPM-Solver sampler spends its model calls, for this model, prompt and CFG: runs a "
        "high-accuracy reference solve from a few seeded noises once, then moves the grid's interior sigmas to "
        "minimise the sampler's error against it (the ends stay). Costs about reference_steps + max_evals x nfe "
        "model calls per seed; run it once and reuse the file with 'DPM-Solver Load Grid'. Use the SIGMAS with "
        "SamplerCustom(Advanced) and the same sampler.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model the grid is calibrated for (with its patches)."}),
            "positive": ("CONDITIONING", {"tooltip": "A typical prompt of the runs the grid is for."}),
            "negative": ("CONDITIONING", {"tooltip": "A typical negative prompt."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1,
                              "tooltip": "The CFG scale of the runs the grid is for (strong guidance moves the "
                                         "best grid)."}),
            "latent_image": ("LATENT", {"tooltip": "Sets the latent size; only its first image is used."}),
            "sampler_name": (CALIBRATABLE, {"default": DEFAULT_SAMPLER,
                                            "tooltip": "The sampler the grid is calibrated for."}),
            "scheduler": (_scheduler_names(), {"default": "karras", "tooltip": "The starting grid."}),
            "nfe": ("INT", {"default": 10, "min": 2, "max": 200, "tooltip": "Model calls the grid allows."}),
            "calibration_seeds": ("INT", {"default": 4, "min": 1, "max": 64,
                                          "tooltip": "Noises calibrated on: seeds seed, seed+1, ..."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF - 64,
                             "tooltip": "First seed of the calibration noises. Set 'control after generate' to "
                                        "fixed: a new seed calibrates (and saves) again on every queue."}),
            "reference_steps": ("INT", {"default": REFERENCE_STEPS // 4, "min": 20, "max": 2000,
                                        "tooltip": "Steps of the reference solve (DPM-Solver++ 3M, exact "
                                                   "third-order weights)."}),
            "max_evals": ("INT", {"default": 150, "min": 10, "max": 5000,
                                  "tooltip": "Sampler runs of the search: it starts no new step after this "
                                             "many (its last step may add one run per grid point)."}),
            "file_name": ("STRING", {"default": "dpm_solver_grid",
                                     "tooltip": "Saved as output/dpm_solver_grids/<file_name>.safetensors (a name "
                                                "in that folder; an existing grid of that name is replaced)."}),
        }}

    def calibrate(self, model: Any, positive: Any, negative: Any, cfg: float, latent_image: dict[str, Any],
                  sampler_name: str, scheduler: str, nfe: int, calibration_seeds: int, seed: int,
                  reference_steps: int, max_evals: int, file_name: str) -> tuple[torch.Tensor]:
        import comfy.model_management
        import comfy.sample
        import comfy.samplers
        import comfy.utils

        if sampler_name not in CALIBRATABLE:
            raise CalibrationError(f"sampler_name {sampler_name!r} cannot be calibrated; one of {CALIBRATABLE}")
        target = output_path(file_name)
        model_sampling = model_sampling_of_patcher(model)
        family = family_of_model_sampling(model_sampling)

        def make_grid(n: int) -> torch.Tensor:
            return comfy.samplers.calculate_sigmas(model_sampling, scheduler, n).cpu().to(torch.float64)

        initial = make_grid(intervals_for_nfe(sampler_name, nfe, make_grid, family))
        if int((initial > 0).sum()) < 2:
            raise CalibrationError(f"nfe={nfe} buys {sampler_name} a single step, which leaves nothing to calibrate: "
                                   "raise nfe")
        latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"][:1])
        noise = torch.cat([comfy.sample.prepare_noise(latent, seed + i) for i in range(calibration_seeds)])
        latents = latent.repeat(calibration_seeds, *[1] * (latent.dim() - 1))
        bar = comfy.utils.ProgressBar(reference_steps + max_evals)  # reference calls, then the search's runs
        info = {"model": model_fingerprint(model), "model_class": type(getattr(model, "model", model)).__name__,
                "initial_grid": scheduler, "cfg": repr(cfg), "seeds": f"{seed}..{seed + calibration_seeds - 1}",
                "reference_steps": str(reference_steps)}
        found: dict[str, CalibratedGrid] = {}

        def progress(runs: int, best: float) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()
            bar.update_absolute(reference_steps + min(runs, max_evals))

        def reference_progress(payload: dict[str, Any]) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()
            bar.update_absolute(min(payload["nfe"], reference_steps))

        def run(denoiser: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
                callback: Any = None, disable: Any = None) -> torch.Tensor:
            grid = sigmas.detach().to("cpu", torch.float64)
            reference = reference_solution(denoiser, x, grid, family, extra_args, steps=reference_steps,
                                           callback=reference_progress)
            found["grid"] = calibrate_grid(denoiser, sampler_name, nfe, grid, x, family, extra_args, reference,
                                           max_evals=max_evals, restarts=1, info=info, progress=progress)
            return x

        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        guider.sample(noise, latents, comfy.samplers.KSAMPLER(run), initial.to(torch.float32), seed=seed)
        grid = found["grid"]
        save_grid(target, grid)
        return (grid.sigmas.to(torch.float32),)


class DPMSolverLoadGrid:
    """A grid saved by DPM-Solver Calibrate Grid, as SIGMAS."""

    RETURN_TYPES = ("SIGMAS",)
    RETURN_NAMES = ("sigmas",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a calibrated grid from output/dpm_solver_grids (or an absolute path). With sampler_name "
                   "or nfe set, a grid calibrated for another sampler or budget is refused; with a model connected, "
                   "so is a grid of the other model family (flow vs SD/SDXL) or one starting above the model's "
                   "largest sigma.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "file_name": ("STRING", {"default": "dpm_solver_grid",
                                     "tooltip": "A name in output/dpm_solver_grids (or an absolute path)."}),
            "sampler_name": (["any", *CALIBRATABLE], {"default": "any",
                                                      "tooltip": "Check the grid was calibrated for this sampler."}),
            "nfe": ("INT", {"default": 0, "min": 0, "max": 200, "tooltip": "Check the budget (0: any)."}),
        }, "optional": {
            "model": ("MODEL", {"tooltip": "Optional: the model the grid will sample; a grid calibrated for the "
                                           "other family (flow vs SD/SDXL) or above its largest sigma is refused."}),
        }}

    @classmethod
    def IS_CHANGED(cls, file_name: str, sampler_name: str, nfe: int, model: Any = None) -> str:
        """Run again when the file changes (ComfyUI would otherwise reuse the grid it read first)."""
        try:
            return file_state(grid_path(file_name))
        except CalibrationError:
            return "invalid name"

    def load(self, file_name: str, sampler_name: str, nfe: int, model: Any = None) -> tuple[torch.Tensor]:
        if sampler_name != "any" and sampler_name not in CALIBRATABLE:
            raise CalibrationError(f"sampler_name {sampler_name!r} is not one of 'any', {CALIBRATABLE}")
        path = grid_path(file_name)
        grid = load_grid(path, None if sampler_name == "any" else sampler_name, nfe or None)
        if model is not None:
            check_grid_fits_model(grid, model, path.name)
        return (grid.sigmas.to(torch.float32),)


def check_grid_fits_model(grid: CalibratedGrid, model: Any, name: str) -> None:
    """Refuse a grid of the other model family, or one whose first sigma lies above the model's sigma_max."""
    model_sampling = model_sampling_of_patcher(model)
    family = family_of_model_sampling(model_sampling)
    if grid.schedule != family:
        raise CalibrationError(f"{name} was calibrated for {FAMILY_NAMES[grid.schedule]} models; this model is "
                               f"{FAMILY_NAMES[family]}: calibrate a grid on it")
    sigma_max = float(model_sampling.sigma_max)
    if float(grid.sigmas[0]) > sigma_max * (1.0 + SIGMA_MAX_SLACK):
        raise CalibrationError(f"{name} starts at sigma {float(grid.sigmas[0]):.6g}, above this model's largest "
                               f"sigma {sigma_max:.6g}: calibrate a grid on it")


CALIBRATE_NODES: dict[str, tuple[type, str]] = {
    "DPMSolverCalibrateGrid": (DPMSolverCalibrateGrid, "DPM-Solver Calibrate Grid"),
    "DPMSolverLoadGrid": (DPMSolverLoadGrid, "DPM-Solver Load Grid"),
}
