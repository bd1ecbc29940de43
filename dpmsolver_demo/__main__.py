"""`python -m dpmsolver_demo`: see dpmsolver_demo.cli."""

from .cli import main

raise SystemExit(main())
