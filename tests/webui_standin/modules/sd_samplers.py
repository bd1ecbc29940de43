"""Stand-in of `modules/sd_samplers.py`: the sampler list and map, set_samplers, the cached infotext lookup.

Per flavor: `add_sampler` exists only in lllyasviel Forge; reForge strips scheduler suffixes case-insensitively;
Neo caches with `lru_cache(maxsize=10)` and takes `status=`; A1111/Forge use `functools.cache`.
"""

from __future__ import annotations

import functools
from typing import Any

from standin_flavor import FLAVOR

from modules import sd_samplers_kdiffusion, sd_schedulers, shared

all_samplers = [*sd_samplers_kdiffusion.samplers_data_k_diffusion]
all_samplers_map = {x.name: x for x in all_samplers}

samplers: list[Any] = []
samplers_for_img2img: list[Any] = []
samplers_map: dict[str, str] = {}
samplers_hidden: set[str] = set()


def find_sampler_config(name: str | None) -> Any:
    return all_samplers_map.get(name) if name is not None else all_samplers[0]


def create_sampler(name: str, model: Any) -> Any:
    config = find_sampler_config(name)
    assert config is not None, f"bad sampler name: {name}"
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def set_samplers() -> None:
    global samplers, samplers_for_img2img, samplers_hidden
    samplers_hidden = set(shared.opts.hide_samplers)
    samplers = all_samplers
    samplers_for_img2img = all_samplers
    samplers_map.clear()
    for sampler in all_samplers:
        samplers_map[sampler.name.lower()] = sampler.name
        for alias in sampler.aliases:
            samplers_map[alias.lower()] = sampler.name


if FLAVOR == "forge":
    def add_sampler(sampler: Any) -> None:
        global all_samplers, all_samplers_map
        if sampler.name not in [x.name for x in all_samplers]:
            all_samplers.append(sampler)
            all_samplers_map = {x.name: x for x in all_samplers}
            set_samplers()


def visible_sampler_names() -> list[str]:
    return [x.name for x in samplers if x.name not in samplers_hidden]


def get_sampler_from_infotext(d: dict[str, Any]) -> str:
    return get_sampler_and_scheduler(d.get("Sampler"), d.get("Schedule type"))[0]


def get_scheduler_from_infotext(d: dict[str, Any]) -> str:
    return get_sampler_and_scheduler(d.get("Sampler"), d.get("Schedule type"))[1]


def _lookup(sampler_name: str | None, scheduler_name: str | None, convert_automatic: bool) -> tuple[str, str, bool]:
    default_sampler = samplers[0]
    found_scheduler = sd_schedulers.schedulers_map.get(scheduler_name, sd_schedulers.schedulers[0])
    name = sampler_name or default_sampler.name
    for scheduler in sd_schedulers.schedulers:
        for name_option in [scheduler.label, scheduler.name, *(scheduler.aliases or [])]:
            if FLAVOR == "reforge":
                matched = name.lower().endswith(" " + name_option.lower())
            else:
                matched = name.endswith(" " + name_option)
            if matched:
                found_scheduler = scheduler
                name = name[0:-(len(name_option) + 1)]
                break
    sampler = all_samplers_map.get(name, default_sampler)
    automatic = False
    if convert_automatic and sampler.options.get("scheduler", None) == found_scheduler.name:
        found_scheduler = sd_schedulers.schedulers[0]
        automatic = True
    return sampler.name, found_scheduler.label, automatic


if FLAVOR == "neo":
    @functools.lru_cache(maxsize=10, typed=False)
    def get_sampler_and_scheduler(sampler_name: str, scheduler_name: str, *, status: bool = False) -> tuple:
        sampler, scheduler, automatic = _lookup(sampler_name, scheduler_name, True)
        return (sampler, scheduler, automatic) if status else (sampler, scheduler)
else:
    @functools.cache
    def get_sampler_and_scheduler(sampler_name: str, scheduler_name: str, *, convert_automatic: bool = True) -> tuple:
        return _lookup(sampler_name, scheduler_name, convert_automatic)[:2]


def fix_p_invalid_sampler_and_scheduler(p: Any) -> None:
    if FLAVOR == "neo":
        p.sampler_name, p.scheduler, _ = get_sampler_and_scheduler(p.sampler_name, p.scheduler, status=True)
    else:
        p.sampler_name, p.scheduler = get_sampler_and_scheduler(p.sampler_name, p.scheduler, convert_automatic=False)


set_samplers()
