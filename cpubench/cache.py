"""A content-keyed disk cache for exported and compiled models, so a second run does not redo them.

Every entry is checked before use, because a damaged one can do worse than fail: TVM mmaps a compiled `.so`, and a
truncated one kills the whole pytest process with a bus error. An entry is written atomically, then a SHA-256 digest
is written (atomically too) beside it as `<file>.sha256`; an entry whose digest is missing or does not match is
removed, rebuilt and reported in one line (on stderr at once, and again in the end-of-session summary via NOTICES).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path, PurePath, PurePosixPath

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
# A checkout keeps its caches, results and tuning logs beside the code; an installed copy (site-packages) uses the
# folder it is run from instead, never site-packages.
REPO_ROOT = _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else Path.cwd()
SIDECAR_SUFFIX = ".sha256"
MISSING = "missing"
NO_SIDECAR = "no digest sidecar"
NOTICES: list[str] = []  # one line per damaged entry met in this process; the plugin repeats them at the end


def cache_root() -> Path:
    return Path(os.environ.get("CPUBENCH_CACHE", REPO_ROOT / ".cache"))


def content_key(**parts: object) -> str:
    """A short hash of everything that determines an artifact (model, weights, versions, target...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cached_path(kind: str, key: str, suffix: str) -> Path:
    path = cache_root() / kind / f"{key}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so an interrupted write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sidecar_path(path: Path) -> Path:
    """`x.so` -> `x.so.sha256`: the digest that vouches for a cache entry."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _digest(fh) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return _digest(fh)


def _write_sidecar(path: Path, digest: str) -> None:
    # The `sha256sum -c` format, so an entry can be checked by hand too.
    atomic_write_bytes(sidecar_path(path), f"{digest}  {path.name}\n".encode())


def write_entry(path: Path, data: bytes) -> None:
    """Write `data` as a verified entry: the file atomically, then, only once it is complete, its digest."""
    sidecar_path(path).unlink(missing_ok=True)
    atomic_write_bytes(path, data)
    _write_sidecar(path, hashlib.sha256(data).hexdigest())


def seal_entry(path: Path) -> None:
    """Make a file another library wrote (TVM's export_library) a verified entry. Call it once the file is
    complete and in its final place: the digest vouches for what is on disk now."""
    with path.open("rb") as fh:
        digest = _digest(fh)
        os.fsync(fh.fileno())  # the content reaches the disk before the digest that vouches for it
    _write_sidecar(path, digest)


def entry_problem(path: Path) -> str | None:
    """None when the entry is present and matches the digest beside it; otherwise why it must not be used
    (`MISSING` when there is no entry at all, `NO_SIDECAR` for an unverified one, e.g. from an older cache)."""
    if not path.is_file():
        return MISSING
    try:
        recorded = sidecar_path(path).read_text(encoding="ascii").split()
    except FileNotFoundError:
        return NO_SIDECAR
    except (OSError, UnicodeDecodeError):
        return "unreadable digest sidecar"
    if not recorded or len(recorded[0]) != 64:
        return "garbled digest sidecar"
    try:
        actual = file_digest(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if recorded[0].lower() == actual else "digest mismatch"


def is_intact(path: Path) -> bool:
    """Whether the entry is present and its content is the one its digest was written for."""
    return entry_problem(path) is None


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError, OSError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def discard_entry(path: Path, reason: str) -> None:
    """Remove a damaged entry and its sidecar, and say so in one line: on stderr now, in NOTICES for the end."""
    state = "could not be verified" if reason == NO_SIDECAR else "was damaged"
    notice = f"cpubench: cache entry {_shown(path)} {state} ({reason}); rebuilding it"
    for p in (path, sidecar_path(path)):
        with contextlib.suppress(OSError):
            p.unlink(missing_ok=True)
    NOTICES.append(notice)
    print(notice, file=sys.stderr, flush=True)


def usable_entry(path: Path) -> bool:
    """True when the cached entry can be used as is; False means build it. An absent entry is False quietly; a
    damaged or unverified one is discarded with a notice, so a cache is never trusted and never fatal."""
    problem = entry_problem(path)
    if problem is None:
        return True
    if problem == MISSING:
        with contextlib.suppress(OSError):
            sidecar_path(path).unlink(missing_ok=True)  # a digest left without its entry
    else:
        discard_entry(path, problem)
    return False


def json_entry(path: Path) -> dict | None:
    """A cached JSON object, or None when it is missing, damaged or not a JSON object (discarded, with a notice)."""
    if not usable_entry(path):
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        value = None
    if isinstance(value, dict):
        return value
    discard_entry(path, "not a JSON object")
    return None


def cached_build_info(artifact: Path, info_path: Path) -> dict | None:
    """The build info kept beside an intact cached artifact, or None to rebuild: the two are used only as a verified
    pair (a damaged compiled `.so` is a bus error that kills the process, not an exception, and an artifact whose
    record of how it was built is lost cannot say what produced its numbers)."""
    intact = usable_entry(artifact)  # checked first and apart: each damaged one is discarded
    info = json_entry(info_path)
    return info if intact else None


# A cache entry's name: `<model>[-<variant>]-<20 hex digits of content_key><suffix>` in `<cache>/<kind>/` (cache.py).
CACHE_ENTRY = re.compile(r"-[0-9a-f]{20}(\.[A-Za-z0-9]+)+$")


def relative_artifact_path(path: str, cache: Path | None = None) -> str:
    """`/home/me/cpubench/.cache/onnx/resnet18-….onnx` -> `.cache/onnx/resnet18-….onnx`, the form the committed
    results use: the entry's place in the cache, under the default cache's name. Recognised by lying under `cache`
    (default: this checkout's `cache_root()`), under a folder named `.cache`, or, for a CPUBENCH_CACHE elsewhere on
    another machine, by the cache's own naming (`<kind>/<name>-<content key><suffix>`). Other paths, and relative
    ones, come back unchanged."""
    pure = PurePath(path)
    if not pure.is_absolute():
        return path
    if cache is None:
        cache = cache_root()
    try:
        return str(PurePosixPath(".cache", *pure.relative_to(cache).parts))
    except ValueError:
        pass
    parts = pure.parts
    if ".cache" in parts[1:]:
        return str(PurePosixPath(*parts[len(parts) - 1 - parts[::-1].index(".cache"):]))
    if len(parts) >= 3 and CACHE_ENTRY.search(parts[-1]):
        return str(PurePosixPath(".cache", parts[-2], parts[-1]))
    return path
