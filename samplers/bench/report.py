"""Markdown rendering of benchmark results (everything printed is also in the JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .overhead import twin_table
from .study import geomean


def fmt_err(v: float | None) -> str:
    """An error with 3 significant digits, or 'fail'."""
    return "fail" if v is None or not math.isfinite(v) else f"{v:.2e}"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}" if 0.01 <= v < 100 else f"{v:.1e}"



def budget_table_rows(rows: Mapping[str, Sequence[Mapping[str, Any]]], budgets: Sequence[int]) -> list[list[str]]:
    """Rows of a sampler x NFE-budget RMSE table: each cell its RMSE, the best of a column in bold, the calls
    actually used in parentheses when below the budget, "—" where the sampler has no run."""
    best = {b: min((c["rmse"] for cells in rows.values() for c in cells if c["budget"] == b and c["rmse"] is not None),
                   default=None) for b in budgets}
    body = []
    for label, cells in rows.items():
        by_budget = {c["budget"]: c for c in cells}
        line = [label]
        for b in budgets:
            c = by_budget.get(b)
            if c is None:
                line.append("—")
                continue
            text = fmt_err(c["rmse"])
            if c["rmse"] is not None and c["rmse"] == best[b]:
                text = f"**{text}**"
            if c["nfe"] != b:
                text += f" ({c['nfe']})"
            line.append(text)
        body.append(line)
    return body

def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A Markdown table; align per column 'l' or 'r' (first column left, others right by default)."""
    align = align or ["l", *["r"] * (len(header) - 1)]
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_section(res: dict[str, Any]) -> str:
    budgets = res["config"]["budgets"]
    labels = res["samplers"]
    out = ["## Accuracy: RMSE against the exact ODE solution", "",
           "Fixed float64 initial noises (their number is given per problem); budget = max model calls, each "
           "sampler runs the largest grid that fits (the actual NFE is shown in parentheses when lower). "
           "Reference: DOP853 (tol 1e-12) to the grid's last nonzero sigma, then the same final denoise. "
           "Best per column in **bold**. Adaptive samplers choose their own steps (between the ends of the "
           "20-step grid): each cell is the tolerance of the ladder whose run used the most model calls within the "
           "budget, with the calls it used in parentheses.", ""]
    for case, rows in res["accuracy"].items():
        info = res["cases"][case]
        out += [f"### {case}", "",
                f"grid `{info['grid']}`, sigma {info['sigma_max']:g} -> {info['sigma_min']:.3g} then 0, schedule "
                f"`{info['schedule']}`, data std {info['data_std']:.4f} (divide by it for relative RMSE), "
                f"{info.get('samples', res['config']['samples'])} initial noises", ""]
        lasts = sorted({c["sigma_last"] for cells in rows.values() for c in cells}, reverse=True)
        if len(lasts) > 1:
            out += [f"Note: on this grid the last nonzero sigma depends on the step count ({lasts[0]:.3g} down to "
                    f"{lasts[-1]:.3g} here), so fewer steps also mean a shorter ODE before the final denoise: "
                    "errors are exact per grid but need not fall monotonically with NFE.", ""]
        body = budget_table_rows({labels[name]: cells for name, cells in rows.items()}, budgets)
        out += [table(["sampler", *[f"NFE {b}" for b in budgets]], body), ""]
    out += _relative_summary(res)
    out += _relative_summary(res, "median")
    return "\n".join(out)


