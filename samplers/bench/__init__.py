"""Benchmark of the registered samplers on analytic problems: `python -m samplers.bench --help`.

Modules: `problems` (exact denoisers, reference ODE solver), `cases` (problem x grid), `measure` (references
and errors), `accuracy` (error vs NFE tables), `study` (the defaults study), `overhead` (per-call sampler
overhead), `report` (Markdown), `plot` (PNG), `machine` (host info), `cli` (the command line).
Importing this package needs torch only; numpy/scipy/matplotlib are imported where they are used.
"""
