"""The SDS demo's picture: for each network, the inputs (before) above each variant's refined images (after)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .figures import SCALE, _pyplot, tile


def write_before_after(path: str, panels: Sequence[Mapping[str, Any]], captions: Sequence[str]) -> None:
    """One column per network, one row per stage (before, then each variant); each cell tiles the 8 images in
    one row and is titled with the means of the distance to the nearest training digit and of the greyness."""
    plt = _pyplot()
    rows = 1 + len(panels[0]["outcomes"])
    width, height = 4.6 * len(panels) + 1.7, 0.95 * rows + 0.9
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(rows, len(panels), wspace=0.05, hspace=0.55, left=1.6 / width, right=0.995,
                            top=1 - 0.62 / height, bottom=0.02)
    for p, panel in enumerate(panels):
        cells = [("before", panel["x0"], panel["before"])]
        cells += [(f"{o.variant.label}\nσ {o.variant.sigmas_text()}", o.out, o.measures) for o in panel["outcomes"]]
        for r, (label, images, measures) in enumerate(cells):
            ax = fig.add_subplot(grid[r, p])
            ax.imshow(tile(images, len(images)).numpy(), interpolation="nearest")
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            title = (f"nearest-digit RMS {float(measures['distance'].mean()):.3f}, greyness "
                     f"{float(measures['greyness'].mean()):.3f}")
            if r == 0:  # captions above the inputs, the network's name above them
                width_px = images.shape[-1] * SCALE + 1
                ax.set_xticks([c * width_px + width_px / 2 - 1 for c in range(len(images))])
                ax.set_xticklabels(captions, fontsize=6.5)
                ax.tick_params(axis="x", length=0, pad=1, top=True, labeltop=True, bottom=False, labelbottom=False)
                title = f"{panel['title']}\n{title}"
            else:
                ax.set_xticks([])
            ax.set_title(title, fontsize=7.5)
            if p == 0:
                ax.set_ylabel(label, fontsize=7.5, rotation=0, ha="right", va="center", labelpad=4)
    fig.savefig(path, dpi=120)
    plt.close(fig)
