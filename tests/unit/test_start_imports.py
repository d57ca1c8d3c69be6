"""The start path of a bundled tool imports none of the heavy modules (issue 13).

A bundled tool must be ready within ~2x of a C front end; each of these modules costs
1-5 ms of start-up on its own (dataclasses pulls inspect, ast, dis, tokenize; logging pulls
traceback, threading, string; pathlib pulls urllib.parse, ipaddress; ...).  They are
checked in a fresh interpreter started with ``-I -S``: no site (the editable install's
finder imports pathlib and inspect itself), no environment, sys.path set by hand.

No kernel is needed: declarations are imported and their object is opened (parsed), not
loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: never on the start path of ``import tracekit`` + a bundled declaration's open()
HEAVY = frozenset({
    "dataclasses", "inspect", "ast", "dis", "tokenize", "linecache",  # dataclasses and what it pulls
    "logging", "traceback", "threading",                               # logging (tracekit._log instead)
    "pathlib", "urllib", "urllib.parse", "ipaddress", "fnmatch",       # pathlib (os.path instead)
    "asyncio", "anyio", "trio", "selectors", "ssl", "socket",          # event loops: only when iterated async
    "elftools", "difflib", "json", "copy", "shutil", "subprocess",     # error paths, other tools
})

def _modules(tmp_path: Path, code: str) -> set[str]:
    """sys.modules after running ``code`` in a fresh ``-I -S`` interpreter."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    if not (shim / "tracekit_tools").exists():
        (shim / "tracekit_tools").symlink_to(REPO / "tools")
    purelib = sysconfig.get_paths()["purelib"]  # anyio, pyelftools (the tools' dependencies)
    prog = (f"import sys; sys.path[:0] = {[str(REPO), str(shim), purelib]!r}\n{code}\n"
            "_m = sorted(sys.modules); print(__import__('json').dumps(_m))")  # json after the snapshot
    res = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True,
                         cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.splitlines()[-1]))


def test_import_tracekit_is_light(tmp_path: Path) -> None:
    mods = _modules(tmp_path, "import tracekit")
    assert not mods & HEAVY, sorted(mods & HEAVY)
    # the object/probe layers load on first use, not with the package
    assert not {"tracekit.object", "tracekit.probe", "tracekit.btf.reader", "enum"} & mods


@pytest.mark.parametrize("probe", ["opensnoop:OpenSnoop", "execsnoop:ExecSnoop"])
def test_declaration_open_is_light(tmp_path: Path, probe: str) -> None:
    module, cls = probe.split(":")
    code = (f"from tracekit.probes.{module} import {cls}\n"
            f"p = {cls}()\np.open()\n")  # ELF parsed, programs and maps planned: no kernel
    mods = _modules(tmp_path, code)
    assert not mods & HEAVY, sorted(mods & HEAVY)
    # one declaration does not import the others
    other = "execsnoop" if module == "opensnoop" else "opensnoop"
    assert f"tracekit.probes.{other}" not in mods


@pytest.mark.parametrize("tool", ["opensnoop", "execsnoop"])
def test_tool_import_is_light(tmp_path: Path, tool: str) -> None:
    mods = _modules(tmp_path, f"import tracekit_tools.{tool} as t\nt.make_probe(t.parse_args([]))")
    # no event loop library for the default (sync) loop, no json without --json, and no
    # shutil: argparse's default terminal width (tools use common.HelpFormatter)
    heavy = mods & (HEAVY - {"fnmatch"})
    assert not heavy, sorted(heavy)
