"""Stand-in of `modules/shared.py`: opts, state, the progress counter and the current model."""

from __future__ import annotations

from typing import Any

from modules.options import OptionInfo, Options

__all__ = ["OptionInfo", "opts", "sd_model", "state", "total_tqdm"]

opts = Options({
    "hide_samplers": OptionInfo([]),
    "hide_samplers_invert": OptionInfo(False),
    "eta_ancestral": OptionInfo(1.0),
    "no_dpmpp_sde_batch_determinism": OptionInfo(False),
    "use_old_karras_scheduler_sigmas": OptionInfo(False),
    "always_discard_next_to_last_sigma": OptionInfo(False),
    "sigma_min": OptionInfo(0.0),
    "sigma_max": OptionInfo(0.0),
    "rho": OptionInfo(0.0),
    "CLIP_stop_at_last_layers": OptionInfo(1, infotext="Clip skip"),
})


class State:
    interrupted = False
    skipped = False
    sampling_step = 0
    sampling_steps = 0


class TotalProgress:
    def __init__(self) -> None:
        self.updates = 0

    def update(self) -> None:
        self.updates += 1


state = State()
total_tqdm = TotalProgress()
sd_model: Any = None
device = "cpu"
