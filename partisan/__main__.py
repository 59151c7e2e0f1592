"""``python -m partisan`` is the ``partisan`` command."""

from partisan.cli import main

raise SystemExit(main())