def _relative_summary(res: dict[str, Any], stat: str = "rel_rmse") -> list[str]:
    budgets = [b for b in (10, 20) if b in res["config"]["budgets"]]
    if not budgets:
        return []
    cases = list(res["accuracy"])
    if stat == "rel_rmse":
        out = ["### Summary: RMSE / data std", ""]
    else:
        out = ["### Summary: median over samples of the per-sample RMS error / data std", "",
               "RMSE on these mixtures is often dominated by one or two trajectories starting near a boundary "
               "between components (where the flow is most sensitive); the median shows the typical sample.", ""]
    header = ["sampler", *[f"{c} @{b}" for b in budgets for c in cases]]
    body = []
    names = list(res["samplers"])
    best: dict[tuple[str, int], float] = {}
    for c in cases:
        for b in budgets:
            vals = [_stat(x, stat, c, res) for n in names for x in res["accuracy"][c].get(n, [])
                    if x["budget"] == b and _stat(x, stat, c, res) is not None]
            if vals:
                best[(c, b)] = min(vals)
    for n in names:
        line = [res["samplers"][n]]
        for b in budgets:
            for c in cases:
                cell = next((x for x in res["accuracy"][c].get(n, []) if x["budget"] == b), None)
                v = None if cell is None else _stat(cell, stat, c, res)
                text = "—" if cell is None else fmt_err(v)
                if v is not None and v == best.get((c, b)):
                    text = f"**{text}**"
                line.append(text)
        body.append(line)
    out += [table(header, body), ""]
    winners = []
    for b in budgets:
        for c in cases:
            if (c, b) in best:
                w = [res["samplers"][n] for n in names for x in res["accuracy"][c].get(n, [])
                     if x["budget"] == b and _stat(x, stat, c, res) == best[(c, b)]]
                winners.append(f"- NFE {b}, {c}: {', '.join(w)} ({best[(c, b)]:.2e})")
    return [*out, "Best per problem:", "", *winners, ""]


def _stat(cell: dict[str, Any], stat: str, case: str, res: dict[str, Any]) -> float | None:
    if stat == "rel_rmse":
        return cell["rel_rmse"]
    v = cell.get("median_err")
    return None if v is None else v / res["cases"][case]["data_std"]


def _bucket_lines(verdict: dict[str, Any], first: str, second: str) -> list[str]:
    lines = []
    for bucket, s in verdict.items():
        if s["n"] == 0:
            lines.append(f"- {bucket}: no data")
            continue
        w = s["wins"]
        lines.append(f"- {bucket}: {first}/{second} error ratio (geometric mean) {fmt_ratio(s['geomean_ratio'])}; "
                     f"{first} better in {w[first]}/{s['n']}, {second} in {w[second]}, ties {w['tie']} "
                     f"-> **{s['winner']}**")
    return lines


def _median_line(verdict: dict[str, Any]) -> list[str]:
    parts = [f"{bucket} {fmt_ratio(s['geomean_ratio'])} ({s['winner']})" for bucket, s in verdict.items() if s["n"]]
    return [f"- median-sample error instead of RMSE: {'; '.join(parts)}"] if parts else []


def _budget_table(s: dict[str, Any], labels: dict[str, str], budgets: Sequence[int]) -> str:
    """Rows = samplers, columns = budgets (geometric-mean ratio over problems), then the winner per NFE bucket."""
    if not s["by_sampler"]:
        return "(no sampler has this option)"
    buckets = list(next(iter(s["by_sampler"].values())))
    body = []
    for name, verdicts in s["by_sampler"].items():
        cells = [fmt_ratio(geomean([r["ratio"] for r in s["rows"] if r["sampler"] == name and r["budget"] == b]))
                 for b in budgets]
        body.append([labels.get(name, name), *cells, *[verdicts[k]["winner"] or "—" for k in buckets]])
    return table(["sampler", *[f"NFE {b}" for b in budgets], *buckets], body)


