"""Which runtimes this environment can import, each tried in a fresh process: the install's last line, and CI's check
that every runtime the README promises is there.

    python -m cpubench.runtimes                      # one line: each runtime, its version or why it is missing
    python -m cpubench.runtimes --require all        # the same, exit 1 if any runtime is missing
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

# runtime -> (modules its backend imports, the package that carries its version)
RUNTIMES: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("torch",), "torch"),
    "torchao": (("torchao",), "torchao"),  # torch-compile's int8
    "onnxruntime": (("onnxruntime", "onnxruntime.quantization"), "onnxruntime"),
    "openvino": (("openvino",), "openvino"),
    "executorch": (("executorch", "executorch.runtime"), "executorch"),
    "litert": (("ai_edge_litert.interpreter", "litert_torch"), "ai-edge-litert"),
    "tvm": (("tvm", "tvm.s_tir.meta_schedule"), "apache-tvm"),
}


def probe(name: str, timeout: float = 300.0) -> tuple[bool, str]:
    """(True, version) when every module of the runtime imports in a fresh process, else (False, why)."""
    modules, package = RUNTIMES[name]
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"importing it took over {timeout:.0f} s"
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return False, lines[-1] if lines else f"exit status {result.returncode}"
    try:
        return True, metadata.version(package)
    except metadata.PackageNotFoundError:
        return True, "version unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpubench.runtimes", description=__doc__.splitlines()[0])
    parser.add_argument("--require", default="", metavar="NAMES",
                        help="comma-separated runtimes that must import (or `all`); default: none")
    args = parser.parse_args(argv)
    required = list(RUNTIMES) if args.require == "all" else [n for n in args.require.split(",") if n]
    unknown = [name for name in required if name not in RUNTIMES]
    if unknown:
        parser.error(f"--require: unknown runtime {', '.join(unknown)}; valid: {', '.join(RUNTIMES)}, all")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # each probe is one process importing
        found = dict(zip(RUNTIMES, pool.map(probe, RUNTIMES), strict=True))
    parts = [f"{name} {detail}" if ok else f"{name} MISSING ({detail})" for name, (ok, detail) in found.items()]
    print("runtimes: " + "; ".join(parts))
    missing = [name for name in required if not found[name][0]]
    if missing:
        print(f"required runtimes missing: {', '.join(missing)}: their rows would be skipped; see the lines above "
              "and README.md#install", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
