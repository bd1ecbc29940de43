"""The demo's PNG figures (matplotlib, Agg backend): the sample grid and the error-vs-NFE plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "*", "p")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


GAP = (0.55, 0.65, 0.85)
"""Colour of the lines between tiled images (the images are grey: -1 black, +1 white)."""
SCALE = 4
"""Each pixel becomes SCALE x SCALE screen pixels in the tile, so the 1-pixel gap lines stay thin."""


def tile(images: torch.Tensor, cols: int, scale: int = SCALE) -> torch.Tensor:
    """(K, 1, H, W) in [-1, 1] -> one RGB image in [0, 1]: the images enlarged `scale` times (nearest), in rows of
    `cols`, separated by 1-pixel GAP lines."""
    k, _, h, w = images.shape
    h, w = h * scale, w * scale
    rows = math.ceil(k / cols)
    canvas = torch.tensor(GAP).expand(rows * (h + 1) - 1, cols * (w + 1) - 1, 3).clone()
    for i in range(k):
        r, c = divmod(i, cols)
        grey = (images[i, 0].float().clamp(-1, 1) + 1.0) / 2.0
        grey = grey.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = grey[:, :, None]
    return canvas


def write_grid(path: str, panels: Sequence[Mapping[str, Any]], labels: Mapping[str, str], budgets: Sequence[int],
               cols: int) -> None:
    """One panel per model: rows = samplers, columns = NFE budgets and the reference; each cell tiles the same
    initial noises, titled with the actual NFE and the MSE against the reference."""
    plt = _pyplot()
    names = list(labels)
    ncols = len(budgets) + 1
    nrows = len(names)
    width, height = 1.75 * ncols * len(panels) + 1.3, 1.05 * nrows + 1.1
    fig = plt.figure(figsize=(width, height))
    outer = fig.add_gridspec(1, len(panels), wspace=0.08, left=1.25 / width, right=0.995, top=1 - 0.75 / height,
                             bottom=0.02)
    for p, panel in enumerate(panels):
        inner = outer[p].subgridspec(nrows, ncols, wspace=0.06, hspace=0.42)
        ref = tile(panel["reference"], cols)
        for r, name in enumerate(names):
            runs = panel["runs"][name]
            for c in range(ncols):
                ax = fig.add_subplot(inner[r, c])
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if c == len(budgets):
                    ax.imshow(ref.numpy(), interpolation="nearest")
                    ax.set_title(f"exact ODE ({panel['reference_nfe']} calls)" if r == 0 else "exact ODE", fontsize=7.5)
                    continue
                run = runs.get(budgets[c])
                if run is None:
                    ax.text(0.5, 0.5, "no grid fits", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                    ax.set_title(f"NFE {budgets[c]}", fontsize=7.5)
                    continue
                ax.imshow(tile(run["out"], cols).numpy(), interpolation="nearest")
                ax.set_title(f"NFE {run['nfe']}  MSE {run['mse']:.1e}", fontsize=7.5)
                if c == 0 and p == 0:
                    ax.set_ylabel(labels[name], fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
        fig.text((outer[p].get_position(fig).x0 + outer[p].get_position(fig).x1) / 2, 0.995, panel["title"],
                 ha="center", va="top", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_error_plot(path: str, panels: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> None:
    """MSE against the converged reference vs actual model calls, one log-log panel per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.4), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    all_nfe = [run["nfe"] for panel in panels for runs in panel["runs"].values() for run in runs.values() if run]
    lo, hi = (min(all_nfe), max(all_nfe)) if all_nfe else (1, 20)
    ticks = [t for t in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200) if lo <= t <= hi]
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, name in enumerate(labels):
            pts = sorted((run["nfe"], run["mse"]) for run in panel["runs"][name].values()
                         if run and math.isfinite(run["mse"]) and run["mse"] > 0)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % len(MARKERS)], markersize=5,
                        color=cmap(i % cmap.N), label=labels[name], linewidth=1.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("model calls (NFE)")
        ax.set_ylabel("MSE vs exact ODE solution")
        ax.set_title(panel["title"], fontsize=10)
    axes[0][-1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Demo networks: MSE against the exact ODE solution of the same grid from the same noise", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
