"""Benchmark cases on the embedded demo networks (`dpmsolver_demo`): learned, imperfect denoisers.

Analytic targets have exact, smooth denoisers, which flatters high-order solvers; these two small networks
(trained on scikit-learn's 8x8 digits, see dpmsolver_demo/) are what a real model looks like to a sampler:

* `digits_eps/karras`, `digits_eps/exponential`: a noise-prediction network on Stable Diffusion's discrete
  1000-step schedule, called through the SD1.x-style discrete-timestep wrapper (sigma 14.6 -> 0.0292, then 0);
* `digits_flow/simple`: a rectified-flow velocity network (SD3/Flux style) on ComfyUI's "simple" grid, shift 3.

Accuracy: the error against the exact ODE solution of the same grid from the same noise, like the analytic
cases; the exact solution comes from `dpmsolver_demo.sampling.ConvergedReference` (DPM-Solver++ 3S with steps of
0.02 in half-log-SNR, chained across step counts; its error is below 1e-12 MSE, checked against twice the step).
NETWORK_SAMPLES fixed initial noises (seed problems.SEED + 1); the state is float64, the network float32.

Distribution (stochastic samplers): the Frechet distance between DIST_SAMPLES generated digits and the 1797
digits of the data set, computed in pixel space (64 dimensions: the network-independent pixel mean and
covariance), with the distance of DIST_SAMPLES random data images to the whole set as the floor of the estimator.

The networks load lazily (only with --networks): `import samplers` and `samplers.bench` need torch alone.
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import grids
from ..registry import SamplerEntry
from .cases import Case
from .measure import DTYPE, CaseRunner
from .problems import SEED, Problem
from .report import table

NETWORK_PROBLEMS = ("digits_eps", "digits_flow")
"""The demo networks' problem names: a network case's name is one of them, a slash and its grid."""
NETWORK_SAMPLES = 32
REFERENCE_H = 0.02
DIST_SAMPLES = 512
DIST_SEED = 20240612
DIST_BUDGETS = (10, 20)
DIST_BUDGETS_QUICK = (10,)
DIST_COMPARE = ("dpm_solver_1", "dpm_solver_pp_2m", "dpm_solver_pp_3m")
"""Deterministic samplers shown beside the stochastic ones in the distribution table (when selected)."""


@dataclass
class NetworkProblem(Problem):
    """A demo network as a benchmark problem: prior_noise draws the host's initial noise (sigma_max * N(0, I) for
    the SD-style model, N(0, I) at sigma = 1 for flow) as (n, 1, 8, 8) tensors, at most `samples` of them (the
    network costs ~1000x an analytic denoiser per sample)."""

    demo: Any = None
    samples: int = NETWORK_SAMPLES

    def prior_noise(self, n: int, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
        from dpmsolver_demo.sampling import initial_noise

        return initial_noise(self.demo, min(n, self.samples), SEED + 1, dtype)


@dataclass
class NetworkCase(Case):
    """A network case: the data set's pixel std is the unit of relative errors."""

    std: float = 1.0

    @property
    def data_std(self) -> float:
        return self.std


def is_network(case: Case | str) -> bool:
    """Whether a case, or the case of that name, is on a demo network (the one test every module uses; a name is
    enough before the networks load)."""
    if isinstance(case, str):
        return case.split("/", 1)[0] in NETWORK_PROBLEMS
    return isinstance(case, NetworkCase)


class NetworkReferences:
    """The `References` interface (target, ode_solves) backed by the chained fine singlestep solve."""

    def __init__(self, case: NetworkCase, x0: torch.Tensor) -> None:
        from dpmsolver_demo.sampling import ConvergedReference

        self.reference = ConvergedReference(case.problem.demo, x0, REFERENCE_H)
        self.ode_solves = 0

    def target(self, sigmas: torch.Tensor) -> torch.Tensor:
        before = len(self.reference._targets)
        out = self.reference.target(sigmas)
        self.ode_solves += len(self.reference._targets) - before
        return out.to(DTYPE)


def adopt_network_runners(runners: Sequence[CaseRunner]) -> None:
    """Give the runners of network cases the network reference (the analytic one calls scipy's DOP853, which the
    discrete-timestep wrapper's piecewise-linear timestep interpolation slows to ~10^4 model calls)."""
    for runner in runners:
        if is_network(runner.case):
            runner.refs = NetworkReferences(runner.case, runner.x0)  # type: ignore[assignment]


def network_cases(samples: int = NETWORK_SAMPLES) -> list[NetworkCase]:
    """The three network cases with at most `samples` initial noises each (loads both demo models: float32
    networks, checksums verified)."""
    if samples < 1:
        raise ValueError(f"samples (initial noises per network case) must be >= 1, got {samples}")
    from dpmsolver_demo.data import DATA_STD
    from dpmsolver_demo.weights_io import load_model
    from dpmsolver_demo.wrappers import FLOW_SHIFT

    eps, flow = load_model("digits_eps"), load_model("digits_flow")
    lo, hi = eps.sigma_min, eps.sigma_max
    eps_name, flow_name = NETWORK_PROBLEMS
    p_eps = NetworkProblem(eps_name, "ve", eps, hi, lo, 64, demo=eps, samples=samples)
    p_flow = NetworkProblem(flow_name, "flow", flow, 1.0, flow.sigma_min, 64, shift=FLOW_SHIFT, demo=flow,
                            samples=samples)
    return [
        NetworkCase(f"{eps_name}/karras", p_eps, "karras", lambda n: grids.karras(n, lo, hi), "ve", std=DATA_STD),
        NetworkCase(f"{eps_name}/exponential", p_eps, "exponential", lambda n: grids.exponential(n, lo, hi), "ve",
                    std=DATA_STD),
        NetworkCase(f"{flow_name}/simple", p_flow, "flow_simple", lambda n: grids.flow_simple(n, shift=FLOW_SHIFT),
                    "flow", std=DATA_STD),
    ]


