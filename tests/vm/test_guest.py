"""Checks of the guest environment the runner builds; they only run inside the VM.

    python -m tests.vm.runner --kernel 6.12 -- python3 -m pytest -q tests/vm/test_guest.py

On the host they skip (there is nothing to check about a guest there).
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.vm
#: collected only inside the guests (tests/conftest.py deselects it on the host)
GUEST_ONLY = True


def test_running_a_debian_kernel() -> None:
    # 6.1.0-N-amd64 (bookworm), 6.12.N+deb12-amd64 (bookworm), 7.2.N+debNN-amd64 (sid)
    release = platform.release()
    assert re.fullmatch(r"(6\.1\.0-\d+|6\.12\.\d+\+deb12|\d+\.\d+\.\d+\+deb\d+)-amd64", release), release


def test_kernel_config_is_bound_where_loaders_look() -> None:
    config = Path(f"/boot/config-{platform.release()}").read_text()
    assert "CONFIG_BPF_SYSCALL=y" in config
    assert "CONFIG_DEBUG_INFO_BTF=y" in config


def test_pseudo_filesystems_are_mounted() -> None:
    mounts = {line.split()[1]: line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}
    assert mounts.get("/sys/kernel/tracing") == "tracefs"
    assert mounts.get("/sys/kernel/debug") == "debugfs"
    assert mounts.get("/sys/fs/bpf") == "bpf"


def test_kprobe_pmu_and_btf_present() -> None:
    # The reason the VM exists: this host (6.18) has neither.
    assert Path("/sys/bus/event_source/devices/kprobe/type").read_text().strip().isdigit()
    assert Path("/sys/kernel/btf/vmlinux").stat().st_size > 1_000_000


def test_checkout_is_writable_and_shared(tmp_path: Path) -> None:
    probe = CHECKOUT / "build" / f"vm-write-probe-{os.getpid()}"
    probe.parent.mkdir(exist_ok=True)
    try:
        probe.write_text("x")
        assert probe.read_text() == "x"
    finally:
        probe.unlink(missing_ok=True)


def test_host_root_is_read_only_underneath_an_overlay() -> None:
    # Writes outside the checkout land in the guest's tmpfs overlay, never on the host.
    assert Path("/").stat()  # the overlay root
    mounts = Path("/proc/mounts").read_text()
    assert any(line.split()[1] == "/" and line.split()[2] == "overlay" for line in mounts.splitlines())
