"""The import-linter contracts in pyproject.toml catch what they promise to catch.

The package tree (tracekit/, and tools/ as tracekit_tools/, as the install names it) is
copied with pyproject.toml into a temporary directory and lint-imports runs on the copy:
once untouched (every contract kept), once with a violation of each kind planted.  The
tree under version control is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")

# lint-imports as a module call, so the interpreter running the tests is the one that checks
_LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"

LAYERS = "tracekit layers import only downwards"
PURE = "the pure layer (obj, btf, uapi, errors) makes no syscalls"
TOOLS = "tools use only the public API"


def copy_tree(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.bpf.o", "*.bpf.c", "*.h")
    shutil.copytree(ROOT / "tracekit", dst / "tracekit", ignore=ignore)
    shutil.copytree(ROOT / "tools", dst / "tracekit_tools", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def lint(tree: Path) -> tuple[int, str]:
    # The copy must win over the editable install: put it first on the path (grimp locates
    # the root packages with importlib), and run in a fresh interpreter so that the tracekit
    # this test process imported is not the one found.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r = subprocess.run(
        [sys.executable, "-c", _LINT, "--no-cache", "--no-logo"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=60,
    )
    return r.returncode, r.stdout + r.stderr


def plant(path: Path, line: str) -> None:
    # after the module docstring and `from __future__` (which must stay first), at top level
    lines = path.read_text().splitlines(keepends=True)
    at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("from __future__")), 0)
    lines.insert(at, line + "\n")
    path.write_text("".join(lines))


def section(out: str, contract: str) -> str:
    """The report of one broken contract ("" when it was kept): its title underlined, up to
    the next contract's title."""
    head = f"{contract}\n{'-' * len(contract)}\n"
    if f"{contract} BROKEN" not in out or head not in out:
        return ""
    rest = out.split(head, 1)[1]
    ends = [rest.find(f"\n{c}\n{'-' * len(c)}\n") for c in (LAYERS, PURE, TOOLS) if c != contract]
    return rest[: min([e for e in ends if e >= 0], default=len(rest))]


def test_untouched_tree_keeps_every_contract(tmp_path: Path) -> None:
    rc, out = lint(copy_tree(tmp_path))
    assert rc == 0, out
    for name in (LAYERS, PURE, TOOLS):
        assert f"{name} KEPT" in out, out
    assert "0 broken" in out


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> str:
    """lint-imports' report on a copy with one violation of each kind (one run for all:
    each test below looks for its own in the report of the contract that must catch it)."""
    tree = copy_tree(tmp_path_factory.mktemp("planted"))
    # a pure module importing a syscall wrapper
    plant(tree / "tracekit/obj/elf.py", "from tracekit.kernel.syscalls import bpf")
    # a pure module importing a stdlib module that talks to the kernel (not a layer violation)
    plant(tree / "tracekit/btf/types.py", "import ctypes")
    # a pure module reaching the kernel only through a module above it
    plant(tree / "tracekit/errors.py", "import tracekit.hooks.links")
    # a tool importing the internals
    plant(tree / "tracekit_tools/common.py", "from tracekit.events import records")
    # a new module directly in tracekit/ that no layer names
    (tree / "tracekit/stray.py").write_text('"""not in any layer"""\n')
    rc, out = lint(tree)
    assert rc != 0, out
    return out


def test_pure_module_importing_a_syscall_wrapper_fails(planted: str) -> None:
    # both contracts see it: kernel is above obj, and the pure layer forbids kernel
    assert "tracekit.obj.elf -> tracekit.kernel.syscalls.bpf" in section(planted, LAYERS), planted
    assert "tracekit.obj.elf -> tracekit.kernel.syscalls.bpf" in section(planted, PURE), planted


def test_pure_module_importing_ctypes_fails(planted: str) -> None:
    assert "tracekit.btf.types -> ctypes" in section(planted, PURE), planted


def test_indirect_route_into_the_kernel_layer_fails(planted: str) -> None:
    # the chain errors -> hooks.links -> ... -> kernel is reported
    assert "tracekit.errors -> tracekit.hooks.links" in section(planted, PURE), planted


def test_tool_importing_internals_fails(planted: str) -> None:
    assert "tracekit_tools.common -> tracekit.events.records" in section(planted, TOOLS), planted


def test_new_top_level_module_must_be_placed_in_a_layer(planted: str) -> None:
    assert "- tracekit.stray" in section(planted, LAYERS), planted


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "tracekit/py.typed").is_file()
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in cfg["tool"]["setuptools"]["package-data"]["tracekit"]


def test_every_package_is_installed() -> None:
    # [tool.setuptools] lists packages by hand (tools/ is installed as tracekit_tools), so a
    # new subpackage must be added there or a wheel silently lacks it.  Only packages under
    # version control count: a colleague's package that is not committed yet is not shipped.
    try:
        tracked = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "tracekit"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    found = {"/".join(p.split("/")[:-1]).replace("/", ".") for p in tracked if p.endswith("/__init__.py")}
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert cfg["package-dir"]["tracekit_tools"] == "tools" and "tracekit_tools" in listed
