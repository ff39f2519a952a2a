"""Test-only backends that fail on purpose, to prove that a dying worker costs one variant, not the session.

Each wraps ONNX Runtime (so its answers agree) and, by name: `crash-segv` dies from SIGSEGV once it has been timed
for a while, `crash-kill` is killed by SIGKILL (what the OOM killer sends), `crash-hang` stops answering, and
`crash-build` aborts (SIGABRT) while it builds; `differs-per-process` answers with logits that depend on its process
(same top-1), so its processes disagree.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from cpubench.backends import LoadContext
from cpubench.backends.onnxruntime_cpu import OnnxRuntimeCPU

AFTER_SECONDS = 0.15  # of forward calls before the failure: mid-way through the rounds (each process gets half)


class Crashing(OnnxRuntimeCPU):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._busy = 0.0

    def load(self, ctx: LoadContext) -> None:
        if self.name == "crash-build":
            os.abort()
        super().load(ctx)

    def forward(self, inputs: Any) -> Any:
        start = time.perf_counter()
        out = super().forward(inputs)
        self._busy += time.perf_counter() - start
        if self._busy > AFTER_SECONDS:
            if self.name == "crash-segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif self.name == "crash-kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.name == "crash-hang":
                time.sleep(3600)
        if self.name == "differs-per-process":
            out = [array + (os.getpid() % 97 + 1) * 1e-3 for array in out]
        return out


def create(name: str) -> Crashing:
    return Crashing(name)
