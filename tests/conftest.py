"""Shared test conventions.

* ``anyio_backend`` is parametrized so every ``@pytest.mark.anyio`` test runs on both
  asyncio and trio.
* Live tests call :func:`tests.support.require_live` (or use the ``live`` fixture): it
  skips when the kernel or privileges are missing, and with ``TRACEKIT_REQUIRE_LIVE=1``
  (set by ``.ci/run``) a skip becomes a failure, so a green CI means the kernel ran us.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of modules marked ``GUEST_ONLY`` check the qemu guests themselves: on the host
    they are deselected (not skipped); tests/vm/test_in_guest_attach.py runs them inside."""
    if os.environ.get("TRACEKIT_IN_VM") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if getattr(item.module, "GUEST_ONLY", False) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves a file descriptor open."""
    from tests.support import open_fds

    before = open_fds()
    yield
    assert open_fds() == before, "a test leaked file descriptors"


@pytest.fixture
def bpffs():
    """A private bpffs mounted for this test (unmounted afterwards)."""
    import tempfile

    from tracekit.kernel.syscalls import fs

    d = tempfile.mkdtemp(prefix="tk-bpffs-")
    fs.mount("bpf", d)
    try:
        yield d
    finally:
        fs.umount(d)
        os.rmdir(d)


@pytest.fixture
def live() -> None:
    from tests.support import require_live

    require_live()


@pytest.fixture(scope="session")
def bpf_objects():
    """Builder for test BPF objects: ``bpf_objects("name.bpf.c", defines=[...]) -> Path``."""
    from tests.support import build_bpf_object

    return build_bpf_object
