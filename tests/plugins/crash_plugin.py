"""pytest plugin (`-p plugins.crash_plugin`, tests/ on PYTHONPATH): registers the backends that fail on purpose."""

from __future__ import annotations

from cpubench.backends import BACKENDS

NAMES = ("crash-segv", "crash-kill", "crash-hang", "crash-build", "differs-per-process")
BACKENDS.update({name: "plugins.crashing_backend" for name in NAMES})
