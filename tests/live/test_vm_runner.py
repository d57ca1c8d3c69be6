"""The qemu kernel-matrix runner (tests/vm) against real Debian kernels booted under TCG.

Each test boots a guest (~4-8 s on this VM). The first run downloads the kernel packages
into build/vm-cache; without apt or qemu these skip (fail under TRACEKIT_REQUIRE_LIVE=1).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import require_live, skip_or_fail
from tests.vm import kernels, runner

pytestmark = pytest.mark.vm
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest) -> kernels.Kernel:
    require_live("root to run qemu")
    if os.environ.get("TRACEKIT_IN_VM") == "1":
        pytest.skip("no nested qemu inside the matrix guest")
    try:
        kernels.ensure_tools()
        return kernels.prepare_kernel(request.param)
    except (kernels.VMSetupError, OSError, subprocess.CalledProcessError) as e:
        skip_or_fail(f"cannot prepare the {request.param} kernel: {e}")
        raise  # unreachable: skip_or_fail raises


def _qemu_pids() -> set[int]:
    out = subprocess.run(["pgrep", "qemu-system-x86"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_runs_command_in_guest_kernel_with_separate_streams(kernel: kernels.Kernel) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    res = runner.run(["sh", "-c", "uname -r; echo to-stderr >&2; ls /sys/bus/event_source/devices/kprobe/type"],
                     kernel, timeout=180, stdout=out, stderr=err)
    assert res.returncode == 0, res.notes
    assert out.getvalue().decode().splitlines() == [
        kernel.release, "/sys/bus/event_source/devices/kprobe/type"]
    assert err.getvalue() == b"to-stderr\n"
    assert res.kernel == kernel.release
    assert res.boot_seconds is not None and res.boot_seconds < 60


def test_exit_status_and_environment_come_back(kernel: kernels.Kernel) -> None:
    out = io.BytesIO()
    res = runner.run(["python3", "-c",
                      "import os, sys, tracekit; print(os.getcwd(), sys.executable, os.environ['TRACEKIT_X']);"
                      " sys.exit(3)"],
                     kernel, timeout=240, stdout=out, stderr=io.BytesIO(), cwd=CHECKOUT,
                     env={"TRACEKIT_X": "passed"})
    assert res.returncode == 3
    cwd, exe, x = out.getvalue().decode().split()
    assert cwd == str(CHECKOUT)
    assert "shims" not in exe  # the pyenv shim would cost seconds per call under TCG
    assert x == "passed"


def test_timeout_kills_qemu_and_returns_124(kernel: kernels.Kernel) -> None:
    t0 = time.monotonic()
    res = runner.run(["sleep", "600"], kernel, timeout=20, stdout=io.BytesIO(), stderr=io.BytesIO())
    assert res.returncode == runner.TIMEOUT_EXIT and res.timed_out
    assert time.monotonic() - t0 < 40
    # Our qemu is gone (other engineers' runs may have their own qemu alive meanwhile).
    assert res.qemu_pids and not set(res.qemu_pids) & _qemu_pids()
    assert all(not Path(f"/proc/{pid}").exists() for pid in res.qemu_pids)


def test_boot_that_dies_early_is_retried_then_reported(kernel: kernels.Kernel) -> None:
    # rdinit pointing nowhere makes the kernel panic before the command can start,
    # the same shape as the rare TCG boot oops the retry exists for.
    res = runner.run(["true"], kernel, timeout=180, retries=1, append="rdinit=/nonexistent",
                     stdout=io.BytesIO(), stderr=io.BytesIO())
    assert res.returncode == runner.GUEST_DIED_EXIT
    assert res.attempts == 2
    assert "Kernel panic" in res.console


def test_cli_exit_code(kernel: kernels.Kernel) -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.vm.runner", "--kernel", kernel.series,
                           "--timeout", "180", "--", "sh", "-c", "exit 3"],
                          cwd=CHECKOUT, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert f"{kernel.release}: exit 3" in proc.stderr


def test_a_venv_under_tmp_is_the_guests_python(kernel: kernels.Kernel, tmp_path_factory) -> None:
    """The guest mounts a fresh tmpfs on /tmp: a venv there must still be what it runs."""
    import tempfile
    import venv

    root = Path(tempfile.mkdtemp(prefix="tk-venv-", dir="/tmp"))
    try:
        venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(root)
        py = root / "bin" / "python3"
        site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "tk_venv_marker.py").write_text("WHERE = __file__\n")
        res = subprocess.run(
            [py, "-m", "tests.vm.runner", "--kernel", kernel.series, "--timeout", "240", "--",
             "python3", "-c", "import sys, pytest, tk_venv_marker; print(sys.prefix, tk_venv_marker.WHERE)"],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        prefix, where = res.stdout.split()
        assert prefix == str(root) and where.startswith(str(root))
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
