"""Register the samplers, the logSNR uniform schedule and the settings with the WebUI, idempotently.

Samplers: lllyasviel Forge has `modules.sd_samplers.add_sampler(data)` (appends, rebuilds `all_samplers_map`,
calls `set_samplers()`); A1111 1.9/1.10, reForge and Forge Classic/Neo do not, so the entry is appended to
`all_samplers`, put into `all_samplers_map` in place and `set_samplers()` is called. Running again ("Reload UI"
re-executes the script) replaces our own entries in place instead of adding duplicates. The cache of
`get_sampler_and_scheduler` (functools.cache / lru_cache in every fork) is cleared afterwards.

Schedule: `modules.sd_schedulers.Scheduler` appended to `schedulers` and added to `schedulers_map` under its
name and label (the maps the "Schedule type" dropdown, infotext parsing and `KDiffusionSampler.get_sigmas` read).

Settings: one `shared.opts` option per accordion control, so the API's `override_settings` accept our keys
(`Options.set` raises KeyError on unknown keys) and the Settings tab can hold defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .controls import CONTROLS, DEFAULT_CHOICE, options_for_entry
from .core import load_core, load_submodule
from .labels import KNOWN_SCHEDULER_WORDS, aliases, webui_label
from .sampler_fn import make_sampler_function
from .schedule import SCHEDULER_LABEL, SCHEDULER_NAME, logsnr_uniform

log = logging.getLogger("dpmsolver_webui")

ENTRY_KEY = "dpmsolver_entry"
"""Key in `SamplerData.options` naming our registry entry (JSON-safe: the API serialises the options)."""

SETTINGS_SECTION = ("dpmsolver_ext", "DPM-Solver")

ENTRIES: dict[str, Any] = {}
"""Registry entries registered with the WebUI, by registry name (looked up by `total_steps`)."""

LABELS: dict[str, str] = {}
"""WebUI label -> registry name of every registered entry."""

_DATA_CLASSES: dict[type, type] = {}


@dataclass
class RegistrationReport:
    """What a registration pass did."""

    path: str = ""
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    scheduler: str = "unavailable"
    labels: dict[str, str] = field(default_factory=dict)
    """registry name -> WebUI label"""


def is_ours(data: Any) -> bool:
    """True for SamplerData registered by this extension (any earlier load of it included)."""
    options = getattr(data, "options", None)
    return isinstance(options, dict) and ENTRY_KEY in options


JOB_OPTIONS: dict[str, Any] = {}
"""The explicit options of the job being processed (job.apply_to_job sets them from the script's `process`, which
the WebUI runs before it asks a sampler's total_steps): the model calls counted follow them, e.g. the Langevin
corrector's extra call per step."""


def model_calls(entry: Any, steps: int, explicit: dict[str, Any] | None = None) -> int:
    """Model calls of `entry` for `steps` steps with the `explicit` options it accepts (what prompt-editing
    schedules and the refiner switch count)."""
    if steps <= 0:
        return steps
    grid = load_submodule("grids").karras(steps, 0.0292, 14.6146)
    try:
        return int(entry.count_model_calls(grid, **options_for_entry(explicit or {}, entry.defaults)))
    except Exception:  # adaptive, or a future entry that cannot count without running: its nominal cost
        return steps * int(entry.calls_per_step)


def sampler_data_class(base: type) -> type:
    """A subclass of the host's `SamplerData` whose `total_steps` reports model calls."""
    cls = _DATA_CLASSES.get(base)
    if cls is not None:
        return cls

    class DpmSolverSamplerData(base):  # type: ignore[misc, valid-type]
        """SamplerData for a DPM-Solver registry entry; total_steps counts model calls (singlestep: k per step)."""

        __slots__ = ()

        def total_steps(self, steps: int) -> int:
            entry = ENTRIES.get(self.options.get(ENTRY_KEY))
            return steps if entry is None else model_calls(entry, steps, JOB_OPTIONS)

    _DATA_CLASSES[base] = DpmSolverSamplerData
    return DpmSolverSamplerData


def default_scheduler(entry: Any, have_logsnr: bool) -> str:
    """Scheduler used when the user leaves "Automatic": Karras, except DPM-Solver-fast (logSNR uniform,
    the grid of the DPM-Solver paper; "exponential", the same grid for VE models, where not registered)."""
    if "fast" in entry.name:
        return SCHEDULER_NAME if have_logsnr else "exponential"
    return "karras"


def sampler_options(entry: Any, have_logsnr: bool) -> dict[str, Any]:
    """`SamplerData.options`: the WebUI reads `scheduler` and `brownian_noise`; ENTRY_KEY is ours.

    `brownian_noise` for every entry that takes a `noise_sampler` (the SDE samplers, and score distillation for
    its fresh noise): the WebUI then passes its noise sampler seeded with the per-image seeds."""
    options: dict[str, Any] = {"scheduler": default_scheduler(entry, have_logsnr), ENTRY_KEY: entry.name}
    if "noise_sampler" in entry.defaults:
        options["brownian_noise"] = True
    return options


def build_sampler_data(entry: Any, label: str, common: ModuleType, kdiffusion: ModuleType, have_logsnr: bool) -> Any:
    """The SamplerData of one entry; its constructor builds the host's `KDiffusionSampler` around our function."""
    function = make_sampler_function(entry)

    def constructor(model: Any) -> Any:
        return kdiffusion.KDiffusionSampler(function, model)

    cls = sampler_data_class(common.SamplerData)
    return cls(label, constructor, aliases(entry), sampler_options(entry, have_logsnr))


def host_scheduler_words(sd_schedulers: ModuleType | None) -> list[str]:
    """Labels, names and aliases of the host's schedulers."""
    words: list[str] = []
    for scheduler in getattr(sd_schedulers, "schedulers", None) or []:
        words += [scheduler.label, scheduler.name, *(getattr(scheduler, "aliases", None) or [])]
    return [w for w in words if isinstance(w, str)]


def register_samplers(sd_samplers: ModuleType, common: ModuleType, kdiffusion: ModuleType, entries: Iterable[Any],
                      scheduler_words: Iterable[str], have_logsnr: bool) -> RegistrationReport:
    """Add (or replace our earlier copies of) one SamplerData per entry; see the module docstring."""
    words = tuple(scheduler_words)
    add_sampler = getattr(sd_samplers, "add_sampler", None)
    report = RegistrationReport(path="add_sampler" if callable(add_sampler) else "list")
    taken = [n for d in sd_samplers.all_samplers if not is_ours(d) for n in (d.name, *d.aliases)]
    for entry in entries:
        try:
            label = webui_label(entry, words, taken)
        except ValueError as err:
            report.skipped[entry.name] = str(err)
            log.warning("DPM-Solver: not registering %s: %s", entry.name, err)
            continue
        taken += [label, *aliases(entry)]
        data = build_sampler_data(entry, label, common, kdiffusion, have_logsnr)
        ENTRIES[entry.name] = entry
        LABELS[label] = entry.name
        report.labels[entry.name] = label
        existing = sd_samplers.all_samplers_map.get(label)
        if existing is not None and is_ours(existing):
            index = next(i for i, d in enumerate(sd_samplers.all_samplers) if d.name == label)
            sd_samplers.all_samplers[index] = data
            sd_samplers.all_samplers_map[label] = data
            report.replaced.append(label)
        elif callable(add_sampler):
            add_sampler(data)
            report.added.append(label)
        else:
            sd_samplers.all_samplers.append(data)
            sd_samplers.all_samplers_map[label] = data
            report.added.append(label)
    sd_samplers.set_samplers()
    clear_lookup_cache(sd_samplers)
    return report


def clear_lookup_cache(sd_samplers: ModuleType) -> None:
    """Forget cached (sampler, scheduler) lookups made before our samplers existed."""
    cached = getattr(sd_samplers, "get_sampler_and_scheduler", None)
    clear = getattr(cached, "cache_clear", None)
    if callable(clear):
        clear()


def register_scheduler(sd_schedulers: ModuleType | None) -> str:
    """Add the logSNR uniform schedule: 'added', 'replaced', 'conflict' or 'unavailable' (before A1111 1.9)."""
    if sd_schedulers is None or not hasattr(sd_schedulers, "Scheduler"):
        return "unavailable"
    try:
        scheduler = sd_schedulers.Scheduler(SCHEDULER_NAME, SCHEDULER_LABEL, logsnr_uniform, need_inner_model=True)
    except TypeError:  # a Scheduler without need_inner_model: the function then assumes a VE model
        scheduler = sd_schedulers.Scheduler(SCHEDULER_NAME, SCHEDULER_LABEL, logsnr_uniform)
    table, lookup = sd_schedulers.schedulers, sd_schedulers.schedulers_map
    existing = lookup.get(SCHEDULER_NAME) or lookup.get(SCHEDULER_LABEL)
    if existing is not None:
        if getattr(existing.function, "__name__", "") != logsnr_uniform.__name__:
            log.warning("DPM-Solver: a scheduler named %r exists already; not replacing it", SCHEDULER_NAME)
            return "conflict"
        table[:] = [scheduler if s is existing else s for s in table]
        result = "replaced"
    else:
        table.append(scheduler)
        result = "added"
    lookup[SCHEDULER_NAME] = scheduler
    lookup[SCHEDULER_LABEL] = scheduler
    return result


def register_settings(shared: ModuleType) -> int:
    """One `shared.opts` option per control (unset value = "use the sampler's default"); returns the count."""
    opts, option_info = getattr(shared, "opts", None), getattr(shared, "OptionInfo", None)
    if opts is None or option_info is None or not hasattr(opts, "add_option"):
        return 0
    try:
        import gradio as gr
    except ImportError:
        gr = None
    for control in CONTROLS:
        label = f"{control.label}: {control.info} ({DEFAULT_CHOICE} / initial value: the sampler's own)"
        if control.kind == "choice":
            component = getattr(gr, "Dropdown", None)
            args: dict[str, Any] = {"choices": control.available_choices()}
        else:
            component = getattr(gr, "Slider", None)
            args = {"minimum": control.minimum, "maximum": control.maximum, "step": control.step}
        try:
            info = option_info(control.unset_value, label, component, args, section=SETTINGS_SECTION,
                               category_id="sd")
        except TypeError:  # OptionInfo before settings categories (A1111 < 1.7)
            info = option_info(control.unset_value, label, component, args, section=SETTINGS_SECTION)
        opts.add_option(control.setting_key, info)
    return len(CONTROLS)


def register_all(entries: Iterable[Any] | None = None) -> RegistrationReport:
    """Register everything with the running WebUI (imports its `modules`); safe to call again on UI reload."""
    from modules import sd_samplers, sd_samplers_common, sd_samplers_kdiffusion, shared

    try:
        from modules import sd_schedulers
    except ImportError:
        sd_schedulers = None
    entries = list(load_core().SAMPLERS.values()) if entries is None else list(entries)
    scheduler = register_scheduler(sd_schedulers)
    words = [*KNOWN_SCHEDULER_WORDS, *host_scheduler_words(sd_schedulers)]
    report = register_samplers(sd_samplers, sd_samplers_common, sd_samplers_kdiffusion, entries, words,
                               have_logsnr=scheduler in ("added", "replaced"))
    report.scheduler = scheduler
    register_settings(shared)
    log.info("DPM-Solver: %d samplers added, %d replaced (%s path), logSNR uniform schedule %s",
             len(report.added), len(report.replaced), report.path, scheduler)
    return report
