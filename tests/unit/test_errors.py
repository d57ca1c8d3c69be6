"""The exception hierarchy's errno routing (pure: no kernel needed)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tracekit import errors
from tracekit.errors import (
    FileDescriptorLimitError,
    MemoryLimitError,
    PermissionDeniedError,
    ResourceBusyError,
    ResourceLimitError,
    SizeLimitError,
    SyscallError,
    TracekitError,
    error_for_errno,
)


@pytest.mark.parametrize(("err", "cls", "limit"), [
    (errno.EMFILE, FileDescriptorLimitError, "RLIMIT_NOFILE"),
    (errno.ENFILE, FileDescriptorLimitError, "fs.file-max"),
    (errno.ENOMEM, MemoryLimitError, "memory cgroup"),
    (errno.E2BIG, SizeLimitError, ""),
    (errno.EAGAIN, ResourceBusyError, ""),
])
def test_resource_errnos_are_resource_errors_not_load_errors(err: int, cls: type, limit: str) -> None:
    e = error_for_errno("load program 'x'", err)
    assert type(e) is cls
    assert isinstance(e, ResourceLimitError) and isinstance(e, SyscallError) and isinstance(e, OSError)
    assert isinstance(e, TracekitError) and not isinstance(e, errors.LoadError)
    assert e.errno == err and e.op == "load program 'x'"
    assert str(e).startswith(f"load program 'x': {__import__('os').strerror(err)} ({errno.errorcode[err]}): out of ")
    assert limit in e.limit


def test_detail_given_by_the_kernel_layer_replaces_the_generic_text() -> None:
    e = FileDescriptorLimitError("create map 'm'", errno.EMFILE, "out of file descriptors: 9 open, "
                                 "RLIMIT_NOFILE soft limit 9", resource="file descriptors",
                                 limit="RLIMIT_NOFILE soft limit 9")
    assert str(e) == ("create map 'm': Too many open files (EMFILE): out of file descriptors: 9 open, "
                      "RLIMIT_NOFILE soft limit 9")
    assert e.limit == "RLIMIT_NOFILE soft limit 9" and e.log == ""


def test_permission_errnos_stay_permission_errors() -> None:
    for err in (errno.EPERM, errno.EACCES):
        e = error_for_errno("op", err)
        assert type(e) is PermissionDeniedError and isinstance(e, PermissionError)
    assert type(error_for_errno("op", errno.EINVAL)) is SyscallError


def test_kallsyms_with_hidden_addresses_is_a_permission_error_not_zeros(tmp_path: Path) -> None:
    """kptr_restrict shows every address as 0 to unprivileged readers: never hand those out."""
    from tracekit.kernel.kconfig import read_kallsyms

    ks = tmp_path / "kallsyms"
    ks.write_text("0000000000000000 T _stext\n0000000000000000 t foo\t[mod]\n")
    with pytest.raises(PermissionDeniedError, match="CAP_SYSLOG"):
        read_kallsyms(["_stext", "foo"], str(ks))
    # asking only which names exist is fine
    assert set(read_kallsyms(["_stext", "foo"], str(ks), addresses=False) or {}) == {"_stext", "foo"}
