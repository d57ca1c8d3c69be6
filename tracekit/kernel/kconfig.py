"""Facts about the running kernel that live in files: its config, kallsyms, its version.

These feed :mod:`tracekit.obj.externs` (which is pure and takes them as plain data).  Each
reader is cheap to skip: the loader calls it only when an object has an extern that needs
it (a ``__kconfig`` ``CONFIG_*``, an untyped ``__ksym``).
"""

from __future__ import annotations

import errno as _errno
import gzip
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tracekit.errors import TracekitError

#: where libbpf looks for the running kernel's config, in order
CONFIG_PATHS = ("/boot/config-{release}", "/proc/config.gz")


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_X=value`` lines -> ``{"CONFIG_X": "value"}`` (values as written: y, m, 250,
    "quoted").  ``# CONFIG_X is not set`` and other comments are skipped, so unset options
    are absent, as libbpf treats them."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("CONFIG_"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name or not value:
            continue
        out[name.strip()] = value.strip()
    return out


def find_config(release: str | None = None) -> str | None:
    """Path of the running kernel's config file, or None."""
    release = release or os.uname().release
    for pattern in CONFIG_PATHS:
        path = pattern.format(release=release)
        if os.path.exists(path):
            return path
    return None


def read_config(path: str | None = None) -> tuple[dict[str, str], str] | None:
    """The kernel config as a dict and the path it came from, or None if there is none.

    ``path`` may be a plain or gzip-compressed (``.gz``) config file.
    """
    path = path or find_config()
    if path is None:
        return None
    from tracekit.kernel.syscalls import diagnose

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:  # a specific TracekitError: EMFILE, EACCES and the rest say what they are
        raise diagnose.file_error("read kernel config", path, e) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise TracekitError(f"kernel config {path!r} is not valid gzip: {e}") from e
    return parse_config(raw.decode("utf-8", "replace")), path


def read_kallsyms(names: Iterable[str], path: str = "/proc/kallsyms", *,
                  addresses: bool = True) -> dict[str, int] | None:
    """Addresses of ``names`` in kallsyms (others skipped); None if there is no such file.

    A name listed with several addresses (static functions in different files) is
    ambiguous; it maps to -1 so the resolver can say so.  Module symbols (``[mod]``
    suffix) count like any other, as in libbpf.  Any other read failure raises a
    TracekitError.  With ``addresses`` (the default), kallsyms showing every address as
    0 (kernel.kptr_restrict hides them from this process) raises PermissionDeniedError
    instead of handing out zeros; ``addresses=False`` only asks which names exist.
    """
    from tracekit.kernel.syscalls import diagnose

    wanted = set(names)
    out: dict[str, int] = {}
    if not wanted:
        return out
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise diagnose.file_error("read", path, e) from None
    for name in wanted:
        needle = b" " + name.encode()
        pos = 0
        while True:
            # C-speed scan of the whole file for " T name" followed by end of line or a tab
            i = data.find(needle, pos)
            if i < 0:
                break
            pos = i + 1
            end = i + len(needle)
            if end < len(data) and data[end : end + 1] not in (b"\n", b"\t"):
                continue
            line_start = data.rfind(b"\n", 0, i) + 1
            parts = data[line_start:i].split()
            if len(parts) != 2:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            prev = out.get(name)
            out[name] = addr if prev is None or prev == addr else -1
    if addresses and out and all(a == 0 for a in out.values()):
        from tracekit.errors import PermissionDeniedError

        restrict = diagnose._read_small("/proc/sys/kernel/kptr_restrict")
        raise PermissionDeniedError(
            f"read {path}", _errno.EACCES,
            f"kallsyms shows every address as 0 to uid {os.geteuid()} (kernel.kptr_restrict = {restrict}); "
            "resolving __ksym externs needs CAP_SYSLOG (run as root)")
    return out


def kernel_version() -> int:
    """LINUX_VERSION_CODE-style version of the running kernel (patch level capped at 255)."""
    from tracekit.obj.externs import kernel_version_code

    # Ubuntu kernels carry the upstream version here; libbpf reads it likewise.
    try:
        with open("/proc/version_signature") as fh:
            sig = fh.read().split()
        if len(sig) >= 3:
            return kernel_version_code(sig[2])
    except FileNotFoundError:
        pass
    except OSError as e:
        from tracekit.kernel.syscalls import diagnose

        raise diagnose.file_error("read", "/proc/version_signature", e) from None
    return kernel_version_code(os.uname().release)


def gather_facts(spec: Any, targets: Sequence[Any], user_kconfig: Mapping[str, Any] | None = None) -> Any:
    """The :class:`tracekit.obj.externs.KernelFacts` that ``spec``'s externs need, read from this
    machine: kallsyms only for untyped ksyms, the config only for ``CONFIG_*`` externs not
    given in ``user_kconfig``, feature probes only for the ``LINUX_HAS_*`` ones used."""
    from tracekit.obj.externs import KernelFacts

    user = dict(user_kconfig or {})
    externs = list(spec.externs.values())
    facts = KernelFacts(targets=targets, user_kconfig=user)
    untyped = [e.name for e in externs if e.kind == "ksym" and not _typed(spec, e)]
    if untyped:
        facts.kallsyms = read_kallsyms(untyped)
    names = {e.name for e in externs if e.kind == "kconfig"}
    if any(n.startswith("CONFIG_") and n not in user for n in names):
        got = read_config()
        if got is not None:
            facts.kconfig, facts.kconfig_source = got
    if "LINUX_KERNEL_VERSION" in names:
        facts.kernel_version = kernel_version()
    if "LINUX_HAS_BPF_COOKIE" in names or "LINUX_HAS_SYSCALL_WRAPPER" in names:
        from tracekit.kernel import features

        if "LINUX_HAS_BPF_COOKIE" in names:
            facts.has_bpf_cookie = features.bpf_cookie()
        if "LINUX_HAS_SYSCALL_WRAPPER" in names:
            facts.has_syscall_wrapper = features.syscall_wrapper()
    return facts


def _typed(spec: Any, ext: Any) -> bool:
    return bool(ext.type_id) and spec.btf is not None and spec.btf.skip_mods(ext.type_id) != 0