def select_network_cases(patterns: Sequence[str] | None, samples: int = NETWORK_SAMPLES) -> list[NetworkCase]:
    """Network cases matching the --problems patterns (all when None), at most `samples` initial noises each; []
    when none match."""
    cases = network_cases(samples)
    if not patterns:
        return cases
    return [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) or c.name.startswith(p + "/") for p in patterns)]


def _dist_entries(entries: Mapping[str, SamplerEntry]) -> dict[str, SamplerEntry]:
    chosen = {n: e for n, e in entries.items() if e.stochastic}
    if chosen:
        chosen.update({n: entries[n] for n in DIST_COMPARE if n in entries})
    return chosen


def run_distribution(entries: Mapping[str, SamplerEntry], quick: bool = False,
                     models: Sequence[str] = ("digits_eps", "digits_flow"), samples: int | None = None,
                     budgets: Sequence[int] | None = None) -> dict[str, Any]:
    """Frechet distance in pixel space to the data set for the stochastic samplers (plus DIST_COMPARE and a
    converged ODE solve) at DIST_BUDGETS (quick: DIST_BUDGETS_QUICK, half the samples); needs scikit-learn."""
    from dpmsolver_demo.data import frechet_distance, load_digits
    from dpmsolver_demo.sampling import ConvergedReference, initial_noise, make_grid, run_at_budget
    from dpmsolver_demo.weights_io import load_model

    chosen = _dist_entries(entries)
    budgets = tuple(budgets or (DIST_BUDGETS_QUICK if quick else DIST_BUDGETS))
    n = samples or (DIST_SAMPLES // 2 if quick else DIST_SAMPLES)
    data = load_digits(torch.float64)
    g = torch.Generator().manual_seed(DIST_SEED)
    floors = [frechet_distance(data[torch.randperm(data.shape[0], generator=g)[:n]], data) for _ in range(5)]
    out: dict[str, Any] = {"samples": n, "seed": DIST_SEED, "budgets": list(budgets), "data_size": data.shape[0],
                           "feature_space": "pixels (64-dimensional mean and covariance)",
                           "floor": {"mean": sum(floors) / len(floors), "min": min(floors), "max": max(floors),
                                     "what": f"{n} random data images vs all {data.shape[0]} (5 draws)"},
                           "samplers": {k: e.label for k, e in chosen.items()}, "models": {}}
    for name in models:
        t0 = time.perf_counter()
        dm = load_model(name)
        x = initial_noise(dm, n, DIST_SEED)
        rows: dict[str, list[dict[str, Any]]] = {}
        for key, entry in chosen.items():
            cells = []
            for b in budgets:
                r = run_at_budget(entry, dm, x, b, seed=DIST_SEED)
                if r is not None:
                    fd = frechet_distance(r.out, data)
                    cells.append({"budget": b, "nfe": r.nfe, "n_steps": r.n_steps,
                                  "fd": fd if math.isfinite(fd) else None})
            rows[key] = cells
        ref = ConvergedReference(dm, x, 2 * REFERENCE_H)
        ode = frechet_distance(ref.target(make_grid(dm, 50)), data)
        out["models"][name] = {"rows": rows, "ode_fd": ode, "ode_calls": ref.model_calls,
                               "seconds": time.perf_counter() - t0}
    return out


def _fd(v: float | None) -> str:
    return "fail" if v is None or not math.isfinite(v) else f"{v:.3f}"


def distribution_section(res: Mapping[str, Any]) -> str:
    """Markdown of the distribution results (empty when the section did not run)."""
    d = res.get("network_distribution")
    if not d:
        return ""
    labels, budgets = d["samplers"], d["budgets"]
    out = ["## Demo networks: distance to the data set (stochastic samplers)", "",
           f"Frechet distance between {d['samples']} generated digits and the {d['data_size']} digits of the data set, "
           f"in pixel space ({d['feature_space']}); initial noise and the samplers' `seed` option from seed "
           f"{d['seed']} (sample b draws its Brownian path from seed + b). Floor of the estimator at this sample size: "
           f"{d['floor']['mean']:.3f} ({d['floor']['what']}: {d['floor']['min']:.3f} to {d['floor']['max']:.3f}). "
           "The last row is the network's own ODE distribution (a converged solve on the 50-step grid). Lower is "
           "closer to the data; ODE samplers converge to the ODE row, stochastic ones to the SDE's distribution.",
           ""]
    for model, m in d["models"].items():
        body = []
        for key, cells in m["rows"].items():
            by_budget = {c["budget"]: c for c in cells}
            line = [labels[key] + (" (ODE)" if key in DIST_COMPARE else "")]
            for b in budgets:
                c = by_budget.get(b)
                line.append("—" if c is None else _fd(c["fd"]) + ("" if c["nfe"] == b else f" ({c['nfe']})"))
            body.append(line)
        body.append([f"converged ODE ({m['ode_calls']} calls)", *[_fd(m["ode_fd"])] * len(budgets)])
        out += [f"### {model}", "", table(["sampler", *[f"NFE {b}" for b in budgets]], body), ""]
    return "\n".join(out)
