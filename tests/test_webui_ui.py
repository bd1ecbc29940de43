"""The accordion (stand-in gradio), paste fields and PNG-info paste, and install.py."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace

import pytest
from webui_standin import harness


@pytest.fixture(params=harness.FLAVORS)
def webui(request: pytest.FixtureRequest) -> Iterator[SimpleNamespace]:
    yield harness.load_webui(request.param)
    harness.unload()


def accordion(webui: SimpleNamespace) -> tuple:
    script = harness.load_script().DpmSolverScript()
    runner = webui.scripts.ScriptRunner([script])
    runner.setup_ui()
    return script, runner


def test_accordion_controls_are_stable_and_hide_unused_options(webui: SimpleNamespace) -> None:
    script, runner = accordion(webui)
    controls = sys.modules["dpmsolver_webui.controls"].CONTROLS
    assert script.title() == "DPM-Solver" and script.show(False) is webui.scripts.AlwaysVisible
    assert len(runner.inputs) == len(controls)
    visible = {c.option for c, comp in zip(controls, runner.inputs, strict=True) if comp.kwargs["visible"]}
    assert visible == {"solver_type", "lower_order_final", "third_order", "r1", "r2", "order", "eta", "s_noise",
                       "rtol", "atol", "corrector", "sds_noise"}  # today's registry
    solver_type = runner.inputs[[c.option for c in controls].index("solver_type")]
    assert solver_type.kwargs["choices"] == ["default", "dpmsolver", "taylor"]
    assert solver_type.value == "default"
    for component, control in zip(runner.inputs, controls, strict=True):
        assert control.option in component.kwargs["elem_id"]
        if control.kind == "number":
            assert component.kwargs["minimum"] <= component.value <= component.kwargs["maximum"]
    assert [key for _, key in script.infotext_fields] == [c.infotext for c in controls]
    assert script.paste_field_names == [c.infotext for c in controls]
    accordion_box = [c for c in sys.modules["gradio"].CREATED if type(c).__name__ == "Accordion"][-1]
    assert accordion_box.kwargs["open"] is False  # closed until the user opens it, like the WebUI's own


def test_png_info_paste_restores_and_resets_the_accordion(webui: SimpleNamespace) -> None:
    script, runner = accordion(webui)
    infotext = ("a cat\nSteps: 8, Sampler: DPM-Solver++ 3M, Schedule type: Karras, CFG scale: 3, Seed: 1, "
                "Size: 8x8, DPM-Solver solver type: taylor, DPM-Solver r1: 0.35, DPM-Solver lower order final: off")
    updates = dict(zip([key for _, key in script.infotext_fields],
                       webui.infotext_utils.paste(infotext, script.infotext_fields), strict=True))
    assert updates["DPM-Solver solver type"] == {"value": "taylor"}
    assert updates["DPM-Solver r1"] == {"value": 0.35}
    assert updates["DPM-Solver lower order final"] == {"value": "off"}
    assert updates["DPM-Solver third order"] == {"value": "default"}  # absent key: reset, not left stale
    assert updates["DPM-Solver eta"]["value"] == runner.inputs[6].value
    plain = "a cat\nSteps: 8, Sampler: Euler, CFG scale: 3, Seed: 1, Size: 8x8"
    for update, component in zip(webui.infotext_utils.paste(plain, script.infotext_fields), runner.inputs,
                                 strict=True):
        assert update == {"value": component.value}
    params = webui.infotext_utils.parse_generation_parameters(infotext)
    assert webui.sd_samplers.get_sampler_from_infotext(params) == "DPM-Solver++ 3M"


def test_send_to_txt2img_round_trip(webui: SimpleNamespace) -> None:
    """Generate with options, paste the infotext into a fresh accordion, generate again: same image."""
    script, runner = accordion(webui)
    args = runner.default_args()
    args[1], args[3] = "taylor", "consistent"
    p = webui.processing.StableDiffusionProcessingTxt2Img(sampler_name="DPM-Solver++ 3M", scripts=runner,
                                                          script_args=args, steps=5)
    first, infotext = webui.processing.process_images(p)
    restored = [u.get("value", c.value) for u, c in
                zip(webui.infotext_utils.paste(infotext, script.infotext_fields), runner.inputs, strict=True)]
    assert restored == args
    again = webui.processing.StableDiffusionProcessingTxt2Img(sampler_name="DPM-Solver++ 3M", scripts=runner,
                                                              script_args=restored, steps=5)
    second, infotext_again = webui.processing.process_images(again)
    assert (first == second).all() and infotext_again == infotext


def load_install() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dpmsolver_install", harness.ROOT / "install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_installs_only_what_is_missing_and_never_torch() -> None:
    install = load_install()
    text = "# comment\ntorch==2.13.0\nnumpy>=1.26  # present\n\nrich>=13\n-r other.txt\ntorchvision\n"
    assert install.requirement_lines(text) == ["torch==2.13.0", "numpy>=1.26", "rich>=13", "torchvision"]
    calls: list[str] = []
    done = install.install_missing(install.requirement_lines(text), lambda name: name == "numpy",
                                   lambda command, desc: calls.append(command))
    assert done == ["rich>=13"] and calls == ['install "rich>=13"']


def test_install_main_with_the_webui_launch_module(monkeypatch: pytest.MonkeyPatch) -> None:
    harness.load_webui("a1111")
    try:
        import launch

        install = load_install()
        monkeypatch.setattr(install, "REQUIREMENTS", harness.ROOT / "requirements.txt")
        install.main()
        assert launch.PIP_CALLS == []  # requirements.txt lists nothing beyond the WebUI's torch
    finally:
        harness.unload()
