"""``python -m jobmon``, or ``python …/jobmon/__main__.py``: bin/ and the detached poller start
jobmon the second way, by its file, so the current folder is never on ``sys.path`` (``-m`` puts
it first, and a ``./jobmon/`` planted there would run instead)."""
import sys

if not __package__:  # run by its file: sys.path[0] is this folder; the package's parent serves
    import os

    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from jobmon.cli import main  # noqa: E402

raise SystemExit(main())
