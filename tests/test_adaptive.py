"""Adaptive step size (DPM-Solver-12/23 and DPM-Solver++ 12/23): tolerance vs error and NFE, rejections, limits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from test_edges import exact, gaussian_model, start

from samplers import SAMPLERS, grids
from samplers.adaptive import AdaptiveStepLimit, ModelCallsUnknown, _Attempts

ADAPTIVE = ["dpm_solver_adaptive", "dpm_solver_pp_adaptive"]
ATOL_PER_RTOL = 0.0078 / 0.05


def run(name: str, schedule: str = "ve", **options: object) -> tuple[torch.Tensor, float, dict, object]:
    """Adaptive run from 14.6 (VE) / 0.98 (flow) to 0.3 on a grid without 0: (out, max error, info, model)."""
    s0, s1 = (14.6, 0.3) if schedule == "ve" else (0.98, 0.3)
    sigmas = torch.tensor([s0, s1], dtype=torch.float64)
    x = start(sigma=s0)
    info: dict = {}
    model = gaussian_model(schedule)
    out = SAMPLERS[name](model, x, sigmas, schedule=schedule, info=info, disable=True, **options)
    return out, float((out - exact(x, s0, s1, schedule)).abs().max()), info, model


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("schedule", ["ve", "flow"])
@pytest.mark.parametrize("order", [2, 3])
def test_tighter_tolerance_gives_smaller_error_at_more_but_bounded_calls(name: str, schedule: str, order: int
                                                                        ) -> None:
    """Tolerances 30x apart: an embedded pair can under-estimate one step's error (the two results agree by
    chance), so neighbouring tolerances need not order the errors; the noise-prediction pair does that more."""
    errors, calls = [], []
    for rtol in (0.1, 0.003, 1e-4):
        _, err, info, model = run(name, schedule, order=order, rtol=rtol, atol=rtol * ATOL_PER_RTOL)
        assert info["nfe"] == model.calls
        errors.append(err)
        calls.append(info["nfe"])
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-3
    assert calls[0] < calls[1] < calls[2] <= (120 if order == 3 else 250)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_rejected_attempts_are_reported_and_retried_smaller(name: str) -> None:
    seen: list[dict] = []
    info: dict = {}
    x = start()
    model = gaussian_model()
    out = SAMPLERS[name](model, x, torch.tensor([14.6, 0.3], dtype=torch.float64), h_init=5.0, rtol=0.01,
                         atol=0.01 * ATOL_PER_RTOL, info=info, callback=seen.append, disable=True)
    assert info["rejected"] >= 1 and info["accepted"] >= 2
    verdicts = [d for d in seen if "accept" in d]
    assert verdicts[0]["accept"] is False and verdicts[0]["error"] > 1.0
    assert verdicts[1]["h"] < verdicts[0]["h"]
    assert info["nfe"] == model.calls == len(seen)
    assert float((out - exact(x, 14.6, 0.3)).abs().max()) < 0.03


@pytest.mark.parametrize("name", ADAPTIVE)
def test_max_nfe_stops_with_a_clear_error(name: str) -> None:
    model = gaussian_model()
    info: dict = {}
    with pytest.raises(AdaptiveStepLimit, match=r"max_nfe=7 .*Raise max_nfe or loosen rtol/atol"):
        SAMPLERS[name](model, start(), grids.karras(5, 0.03, 14.6), rtol=1e-6, atol=1e-8, max_nfe=7, info=info,
                       disable=True)
    assert model.calls == 7 == info["nfe"]  # where the steps got: test_max_nfe_names_how_far_the_accepted_steps_got


@pytest.mark.parametrize("name", ADAPTIVE)
def test_a_step_size_below_rounding_stops_with_a_clear_error(name: str) -> None:
    """A model whose output is not smooth in sigma rejects every step; tiny h_init or theta shrink h: the run used to
    end in a ZeroDivisionError from the coefficients."""
    inner = gaussian_model()
    noise = torch.Generator().manual_seed(0)

    def rough(x: torch.Tensor, sigma: torch.Tensor, **extra: object) -> torch.Tensor:
        return inner(x, sigma) + 1e15 * torch.randn(x.shape, generator=noise, dtype=x.dtype)

    for model, options in ((rough, {}), (gaussian_model(), {"h_init": 1e-17}), (gaussian_model(), {"theta": 1e-300})):
        with pytest.raises(AdaptiveStepLimit, match=rf"{name}: the step size fell to h=\S+ in log-SNR at "
                                                    r"sigma=[0-9.]+, below 1e-06 \(rounding noise\)"):
            SAMPLERS[name](model, start(), grids.karras(5, 0.03, 14.6), disable=True, **options)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_exception_in_callback_stops_at_once(name: str) -> None:
    model = gaussian_model()

    def interrupt(payload: dict) -> None:
        if payload["i"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SAMPLERS[name](model, start(), grids.karras(10, 0.03, 14.6), callback=interrupt, disable=True)
    assert model.calls == 5


@pytest.mark.parametrize("name", ADAPTIVE)
def test_callback_and_info_report_every_call_and_the_step_counts(name: str) -> None:
    seen: list[dict] = []
    info: dict = {}
    model = gaussian_model()
    out = SAMPLERS[name](model, start(), grids.karras(10, 0.03, 14.6), callback=seen.append, info=info,
                         disable=True)
    assert [d["i"] for d in seen] == list(range(model.calls)) and [d["nfe"] for d in seen] == [
        i + 1 for i in range(model.calls)]
    assert all({"x", "i", "sigma", "sigma_hat", "denoised", "step", "nfe", "total", "accepted", "rejected"} <= set(d)
               for d in seen)
    assert all(d["total"] is None for d in seen)  # not known in advance
    assert [d["sigma"].item() for d in seen] == pytest.approx(model.sigmas)
    assert seen[-1]["sigma"].item() == pytest.approx(0.03) and torch.equal(out, seen[-1]["denoised"])
    assert info["nfe"] == model.calls and info["accepted"] + 1 == len(info["sigmas"]) - 1
    assert info["sigmas"][0] == pytest.approx(14.6) and info["sigmas"][-2:] == [pytest.approx(0.03), 0.0]
    verdicts = [d for d in seen if "accept" in d]
    assert len(verdicts) == info["accepted"] + info["rejected"]  # one per attempt: where a host can interrupt


@pytest.mark.parametrize("name", ADAPTIVE)
def test_model_calls_cannot_be_counted_in_advance(name: str) -> None:
    with pytest.raises(ModelCallsUnknown, match=r"cannot be counted in advance.*max_nfe=1000.*info"):
        SAMPLERS[name].count_model_calls(grids.karras(10, 0.03, 14.6))
    with pytest.raises(ModelCallsUnknown):
        SAMPLERS[name].plan(grids.karras(10, 0.03, 14.6))
    assert SAMPLERS[name].calls_per_step == 3 and not SAMPLERS[name].stochastic


@pytest.mark.parametrize("name", ADAPTIVE)
def test_pid_controller_is_accurate_and_chooses_other_steps(name: str) -> None:
    _, err_std, info_std, _ = run(name, rtol=0.01, atol=0.01 * ATOL_PER_RTOL)
    _, err_pid, info_pid, _ = run(name, rtol=0.01, atol=0.01 * ATOL_PER_RTOL, controller="pid")
    assert info_pid["controller"] == "pid" and info_pid["sigmas"] != info_std["sigmas"]
    assert err_pid < 5 * err_std + 1e-3


@pytest.mark.parametrize("name", ADAPTIVE)
def test_only_the_ends_of_the_grid_matter(name: str) -> None:
    x = start()
    a = SAMPLERS[name](gaussian_model(), x, grids.karras(5, 0.03, 14.6), disable=True)
    b = SAMPLERS[name](gaussian_model(), x, torch.tensor([14.6, 0.03, 0.0], dtype=torch.float64), disable=True)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_flow_from_sigma_one_starts_with_the_exact_step(name: str) -> None:
    from test_edges import uniform_t_flow_grid

    x = start(sigma=1.0)
    model = gaussian_model("flow")
    sigmas = uniform_t_flow_grid(20)
    info: dict = {}
    out = SAMPLERS[name](model, x, sigmas, schedule="flow", rtol=1e-3, atol=1e-4, info=info, disable=True)
    assert model.sigmas[0] == 1.0 and model.sigmas.count(1.0) == 1
    assert info["sigmas"][:2] == [1.0, float(sigmas[1])]
    assert info["accepted"] == len(info["sigmas"]) - 1  # the exact step counts as an accepted one
    assert torch.isfinite(out).all()
    assert float((out - exact(x, 1.0, float(sigmas[-1]), "flow")).abs().max()) < 5e-3


@pytest.mark.parametrize("name", ADAPTIVE)
def test_half_precision_input_is_returned_in_its_dtype(name: str) -> None:
    x = start(dtype=torch.float32)
    model = gaussian_model()
    out = SAMPLERS[name](model, x.half(), torch.tensor([14.6, 0.3]), disable=True)
    assert out.dtype == torch.float16 and set(model.dtypes) == {torch.float16}
    assert float((out.float() - exact(x, 14.6, 0.3)).abs().max()) < 0.1


@pytest.mark.parametrize(("option", "value"), [("order", 4), ("rtol", 0.0), ("theta", 1.5), ("controller", "pi"),
                                               ("max_nfe", 0), ("info", [])])
def test_adaptive_options_are_validated(option: str, value: object) -> None:
    model = gaussian_model()
    with pytest.raises(ValueError, match=option):
        SAMPLERS["dpm_solver_pp_adaptive"](model, start(), grids.karras(4, 0.03, 14.6), disable=True,
                                           **{option: value})
    assert model.calls == 0


def test_the_pid_rule_is_the_documented_filter() -> None:
    """h <- h (1 + atan(f - 1)), f = e_n^((kP+kI+kD)/k) e_(n-1)^(-(kP+2kD)/k) e_(n-2)^(kD/k), e = theta/E of the
    accepted steps, (kP, kI, kD) = (0.4, 0.3, 0.1), the oldest repeated while fewer than three; a rejected attempt
    takes the standard rule theta h E^(-1/k) and leaves the history alone."""
    k, theta = 3, 0.9
    attempts = _Attempts(k, theta, "pid")

    def pid(e0: float, e1: float, e2: float) -> float:
        return 1.0 + math.atan(e0 ** (0.8 / k) * e1 ** (-0.6 / k) * e2 ** (0.1 / k) - 1.0)

    e = [theta / error for error in (0.5, 0.8, 0.3)]
    assert attempts.next_h(0.2, 0.5, True) == pytest.approx(0.2 * pid(e[0], e[0], e[0]), rel=1e-14)
    assert attempts.next_h(0.2, 0.8, True) == pytest.approx(0.2 * pid(e[1], e[0], e[0]), rel=1e-14)
    assert attempts.next_h(0.2, 2.0, False) == pytest.approx(theta * 0.2 * 2.0 ** (-1 / k), rel=1e-14)
    assert attempts.next_h(0.2, 0.3, True) == pytest.approx(0.2 * pid(e[2], e[1], e[0]), rel=1e-14)
    assert attempts.next_h(0.2, 0.0, True) == math.inf


def test_a_float32_rounding_floor_error_lets_the_standard_rule_jump_and_pid_does_not() -> None:
    """The README's case: from one bf16-rounded start in float32 the first attempt's error estimate is at the
    rounding floor and the paper's rule grows h about 100x at once; the PID controller grows h by at most
    1 + pi/2 per step and ends close to the exact sample (so does float64)."""
    sigmas = grids.karras(8, 0.03, 14.6)
    x = start(n=3, dtype=torch.float32).to(torch.bfloat16).float()
    truth = exact(x.double(), 14.6, 0.0)

    def run(y: torch.Tensor, **options: object) -> tuple[float, list[tuple[float, float, bool]]]:
        attempts: list[tuple[float, float, bool]] = []

        def record(payload: dict) -> None:
            if "error" in payload:
                attempts.append((payload["h"], payload["error"], payload["accept"]))

        out = SAMPLERS["dpm_solver_adaptive"](gaussian_model(), y, sigmas, disable=True, callback=record, **options)
        return float((out.double() - truth).abs().max()), attempts

    _, standard = run(x)
    assert standard[0][1] < 1e-5 and standard[1][0] > 60 * standard[0][0]  # E at the floor, h x 100
    error, pid = run(x, controller="pid")
    assert error < 0.01
    accepted_h = [h for h, _, ok in pid if ok]
    assert all(b <= a * (1 + math.pi / 2) + 1e-12 for a, b in itertools.pairwise(accepted_h))
    assert run(x.double())[0] < 0.05


@pytest.mark.parametrize("name", ADAPTIVE)
def test_max_nfe_names_how_far_the_accepted_steps_got_in_log_snr(name: str) -> None:
    """P% = (lambda(reached) - lambda(start)) / (lambda(end) - lambda(start)); a flow run from sigma = 1 starts at the
    grid's second sigma (where the exact first step lands), and a run with nothing left to integrate is 100% there."""
    info: dict = {}
    with pytest.raises(AdaptiveStepLimit) as stopped:
        SAMPLERS[name](gaussian_model(), start(), grids.karras(5, 0.03, 14.6), rtol=1e-3, atol=1e-4, max_nfe=12,
                       info=info, disable=True)
    reached = info["sigmas"][-1]  # the newest accepted sigma: not the first, nor the rejected attempt's
    assert info["accepted"] >= 2 and info["rejected"] >= 1 and reached < info["sigmas"][1]
    done = math.log(14.6 / reached) / math.log(14.6 / 0.03)
    assert (f"accepted steps at sigma={reached:.6g} ({done:.0%} of the way in log-SNR from sigma=14.6 to 0.03; "
            f"{info['accepted']} steps accepted, {info['rejected']} rejected)") in str(stopped.value)

    from test_edges import uniform_t_flow_grid

    sigmas = uniform_t_flow_grid(20)
    info = {}
    with pytest.raises(AdaptiveStepLimit) as stopped:
        SAMPLERS[name](gaussian_model("flow"), start(sigma=1.0), sigmas, schedule="flow", rtol=1e-4, atol=1e-5,
                       max_nfe=12, info=info, disable=True)
    reached, first, last = info["sigmas"][-1], float(sigmas[1]), float(sigmas[-1])  # a grid without 0

    def lam(s: float) -> float:
        return math.log((1 - s) / s)

    done = (lam(reached) - lam(first)) / (lam(last) - lam(first))
    assert 0 < done < 1 and f"at sigma={reached:.6g} ({done:.0%} of the way" in str(stopped.value)
    with pytest.raises(AdaptiveStepLimit, match=r"at sigma=0\.02 \(100% of the way in log-SNR from sigma=1 to 0\.02; "
                                                r"1 steps accepted, 0 rejected\)"):
        SAMPLERS[name](gaussian_model("flow"), start(sigma=1.0), torch.tensor([1.0, 0.02, 0.0]), schedule="flow",
                       max_nfe=1, disable=True)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_a_flow_grid_of_one_step_from_sigma_one_is_one_denoise(name: str) -> None:
    x = start(sigma=1.0)
    model = gaussian_model("flow")
    out = SAMPLERS[name](model, x, torch.tensor([1.0, 0.0], dtype=torch.float64), schedule="flow", disable=True)
    assert model.sigmas == [1.0]
    torch.testing.assert_close(out, gaussian_model("flow")(x, torch.ones(len(x), dtype=torch.float64)))


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize(("order", "fractions", "first_error"), [
    (2, [0.5], {"dpm_solver_adaptive": 0.013307435143036265, "dpm_solver_pp_adaptive": 0.010363840910067387}),
    (3, [1 / 3, 2 / 3], {"dpm_solver_adaptive": 0.00010881704777149929,
                         "dpm_solver_pp_adaptive": 0.0017897101382129922}),
])
def test_an_attempt_calls_the_model_at_its_fractions_and_scores_its_error_as_released(
        name: str, order: int, fractions: list[float], first_error: dict[str, float]) -> None:
    """DPM-Solver-12 evaluates the step's middle in log-SNR, DPM-Solver-23 its thirds. The first attempt's scaled
    error estimate (rtol max(|x_low|/c_t, |x|/c_s) clamped at atol, c = sqrt(alpha^2 + sigma^2)) is pinned as
    released: it chooses the steps, hence the image, of every adaptive run."""
    model = gaussian_model()
    errors: list[float] = []
    SAMPLERS[name](model, start(), torch.tensor([14.6, 0.3], dtype=torch.float64), order=order, h_init=0.5,
                   callback=lambda payload: errors.append(payload["error"]) if "error" in payload else None,
                   disable=True)
    assert model.sigmas[:len(fractions) + 1] == pytest.approx([14.6 * math.exp(-0.5 * r) for r in [0.0, *fractions]],
                                                               rel=1e-12)
    assert errors[0] == pytest.approx(first_error[name], rel=1e-9)
