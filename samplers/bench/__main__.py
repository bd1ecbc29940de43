"""`python -m samplers.bench`: see `samplers.bench.cli`."""

from .cli import main

raise SystemExit(main())
