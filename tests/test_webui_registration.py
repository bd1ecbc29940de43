"""Registration against the WebUI stand-in (tests/webui_standin): every fork flavor, reload, lookup, scheduler."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from webui_standin import harness

from samplers import SAMPLERS, grids
from samplers.adaptive import ModelCallsUnknown


@pytest.fixture(params=harness.FLAVORS)
def webui(request: pytest.FixtureRequest) -> Iterator[SimpleNamespace]:
    yield harness.load_webui(request.param)
    harness.unload()


def ours(webui: SimpleNamespace) -> list:
    return [s for s in webui.sd_samplers.all_samplers if "dpmsolver_entry" in s.options]


def test_every_registry_entry_is_registered_once_across_reloads(webui: SimpleNamespace) -> None:
    builtin = len(webui.sd_samplers.all_samplers)
    for _ in range(3):  # start-up, then two "Reload UI"s re-executing the script file
        harness.load_script()
    labels = [s.name for s in webui.sd_samplers.all_samplers]
    assert len(labels) == builtin + len(SAMPLERS)
    assert len(set(labels)) == len(labels)
    assert [s.options["dpmsolver_entry"] for s in ours(webui)] == list(SAMPLERS)
    assert [s.name for s in ours(webui)] == [e.label for e in SAMPLERS.values()]
    assert webui.sd_samplers.samplers is webui.sd_samplers.all_samplers
    for entry in SAMPLERS.values():
        assert webui.sd_samplers.all_samplers_map[entry.label].name == entry.label
        assert webui.sd_samplers.samplers_map[entry.name] == entry.label  # alias
        assert webui.sd_samplers.samplers_map[entry.label.lower()] == entry.label
        assert entry.label in webui.sd_samplers.visible_sampler_names()
    scheduler_names = [s.name for s in webui.sd_schedulers.schedulers]
    assert scheduler_names.count("logsnr_uniform") == 1
    assert webui.sd_schedulers.schedulers_map["logSNR uniform"].name == "logsnr_uniform"


def test_add_sampler_path_on_forge_and_list_path_elsewhere(webui: SimpleNamespace) -> None:
    harness.load_script()
    report = sys.modules["dpmsolver_webui.registration"].register_all()
    assert report.replaced == [e.label for e in SAMPLERS.values()] and report.added == []
    has_add = hasattr(webui.sd_samplers, "add_sampler")
    assert has_add == (webui.flavor == "forge")
    assert report.path == ("add_sampler" if has_add else "list")


def test_first_registration_uses_add_sampler_where_present(monkeypatch: pytest.MonkeyPatch) -> None:
    webui = harness.load_webui("forge")
    try:
        calls = []
        original = webui.sd_samplers.add_sampler
        monkeypatch.setattr(webui.sd_samplers, "add_sampler", lambda data: (calls.append(data.name), original(data)))
        harness.load_script()
        assert calls == [e.label for e in SAMPLERS.values()]
    finally:
        harness.unload()


def test_lookup_cache_is_cleared(webui: SimpleNamespace) -> None:
    lookup = webui.sd_samplers.get_sampler_and_scheduler
    before = lookup("DPM-Solver++ 2M", "Automatic")
    assert before[0] == "DPM++ 2M"  # unknown label: silent fallback to the default sampler
    harness.load_script()
    assert lookup("DPM-Solver++ 2M", "Automatic")[0] == "DPM-Solver++ 2M"


def test_infotext_sampler_and_scheduler_parse_back(webui: SimpleNamespace) -> None:
    harness.load_script()
    lookup = webui.sd_samplers.get_sampler_and_scheduler
    for entry in SAMPLERS.values():
        for scheduler in webui.sd_schedulers.schedulers[1:]:
            sampler, found = lookup(entry.label, scheduler.label)
            assert sampler == entry.label
            assert found in (scheduler.label, "Automatic")
        for old_style in ("Karras", "Exponential"):  # infotexts before 1.9 wrote "Sampler: <label> Karras"
            assert lookup(f"{entry.label} {old_style}", None) == (entry.label, old_style) or (
                lookup(f"{entry.label} {old_style}", None) == (entry.label, "Automatic"))
        assert webui.sd_samplers.get_sampler_from_infotext({"Sampler": entry.label}) == entry.label
        infotext = {"Sampler": entry.label, "Schedule type": "logSNR uniform"}
        assert webui.sd_samplers.get_scheduler_from_infotext(infotext) in ("logSNR uniform", "Automatic")


def test_default_scheduler_and_options_are_json_safe(webui: SimpleNamespace) -> None:
    harness.load_script()
    for data in ours(webui):
        json.dumps(data.options)
        expected = "logsnr_uniform" if data.options["dpmsolver_entry"] == "dpm_solver_fast" else "karras"
        assert data.options["scheduler"] == expected
        entry = SAMPLERS[data.options["dpmsolver_entry"]]
        # the WebUI then passes its noise sampler: SDE samplers, and score distillation for its fresh noise
        assert ("brownian_noise" in data.options) == ("noise_sampler" in entry.defaults)
        assert ("noise_sampler" in entry.defaults) == (entry.stochastic or entry.name == "dpm_solver_sds")
        assert "solver_type" not in data.options  # the WebUI would pass solver_type='heun' for that key
        assert webui.sd_schedulers.schedulers_map.get(data.options["scheduler"]) is not None


@pytest.mark.parametrize("steps", [1, 5, 8, 20])
def test_total_steps_counts_model_calls(webui: SimpleNamespace, steps: int) -> None:
    harness.load_script()
    for data in ours(webui):
        entry = SAMPLERS[data.options["dpmsolver_entry"]]
        try:
            expected = entry.count_model_calls(grids.karras(steps, 0.0292, 14.6146))
        except ModelCallsUnknown:  # adaptive samplers: the nominal cost per step
            expected = steps * entry.calls_per_step
        assert data.total_steps(steps) == expected
        if entry.calls_per_step > 1 and steps >= 15:
            assert expected > steps
    # 3 calls per step, except the step to sigma = 0, which is one denoise
    assert webui.sd_samplers.all_samplers_map["DPM-Solver++ 3S"].total_steps(20) == 3 * 19 + 1
    assert webui.sd_samplers.all_samplers_map["DPM-Solver++ 2M"].total_steps(20) == 20


def test_colliding_label_gets_the_registry_name(webui: SimpleNamespace) -> None:
    common = webui.sd_samplers_common
    squatter = common.SamplerData("DPM-Solver++ 2M", lambda model: None, ["someone_else"], {})
    webui.sd_samplers.all_samplers.append(squatter)
    webui.sd_samplers.all_samplers_map[squatter.name] = squatter
    harness.load_script()
    assert webui.sd_samplers.all_samplers_map["DPM-Solver++ 2M"] is squatter
    mine = webui.sd_samplers.all_samplers_map["DPM-Solver++ 2M (dpm_solver_pp_2m)"]
    assert mine.options["dpmsolver_entry"] == "dpm_solver_pp_2m"


def test_settings_are_registered_for_override_settings(webui: SimpleNamespace) -> None:
    harness.load_script()
    harness.load_script()
    controls = sys.modules["dpmsolver_webui.controls"].CONTROLS
    for control in controls:
        assert control.setting_key in webui.shared.opts.data_labels
        assert webui.shared.opts.data[control.setting_key] == control.unset_value
    assert webui.shared.opts.set("dpmsolver_ext_solver_type", "taylor", is_api=True)
    with pytest.raises(KeyError):
        webui.shared.opts.set("dpmsolver_ext_not_an_option", 1, is_api=True)


ISOLATED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'samplers':
            raise ModuleNotFoundError('generic name imported: ' + name)
sys.meta_path.insert(0, Block())
sys.path[:0] = [{tests!r}]
from webui_standin import harness
webui = harness.load_webui('forge')
harness.load_script()
import dpmsolver_webui
assert dpmsolver_webui.__file__.startswith({root!r})
assert 'dpmsolver_ext_core' in sys.modules and 'samplers' not in sys.modules
print(sum('dpmsolver_entry' in s.options for s in webui.sd_samplers.all_samplers))
"""


