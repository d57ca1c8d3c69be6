"""A real (non-editable) install of this checkout, for start-up benchmarks.

The development venv (.venv) has tracekit installed in editable mode: its site-packages
runs setuptools' editable finder at every interpreter start, which imports pathlib,
inspect, importlib machinery, ... before the first line of the program -- costs a user's
``pip install .`` never pays, and imports that would hide tracekit's own (a module already
in sys.modules costs nothing to import again).  Start-up figures must come from what users
run: a venv with ``pip install <checkout>`` (non-editable, byte-compiled by pip).

The venv lives under the cache directory, keyed by the content of the installed files
(tracekit/, tools/, pyproject.toml, README.md), so it is rebuilt exactly when the tree
changes -- committed or not.  Only the newest one is kept.  A lock file serialises
concurrent benchmark runs that would build the same venv.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what `pip install .` reads: the packages (with their data: .bpf.o, .bpf.c) and metadata
_SOURCES = ("tracekit", "tools")
_FILES = ("pyproject.toml", "README.md")
_SKIP_DIRS = {"__pycache__", "build", ".mypy_cache", ".pytest_cache"}


def _cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tracekit-bench")


def tree_key() -> str:
    """A hash of every file ``pip install`` would take from the checkout (path + bytes)."""
    h = hashlib.sha256()
    # the interpreter is part of the key: the venv's python is a link to it
    h.update(os.path.realpath(sys._base_executable).encode() + b"\0")  # type: ignore[attr-defined]
    paths = [os.path.join(REPO, f) for f in _FILES]
    for top in _SOURCES:
        for root, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            paths.extend(os.path.join(root, f) for f in sorted(files) if not f.endswith((".pyc", ".tmp")))
    for p in paths:
        h.update(os.path.relpath(p, REPO).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def installed_venv() -> str:
    """The directory of a venv holding a non-editable install of the checkout as it is now
    (built on first use, ~5-10 s); its ``bin/`` has the tools' console scripts."""
    root = _cache_root()
    os.makedirs(root, exist_ok=True)
    key = tree_key()
    venv = os.path.join(root, f"venv-{key}")
    done = os.path.join(venv, ".tracekit-bench-complete")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(done):
            return venv
        for old in os.listdir(root):  # an older tree's venv, or a half-built one
            if old.startswith("venv-"):
                shutil.rmtree(os.path.join(root, old), ignore_errors=True)
        # build from a copy: an in-tree build writes build/ and *.egg-info into the
        # checkout, which other runs (and the developers) share
        with tempfile.TemporaryDirectory() as src:
            for top in _SOURCES:
                shutil.copytree(os.path.join(REPO, top), os.path.join(src, top),
                                ignore=shutil.ignore_patterns(*_SKIP_DIRS, "*.pyc"))
            for f in _FILES:
                shutil.copy2(os.path.join(REPO, f), src)
            base = sys._base_executable  # type: ignore[attr-defined]
            for cmd in ([base, "-m", "venv", venv],
                        [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", src]):
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    shutil.rmtree(venv, ignore_errors=True)
                    sys.exit(f"building the benchmark venv failed: {' '.join(cmd)}\n{res.stdout}{res.stderr}")
        with open(done, "w") as f:
            f.write(key + "\n")
    return venv


if __name__ == "__main__":
    print(installed_venv())
