"""samplers/ must import and run with torch alone: no numpy, scipy, tqdm or host modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'numpy', 'scipy', 'tqdm', 'matplotlib', 'diffusers', 'comfy', 'modules'}:
            raise ModuleNotFoundError('blocked ' + name)
sys.meta_path.insert(0, Block())
import torch
import samplers
from samplers import SAMPLERS, grids
x = torch.randn(2, 4)
for name, entry in SAMPLERS.items():
    out = entry(lambda x, s: 0.5 * x, x, grids.karras(6, 0.03, 14.6))
    assert out.shape == x.shape and torch.isfinite(out).all(), name
print('ok', len(SAMPLERS))
"""


def test_samplers_import_and_run_with_torch_only() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
