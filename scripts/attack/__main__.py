"""``python scripts/attack [options]``: run the adversarial suite (see cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a directory: import this package as 'attack', with its parent on sys.path.
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0]).resolve() == _here:
        sys.path[0] = str(_here.parent)
    else:
        sys.path.insert(0, str(_here.parent))

from attack.cli import main  # after the sys.path fix above

if __name__ == "__main__":
    sys.exit(main())
