"""Oracle harness: run diffusers' DPM-Solver schedulers with a sigma-space denoiser.

Test support only (not collected by pytest).  ``run_multistep`` / ``run_singlestep`` drive
``DPMSolverMultistepScheduler`` / ``DPMSolverSinglestepScheduler`` with a denoiser written in our
convention and return ``(sigmas, x_final)`` in our convention, so our samplers can be compared with
diffusers.  Pass ``trace=OracleTrace()`` to also get the sigma (and state) at every model call and the
solver order diffusers used at every step.

Conventions
-----------
* ``family="ve"``:   x = x0 + sigma*eps  (alpha = 1, lambda = -log sigma).  diffusers runs in VP:
  x_vp = x_ve / sqrt(1 + sigma^2), alpha_t = 1/sqrt(1 + sigma^2), sigma_t = sigma*alpha_t, and its
  ``scheduler.sigmas`` already are VE sigmas ((1 - abar)/abar)^0.5.  Returned sigmas need no conversion.
* ``family="flow"``: x = (1 - sigma)*x0 + sigma*eps (alpha = 1 - sigma, the same scaling as diffusers with
  ``use_flow_sigmas=True``).  The flow-prediction model output is v = eps - x0 = (x - D)/sigma.
* ``denoiser(x, sigma) -> D`` gets the state in our convention (float64) and the sigma as a Python float
  and returns the data prediction.  It is converted to ``prediction_type``: default ``"epsilon"`` for ve
  (eps = (x - D)/sigma), ``"flow_prediction"`` for flow with dpmsolver++; for flow with ``dpmsolver``
  diffusers raises on flow_prediction, so ``"sample"`` (D itself) is used.  ``"sample"`` may be asked for
  explicitly for any combination (then D reaches the solver untouched).

Behaviour of diffusers 0.42.1 (read from its source, checked by tests/test_diffusers_oracle_selfcheck.py)
----------------------------------------------------------------------------------------------------------
Scheduler config used here: 1000 train steps, betas float32, "scaled_linear" = linspace(sqrt(0.00085),
sqrt(0.012), 1000)**2 (SD), timestep_spacing "linspace", no lambda clipping.  Only the ODE algorithms
``dpmsolver++`` (data prediction) and ``dpmsolver`` (noise prediction, deprecated: FutureWarning) are used.

Sigma grid (``set_timesteps(N)``; same code in both schedulers), N entries plus one final entry:
* ve default: integer timesteps t_i = round(linspace(0, 999, N + 1))[::-1][:-1] (np.round: half to even,
  e.g. N=10 -> 999, 899, ..., 500, ..., 100), sigma_i = ((1 - abar[t_i]) / abar[t_i])^0.5 evaluated in
  float32 from the float32 cumprod (np.interp at integer points is exact table lookup).
* ve ``use_karras_sigmas``: rho = 7 Karras ramp of N points from sigma_max = train_sigmas[999] (~14.6146)
  down to sigma_min = train_sigmas[0] (~0.029167) in float64 (the timesteps are rounded sigma->t, but only
  feed the model, not the solver).
* flow (``use_flow_sigmas``): s = 1 - linspace(1, 1/1000, N + 1); s' = shift*s / (1 + (shift - 1)*s);
  sigmas = flip(s')[:-1], i.e. N values from shift(0.999) down to shift(0.999/N); no 0 among them.
* Final entry appended: ``final_sigmas_type="zero"`` -> 0; ``"sigma_min"`` -> ((1 - abar[0])/abar[0])^0.5
  of the *beta schedule* (~0.029167 for SD betas) -- also for flow, where it is just this number.
  With Karras + "sigma_min" the last two sigmas are equal, so the last interval has h = 0 and the last
  model call is at sigma_min.  Multistep: order 1 / midpoint order 2 return x unchanged there, but heun
  order 2 and order 3 give 0/0 = NaN (i.e. NaN whenever N >= 15 or lower_order_final=False, with heun or
  solver_order=3).  Singlestep stays finite (its multi-interval updates have h != 0).
* The whole array is cast to float32.  So the grid consists of float32 values; ``sigmas`` returned here
  holds exactly those values as float64.
* ``final_sigmas_type="zero"`` with ``algorithm_type="dpmsolver"``: both constructors raise ValueError
  ("not supported ... choose sigma_min"); a step to sigma = 0 has lambda = +inf and is only finite for the
  data-prediction form, where order 1 gives x_next = D exactly.

Model calls: exactly one per grid interval, at sigmas[0..N-1] (never at the final entry), on the current
state; N calls in total for both schedulers.

Multistep (``step`` i = 0..N-1 goes sigmas[i] -> sigmas[i+1]; order k uses the stored model outputs at
sigmas[i], sigmas[i-1], ..., sigmas[i-k+1]):
* order 1 if solver_order == 1 or i == 0 (warm-up) or ``lower_order_final_step``;
  else order 2 if solver_order == 2 or i == 1 (warm-up) or ``lower_order_second``; else order 3.
* ``lower_order_final_step`` = (i == N-1) and (euler_at_final [False here] or (lower_order_final and N < 15)
  or final_sigmas_type == "zero").
* ``lower_order_second`` = (i == N-2) and lower_order_final and N < 15.
  So: "zero" always forces order 1 on the last step; lower_order_final matters only for N < 15 (N = number
  of steps = len(timesteps)), where it forces order 1 on the last step and order <= 2 on the one before.
* ``step`` casts the incoming sample to float32 before the update (the model-output conversion happens
  before that cast, in the caller's dtype); the result is cast back to the model output's dtype.

Singlestep (``step`` i goes one grid interval, but a k-th order singlestep update spans k intervals):
* The order of step i is ``order_list[i]`` from ``get_order_list(N)``:
  lower_order_final=True:
    order 3: N%3==0: [1,2,3]*(N//3-1) + [1,2] + [1];  N%3==1: [1,2,3]*(N//3) + [1];
             N%3==2: [1,2,3]*(N//3) + [1,2]
    order 2: N even: [1,2]*(N//2-1) + [1,1];  N odd: [1,2]*(N//2) + [1]
    order 1: [1]*N
  lower_order_final=False: [1,2,3]*(N//3) / [1,2]*(N//2) / [1]*N; but ``set_timesteps`` silently switches
  lower_order_final to True (logger warning) if N % solver_order != 0 or final_sigmas_type == "zero".
  Finally, if final_sigmas_type == "zero", order_list[-1] = 1 (e.g. order 3, N=5: [1,2,3,1,1]).
* A run of orders [1, 2, ..., k] starting at grid index j is one k-th order singlestep DPM-Solver step
  from sigmas[j] to sigmas[j+k] whose intermediate points are the grid points sigmas[j+1..j+k-1]:
  order 1 at j stores x_j and does DDIM x_j -> x_{j+1}; order 2 at j+1 evaluates the model at
  (x_{j+1}, sigmas[j+1]) and goes from the stored x_j to x_{j+2} with m_j, m_{j+1}
  (r = (lambda_{j+1}-lambda_j)/(lambda_{j+2}-lambda_j)); order 3 at j+2 evaluates at (x_{j+2},
  sigmas[j+2]) and goes from x_j to x_{j+3} with m_j, m_{j+1}, m_{j+2}.  The intermediate states
  x_{j+1}, x_{j+2} are exactly the order-1 / order-2 updates of the same "midpoint"/"heun" solver_type.
  With "midpoint" the order-3 update uses only D0 = m_j and (m_{j+2}-m_j)/r (r = (lambda_{j+2}-lambda_j)/h);
  with "heun" it uses D1 and D2 built from all three.
* ``step`` does no float32 cast: with float64 sigmas the whole singlestep run is float64.

Thresholding (``thresholding=True``) acts on the data prediction x0 (identical in VE and VP scaling):
per sample, s = clamp(quantile(|x0|, dynamic_thresholding_ratio), 1, sample_max_value) over all non-batch
dims, x0 <- clamp(x0, -s, s)/s (sample_max_value=1 means plain clipping to [-1, 1]).  The state must be at
least 2-D (batch, channels, ...).  For ``dpmsolver`` x0 is rebuilt from eps, thresholded, and converted back
(multistep only: the singlestep ``dpmsolver`` + thresholding path indexes ``alpha_t[None]`` and crashes).

Precision
---------
``x_init`` may be float32 or float64; it is upcast to float64, the denoiser sees float64 states and its
output is upcast to float64, and ``scheduler.sigmas`` is replaced by a float64 copy of the same
(float32-valued) grid after ``set_timesteps``.  Hence
* singlestep: float64 throughout; against an independent float64 DDIM on the returned grid the
  difference is <= 6e-16 relative (N = 10, 50).  Use rtol ~1e-12 for singlestep comparisons.
* multistep: the state is rounded to float32 at the start of every step (diffusers' hard-coded cast),
  everything else is float64; observed 1e-7 .. 2e-7 max relative difference (N = 10, 50, both families).
  Use rtol ~1e-6 (and atol ~1e-6 * data scale) for multistep comparisons.
A float32 ``x_init`` is upcast exactly, so compare against a run started from ``x_init.double()``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers import DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
Family = Literal["ve", "flow"]
PredictionType = Literal["epsilon", "sample", "flow_prediction"]
Scheduler = DPMSolverMultistepScheduler | DPMSolverSinglestepScheduler

SD_BETA_START = 0.00085
SD_BETA_END = 0.012


@dataclass
class OracleTrace:
    """Filled in by a run when passed as ``trace=``.

    call_sigmas: sigma (our convention) of every denoiser call, in order (== sigmas[:-1]).
    call_states: the state x (our convention, float64) handed to the denoiser at each call.
    orders: solver order of the update diffusers performed at each step.
    prediction_type: the prediction type diffusers was configured with.
    config: the scheduler config after ``set_timesteps`` (shows e.g. a forced ``lower_order_final``).
    """

    call_sigmas: list[float] = field(default_factory=list)
    call_states: list[torch.Tensor] = field(default_factory=list)
    orders: list[int] = field(default_factory=list)
    prediction_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def _resolve_prediction_type(family: Family, algorithm_type: str, prediction_type: str | None) -> str:
    if prediction_type is None:
        if family == "ve":
            return "epsilon"
        return "flow_prediction" if algorithm_type == "dpmsolver++" else "sample"
    if family == "ve" and prediction_type == "flow_prediction":
        raise ValueError("flow_prediction needs family='flow'")
    return prediction_type


def _to_model_output(
    prediction_type: str, family: Family, x: torch.Tensor, d: torch.Tensor, sigma: float
) -> torch.Tensor:
    if prediction_type == "sample":
        return d
    if prediction_type == "flow_prediction":
        return (x - d) / sigma
    if prediction_type == "epsilon":
        alpha = 1.0 if family == "ve" else 1.0 - sigma
        return (x - alpha * d) / sigma
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def _record_orders(sched: Scheduler, trace: OracleTrace) -> None:
    """Wrap the instance's update methods so that the order actually used is observed, not re-derived."""
    if isinstance(sched, DPMSolverSinglestepScheduler):
        orig = sched.singlestep_dpm_solver_update

        def single(*args: Any, **kwargs: Any) -> torch.Tensor:
            trace.orders.append(int(kwargs["order"]))
            return orig(*args, **kwargs)

        sched.singlestep_dpm_solver_update = single  # type: ignore[method-assign]
        return
    names = ("dpm_solver_first_order_update", "multistep_dpm_solver_second_order_update",
             "multistep_dpm_solver_third_order_update")
    for order, name in enumerate(names, start=1):
        setattr(sched, name, _recording(getattr(sched, name), order, trace))


