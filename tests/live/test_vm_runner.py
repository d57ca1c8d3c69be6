"""The qemu kernel-matrix runner (tests/vm) against real Debian kernels booted under TCG.

Each test boots a guest (~4-8 s on this VM). The first run downloads the kernel packages
into build/vm-cache; without apt or qemu these skip (fail under TRACEKIT_REQUIRE_LIVE=1).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import require_live, skip_or_fail
from tests.vm import kernels, runner

pytestmark = pytest.mark.vm
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["6.1", "6.12", "sid"])
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
             "python3", "-c", "import sys, tk_venv_marker; print(sys.prefix, tk_venv_marker.WHERE)"],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        prefix, where = res.stdout.split()
        assert prefix == str(root) and where.startswith(str(root))
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- Debian sid's kernel

def _fingerprint(*roots: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``roots``: what apt would have touched."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


def test_host_mirror_is_the_hosts_debian_archive(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "other.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert kernels.host_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n")
    assert kernels.host_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").unlink()
    assert kernels.host_mirror(tmp_path) == kernels.DEFAULT_MIRROR


def _private_sid(base: Path) -> list[str]:
    require_live("root to run apt-get")
    if shutil.which("apt-get") is None:
        skip_or_fail("no apt-get on this host")
    try:
        return kernels.apt_update("sid", base, max_age=0)
    except kernels.VMSetupError as e:
        if "does not verify" in str(e):
            raise
        skip_or_fail(f"Debian's sid suite is not reachable: {e}")
        raise


def test_sid_lists_come_from_a_private_apt_state_signed_by_debian(tmp_path: Path) -> None:
    """apt-get update for sid writes only under the VM cache; the host's sources, lists
    and package caches are untouched, and the Release file verifies with Debian's keyring."""
    host = ("/etc/apt", "/var/lib/apt/lists", "/var/cache/apt")
    before = _fingerprint(*host)
    opts = _private_sid(tmp_path)
    changed = {p for p, v in _fingerprint(*host).items() if before.get(p) != v}
    # apt-get download by other test runs may add .debs to the host's archives meanwhile;
    # nothing of sid may appear anywhere on the host's side.
    assert not {p for p in changed if not p.startswith("/var/cache/apt/archives/")}, changed
    assert not [p for p in changed if "sid" in p or "+deb14" in p], changed
    lists = tmp_path / "apt-sid" / "lists"
    (release,) = lists.glob("*_dists_sid_InRelease")
    assert re.search(r"^Codename: sid$", release.read_text(errors="replace"), re.M)
    assert any(lists.glob("*_dists_sid_main_binary-amd64_Packages*"))
    assert (tmp_path / "apt-sid" / "sid.list").read_text() == (
        f"deb [signed-by={kernels.DEBIAN_KEYRING}] {kernels.host_mirror()} sid main\n")
    if shutil.which("gpgv"):
        gv = subprocess.run(["gpgv", "--keyring", str(kernels.DEBIAN_KEYRING), str(release)],
                            capture_output=True, text=True)
        assert gv.returncode == 0 and "Good signature" in gv.stderr, gv.stderr
    # A day's refresh at most: a second call does not ask the mirror again.
    stamp = (tmp_path / "apt-sid" / "updated").stat().st_mtime_ns
    assert kernels.apt_update("sid", tmp_path) == opts
    assert (tmp_path / "apt-sid" / "updated").stat().st_mtime_ns == stamp
    # The newest generic kernel, split into vmlinuz, modules and config/modules.builtin.
    package = kernels.newest_package("sid", opts)
    m = kernels.SERIES["sid"].pattern.match(package)
    assert m and "-cloud-" not in package and "-rt-" not in package, package
    release_name = m.group(1)
    parts = kernels.kernel_packages(package, opts)
    if int(release_name.split(".")[0]) >= 7:
        assert parts == [f"linux-binary-{release_name}", f"linux-modules-{release_name}",
                         f"linux-base-{release_name}"]
    # the host's own apt still knows nothing of sid
    host_names = subprocess.run(["apt-cache", "pkgnames", package], capture_output=True, text=True).stdout
    assert package not in host_names.split()


def test_a_sid_release_file_that_does_not_verify_is_an_error(tmp_path: Path, monkeypatch) -> None:
    # bullseye's release key signs nothing of today's sid: apt only warns and keeps no
    # lists; apt_update must refuse instead of going on with unverified (or no) lists.
    old_key = Path("/usr/share/keyrings/debian-archive-bullseye-stable.gpg")
    if not old_key.exists():
        skip_or_fail(f"{old_key} (debian-archive-keyring) is missing")
    key = tmp_path / "wrong.gpg"
    key.write_bytes(old_key.read_bytes())
    monkeypatch.setattr(kernels, "DEBIAN_KEYRING", key)
    with pytest.raises(kernels.VMSetupError, match="does not verify"):
        _private_sid(tmp_path)
    assert not any((tmp_path / "apt-sid" / "lists").glob("*_Packages*"))
    assert not (tmp_path / "apt-sid" / "updated").exists()


def test_sid_kernel_is_prepared_from_its_split_packages() -> None:
    require_live("root to run apt-get")
    try:
        kernel = kernels.prepare_kernel("sid")
    except (kernels.VMSetupError, OSError, subprocess.CalledProcessError) as e:
        skip_or_fail(f"cannot prepare the sid kernel: {e}")
        raise
    if int(kernel.release.split(".")[0]) < 7:
        pytest.fail(f"sid's newest kernel is {kernel.release}?")
    mods = kernel.modules_dir
    assert (mods / "vmlinuz").exists() and (mods / "modules.dep").exists()
    assert (mods / "modules.builtin").exists() and kernel.config == mods / "config"
    assert "CONFIG_DEBUG_INFO_BTF=y" in kernel.config.read_text()
    assert kernel.vmlinux.read_bytes()[:4] == b"\x7fELF"
