"""Install pinned npm packages into the cache, once, safely across processes.

:func:`npm_install` guarantees that the folder it returns holds a complete ``npm ci`` of the given
``package.json``/``package-lock.json``: the folder is named after the lock file's hash, a marker
is written only after npm succeeded, an exclusive file lock keeps two processes from installing
at once, and a folder without the marker or without a required file (an interrupted install, a
partly deleted cache) is wiped and installed again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from mmgraph.ingest.datasets.base import DatasetFetchError

logger = logging.getLogger(__name__)

SPEC_FILES = ("package.json", "package-lock.json")
MARKER = ".mmgraph-complete"
NPM_COMMAND = ("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
OUTPUT_TAIL_CHARS = 8000
DEFAULT_TIMEOUT_S = 900.0


def lock_hash(spec_dir: Path) -> str:
    """Short sha256 of ``spec_dir/package-lock.json``: the install folder's name."""
    return hashlib.sha256((spec_dir / "package-lock.json").read_bytes()).hexdigest()[:16]


def npm_install(
    spec_dir: Path,
    parent: Path,
    required: Sequence[str] = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Run ``npm ci`` for the packages pinned in ``spec_dir`` into ``parent/<lock hash>`` and
    return that folder; return at once when a previous install completed.

    Args:
        spec_dir: folder holding ``package.json`` and ``package-lock.json``.
        parent: folder under which the install folder is made.
        required: paths, relative to the install folder, that a complete install must hold.
        timeout_s: how long npm may run.

    Raises:
        DatasetFetchError: npm is missing, fails, runs past ``timeout_s``, or leaves a required
            path missing.
    """
    for name in SPEC_FILES:
        if not (spec_dir / name).is_file():
            raise DatasetFetchError(f"{spec_dir / name}: missing npm spec file")
    target = parent / lock_hash(spec_dir)
    if _complete(target, required):
        return target
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have finished the install while this one waited for the lock.
        if _complete(target, required):
            return target
        _install(spec_dir, target, required, timeout_s)
    return target


def _complete(target: Path, required: Sequence[str]) -> bool:
    return (target / MARKER).is_file() and all((target / path).exists() for path in required)


def _install(spec_dir: Path, target: Path, required: Sequence[str], timeout_s: float) -> None:
    if target.exists():
        logger.warning("%s: removing an incomplete npm install", target)
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in SPEC_FILES:
        shutil.copyfile(spec_dir / name, target / name)
    logger.info("installing npm packages into %s", target)
    start = time.monotonic()
    try:
        done = subprocess.run(
            NPM_COMMAND,
            cwd=target,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as e:
        raise DatasetFetchError(
            "npm not found: install Node.js (with npm) to fetch datasets"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise DatasetFetchError(
            f"{' '.join(NPM_COMMAND)} in {target} ran past {timeout_s:.0f} s\n{_tail(e.output)}"
        ) from e
    if done.returncode != 0:
        raise DatasetFetchError(
            f"{' '.join(NPM_COMMAND)} in {target} exited with {done.returncode}\n"
            f"{_tail(done.stdout)}"
        )
    missing = [path for path in required if not (target / path).exists()]
    if missing:
        raise DatasetFetchError(
            f"npm install in {target} succeeded but left out {missing}\n{_tail(done.stdout)}"
        )
    elapsed = time.monotonic() - start
    marker = {"command": list(NPM_COMMAND), "seconds": round(elapsed, 2), "at": time.time()}
    partial = target / f"{MARKER}.tmp"
    partial.write_text(json.dumps(marker), encoding="utf-8")
    os.replace(partial, target / MARKER)
    logger.info("installed npm packages into %s in %.1f s", target, elapsed)


def _tail(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    return (output or "")[-OUTPUT_TAIL_CHARS:]
