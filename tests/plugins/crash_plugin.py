"""pytest plugin (`-p plugins.crash_plugin`, with tests/ on PYTHONPATH): registers the crashing test backends."""

from __future__ import annotations

from cpubench.backends import BACKENDS

NAMES = ("crash-segv", "crash-kill", "crash-hang", "crash-build")
BACKENDS.update({name: "plugins.crashing_backend" for name in NAMES})
