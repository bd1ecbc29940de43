"""The demo data set: scikit-learn's handwritten digits (a copy of the UCI optical-recognition digits that
ships inside the scikit-learn package: 1797 grey-scale 8x8 images, values 0..16), scaled to [-1, 1]."""

from __future__ import annotations

import torch

DATASET = ("scikit-learn load_digits (UCI optical recognition of handwritten digits, bundled with "
           "scikit-learn): 1797 images of 8x8 pixels, values 0..16 mapped to [-1, 1] by v/8 - 1")
DATA_STD = 0.5416
"""sqrt(mean over the 64 pixels of each pixel's variance) of the scaled data set (tests/test_demo_models.py
checks it): the unit of the benchmark's relative errors."""


def load_digits(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All 1797 digits as a (1797, 1, 8, 8) tensor in [-1, 1] (needs scikit-learn)."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn") from None
    images = torch.as_tensor(_load().images, dtype=torch.float64)
    return (images / 8.0 - 1.0).to(dtype)[:, None]


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the rows of a and b (N x d, float64 internally):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), with symmetric eigendecompositions."""
    a = a.reshape(a.shape[0], -1).to(torch.float64)
    b = b.reshape(b.shape[0], -1).to(torch.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp(min=0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2.0 * cross)
