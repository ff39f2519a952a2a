"""Where tuning work lives on disk: the resumable work folder, its record count, and the atomic swap of a
finished log into tuning_logs/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import tvm_support as tv
from ..cache import cache_root


def work_dir_for(model: str, key: str) -> Path:
    return cache_root() / "tuning-work" / model / key


def count_records(work_dir: Path) -> int:
    path = work_dir / tv.DB_FILES[1]
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def replace_log(staging: Path, destination: Path) -> None:
    """Swap the finished log in; the old one stays in place until the new one is complete on disk."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    retired = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    if destination.exists():
        os.replace(destination, retired)
    os.replace(staging, destination)
    shutil.rmtree(retired, ignore_errors=True)
