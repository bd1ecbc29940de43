"""The option table (samplers/options.py) is public interface: a default decides the image of every workflow and
infotext that leaves the option out, and the finite choices are the values host widgets save. Both are pinned here
as released, and the README's option reference documents every option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from samplers.options import OPTIONS

RELEASED_DEFAULTS = {
    "schedule": "ve", "solver_type": "dpmsolver", "r1": None, "r2": None, "lower_order_final": None,
    "third_order": "reference", "thresholding": False, "threshold_quantile": 0.995, "threshold_max": 1.0,
    "eta": 1.0, "s_noise": 1.0, "noise_sampler": None, "seed": None, "order": 3, "corrector": "unic",
    "corrector_steps": 1, "snr": 0.16, "rtol": 0.05, "atol": 0.0078, "h_init": 0.05, "theta": 0.9,
    "controller": "standard", "max_nfe": 1000, "info": None, "sds_mode": "sds", "sds_weighting": "uniform",
    "sds_lr": 1.0, "sds_inner_steps": 1, "sds_grad_clip": 0.0, "sds_noise": "implied", "sds_inversion_steps": 4,
    "guidance_parts": None,
}
RELEASED_CHOICES = {
    "solver_type": ("dpmsolver", "taylor"), "third_order": ("reference", "consistent"), "thresholding": (False, True),
    "order": (2, 3), "corrector": ("unic", "langevin", "none"), "controller": ("standard", "pid"),
    "sds_mode": ("sds", "csd", "sdi"), "sds_weighting": ("dreamfusion", "sjc", "uniform"),
    "sds_noise": ("implied", "fresh"),
}


def test_the_defaults_are_the_released_ones() -> None:
    assert {name: option.default for name, option in OPTIONS.items()} == RELEASED_DEFAULTS


def test_the_finite_choices_are_the_released_ones_and_pass_their_checks() -> None:
    assert {name: option.choices for name, option in OPTIONS.items() if option.choices} == RELEASED_CHOICES
    for name, choices in RELEASED_CHOICES.items():
        assert OPTIONS[name].default in choices, name
        for value in choices:
            assert OPTIONS[name].check(value) == value, (name, value)


README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
DOCUMENTED = {option for row in re.findall(r"^\| ([^|]+) \|", README, flags=re.MULTILINE)
              for option in re.findall(r"`(\w+)`", row)}
"""The names in backticks in the first column of the README's tables."""


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_option_is_in_the_readme(name: str) -> None:
    assert name in DOCUMENTED
