"""Per-generation bookkeeping: resolve the accordion/API/settings values and record them on the job.

Called from the script's `process(p, *args)` (after the WebUI applied `override_settings` to `shared.opts`).
The explicit options go to `p.dpmsolver_ext_options` (read by the sampler function), to registration.JOB_OPTIONS
(read by the samplers' total_steps, which gets no job) and, when a sampler of this job accepts them with a
non-default value, to `p.extra_generation_params` (the infotext).

A bad value (API arguments, a setting, a pasted infotext) is kept on the job in their place and raised again by
the sampler function: the WebUI only logs an exception from a script's `process` and goes on, which would make
the image with the sampler's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .controls import explicit_options, ui_values_from_args
from .infotext import infotext_params
from .registration import ENTRIES, JOB_OPTIONS, LABELS
from .sampler_fn import OPTIONS_ATTR

SAME_SAMPLER = "Use same sampler"


def entry_for(sampler_name: Any) -> Any:
    """Our registry entry for a WebUI sampler label or alias (registry name), ignoring case; else None."""
    if not isinstance(sampler_name, str):
        return None
    wanted = sampler_name.lower()
    for label, name in LABELS.items():
        if wanted in (label.lower(), name.lower()):
            return ENTRIES.get(name)
    return None


def job_entries(p: Any) -> list[Any]:
    """Our entries this job runs: the main sampler and, with hires fix, a different hires sampler."""
    names = [getattr(p, "sampler_name", None)]
    hires = getattr(p, "hr_sampler_name", None)
    if getattr(p, "enable_hr", False) and hires and hires != SAME_SAMPLER:
        names.append(hires)
    return [e for e in (entry_for(n) for n in names) if e is not None]


def apply_to_job(p: Any, args: tuple[Any, ...], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve the options for job `p`, store them on it and add their infotext; returns them. A ValueError
    (an unknown or invalid option) is stored on `p` in their place before it is raised."""
    JOB_OPTIONS.clear()
    try:
        explicit = explicit_options(ui_values_from_args(args), settings)
    except ValueError as err:
        setattr(p, OPTIONS_ATTR, err)
        raise
    setattr(p, OPTIONS_ATTR, explicit)
    JOB_OPTIONS.update(explicit)
    params = infotext_params(explicit, [entry.defaults for entry in job_entries(p)])
    extra = getattr(p, "extra_generation_params", None)
    if isinstance(extra, dict):
        extra.update(params)
    return explicit