def test_script_loads_core_and_adapter_by_path_not_through_sys_path() -> None:
    """The extension folder is on sys.path in the WebUI: `import samplers` could reach another extension."""
    import subprocess

    root = str(harness.ROOT)
    code = ISOLATED.format(tests=str(harness.ROOT / "tests"), root=root)
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(SAMPLERS))


def test_forks_without_a_scheduler_module() -> None:
    """A1111 < 1.9 / early Forge Classic: no sd_schedulers; DPM-Solver-fast then defaults to Exponential."""
    from dpmsolver_webui.registration import register_scheduler, sampler_options

    assert register_scheduler(None) == "unavailable"
    assert sampler_options(SAMPLERS["dpm_solver_fast"], have_logsnr=False)["scheduler"] == "exponential"
    assert sampler_options(SAMPLERS["dpm_solver_pp_2m"], have_logsnr=False)["scheduler"] == "karras"


def test_reload_replaces_our_schedule_and_keeps_it_dpm_solver_fasts_default(webui: SimpleNamespace) -> None:
    harness.load_script()
    report = sys.modules["dpmsolver_webui.registration"].register_all()
    assert report.scheduler == "replaced"
    fast = webui.sd_samplers.all_samplers_map[SAMPLERS["dpm_solver_fast"].label]
    assert fast.options["scheduler"] == "logsnr_uniform"


