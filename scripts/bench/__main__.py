"""``python scripts/bench [options]`` (or ``python -m bench`` in scripts/): run the benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a directory: Python put this directory first on sys.path, which would make its
    # modules top-level ones ('cli', 'report'...). Put its parent there instead, so the package
    # imports as 'bench', here and in the load-generator processes: multiprocessing spawns them
    # with this sys.path and imports their target, bench.loadgen.worker_entry, by that name.
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0]).resolve() == _here:
        sys.path[0] = str(_here.parent)
    else:
        sys.path.insert(0, str(_here.parent))

from bench.cli import main  # after the sys.path fix above

if __name__ == "__main__":
    sys.exit(main())