Update = Callable[..., torch.Tensor]


def _recording(update: Update, order: int, trace: OracleTrace) -> Update:
    def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
        trace.orders.append(order)
        return update(*args, **kwargs)

    return wrapped


def _run(
    cls: type[Scheduler],
    denoiser: Denoiser,
    x_init: torch.Tensor,
    *,
    family: Family,
    num_steps: int,
    prediction_type: str | None,
    trace: OracleTrace | None,
    **config: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    if family not in ("ve", "flow"):
        raise ValueError(f"unknown family {family!r}")
    if config["algorithm_type"] not in ("dpmsolver++", "dpmsolver"):
        raise ValueError("only the ODE algorithms 'dpmsolver++' and 'dpmsolver' are supported")
    if family == "flow" and config.get("use_karras_sigmas"):
        raise ValueError("use_karras_sigmas makes no sense with flow sigmas")
    ptype = _resolve_prediction_type(family, config["algorithm_type"], prediction_type)
    if family == "flow":
        config.update(use_flow_sigmas=True)
    else:
        config.pop("flow_shift")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # 'dpmsolver' deprecation
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy-2 __array__(copy=) notice in diffusers
        sched = cls(num_train_timesteps=1000, prediction_type=ptype, **config)
        sched.set_timesteps(num_steps)
    sched.sigmas = sched.sigmas.to(torch.float64)
    sched.set_begin_index(0)
    sigmas = sched.sigmas.clone()

    trace = trace if trace is not None else OracleTrace()
    trace.prediction_type = ptype
    trace.config = dict(sched.config)
    _record_orders(sched, trace)

    def vp_scale(sigma: float) -> float:  # x_diffusers = x_ours * vp_scale
        return 1.0 / math.sqrt(1.0 + sigma * sigma) if family == "ve" else 1.0

    x = x_init.to(torch.float64) * vp_scale(float(sigmas[0]))
    for i, t in enumerate(sched.timesteps):
        sigma = float(sigmas[i])
        x_ours = x / vp_scale(sigma)
        d = denoiser(x_ours, sigma).to(torch.float64)
        trace.call_sigmas.append(sigma)
        trace.call_states.append(x_ours)
        # x0, eps and v are the same in our scaling and diffusers' (VP) scaling: no rescaling of the output.
        out = _to_model_output(ptype, family, x_ours, d, sigma)
        x = sched.step(out, t, x, return_dict=False)[0]
    return sigmas, x.to(torch.float64) / vp_scale(float(sigmas[-1]))


_DEFAULTS: dict[str, Any] = {
    "family": "ve", "num_steps": 10, "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
    "lower_order_final": True, "use_karras_sigmas": False, "flow_shift": 3.0, "thresholding": False,
    "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "beta_schedule": "scaled_linear",
    "beta_start": SD_BETA_START, "beta_end": SD_BETA_END, "prediction_type": None, "trace": None,
}
"""Options of run_multistep/run_singlestep (diffusers' config names, plus family, num_steps, prediction_type and
trace) with their defaults; `final_sigmas_type` defaults per scheduler."""


def _with_defaults(options: dict[str, Any], final_sigmas_type: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_DEFAULTS) - {"final_sigmas_type"})
    if unknown:
        raise TypeError(f"unknown oracle option(s) {unknown}; known: {sorted(_DEFAULTS)} and final_sigmas_type")
    return {**_DEFAULTS, "final_sigmas_type": final_sigmas_type, **options}


def run_multistep(denoiser: Denoiser, x_init: torch.Tensor, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``DPMSolverMultistepScheduler`` (options: see _DEFAULTS; final_sigmas_type "zero"); return
    (float64 sigma grid incl. final entry, x_final), ours."""
    return _run(DPMSolverMultistepScheduler, denoiser, x_init, **_with_defaults(options, "zero"))


def run_singlestep(denoiser: Denoiser, x_init: torch.Tensor, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``DPMSolverSinglestepScheduler`` (options: see _DEFAULTS; final_sigmas_type "sigma_min"); return
    (float64 sigma grid incl. final entry, x_final), ours."""
    return _run(DPMSolverSinglestepScheduler, denoiser, x_init, **_with_defaults(options, "sigma_min"))
