"""The README's issue-8 verdicts are the committed comparison documents' figures (ratio and 95% interval per case and
statistic, in bold where met), and its CUDA figures the committed CUDA documents', so a re-measured document cannot
leave the README behind, or the other way round."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from samplers import SAMPLERS
from samplers.bench.learned import RUNS, plan_file
from samplers.bench.report import fmt_ratio
from samplers.learned import load_learned, plan_objective

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TABLE_ROWS = {
    "VE, Karras": ("comparison_lownfe.json", "ve_mixture/karras"),
    "VE, exponential": ("comparison_lownfe.json", "ve_mixture/exponential"),
    "VE, CFG 7.5, Karras": ("comparison_lownfe.json", "ve_mixture_cfg7.5/karras"),
    "VE, CFG 7.5, exponential": ("comparison_lownfe.json", "ve_mixture_cfg7.5/exponential"),
    "flow, shift 3, σ 1 → 0.136": ("comparison_lownfe.json", "flow_mixture/simple"),
    "demo digits_eps, Karras": ("comparison_lownfe_networks.json", "digits_eps/karras"),
    "demo digits_eps, exponential": ("comparison_lownfe_networks.json", "digits_eps/exponential"),
    "demo digits_flow, σ 1 → 0.136": ("comparison_lownfe_networks.json", "digits_flow/simple"),
}
"""The rows of the README's table 'ours / ComfyUI' and the document and case each one reports."""
DOCUMENT_OF = {case: document for document, case in TABLE_ROWS.values()}
TAILS = {
    "CFG": (("ve_mixture_cfg7.5/karras", "ve_mixture_cfg7.5/exponential"),
            "one noise holds {ours_worst_share[0]} of our squared error (the same plan on both grids; without that "
            "noise the ratios are {ratio_without_ours_worst[0]} and {ratio_without_ours_worst[1]})"),
    "flow mixture": (("flow_mixture/simple",),
                     "one noise of the {samples[0]} holds {ours_worst_share[0]} of our squared error and "
                     "{theirs_share_at_ours_worst[0]} of {theirs[0]}'s (both land on the wrong side of a component "
                     "boundary: {ours_worst[0]} and {theirs_at_ours_worst[0]} relative error); without it the ratio "
                     "is {ratio_without_ours_worst[0]}"),
    "VE Karras": (("ve_mixture/karras",),
                  "our {top[0]} worst noises hold {ours_top_share[0]} of our squared error, {theirs[0]}'s {top[0]} "
                  "worst {theirs_top_share[0]} of its (our worst noise ends at {ours_worst[0]} relative error, "
                  "{theirs[0]}'s worst at {theirs_worst[0]})"),
    "32768 noises": (("32768:ve_mixture/karras", "32768:flow_mixture/simple", "32768:ve_mixture/exponential"),
                     "our {top[0]} worst noises hold {ours_top_share[0]} of our squared error, {theirs[0]}'s "
                     "{theirs_top_share[0]} of its (our worst noise ends at {ours_worst[0]} relative error, "
                     "{theirs[0]}'s worst at {theirs_worst[0]}, on {worst_noise[0]}), on the flow mixture "
                     "{ours_top_share[1]} and {theirs_top_share[1]} of {theirs[1]}'s, on VE exponential "
                     "{ours_top_share[2]} and {theirs_top_share[2]} of {theirs[2]}'s"),
    "32768 noises, CFG": (("32768:ve_mixture_cfg7.5/karras", "32768:ve_mixture_cfg7.5/exponential"),
                          "on both grids one noise holds {ours_worst_share[0]} of our squared error (the same plan: "
                          "{ours_worst[0]} relative error, {theirs[0]}'s {theirs_at_ours_worst[0]} and "
                          "{theirs_at_ours_worst[1]} on it; without it the ratios are {ratio_without_ours_worst[0]} "
                          "and {ratio_without_ours_worst[1]})"),
    "131072 noises": (("131072:flow_mixture/simple",),
                      "its {top[0]} worst noises hold {ours_top_share[0]} of our squared error and "
                      "{theirs_top_share[0]} of {theirs[0]}'s"),
    "131072 noises, VE Karras": (("131072:ve_mixture/karras",),
                                 "its {top[0]} worst noises hold "
                                 "{ours_top_share[0]} of our squared error and {theirs_top_share[0]} of {theirs[0]}'s "
                                 "(our worst noise ends at {ours_worst[0]} relative error, {theirs[0]}'s worst at "
                                 "{theirs_worst[0]})"),
    "131072 noises, VE exponential": (("131072:ve_mixture/exponential",),
                                      "its {top[0]} worst noises hold {ours_top_share[0]} of our squared error and "
                                      "{theirs_top_share[0]} of {theirs[0]}'s (our worst noise ends at "
                                      "{ours_worst[0]} relative error, {theirs[0]}'s worst at {theirs_worst[0]})"),
    "demo eps, exponential": (("digits_eps/exponential",),
                              "(where {theirs[0]}'s {top[0]} worst noises hold {theirs_top_share[0]} of its squared "
                              "error, our {top[0]} worst {ours_top_share[0]} of ours)"),
}
"""The README's sentences on where the RMSE sits (the comparison documents' tables 'Where the RMSE sits'): (cases,
the sentence with each field of samplers.bench.tail.error_tail as a list over the cases: shares in %, errors
relative to the data std; plus the noise count, their sampler's label and whether the two worst noises are one).
'N:case': the case's document of docs/comparison_lownfe_N/ (N = 32768 or 131072 noises)."""
LARGE = {
    "open by RMSE": (32768, ("ve_mixture/karras", "ve_mixture/exponential", "flow_mixture/simple"), False),
    "CFG": (32768, ("ve_mixture_cfg7.5/karras", "ve_mixture_cfg7.5/exponential"), True),
    "open by RMSE, 131072 noises": (131072, ("flow_mixture/simple",), False),
    "VE Karras, 131072 noises": (131072, ("ve_mixture/karras",), True),
    "VE exponential, 131072 noises": (131072, ("ve_mixture/exponential",), True),
}
"""The cases measured again on more noises (docs/comparison_lownfe_<noises>/<case>.json), in the README's sentences
on them: (noises, cases in the sentence's order, whether their RMSE goal is met there; the median goal is met in
all)."""


