"""The README's "Write your own probe" section, followed literally.

The section's code blocks are taken from README.md as they are: each block whose first
line names a file (``// hello.bpf.c``, ``# hello.py``) is written to a scratch directory,
and each ``sh`` block is run there (the interpreter's own bin directory first on PATH, so
``tracekit`` and ``python3`` are the ones this test suite runs with).  Then the test makes
a workload the probe must report: exec()s of a program whose path carries a marker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, require_live

pytestmark = pytest.mark.live

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
NAMED = re.compile(r"^(?://|#)\s*([\w.-]+\.(?:c|py))\s*$")


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_write_your_own_probe_section_literally(tmp_path: Path) -> None:
    require_live()
    if shutil.which("clang") is None and shutil.which("clang-19") is None:
        pytest.fail("clang not found: run the README's test command, which installs it")
    blocks = FENCE.findall(_section("Write your own probe"))
    files = {m.group(1): body for lang, body in blocks if (m := NAMED.match(body.split("\n", 1)[0]))}
    assert set(files) == {"hello.bpf.c", "hello.py"}
    commands = [line.split("#", 1)[0].strip() for lang, body in blocks if lang == "sh"
                for line in body.splitlines() if line.strip()]
    assert commands == ["tracekit build hello.bpf.c", "python3 hello.py"]
    for name, body in files.items():
        (tmp_path / name).write_text(body)

    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), PYTHONUNBUFFERED="1")
    if shutil.which("tracekit", path=env["PATH"]) is None:  # pragma: no cover - not pip-installed
        pytest.fail(f"no 'tracekit' command next to {sys.executable}: the test command pip-installs tracekit")
    build = subprocess.run(commands[0], shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr
    assert (tmp_path / "hello.bpf.o").is_file()

    marker = tmp_path / f"tk-{uuid.uuid4().hex[:10]}"
    marker.symlink_to("/bin/true")
    run = subprocess.Popen(commands[1], shell=True, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        os.set_blocking(run.stdout.fileno(), False)
        seen = ""
        while time.monotonic() < deadline and str(marker) not in seen:
            subprocess.run([str(marker)], check=True)
            time.sleep(0.2)
            try:
                seen += os.read(run.stdout.fileno(), 1 << 16).decode()
            except BlockingIOError:
                pass
            assert run.poll() is None, run.stderr.read().decode()
        line = next((ln for ln in seen.splitlines() if str(marker) in ln), None)
        assert line is not None, f"no event for {marker} in {seen!r}"
        pid, uid, comm, filename = line.split(" ", 3)
        assert int(pid) > 0 and int(uid) == os.getuid() and filename == str(marker)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
