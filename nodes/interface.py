"""The public interface of the nodes: node ids, which sampler an `order` selects, and released input order.

Saved workflows refer to node ids and give widget values by position, so these tables only ever grow:
never rename or reorder an entry, never change what an order of a family node selects. Inputs a node
gains later (a new core option) are appended after its released inputs (see `input_order`).
"""

from __future__ import annotations

from collections.abc import Iterable

FAMILY_NODES: dict[str, tuple[str, dict[int, str], int]] = {
    # node id: (display name, order -> registry name, default order)
    "DPMSolverSinglestepSampler": (
        "DPM-Solver (singlestep)", {1: "dpm_solver_1", 2: "dpm_solver_2", 3: "dpm_solver_3"}, 3),
    "DPMSolverMultistepSampler": (
        "DPM-Solver (multistep)", {1: "dpm_solver_1", 2: "dpm_solver_2m", 3: "dpm_solver_3m"}, 3),
    "DPMSolverPPSinglestepSampler": (
        "DPM-Solver++ (singlestep)", {1: "dpm_solver_1", 2: "dpm_solver_pp_2s", 3: "dpm_solver_pp_3s"}, 2),
    "DPMSolverPPMultistepSampler": (
        "DPM-Solver++ (multistep)", {1: "dpm_solver_1", 2: "dpm_solver_pp_2m", 3: "dpm_solver_pp_3m"}, 2),
    "DPMSolverFastSampler": ("DPM-Solver-fast", {3: "dpm_solver_fast"}, 3),
}
"""Family nodes. Order 1 is DPM-Solver-1 (DDIM), the same update in every family. A family with a single
member (DPM-Solver-fast) has no `order` input."""

ENTRY_NODE_PREFIX = "DPMSolverSampler_"
"""Registry entries no family node covers get a node of their own: id = prefix + registry name."""

SCHEDULER_NODES: dict[str, str] = {
    "DPMSolverScheduler": "DPM-Solver Scheduler",
    "DPMSolverFastScheduler": "DPM-Solver-fast Scheduler",
}

RELEASED_INPUTS: dict[str, tuple[str, ...]] = {
    "DPMSolverSinglestepSampler": ("order", "solver_type", "lower_order_final", "r1", "r2", "thresholding",
                                   "threshold_quantile", "threshold_max"),
    "DPMSolverMultistepSampler": ("order", "solver_type", "lower_order_final", "third_order", "thresholding",
                                  "threshold_quantile", "threshold_max"),
    "DPMSolverPPSinglestepSampler": ("order", "solver_type", "lower_order_final", "r1", "r2", "thresholding",
                                     "threshold_quantile", "threshold_max"),
    "DPMSolverPPMultistepSampler": ("order", "solver_type", "lower_order_final", "third_order", "thresholding",
                                    "threshold_quantile", "threshold_max"),
    "DPMSolverFastSampler": ("solver_type", "thresholding", "threshold_quantile", "threshold_max"),
    "DPMSolverScheduler": ("model", "steps", "spacing", "denoise"),
    "DPMSolverFastScheduler": ("model", "steps", "spacing", "denoise"),
    "DPMSolverSampler_dpm_solver_pp_sde": ("solver_type", "lower_order_final", "r1", "eta", "s_noise", "thresholding",
                                           "threshold_quantile", "threshold_max"),
    "DPMSolverSampler_dpm_solver_pp_2m_sde": ("solver_type", "lower_order_final", "eta", "s_noise", "thresholding",
                                              "threshold_quantile", "threshold_max"),
    "DPMSolverSampler_dpm_solver_pp_3m_sde": ("solver_type", "lower_order_final", "third_order", "eta", "s_noise",
                                              "thresholding", "threshold_quantile", "threshold_max"),
    "DPMSolverSampler_dpm_solver_pp_2s_ancestral": ("solver_type", "lower_order_final", "r1", "eta", "s_noise",
                                                    "thresholding", "threshold_quantile", "threshold_max"),
    "DPMSolverSampler_dpm_solver_adaptive": ("order", "rtol", "atol", "h_init", "theta", "controller", "max_nfe",
                                             "thresholding", "threshold_quantile", "threshold_max"),
    "DPMSolverSampler_dpm_solver_pp_adaptive": ("order", "rtol", "atol", "h_init", "theta", "controller", "max_nfe",
                                                "thresholding", "threshold_quantile", "threshold_max"),
    "DPMSolverSampler_dpm_solver_pp_pc": ("order", "solver_type", "lower_order_final", "third_order", "s_noise",
                                          "corrector", "corrector_steps", "snr", "thresholding", "threshold_quantile",
                                          "threshold_max"),
    "DPMSolverSDSGradient": ("model", "positive", "negative", "latent", "percent", "sigma", "cfg", "seed", "mode",
                             "weighting"),
    "DPMSolverSDSRefine": ("model", "positive", "negative", "latent", "steps", "optimizer", "lr", "start_percent",
                           "end_percent", "start_sigma", "end_sigma", "cfg", "seed", "mode", "weighting", "inner_steps",
                           "grad_clip"),
    "DPMSolverCalibrateGrid": ("model", "positive", "negative", "cfg", "latent_image", "sampler_name", "scheduler",
                               "nfe", "calibration_seeds", "seed", "reference_steps", "max_evals", "file_name"),
    "DPMSolverLoadGrid": ("file_name", "sampler_name", "nfe", "model"),
    "DPMSolverSampler_dpm_solver_sds": ("sds_mode", "sds_weighting", "sds_lr", "sds_inner_steps", "sds_grad_clip",
                                        "sds_noise", "sds_inversion_steps", "thresholding", "threshold_quantile",
                                        "threshold_max"),
}
"""Input names of each released node, in order (the golden list in tests/test_comfy_interface.py)."""

CANONICAL_OPTION_ORDER: tuple[str, ...] = (
    "order", "solver_type", "lower_order_final", "r1", "r2", "third_order", "eta", "s_noise", "r", "rtol",
    "atol", "h_init", "theta", "controller", "max_nfe", "corrector", "corrector_steps", "snr", "thresholding",
    "threshold_quantile", "threshold_max",
)
"""Order of option inputs on nodes that have no released order yet; options not listed come last."""


def input_order(node_id: str, names: Iterable[str]) -> list[str]:
    """Inputs of `node_id`: its released inputs first (in released order), then the others, canonically."""
    names = list(dict.fromkeys(names))
    released = [n for n in RELEASED_INPUTS.get(node_id, ()) if n in names]
    rest = [n for n in names if n not in released]
    rank = {n: i for i, n in enumerate(CANONICAL_OPTION_ORDER)}
    rest.sort(key=lambda n: (rank.get(n, len(rank)), names.index(n)))
    return released + rest
