"""Kernel-side CO-RE: let the verifier relocate, so a cold start never reads vmlinux BTF.

Since Linux 5.17 ``BPF_PROG_LOAD`` takes the object's CO-RE records (``core_relos``,
``core_relo_cnt``, ``core_relo_rec_size``) next to the program's BTF fd, and the kernel runs
the same relocation algorithm libbpf (and :mod:`tracekit.obj.core`) runs in user space,
against its own vmlinux and module BTF, in C, with a candidate cache shared by every
loader of the boot.  libbpf's light skeleton (``bpftool gen skeleton -L``) loads this way.
For a one-shot tool this removes the biggest part of a cold start: parsing ~127k types of
``/sys/kernel/btf/vmlinux`` in Python (~20-50 ms) to relocate a dozen instructions.

The user-space engine stays the reference and is used whenever this path cannot give the
same result or cannot explain a failure:

- the kernel is older than 5.17 (or refuses the records: ``E2BIG``/``EINVAL`` -> retried
  in user space);
- ``btf=`` targets (CO-RE against another kernel's BTF: only user space can);
- programs that need a kernel BTF id resolved before load (tp_btf, fentry, lsm, iter:
  the attach id) or kfunc/ksym externs, *unless* the kernel can look the ids up itself
  (:mod:`tracekit.kernel.btf_lookup`, Linux 5.14+) and the externs need no prototype
  choice (no ``___flavor`` kfuncs/ksyms: choosing a flavor by prototype needs the
  kernel's BTF in user space);
- the BTF had to be rewritten for the kernel (sanitized or ``__arg_ctx`` clones): the
  records' string offsets point into the object's own string table;
- a program the verifier rejects: it is loaded again with user-space CO-RE, whose
  relocation report explains poisoned instructions.

Both paths give identical instructions, so identical program tags (``bpf_prog_info.tag``;
tests/live/test_kcore.py compares them).

``TRACEKIT_CORE=user`` (or ``kernel``) forces a path; the default ``auto`` picks the kernel
where it can.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tracekit.btf.ext import CORE_RELO_SIZE, CoreRelo

#: first kernel whose BPF_PROG_LOAD applies ``core_relos`` (commit fbd94c7afcf9)
MIN_KERNEL = (5, 17)

#: errnos meaning "this kernel does not take core_relos" rather than "this program is wrong":
#: E2BIG (attr fields past the kernel's union bpf_attr), EINVAL (record size/layout)
_UNSUPPORTED_ERRNOS = frozenset({7, 22})

_ENV = "TRACEKIT_CORE"


def mode() -> str:
    """``auto`` (default), ``kernel`` or ``user``, from ``$TRACEKIT_CORE``."""
    m = os.environ.get(_ENV, "auto").strip().lower() or "auto"
    if m not in ("auto", "kernel", "user"):
        from tracekit.errors import TracekitError

        raise TracekitError(f"{_ENV}={m!r}: use 'auto', 'kernel' or 'user'")
    return m


def _release_version(release: str) -> tuple[int, int]:
    head = release.split("-", 1)[0].split(".")
    try:
        return int(head[0]), int(head[1]) if len(head) > 1 else 0
    except ValueError:
        return 0, 0


_kernel_ok: bool | None = None


def kernel_supported() -> bool:
    """Whether the running kernel applies CO-RE records at load (5.17+, and not refused
    earlier in this process: see :func:`mark_unsupported`)."""
    global _kernel_ok
    if _kernel_ok is None:
        _kernel_ok = _release_version(os.uname().release) >= MIN_KERNEL
    return _kernel_ok


def mark_unsupported() -> None:
    """The kernel refused ``core_relos`` (a backport without them, a restricted build):
    stop trying for the rest of the process."""
    global _kernel_ok
    _kernel_ok = False


def is_unsupported_error(err: int) -> bool:
    return err in _UNSUPPORTED_ERRNOS


def why_not(*, custom_btf: bool, attach_by_btf_id: bool, kernel_externs: bool, has_btf: bool,
            lookup: Callable[[], str | None] | None = None) -> str | None:
    """Why an object cannot use kernel-side CO-RE (None: it can).  The reasons are the
    facts only user space can handle (see the module docstring).

    Attach-by-BTF-id programs and kfunc/ksym externs need kernel BTF ids before the load:
    ``lookup`` says whether the kernel can find them itself (None: it can; see
    :mod:`tracekit.kernel.btf_lookup` and ``Object._kernel_lookup_blocker``); without it
    they keep the object in user space.
    """
    m = mode()
    if m == "user":
        return f"{_ENV}=user"
    if not has_btf:
        return "the object has no BTF"
    if custom_btf:
        return "btf= target (CO-RE against another kernel's BTF)"
    if not kernel_supported():
        return f"kernel {os.uname().release} is older than {MIN_KERNEL[0]}.{MIN_KERNEL[1]}"
    if attach_by_btf_id or kernel_externs:
        why = lookup() if lookup is not None else "no in-kernel BTF look-up"
        if why is not None:
            what = ("a program attaches by kernel BTF id (tp_btf/fentry/lsm/iter)" if attach_by_btf_id
                    else "kfunc/ksym externs")
            return f"{what}: {why}"
    return None


def records_match(btf: Any, relos: Iterable[CoreRelo]) -> bool:
    """Every record's ``access_off`` names its access string in ``btf`` (the BTF given to
    the kernel): false after a re-encoding moved the strings (linked objects)."""
    try:
        return all(btf.string(r.access_off) == r.access for r in relos)
    except Exception:  # noqa: BLE001 - any malformation: let the user-space engine report it
        return False


def encode(relos: Sequence[CoreRelo]) -> bytes:
    """The kernel's ``struct bpf_core_relo`` array: insn_off in *bytes*, type_id, access
    string offset, kind (``CORE_RELO_SIZE`` bytes each)."""
    return b"".join(struct.pack("<IIII", r.insn * 8, r.type_id, r.access_off, r.kind) for r in relos)


REC_SIZE = CORE_RELO_SIZE


class LazyTargets(Sequence[Any]):
    """The kernel's BTF targets (vmlinux, modules), read only if someone looks: kconfig
    externs usually do not, so a kernel-side load need not read vmlinux for them."""

    def __init__(self) -> None:
        self._t: list[Any] | None = None

    def _get(self) -> list[Any]:
        if self._t is None:
            from tracekit.kernel import btf as kernel

            self._t = [kernel.vmlinux(), *kernel.modules().values()]
        return self._t

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, i: Any) -> Any:
        return self._get()[i]

    @property
    def read(self) -> bool:
        return self._t is not None
