"""The README's container: built with Debian's docker.io and run with the capability set
the README gives, on this kernel, tracing an exec this test makes.

No registry is reachable here, so the Dockerfile's base image (``FROM``) is made locally:
debootstrap of the same Debian suite from the mirror this machine's apt uses, imported
under the ``FROM`` name, once (later runs reuse it).  dockerd is started if it is not
running.  The image is built with the host's network (apt and PyPI), and the container
runs with none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, require_live, skip_or_fail

pytestmark = pytest.mark.live
IMAGE = "tracekit-test:latest"
DOCKER = "/usr/bin/docker"  # Debian's docker.io client


def _run(*cmd: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _docker_up() -> None:
    if not Path(DOCKER).exists() or shutil.which("dockerd") is None:
        skip_or_fail("docker.io is not installed (the README's test command installs it)")
    if _run(DOCKER, "info", timeout=30).returncode == 0:
        return
    log = open(Path(tempfile.gettempdir()) / "tracekit-dockerd.log", "ab")  # noqa: SIM115 - outlives the test
    subprocess.Popen(["dockerd", "--pidfile", "/run/tracekit-dockerd.pid"], stdout=log, stderr=log,
                     start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _run(DOCKER, "info", timeout=30).returncode == 0:
            return
        time.sleep(1)
    skip_or_fail(f"dockerd did not start within 60 s (log: {log.name})")


def _apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (never a hard-coded host)."""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = f.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            uri = m.group(1) or m.group(2)
            if "security" not in uri:
                return uri
    pytest.fail("no Debian mirror in /etc/apt sources")


def _base_image() -> str:
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base, "Dockerfile has no FROM line"
    name = base.group(1)
    if _run(DOCKER, "image", "inspect", name, timeout=60).returncode == 0:
        return name
    if shutil.which("debootstrap") is None:
        skip_or_fail("debootstrap is not installed (the README's test command installs it)")
    suite = name.split(":", 1)[1].split("-", 1)[0]  # debian:bookworm-slim -> bookworm
    with tempfile.TemporaryDirectory(prefix="tk-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        r = _run("debootstrap", "--variant=minbase", suite, str(root), _apt_mirror(), timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run([DOCKER, "import", "-", name], stdin=tar.stdout, capture_output=True, text=True,
                             timeout=600)
        tar.wait()
        assert imp.returncode == 0, imp.stderr
    return name


def test_readme_container_runs_execsnoop_with_the_documented_capabilities() -> None:
    require_live()
    _docker_up()
    _base_image()
    # This machine reaches PyPI through a TLS-inspecting proxy whose CA is a local one: hand
    # it to the build the way the Dockerfile documents.
    extra = "".join(p.read_text() for p in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")))
    build = _run(DOCKER, "build", "--network", "host", "--build-arg", f"EXTRA_CA_CERTS={extra}", "-t", IMAGE,
                 str(ROOT), timeout=1200)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    # the build context is what .dockerignore lets through: small, no build/ or .venv/
    assert "Sending build context to Docker daemon" in build.stdout + build.stderr
    m = re.search(r"Sending build context to Docker daemon\s+([\d.]+)([kKMG]B)", build.stdout + build.stderr)
    assert m and (m.group(2) in ("kB", "KB") or float(m.group(1)) < 10), m.group(0) if m else build.stdout[-500:]

    # The README's docker run options, with the network off and -d instead of -it.
    readme = (ROOT / "README.md").read_text()
    assert ("--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
            in readme.replace("\\\n", " ").replace("  ", " "))
    marker = Path(tempfile.mkdtemp()) / f"tk-{uuid.uuid4().hex[:10]}"
    marker.symlink_to("/bin/true")
    name = f"tk-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [DOCKER, "run", "--rm", "--name", name, "--network", "none", "--pid=host", "--cap-add", "SYS_ADMIN",
         "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
         "-v", "/sys/kernel:/sys/kernel", IMAGE, "tracekit-execsnoop", "-d", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.split()[:3] == ["PCOMM", "PID", "PPID"], header + proc.stderr.read()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            subprocess.run([str(marker)], check=True)
            time.sleep(0.3)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _run(DOCKER, "kill", name, timeout=30)
            proc.wait()
        shutil.rmtree(marker.parent, ignore_errors=True)
    assert proc.returncode == 0, err
    rows = [r for r in out.splitlines() if str(marker) in r]
    assert rows, out[-2000:]
    assert rows[0].split()[0] == marker.name[:15] and int(rows[0].split()[2]) == os.getpid()
