"""Error vs NFE figure: one log-log panel per case, one line per sampler (needs matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "*", "p", "8", "d")
LINESTYLES = {"multistep": "-", "singlestep": "--", "fast": ":", "adaptive": "-."}


def write_plot(path: str, accuracy: Mapping[str, Mapping[str, list[dict[str, Any]]]],
               labels: Mapping[str, str], structures: Mapping[str, str],
               data_std: Mapping[str, float] | None = None, median: bool = False) -> None:
    """Save the figure to `path` (PNG): RMSE / data std, or with `median` the median over samples of the
    per-sample error / data std (needs `data_std` per case). Raises ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(accuracy)
    ncols = min(3, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    spare = len(cases) < nrows * ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows + (0.4 if spare else 1.2)), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    names = list(labels)
    all_nfe = [c["nfe"] for rows in accuracy.values() for cells in rows.values() for c in cells]
    lo, hi = (min(all_nfe), max(all_nfe)) if all_nfe else (1, 50)
    ticks = [t for t in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100) if lo <= t <= hi]
    for k, case in enumerate(cases):
        ax = axes[k // ncols][k % ncols]
        for i, name in enumerate(names):
            points = {}
            for cell in accuracy[case].get(name, []):
                value = cell["rel_rmse"]
                if median:
                    value = None if cell.get("median_err") is None or data_std is None \
                        else cell["median_err"] / data_std[case]
                if value is not None and value > 0:
                    points[cell["nfe"]] = value
            if not points:
                continue
            xs = sorted(points)
            ax.plot(xs, [points[n] for n in xs], label=labels[name], color=cmap(i % cmap.N),
                    marker=MARKERS[i % len(MARKERS)], markersize=4.5,
                    linestyle=LINESTYLES.get(structures.get(name, ""), "-."), linewidth=1.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(case, fontsize=10)
        ax.set_xlabel("model calls (NFE)")
        ax.set_ylabel("median sample error / data std" if median else "RMSE / data std")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlim(lo / 1.08, hi * 1.08)
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks], fontsize=8)
        ax.minorticks_off()
    for k in range(len(cases), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    handles, text = axes[0][0].get_legend_handles_labels()
    if spare:  # the legend fills the last, empty panel
        axes[-1][-1].legend(handles, text, loc="center", fontsize=10, frameon=False, title="sampler")
    else:
        fig.legend(handles, text, loc="lower center", ncol=min(5, len(text)), fontsize=9, frameon=False)
    what = "Median per-sample error" if median else "Error (RMSE)"
    fig.suptitle(f"{what} vs NFE against the exact ODE solution of the same grid "
                 "(solid: multistep, dashed: singlestep, dotted: fast, dash-dot: adaptive)", fontsize=11)
    fig.tight_layout(rect=(0, 0 if spare else 1.2 / (nrows * 4.2 + 1.2), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
