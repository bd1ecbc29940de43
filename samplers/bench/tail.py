"""Where an RMSE sits: how much of two paired runs' squared error their few worst noises hold.

With per-sample RMS errors e_i (ours) and f_i (theirs) from the same noises, RMSE^2 = mean_i e_i^2, so noise i holds
the share e_i^2 / sum_j e_j^2 of it. 'Without our worst' is the RMSE ratio sqrt(sum_{i!=w} e_i^2 / sum_{i!=w} f_i^2),
w = argmax e: how far the verdict rests on one trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

TOP = 10
"""The 'few worst noises' of a share."""


def error_tail(ours: Sequence[float], theirs: Sequence[float], top: int = TOP) -> dict[str, float | None] | None:
    """The tail of two paired runs' per-sample errors: for each side its worst error, that noise's share of the
    squared error and the `top` worst noises' share; their error and share at our worst noise; the RMSE ratio without
    our worst noise. None when the pairs are missing, unequal in number, fewer than top + 1, not finite, or either
    side's errors are all 0."""
    if len(ours) != len(theirs) or len(ours) <= top:
        return None
    e2 = torch.tensor(ours, dtype=torch.float64).square()
    f2 = torch.tensor(theirs, dtype=torch.float64).square()
    if not (torch.isfinite(e2).all() and torch.isfinite(f2).all()) or e2.sum() <= 0 or f2.sum() <= 0:
        return None
    worst = int(e2.argmax())
    rest_e2, rest_f2 = (e2.sum() - e2[worst]).clamp_min(0), f2.sum() - f2[worst]
    out: dict[str, float | None] = {
        "top": top, "theirs_at_ours_worst": float(f2[worst].sqrt()),
        "theirs_share_at_ours_worst": float(f2[worst] / f2.sum()),
        "ratio_without_ours_worst": float((rest_e2 / rest_f2).sqrt()) if rest_f2 > 0 else None}
    for side, sq in (("ours", e2), ("theirs", f2)):
        out[f"{side}_worst"] = float(sq.max().sqrt())
        out[f"{side}_worst_share"] = float(sq.max() / sq.sum())
        out[f"{side}_top_share"] = float(sq.topk(top).values.sum() / sq.sum())
    return out