def _their_schedule(n: int, sigma_min: float, sigma_max: float, device: Any = "cpu") -> None:
    """Another extension's schedule function (any name but ours)."""


@pytest.mark.parametrize("key", ["logsnr_uniform", "logSNR uniform"])
def test_someone_elses_schedule_under_our_name_or_label_is_left_alone(key: str) -> None:
    from dpmsolver_webui.registration import register_scheduler

    theirs = SimpleNamespace(name=key, label=key, function=_their_schedule)
    host = SimpleNamespace(Scheduler=lambda *args, **kwargs: SimpleNamespace(args=args), schedulers=[theirs],
                           schedulers_map={key: theirs})
    assert register_scheduler(host) == "conflict"
    assert host.schedulers == [theirs] and host.schedulers_map == {key: theirs}


def test_a_scheduler_module_without_the_scheduler_record_is_unavailable() -> None:
    from dpmsolver_webui.registration import register_scheduler

    assert register_scheduler(SimpleNamespace(schedulers=[], schedulers_map={})) == "unavailable"


def test_host_scheduler_words_are_labels_names_and_aliases() -> None:
    from dpmsolver_webui.registration import host_scheduler_words

    host = SimpleNamespace(schedulers=[SimpleNamespace(label="Align Your Steps", name="align_your_steps",
                                                       aliases=["AYS"]),
                                       SimpleNamespace(label="Turbo", name="turbo", aliases=None),
                                       SimpleNamespace(label=None, name="unlabelled")])
    assert host_scheduler_words(host) == ["Align Your Steps", "align_your_steps", "AYS", "Turbo", "turbo",
                                          "unlabelled"]
    assert host_scheduler_words(None) == []


@pytest.mark.parametrize("shared", [SimpleNamespace(), SimpleNamespace(opts=None, OptionInfo=object),
                                    SimpleNamespace(opts=SimpleNamespace(data={}), OptionInfo=object)],
                         ids=["nothing", "no opts", "opts without add_option"])
def test_settings_are_skipped_where_the_host_cannot_hold_them(shared: SimpleNamespace) -> None:
    from dpmsolver_webui.registration import register_settings

    assert register_settings(shared) == 0


def test_settings_use_a_dropdown_for_choices_and_a_slider_for_numbers(webui: SimpleNamespace) -> None:
    harness.load_script()
    registration = sys.modules["dpmsolver_webui.registration"]
    for control in sys.modules["dpmsolver_webui.controls"].CONTROLS:
        info = webui.shared.opts.data_labels[control.setting_key]
        assert info.section == registration.SETTINGS_SECTION
        if control.kind == "choice":
            assert info.component.__name__ == "Dropdown"
            assert info.component_args == {"choices": control.available_choices()}
        else:
            assert info.component.__name__ == "Slider"
            assert info.component_args == {"minimum": control.minimum, "maximum": control.maximum,
                                           "step": control.step}