def study_section(res: dict[str, Any]) -> str:
    st = res["study"]
    labels = res["samplers"]
    out = ["## Defaults study", "",
           "Each option is compared with all others at their defaults; cells are error ratios first/second "
           "(< 1: the first setting is better). Ties: within 2%.", ""]
    if "third_order" in st:
        s = st["third_order"]
        budgets = res["config"]["budgets"]
        out += ["### (a) third_order: consistent vs reference (3M samplers)", "", "Verdict:", "",
                *_bucket_lines(s["verdict"], "consistent", "reference"), *_median_line(s["verdict_median"]), ""]
        for name, v in s["by_sampler"].items():
            out += [f"{labels.get(name, name)}:", "", *_bucket_lines(v, "consistent", "reference"), ""]
        body = []
        for key in dict.fromkeys((r["case"], r["sampler"]) for r in s["rows"]):
            cells = {r["budget"]: r["ratio"] for r in s["rows"] if (r["case"], r["sampler"]) == key}
            body.append([f"{key[0]} · {labels.get(key[1], key[1])}", *[fmt_ratio(cells.get(b)) for b in budgets]])
        out += ["Error ratio consistent/reference:", "", table(["case · sampler", *[f"NFE {b}" for b in budgets]],
                                                                 body), ""]
    if "lower_order_final" in st:
        s = st["lower_order_final"]
        steps = res["config"]["study_steps"]
        samplers = list(next(iter(s["per_step"].values()))["samplers"]) if s["per_step"] else []
        groups = list(s["verdict"])
        out += ["### (b) lower_order_final: True vs False at equal step counts", "",
                "Cells: geometric mean over problems of error(True)/error(False), with the number of problems "
                "where True wins (within-2% ties excluded). For singlestep samplers True also uses fewer model "
                "calls at the same step count.", "", "Verdict:", ""]
        current = st.get("current_lower_order_final_below")
        lo, hi = (min(steps), max(steps)) if steps else (0, 0)

        def rule(t: int | None) -> str:
            if t is None:
                return "no data"
            if t <= lo:
                return f"never on within {lo}-{hi} steps (nothing measured below {lo})"
            return f"on iff steps < {t}"

        for g, v in s["verdict"].items():
            m = s["verdict_median"][g]
            out.append(f"- {g}: helps at steps {_ranges(v['helps_at'])}; hurts at {_ranges(v['hurts_at'])}; "
                       f"best fitting rule: {rule(v['suggested_below'])}. By median-sample error: helps at "
                       f"{_ranges(m['helps_at'])}, hurts at {_ranges(m['hurts_at'])}, "
                       f"rule: {rule(m['suggested_below'])}")
        out.append(f"- core's current threshold: on iff steps < {current}")
        body = []
        for n in steps:
            ps = s["per_step"][str(n)]
            line = [str(n)]
            for name in samplers:
                v = ps["samplers"][name]
                line.append(f"{fmt_ratio(v['geomean_ratio'])} ({v['wins']['True']}/{v['n']})")
            line += [fmt_ratio(ps["groups"][g]["geomean_ratio"]) for g in groups]
            body.append(line)
        out += ["", table(["steps", *[labels.get(n, n) for n in samplers], *groups], body), ""]
        if "equal_nfe" in s:
            e = s["equal_nfe"]
            out += ["At equal NFE budgets (each setting runs the largest grid that fits):", ""]
            for g, v in e["by_structure"].items():
                out += [f"{g}:", "", *_bucket_lines(v, "True", "False"), ""]
            out += [*_median_line(e["verdict_median"]), "",
                    "Geometric mean over problems of error(True)/error(False) at equal NFE:", "",
                    _budget_table(e, labels, res["config"]["budgets"]), ""]
    if "solver_type" in st:
        s = st["solver_type"]
        budgets = res["config"]["budgets"]
        out += ["### (c) solver_type: taylor vs dpmsolver", "", "Verdict:", "",
                *_bucket_lines(s["verdict"], "taylor", "dpmsolver"), *_median_line(s["verdict_median"]), "",
                "Geometric mean over problems of error(taylor)/error(dpmsolver); last columns: winner per bucket", "",
                _budget_table(s, labels, budgets), ""]
    for key, title, first, second in (
            ("corrector", "(d) corrector: unic vs none (predictor-corrector sampler, same predictor)", "unic", "none"),
            ("pc_order", "(e) order: 3 vs 2 (predictor-corrector sampler with UniC)", "3", "2")):
        if key in st:
            s = st[key]
            out += [f"### {title}", "", "Verdict:", "", *_bucket_lines(s["verdict"], first, second),
                    *_median_line(s["verdict_median"]), "",
                    f"Geometric mean over problems of error({first})/error({second}) at equal NFE:", "",
                    _budget_table(s, labels, res["config"]["budgets"]), ""]
    return "\n".join(out)


