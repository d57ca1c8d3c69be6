"""``tracekit build``: what it says when a tool or header is missing, and its flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tracekit import build
from tracekit.errors import TracekitError

SRC = """#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tracekit.h"
SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracekit.cli", "build", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_missing_clang_is_named_with_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.bpf.c").write_text(SRC)
    env = {"PATH": str(tmp_path / "empty"), "CLANG": "no-such-clang", "HOME": str(tmp_path)}
    res = _cli(str(tmp_path / "p.bpf.c"), env=env)
    assert res.returncode == 1
    assert "clang (with the BPF target) not found" in res.stderr and "apt-get install clang" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_bpftool_and_headers_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("BPFTOOL", "no-such-bpftool")
    with pytest.raises(build.BuildError, match="bpftool .*not found.*apt-get install bpftool"):
        build.vmlinux_h(directory=tmp_path / "cache")
    with pytest.raises(build.BuildError, match="CONFIG_DEBUG_INFO_BTF"):
        build.vmlinux_h(tmp_path / "no-btf")
    assert issubclass(build.BuildError, TracekitError)
    assert build.target_arch("x86_64") == "x86" and build.target_arch("aarch64") == "arm64"


def test_build_writes_a_bpf_object_with_btf(tmp_path: Path) -> None:
    src = tmp_path / "p.bpf.c"
    src.write_text(SRC)
    res = _cli(str(src), "-o", str(tmp_path / "out.o"))
    assert res.returncode == 0, res.stderr
    data = (tmp_path / "out.o").read_bytes()
    assert data[:4] == b"\x7fELF" and data[18] == 247  # e_machine EM_BPF
    import tracekit

    obj = tracekit.open(tmp_path / "out.o")
    assert list(obj.programs) == ["on_getppid"] and obj.btf is not None
    obj.close()
    assert build.default_output("a/x.bpf.c") == Path("a/x.bpf.o") and build.default_output("y.c") == Path("y.bpf.o")