def _comparison(document: Path) -> dict[str, Any]:
    """A comparison document's 'comparison' record."""
    return json.loads(document.read_text())["comparison"]


def _summary(document: Path, case: str) -> dict[str, Any]:
    return _comparison(document)["cases"][case]["summary"]


def _row_summary(label: str) -> dict[str, Any]:
    """The summary of the case that the README's table row `label` reports."""
    document, case = TABLE_ROWS[label]
    return _summary(DOCS / document, case)


def _verdict(entry: dict[str, Any], bold: bool = True, suffix: str = "") -> str:
    """'ratio (low–high)' (suffix after the ratio, e.g. '×'), the ratio in bold where the goal is met."""
    ratio = fmt_ratio(entry["ratio"]) + suffix
    low, high = entry["interval"]
    return f"{f'**{ratio}**' if bold and entry['met'] else ratio} ({fmt_ratio(low)}–{fmt_ratio(high)})"


def _large_document(case: str, noises: int) -> Path:
    """The case's comparison document on `noises` initial noises (32768 or 131072)."""
    return DOCS / f"comparison_lownfe_{noises}" / f"{case.replace('/', '_')}.json"


def _readme() -> str:
    return (ROOT / "README.md").read_text()


@pytest.mark.parametrize("label", sorted(TABLE_ROWS))
def test_the_table_row_is_the_documents_verdict(label: str) -> None:
    summary = _row_summary(label)
    rows = [line for line in _readme().splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"README: {len(rows)} table rows for {label!r}"
    last = rows[0].rstrip(" |").rsplit("|", 1)[1].strip()
    assert last == f"{_verdict(summary['rmse'])}; {_verdict(summary['median_err'])}"


def _listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


@pytest.mark.parametrize("group", sorted(LARGE))
def test_the_many_noise_verdicts_are_stated(group: str) -> None:
    """The README's sentence on a group's run on more noises lists the RMSE ratios with their intervals, then the
    median ratios, in LARGE's order; the verdicts are what the sentence's wording says."""
    noises, cases, rmse_met = LARGE[group]
    text = re.sub(r"\s+", " ", _readme())
    comparisons = [_comparison(_large_document(case, noises)) for case in cases]
    assert all(c["samples"][case] == noises for c, case in zip(comparisons, cases, strict=True))
    summaries = [c["cases"][case]["summary"] for c, case in zip(comparisons, cases, strict=True)]
    rmse = _listing([_verdict(s["rmse"], bold=False, suffix="×") for s in summaries])
    median = _listing([f"{fmt_ratio(s['median_err']['ratio'])}×" for s in summaries])
    assert f"{rmse} by RMSE, and {median} by median" in text
    assert all(s["rmse"]["met"] == rmse_met for s in summaries)
    assert all(s["median_err"]["met"] for s in summaries)


@pytest.mark.parametrize("case", ["flow_mixture/simple", "ve_mixture/karras", "ve_mixture/exponential"])
def test_the_rmse_ratio_s_path_over_the_noise_counts_is_the_documents(case: str) -> None:
    """'from 4096 to 32768 to 131072 noises its RMSE ratio went a, b, c': the table's document, then the two runs
    on more noises."""
    ratios = [_comparison(DOCS / DOCUMENT_OF[case])["cases"][case]["summary"]["rmse"]["ratio"],
              *(_summary(_large_document(case, n), case)["rmse"]["ratio"] for n in (32768, 131072))]
    assert [_comparison(DOCS / DOCUMENT_OF[case])["samples"][case]] == [4096]
    text = re.sub(r"\s+", " ", _readme())
    assert f"from 4096 to 32768 to 131072 noises its RMSE ratio went {', '.join(map(fmt_ratio, ratios))}" in text


def test_the_interval_just_past_1_is_stated_to_four_places() -> None:
    """VE exponential on 131072 noises: the RMSE interval's upper end rounds to 1.00, so the README gives it to four
    places, and the sentence's verdict (undecided) needs it above 1."""
    high = _summary(_large_document("ve_mixture/exponential", 131072), "ve_mixture/exponential")["rmse"]["interval"][1]
    assert 1 < high < 1.005
    text = re.sub(r"\s+", " ", _readme())
    assert f"the interval's upper end is {high:.4f}, so by RMSE it too stays undecided" in text


def _tail_fields(key: str) -> dict[str, str]:
    """A case's tail (key: a case, or 'N:case' for its document on N noises) in the README's words: shares as
    '42%', errors / data std as '0.31', ratios as fmt_ratio."""
    noises, _, case = key.rpartition(":")
    path = _large_document(case, int(noises)) if noises else DOCS / DOCUMENT_OF[case]
    document = _comparison(path)
    entry = document["cases"][case]
    rmse, std = entry["summary"]["rmse"], entry["data_std"]
    same = rmse["tail"]["theirs_at_ours_worst"] == rmse["tail"]["theirs_worst"]
    fields = {"samples": str(document["samples"][case]), "theirs": rmse["theirs"]["label"],
              "worst_noise": "the same noise" if same else "another noise"}
    for field, value in rmse["tail"].items():
        if field == "top":
            fields[field] = str(value)
        elif "share" in field:
            fields[field] = f"{value:.0%}"
        elif field.startswith("ratio"):
            fields[field] = fmt_ratio(value)
        else:
            fields[field] = f"{value / std:.2f}"
    return fields


@pytest.mark.parametrize("name", sorted(TAILS))
def test_the_tail_figures_are_the_documents(name: str) -> None:
    cases, sentence = TAILS[name]
    per_case = [_tail_fields(case) for case in cases]
    text = re.sub(r"\s+", " ", _readme())
    assert sentence.format(**{key: [f[key] for f in per_case] for key in per_case[0]}) in text
    if name.endswith("CFG"):  # 'the same plan on both grids': one share and one error stand for both
        for field in ("ours_worst_share", "ours_worst"):
            assert per_case[0][field] == per_case[1][field], field
    if name == "32768 noises, CFG":  # and one sampler of theirs
        assert per_case[0]["theirs"] == per_case[1]["theirs"]


def _syncs_sentence() -> str:
    """The README's sentence on synchronising calls, from docs/syncs_cuda.json (ours: fixed per run, the same for
    every non-adaptive sampler without noise and for every one with noise; ComfyUI's: grouped by calls per step)."""
    result = json.loads((DOCS / "syncs_cuda.json").read_text())
    ours = {name: r for name, r in result["ours"].items() if not r["adaptive"]}
    assert all(r["per_step"] == 0 for r in ours.values())
    ode = {r["per_run_fixed"] for name, r in ours.items() if not SAMPLERS[name].stochastic}
    sde = {r["per_run_fixed"] for name, r in ours.items() if SAMPLERS[name].stochastic}
    assert len(ode) == len(sde) == 1, (ode, sde)
    groups: dict[float, list[str]] = {}
    for name, r in result["comfyui"].items():
        if r["per_step"] > 0:
            groups.setdefault(r["per_step"], []).append(name)
    assert [name for name, r in result["comfyui"].items() if r["per_step"] == 0] == ["euler"]
    listed = [f"{k:g} ({', '.join(groups[k])})" for k in sorted(groups)]
    listed[0] = listed[0].replace(" (", " per step (", 1)
    return (f"a run of ours makes {ode.pop():g} synchronising calls whatever the number of steps: reading the "
            f"grid, one upload of the sigmas and the final NaN check; the noise samplers make {sde.pop():g} (the "
            f"seed bases and the node keys are uploaded too). ComfyUI's own samplers synchronise in every step: "
            f"{_listing(listed)}; only its euler makes none.")


def _determinism_sentence() -> str:
    """The README's sentence on CPU against CUDA on the demo networks, from docs/determinism_cuda{,_tf32}.json."""
    def extremes(name: str) -> tuple[str, str, str]:
        rows = json.loads((DOCS / f"{name}.json").read_text())["rows"]
        assert all(r["repeat_equal"] for r in rows)
        fixed = [r for r in rows if getattr(SAMPLERS[r["sampler"]].spec, "structure", None) != "adaptive"]
        adaptive = [r for r in rows if r not in fixed]
        return (f"{max(r['cpu_vs_device'] for r in fixed):.1e}", f"{max(r['batch_vs_alone'] for r in fixed):.1e}",
                f"{max(r['batch_vs_alone'] for r in adaptive):.1e}")

    cpu, batch, adaptive = extremes("determinism_cuda")
    cpu_tf32, batch_tf32, _ = extremes("determinism_cuda_tf32")
    return (f"gives the same bits when run again; the fixed-step samplers' images differ from the CPU's by at most "
            f"{cpu} (pixels in [−1, 1]) and image b of the batch from image b run alone with seed + b by at most "
            f"{batch}. With TF32 convolutions (PyTorch's default; `--tf32`, "
            f"[`docs/determinism_cuda_tf32.md`](docs/determinism_cuda_tf32.md)) these grow to {cpu_tf32} and "
            f"{batch_tf32}: rounding in the networks' convolutions, which pick other kernels on another device or "
            f"for another batch size (with the exact Gaussian denoiser, whose arithmetic is elementwise like the "
            f"samplers', `tests/test_cuda.py` finds the batch rule bit for bit on CUDA). The adaptive samplers "
            f"choose one step size for the whole batch, so their images in a "
            f"batch and alone are different trajectories (up to {adaptive} apart).")


@pytest.mark.parametrize("sentence", [_syncs_sentence, _determinism_sentence])
def test_the_cuda_sentences_are_the_documents(sentence: Any) -> None:
    assert sentence() in re.sub(r"\s+", " ", _readme())


def test_the_cuda_speed_figures_are_the_documents() -> None:
    """Every number of the README's 'On a GPU' paragraph is one of docs/speed_cuda.md's (the bench's output)."""
    text = re.sub(r"\s+", " ", _readme())
    paragraph = text[text.index("**On a GPU**"):text.index("**Inside ComfyUI, with a full-size model**")]
    document = set(re.findall(r"\d+\.\d+", (DOCS / "speed_cuda.md").read_text()))
    numbers = re.findall(r"\d+\.\d+", paragraph.split("wall clock):", 1)[1])
    assert len(numbers) >= 14 and set(numbers) <= document, set(numbers) - document


def _ksampler_sentence() -> str:
    """The README's sentence on whole runs inside ComfyUI, from docs/ksampler_cuda_1024.json and ksampler_cuda.json
    (ComfyUI's `_gpu` twins, the same updates with the Brownian tree on the GPU, listed apart)."""
    big = json.loads((DOCS / "ksampler_cuda_1024.json").read_text())
    small = json.loads((DOCS / "ksampler_cuda.json").read_text())
    default = [p for p in big["pairs"] if not p["theirs"].endswith("_gpu")]
    device_tree = [p for p in big["pairs"] if p["theirs"].endswith("_gpu")]
    assert [p["ours"] for p in device_tree] == ["dpm_solver_pp_2m_sde", "dpm_solver_pp_3m_sde"]
    ours = " / ".join(f"{p['ours_s']:.3f}" for p in default)
    theirs = " / ".join(f"{p['theirs_s']:.3f}" for p in default)
    theirs_gpu = " / ".join(f"{p['theirs_s']:.3f}" for p in device_tree)
    runs = [v for samples in small["samples"].values() for v in samples]
    medians = small["seconds"]

    def span(side: str) -> str:
        values = [v for name, v in medians.items() if name.startswith(side) and name != "comfyui/euler"]
        return f"{min(values):.2f}–{max(values):.2f} s"

    return (f"a run takes {big['seconds']['comfyui/euler']:.3f} s with ComfyUI's euler, {ours} s with our DPM++ 2M / "
            f"2M SDE / 3M SDE, {theirs} s with ComfyUI's and {theirs_gpu} s with its 2M SDE / 3M SDE `_gpu` variants. "
            f"At 512×512 ([`docs/ksampler_cuda.md`](docs/ksampler_cuda.md)) single runs of any sampler took "
            f"{min(runs):.2f} to {max(runs):.2f} s on this machine, and the medians lie within that spread "
            f"({span('ours/')} for ours, {span('comfyui/')} for ComfyUI's, {medians['comfyui/euler']:.2f} s for "
            f"euler)")


def test_the_ksampler_sentence_is_the_documents() -> None:
    assert _ksampler_sentence() in re.sub(r"\s+", " ", _readme())


PLAN_NOISES = (
    "ve_mixture_cfg7.5",
    ((("VE without CFG", "ve_mixture", "rmse"), ("its mean-objective plans", "ve_mixture", "mean")),
     (("flow mixture", "flow_mixture", None),),
     (("demo eps network", "digits_eps", "rmse"), ("its mean-objective plans", "digits_eps", "mean"),
      ("its history-4 plans", "digits_eps", "history")),
     (("demo flow network", "digits_flow", None),)),
)
"""The README's sentence on how many noises each committed plan was fitted on: (the problem whose count comes first,
then groups of (words, problem, kind of plan: 'rmse', 'mean', 'history' or None for every kind))."""


def test_the_plans_noise_counts_are_the_plan_files() -> None:
    """Every committed plan's calibration noise count (its file's metadata) is the one the README states for its
    problem and kind, and the README's sentence lists them in PLAN_NOISES's words."""
    counts: dict[tuple[str, str], set[int]] = {}
    for run in RUNS:
        learned = load_learned(DOCS / "learned_plans" / f"{plan_file(run.case, run.row)}.safetensors")
        kind = "history" if learned.history else plan_objective(learned)
        problem = run.case.split("/")[0]
        counts.setdefault((problem, kind), set()).add(int(dict(learned.info)["calibration_samples"]))

    def count(problem: str, kind: str | None) -> int:
        found = set().union(*(c for (p, k), c in counts.items() if p == problem and kind in (None, k)))
        assert len(found) == 1, (problem, kind, found)
        return found.pop()

    first, groups = PLAN_NOISES
    stated = {first} | {problem for group in groups for _, problem, _ in group}
    assert {problem for problem, _ in counts} == stated
    clauses = "; ".join(", ".join(f"{words} {count(problem, kind)}" for words, problem, kind in group)
                        for group in groups)
    sentence = f"learned plans fitted on {count(first, None)} noises of that seed ({clauses})"
    assert sentence in re.sub(r"\s+", " ", _readme())


def _status_sentence() -> str:
    """The README's low-NFE status (at its top), from the comparison documents: the benchmark problems' median
    ratios as a range, every other figure per case; intervals where the sentence names them."""
    def summary(label: str, statistic: str) -> dict[str, Any]:
        return _row_summary(label)[statistic]

    def ratio(label: str, statistic: str) -> str:
        return f"{fmt_ratio(summary(label, statistic)['ratio'])}×"

    benchmark = [label for label in TABLE_ROWS if not label.startswith("demo")]
    medians = sorted(summary(label, "median_err")["ratio"] for label in benchmark)
    cfg = [label for label in benchmark if "CFG" in label]
    plain = [label for label in benchmark if label.startswith("VE,") and "CFG" not in label]
    reach = max(summary(label, "rmse")["interval"][1] for label in cfg)
    eps_exp = summary("demo digits_eps, exponential", "rmse")
    return (f"by median per-sample error on every benchmark problem ({fmt_ratio(medians[0])}–"
            f"{fmt_ratio(medians[-1])}×, with plans fitted to the typical sample) and the demo flow network "
            f"({ratio('demo digits_flow, σ 1 → 0.136', 'median_err')}), not on the demo eps network "
            f"({ratio('demo digits_eps, Karras', 'median_err')} and "
            f"{ratio('demo digits_eps, exponential', 'median_err')}); - by RMSE on the VE problems with CFG 7.5 "
            f"({' and '.join(ratio(label, 'rmse') for label in cfg)}, intervals reaching {fmt_ratio(reach)}), the "
            f"demo flow network ({ratio('demo digits_flow, σ 1 → 0.136', 'rmse')}) and the demo eps network's "
            f"exponential grid ({ratio('demo digits_eps, exponential', 'rmse')}, interval "
            f"{fmt_ratio(eps_exp['interval'][0])}–{fmt_ratio(eps_exp['interval'][1])}), not on the VE problems "
            f"without CFG ({' and '.join(ratio(label, 'rmse') for label in plain)}), the flow mixture "
            f"({ratio('flow, shift 3, σ 1 → 0.136', 'rmse')}) or the demo eps network's Karras grid "
            f"({ratio('demo digits_eps, Karras', 'rmse')}).")


def test_the_status_figures_are_the_documents() -> None:
    """The verdicts of the README's status are those the comparison documents give: met where it says 'by', not
    met where it says 'not on'."""
    assert _status_sentence() in re.sub(r"\s+", " ", _readme())
    summaries = {label: _row_summary(label) for label in TABLE_ROWS}
    met = {label: (s["rmse"]["met"], s["median_err"]["met"]) for label, s in summaries.items()}
    assert [label for label, (_, median) in met.items() if not median] == [
        "demo digits_eps, Karras", "demo digits_eps, exponential"]
    assert [label for label, (rmse, _) in met.items() if rmse] == [
        "VE, CFG 7.5, Karras", "VE, CFG 7.5, exponential", "demo digits_eps, exponential",
        "demo digits_flow, σ 1 → 0.136"]