def _ranges(values: Sequence[int]) -> str:
    """[5, 6, 7, 10] -> '5-7, 10'; [] -> 'none'."""
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def overhead_section(res: dict[str, Any]) -> str:
    runs = res["overhead"]
    labels = res.get("labels", res["samplers"])
    o = runs[0]
    models = ", ".join(f"{r['model_us_per_call']:.1f} µs per call at {r['threads']} thread(s)" for r in runs)
    out = ["## Overhead per model call", "",
           f"Latent {'x'.join(map(str, o['shape']))} {o['dtype']} on {o['device']}, trivial model D = x/2 "
           f"({models}), grid {o['grid']}, median (and min) of {o['repeats']} interleaved repeats, each the mean "
           "of a batch of runs. "
           "Overhead = (run time - NFE x model time) / NFE; x Euler = that over the plain Euler loop's; "
           "plan = the plan each run looks up (part of the overhead; plans are cached per grid and options, "
           "building a new one costs plan_build_us in the JSON).", ""]
    out += ["Clocks: " + ", ".join(f"{r['threads']} thread(s): {r.get('clock', 'wall clock')}" for r in runs)
            + " (one thread runs all work on the calling thread, so its CPU time is immune to other load).", ""]
    header = ["sampler", "NFE"]
    for r in runs:
        t = f"{r['threads']} thr"
        header += [f"overhead µs/call ({t})", f"x Euler ({t})", f"min µs/call, x Euler ({t})"]
    header.append("plan µs/run")
    rows = [("euler", "Euler loop (reference)"), *[(n, labels.get(n, n)) for n in o["samplers"]]]
    plan_run = next((r for r in runs if r.get("clock") == "thread CPU time"), o)  # plan building is pure Python
    body = []
    for key, label in rows:
        first = o["euler"] if key == "euler" else o["samplers"][key]
        line = [label, str(first["nfe"])]
        for r in runs:
            cell = r["euler"] if key == "euler" else r["samplers"][key]
            ratio = "1.00" if key == "euler" else fmt_ratio(cell["ratio_to_euler"])
            min_ratio = "1.00" if key == "euler" else fmt_ratio(cell.get("min_ratio_to_euler"))
            line += [f"{cell['overhead_us_per_call']:.1f}", ratio,
                     f"{cell['min_overhead_us_per_call']:.1f} ({min_ratio})"]
        plan_us = None if key == "euler" else plan_run["samplers"][key].get("plan_us_per_run")
        line.append("—" if plan_us is None else f"{plan_us:.0f}")
        body.append(line)
    out.append(table(header, body))
    for r in runs:
        if r.get("comfyui"):
            out += ["", f"ComfyUI's own twins, same model, latent and grid, in the same round robin ({r['threads']} "
                    f"thread(s), {r['comfyui_path']}); SDE twins at eta 1 with their torchsde Brownian tree:", "",
                    twin_table(r)]
    single = [r for r in runs if r["threads"] == 1]
    loaded = [r for r in runs if single and r["threads"] > 1
              and r["model_us_per_call"] > 3 * single[0]["model_us_per_call"]]
    if loaded:
        out += ["", f"Warning: the bare model call took {loaded[0]['model_us_per_call']:.0f} µs at "
                f"{loaded[0]['threads']} threads vs {single[0]['model_us_per_call']:.0f} µs at 1 thread: the machine "
                "was loaded, so the multi-threaded columns are unreliable; trust the 1-thread columns."]
    return "\n".join([*out, ""])


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    cfg = res["config"]
    head = ["# DPM-Solver sampler benchmark", "",
            f"torch {m['torch']}, Python {m['python']}, {m['cpu']} ({m['cpu_count']} logical CPUs, "
            f"{m['torch_threads']} torch threads){' — quick mode' if cfg['quick'] else ''}", ""]
    parts = ["\n".join(head)]
    if "accuracy" in res:
        parts.append(accuracy_section(res))
    if res.get("study"):
        parts.append(study_section(res))
    if "adaptive" in res:
        parts.append(adaptive_section(res))
    if "distribution" in res:
        parts.append(distribution_section(res))
    if "overhead" in res:
        parts.append(overhead_section(res))
    if res.get("network_distribution"):
        from .networks import distribution_section as network_distribution_section

        parts.append(network_distribution_section(res))
    if "noise_cost" in res:
        parts.append(noise_section(res))
    parts.append(f"Total benchmark time: {res['runtime_s']['total']:.1f} s "
                 f"({', '.join(f'{k} {v:.1f} s' for k, v in res['runtime_s'].items() if k != 'total')}).\n")
    return "\n".join(parts)


ADAPTIVE_SHOWN = (0.5, 0.1, 0.05, 0.01, 0.001, 1e-4)


