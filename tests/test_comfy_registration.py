"""Dropdown registration against a stand-in `comfy` package: in place, every registry name, idempotent."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from test_comfy_support import BUILTIN_NAMES, install_fake_comfy, load_package, purge_package

from samplers import SAMPLERS

PACKAGE = "dpm_solver_samplers_registration_test"


@pytest.fixture
def comfy(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    modules = install_fake_comfy(monkeypatch)
    yield modules
    purge_package(PACKAGE)
    purge_package(PACKAGE + "_clone")


def test_every_registry_name_is_appended_in_place(comfy: dict) -> None:
    samplers = comfy["comfy.samplers"]
    names, ksampler_names = samplers.SAMPLER_NAMES, samplers.KSAMPLER_NAMES
    assert samplers.KSampler.SAMPLERS is names
    before = list(names)
    package = load_package(PACKAGE)
    assert samplers.SAMPLER_NAMES is names and samplers.KSampler.SAMPLERS is names
    assert samplers.KSAMPLER_NAMES is ksampler_names
    assert names[:len(before)] == before
    assert names[len(before):] == list(SAMPLERS)
    assert ksampler_names[len(BUILTIN_NAMES):] == list(SAMPLERS)
    k_sampling = comfy["comfy.k_diffusion.sampling"]
    for name in SAMPLERS:
        function = getattr(k_sampling, f"sample_{name}")
        assert callable(function) and function.__name__ == f"sample_{name}"
    assert list(SAMPLERS) == package.nodes.REGISTERED_SAMPLERS


def test_registering_again_appends_nothing_and_keeps_list_objects(comfy: dict) -> None:
    samplers = comfy["comfy.samplers"]
    names, ksampler_names = samplers.SAMPLER_NAMES, samplers.KSAMPLER_NAMES
    package = load_package(PACKAGE)
    snapshot = (list(names), list(ksampler_names))
    package.nodes.register()
    load_package(PACKAGE)  # a fresh import (e.g. a reload)
    load_package(PACKAGE + "_clone")  # a second copy of the repository under another folder name
    assert (list(names), list(ksampler_names)) == snapshot
    assert samplers.SAMPLER_NAMES is names and samplers.KSampler.SAMPLERS is names
    assert len(names) == len(set(names))


def test_names_do_not_shadow_comfyui_names(comfy: dict) -> None:
    assert not set(SAMPLERS) & set(comfy["comfy.samplers"].SAMPLER_NAMES)
    assert all(name.startswith("dpm_solver_") for name in SAMPLERS)


def test_a_foreign_function_of_the_same_name_is_left_alone(comfy: dict, caplog: pytest.LogCaptureFixture) -> None:
    k_sampling = comfy["comfy.k_diffusion.sampling"]

    def foreign(*args: object, **kwargs: object) -> None:
        return None

    k_sampling.sample_dpm_solver_pp_2m = foreign
    with caplog.at_level(logging.WARNING):
        package = load_package(PACKAGE)
    assert k_sampling.sample_dpm_solver_pp_2m is foreign
    assert "dpm_solver_pp_2m" not in comfy["comfy.samplers"].SAMPLER_NAMES
    assert "dpm_solver_pp_2m" not in package.nodes.REGISTERED_SAMPLERS
    assert "dpm_solver_pp_2m" in caplog.text


def test_a_name_taken_in_the_list_is_left_alone(comfy: dict) -> None:
    names = comfy["comfy.samplers"].SAMPLER_NAMES
    names.append("dpm_solver_fast")
    package = load_package(PACKAGE)
    assert names.count("dpm_solver_fast") == 1
    assert not hasattr(comfy["comfy.k_diffusion.sampling"], "sample_dpm_solver_fast")
    assert "dpm_solver_fast" not in package.nodes.REGISTERED_SAMPLERS


def test_a_comfyui_without_a_separate_ksampler_list_gets_the_names_once(comfy: dict,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    samplers = comfy["comfy.samplers"]
    monkeypatch.delattr(samplers, "KSAMPLER_NAMES")
    package = load_package(PACKAGE)
    assert samplers.SAMPLER_NAMES[-len(SAMPLERS):] == list(SAMPLERS)
    assert list(SAMPLERS) == package.nodes.REGISTERED_SAMPLERS


def test_outside_comfyui_nothing_is_registered() -> None:
    import subprocess
    import sys

    from test_comfy_support import ROOT

    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pkg', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pkg'] = m; spec.loader.exec_module(m)\n"
        "assert m.NODE_CLASS_MAPPINGS == {} and 'comfy' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