def adaptive_section(res: dict[str, Any]) -> str:
    ad = res["adaptive"]
    labels = res["samplers"]
    shown = [r for r in ADAPTIVE_SHOWN if r in ad["ladder"]]
    out = ["## Adaptive step size: tolerance vs model calls vs error", "",
           f"Each run integrates between the ends of the {ad['grid_steps']}-step grid (atol = "
           f"{ad['atol_per_rtol']:.3f} rtol, the ratio of the defaults 0.05 / 0.0078). Cells: model calls "
           "(rejected attempts) / median per-sample error over data std. 'standard' is the DPM-Solver paper's rule "
           "h <- theta h E^(-1/k); 'pid' the PID filter of samplers/adaptive.py.", ""]
    for case, rows in ad["cases"].items():
        out += [f"### {case}", ""]
        body = []
        std = res["cases"][case]["data_std"]
        for row in rows.values():
            line = [f"{labels.get(row['sampler'], row['sampler'])} order {row['order']} {row['controller']}"]
            for rtol in shown:
                cell = next(c for c in row["cells"] if c["rtol"] == rtol)
                err = cell.get("median_err")
                line.append("fail" if err is None else f"{cell['nfe']} ({cell['rejected']}) / {err / std:.1e}")
            body.append(line)
        out += [table(["sampler", *[f"rtol {r:g}" for r in shown]], body), ""]
    return "\n".join(out)


def distribution_section(res: dict[str, Any]) -> str:
    d = res["distribution"]
    out = ["## Distribution statistics (stochastic samplers)", "",
           f"{d['samples']} samples per run from fixed exact draws at sigma_max (seed {d['initial_noise']}), "
           f"sampler noise seed {d['noise_seed']}. Statistics against the known mixture: mean error (RMS over "
           "dimensions, over data std), variance error (RMS over dimensions of var / true var - 1), and the total "
           "variation distance between the shares of samples in each component (most likely component) and the "
           f"mixture weights. 'exact draws': the same statistics of {d['samples']} independent draws from the "
           "mixture (the sampling noise of each number). Cells: NFE: mean / var / mode TV.", ""]
    for case, tab in d["cases"].items():
        floor = tab["floor"]
        out += [f"### {case}", ""]
        body = [["exact draws", *[f"{floor['mean_err']:.3f} / {floor['var_err']:.3f} / {floor['mode_tv']:.3f}"
                                  for _ in d["steps"]]]]
        for row in tab["rows"].values():
            body.append([row["label"], *[f"{c['nfe']}: {c['mean_err']:.3f} / {c['var_err']:.3f} / {c['mode_tv']:.3f}"
                                         for c in row["cells"]]])
        out += [table(["sampler", *[f"{n} steps" for n in d["steps"]]], body), ""]
    return "\n".join(out)


def noise_section(res: dict[str, Any]) -> str:
    runs = res["noise_cost"]
    out = ["## Cost of the step noise", "",
           "Milliseconds per step for one step's noise of a latent (Karras grid, one increment per step), CPU, one "
           "thread, thread CPU time; median of the repeats. 'seeded Brownian' is samplers/noise.py (counter-based "
           "hash, Brownian-bridge tree, about 6 new fields per step at 20 steps); 'torchsde' one "
           "torchsde.BrownianTree per sample queried per step "
           f"(k-diffusion style){'' if runs[0]['torchsde'] else ' — torchsde not installed: not measured'}; "
           "torch.randn is the floor (not seeded per sample, not refinable).", ""]
    names = {"seeded_brownian": "seeded Brownian (ours)", "torchsde_brownian_tree": "torchsde BrownianTree",
             "randn": "torch.randn"}
    header = ["source"]
    for r in runs:
        shape = "x".join(map(str, r["shape"]))
        header += [f"ms/step {shape}", f"x randn {shape}"]
    body = []
    for key, label in names.items():
        if key not in runs[0]["ms_per_step"]:
            continue
        line = [label]
        for r in runs:
            line += [f"{r['ms_per_step'][key]:.2f}", f"{r['ratio_to_randn'][key]:.0f}"]
        body.append(line)
    return "\n".join([*out, table(header, body), ""])


def document(title: str, header: str, table: str) -> str:
    """A one-table benchmark document: '# title', the header line, the table."""
    return f"# {title}\n\n{header}\n\n{table}\n"


def publish(out: str | None, text: str, data: Mapping[str, Any]) -> None:
    """Print the document; with `out` also write OUT.json (data, from which the document renders) and OUT.md."""
    print(text, end="")
    if out:
        Path(f"{out}.json").write_text(json.dumps(data, indent=1) + "\n")
        Path(f"{out}.md").write_text(text)
