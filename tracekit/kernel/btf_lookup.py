"""In-kernel BTF name look-ups: ids of attach targets, kfuncs and ksyms without reading
vmlinux BTF in this process.

libbpf's light skeleton (``bpftool gen skeleton -L``, gen_loader) resolves the kernel BTF
ids a load needs inside the kernel: a ``SEC("syscall")`` loader program calls the helper
``bpf_btf_find_by_name_kind(name, name_sz, kind, flags)`` (Linux 5.14+).  This module
does the same with a tiny program emitted here (no .bpf.o), loaded once per process on
first use and run with ``BPF_PROG_TEST_RUN``, whose context is a plain user buffer the
kernel copies in and, after the run, back out (``bpf_prog_test_run_syscall``).

The helper (kernel/bpf/btf.c) searches vmlinux BTF first, then each module BTF in the
kernel's BTF id order, and returns the first type of that name and kind:

* ``btf_id`` (vmlinux), or ``(btf_obj_fd << 32) | btf_id`` for a module type: then the
  kernel has installed a *new* fd of that module's BTF object in this process, which the
  caller now owns (:class:`Found` holds it as an :class:`~tracekit.kernel.fd.FD`);
* a negative errno: ``-ENOENT`` when no BTF has it, ``-EINVAL`` for a bad name.

The name must be NUL-terminated with ``name_sz`` counting the NUL (``name_sz <= 1`` or a
non-NUL last byte is ``-EINVAL``); flags must be 0.  Context layout of the program, one
slot of :data:`SLOT_SIZE` bytes per name, :data:`SLOTS` slots per run::

    +0  s64  result      (written by the program)
    +8  u32  kind        (BTF_KIND_*)
    +12 u32  name_sz     (with the NUL; < 2: empty slot, skipped)
    +16 char name[NAME_MAX]

The verifier lets a syscall program read and write its context at constant offsets (up
to 64 KiB; ``BPF_PROG_TEST_RUN`` refuses a context shorter than the furthest offset the
program touches, so every run passes all slots).  Helpers get no pointer into the context
on older kernels ("modified ctx ptr"), so each name is copied to the stack first with
fixed-offset loads and stores (NAME_MAX / 8 of each: a few dozen instructions, free once
JIT-compiled) and the stack copy is what the helper reads.

Names longer than ``NAME_MAX - 1`` bytes are not looked up here (:func:`find` raises
:class:`TooLong`; callers use the user-space engine for them): tracepoint, kfunc and LSM
hook names are far shorter.
"""

from __future__ import annotations

# Light imports only (no logging, no dataclasses): this module is on a one-shot tool's
# first load, where every millisecond of import counts (issue 13).
import atexit
import errno
import struct
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tracekit.obj import insn as I
from tracekit.obj.insn import Insn

if TYPE_CHECKING:  # pragma: no cover
    from tracekit.kernel.fd import FD

#: BPF_FUNC_btf_find_by_name_kind (include/uapi/linux/bpf.h; Linux 5.14).  A constant
#: here: tracekit.uapi.Helper is built on first use, which costs more than this look-up.
HELPER_ID = 167
#: BPF_PROG_TYPE_SYSCALL
PROG_TYPE_SYSCALL = 31
#: BPF_F_SLEEPABLE: the verifier refuses a syscall program that is not sleepable
F_SLEEPABLE = 1 << 4

#: bytes for a name and its NUL (a multiple of 8: the stack copy moves u64 words)
NAME_MAX = 128
_HDR = struct.Struct("<qII")  # result, kind, name_sz
SLOT_SIZE = _HDR.size + NAME_MAX
#: names per BPF_PROG_TEST_RUN.  Measured on this VM (6.18, 2 cores): loading the program
#: costs ~0.13 ms with 1 slot, 0.46 ms with 4, 2.6 ms with 16 (the verifier walks every
#: unrolled slot), while one more run costs ~4 us; the helper's own search (a linear scan
#: of vmlinux BTF in the kernel: 10 us to 0.8 ms a name) is the same either way.  So one
#: name per run is cheaper for any object (batches pay off only past ~500 names).
SLOTS = 1

_MOV64_X = I.BPF_ALU64 | I.BPF_MOV | I.BPF_X
_MOV64_K = I.BPF_ALU64 | I.BPF_MOV | I.BPF_K
_ADD64_K = I.BPF_ALU64 | I.BPF_ADD | I.BPF_K
_JLT_K = I.BPF_JMP | 0xA0 | I.BPF_K
_JGT_K = I.BPF_JMP | 0x20 | I.BPF_K
_LDX_W = I.BPF_LDX | I.BPF_MEM | I.BPF_W
_LDX_DW = I.BPF_LDX | I.BPF_MEM | I.BPF_DW
_STX_DW = I.BPF_STX | I.BPF_MEM | I.BPF_DW


class TooLong(ValueError):
    """A name does not fit the program's name buffer (:data:`NAME_MAX` with its NUL)."""


def program(slots: int | None = None) -> list[Insn]:
    """The look-up program for ``slots`` names per run (unrolled: no loop for the
    verifier to bound, every context offset a constant)."""
    if slots is None:
        slots = SLOTS
    out: list[Insn] = [Insn(_MOV64_X, 6, 1)]  # r6 = ctx (r1 is clobbered by each call)
    words = NAME_MAX // 8
    for s in range(slots):
        base = s * SLOT_SIZE
        body: list[Insn] = []
        for w in range(words):  # name -> stack (fp - NAME_MAX ...)
            body.append(Insn(_LDX_DW, 0, 6, base + 16 + 8 * w))
            body.append(Insn(_STX_DW, 10, 0, -NAME_MAX + 8 * w))
        body += [
            Insn(_MOV64_X, 1, 10),
            Insn(_ADD64_K, 1, 0, 0, -NAME_MAX),   # r1 = name (stack copy)
            # r2 = name_sz, loaded and bounded above: umin 2, umax NAME_MAX
            Insn(_LDX_W, 3, 6, base + 8),          # r3 = kind
            Insn(_MOV64_K, 4, 0, 0, 0),            # r4 = flags = 0
            Insn(I.CALL, 0, 0, 0, HELPER_ID),
            Insn(_STX_DW, 6, 0, base),             # slot.result = r0
        ]
        out += [
            Insn(_LDX_W, 2, 6, base + 12),          # r2 = name_sz
            # an empty (or malformed) slot is skipped; the bounds also prove to the
            # verifier that the helper reads at most the NAME_MAX bytes copied to the stack
            Insn(_JLT_K, 2, 0, len(body) + 1, 2),
            Insn(_JGT_K, 2, 0, len(body), NAME_MAX),
            *body,
        ]
    out += [Insn(_MOV64_K, 0, 0, 0, 0), Insn(I.EXIT)]
    return out


class Found:
    """Where a name lives: ``btf_id`` in vmlinux (``module_fd`` None) or in the module
    BTF object ``module_fd`` refers to (an fd the caller owns: close it when done)."""

    __slots__ = ("btf_id", "module_fd")

    def __init__(self, btf_id: int, module_fd: FD | None = None) -> None:
        self.btf_id = btf_id
        self.module_fd = module_fd

    def __repr__(self) -> str:
        return f"Found(btf_id={self.btf_id}, module_fd={self.module_fd!r})"

    @property
    def in_module(self) -> bool:
        return self.module_fd is not None


class _Loader:
    """The look-up program of this process: loaded on first use, kept, closed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: FD | None = None
        self._why: str | None = None  # why the program cannot be loaded here (sticky)
        self._pid = 0
        self.runs = 0  # BPF_PROG_TEST_RUN calls made (tests, bench)
        self.loads = 0  # program loads made

    def fd(self) -> FD | None:
        import os

        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                return self._fd
            if self._why is not None:
                return None
            from tracekit.errors import TracekitError
            from tracekit.kernel.syscalls import bpf

            try:
                fd = bpf.load_program(PROG_TYPE_SYSCALL, I.encode(program()), name="tk_btf_lookup",
                                      license="GPL", prog_flags=F_SLEEPABLE)
            except TracekitError as e:
                # EINVAL: no syscall program type or no helper 167 (before 5.14), EPERM:
                # no CAP_BPF; either way the user-space engine does the look-ups
                self._why = f"the in-kernel BTF look-up program does not load here: {e}"
                import logging

                logging.getLogger("tracekit.kernel.btf_lookup").debug("%s", self._why)
                return None
            self._fd, self._pid = fd, os.getpid()
            self.loads += 1
            return fd

    def why_not(self) -> str | None:
        self.fd()
        return self._why

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                self._fd.close()
                self._fd = None

    def reset(self) -> None:
        """Forget a refusal too (tests)."""
        self.close()
        with self._lock:
            self._why = None


_loader = _Loader()
atexit.register(_loader.close)


def why_not() -> str | None:
    """None if in-kernel look-ups work on this kernel (the program is then loaded and
    kept); else why not, for :attr:`tracekit.Object.core_path_reason`."""
    return _loader.why_not()


def available() -> bool:
    return why_not() is None


def close() -> None:
    """Close the look-up program (it is loaded again on the next :func:`find`)."""
    _loader.close()


def reset() -> None:
    _loader.reset()


def stats() -> tuple[int, int]:
    """(program loads, test runs) made by this process."""
    return _loader.loads, _loader.runs


def find(names_kinds: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Found | None]:
    """Look up each ``(name, BTF kind)`` in the running kernel's BTF (vmlinux first, then
    modules, as the kernel orders them); None where no BTF has it.

    Module hits carry a new fd of the module's BTF object the caller owns (see
    :class:`Found`); on any error every fd obtained so far is closed.  Raises
    :class:`TooLong` for a name of :data:`NAME_MAX` bytes or more, NotSupportedError when
    the look-up program does not load here (check :func:`why_not` first), SyscallError
    when a run fails.
    """
    from tracekit.errors import NotSupportedError, SyscallError
    from tracekit.kernel.fd import FD
    from tracekit.kernel.syscalls import bpf

    todo: list[tuple[str, int]] = []
    encoded: list[bytes] = []
    for key in dict.fromkeys(names_kinds):  # unique, in order
        raw = key[0].encode() + b"\0"
        if len(raw) > NAME_MAX or len(raw) < 2 or b"\0" in raw[:-1]:
            raise TooLong(f"BTF name {key[0]!r}: the in-kernel look-up takes 1 to {NAME_MAX - 1} bytes")
        todo.append(key)
        encoded.append(raw)
    out: dict[tuple[str, int], Found | None] = {}
    if not todo:
        return out
    prog = _loader.fd()
    if prog is None:
        raise NotSupportedError("in-kernel BTF look-ups", "5.14", _loader._why or "")
    try:
        for start in range(0, len(todo), SLOTS):
            chunk = range(start, min(start + SLOTS, len(todo)))
            ctx = bytearray(SLOTS * SLOT_SIZE)
            for s, i in enumerate(chunk):
                _HDR.pack_into(ctx, s * SLOT_SIZE, 0, todo[i][1], len(encoded[i]))
                ctx[s * SLOT_SIZE + _HDR.size : s * SLOT_SIZE + _HDR.size + len(encoded[i])] = encoded[i]
            res = bpf.prog_test_run(prog.fd, ctx_in=bytes(ctx))
            _loader.runs += 1
            back = res.ctx_in_after
            # every module hit installed an fd: take ownership of all of them before
            # looking at any result, so none leaks if a later slot is an error
            rets = [_HDR.unpack_from(back, s * SLOT_SIZE)[0] for s in range(len(chunk))]
            bad: tuple[str, int] | None = None
            for s, i in enumerate(chunk):
                r = rets[s]
                if r > 0 and r >> 32:
                    out[todo[i]] = Found(r & 0xFFFFFFFF, FD(r >> 32, f"module BTF of {todo[i][0]!r}"))
                elif r > 0:
                    out[todo[i]] = Found(r)
                else:
                    out[todo[i]] = None
                    if r != -errno.ENOENT and bad is None:
                        bad = (todo[i][0], -r if r < 0 else errno.EINVAL)
            if bad is not None:
                raise SyscallError(f"in-kernel BTF look-up of {bad[0]!r}", bad[1],
                                   "bpf_btf_find_by_name_kind refused the name")
    except BaseException:
        for f in out.values():
            if f is not None and f.module_fd is not None:
                f.module_fd.close()
        raise
    return out


def find_one(name: str, kind: int) -> Found | None:
    """:func:`find` for one name, for callers that can read the BTF themselves otherwise:
    NotSupportedError when the kernel's look-up cannot answer here (``TRACEKIT_CORE=user``,
    no look-up program on this kernel, a name it cannot take, a failed run)."""
    from tracekit.errors import NotSupportedError, TracekitError
    from tracekit.kernel import kcore

    if kcore.mode() == "user" or not available():
        raise NotSupportedError("in-kernel BTF look-ups", "5.14", _loader._why or "TRACEKIT_CORE=user")
    try:
        return find([(name, kind)])[(name, kind)]
    except TooLong as e:
        raise NotSupportedError("in-kernel BTF look-ups", "5.14", str(e)) from None
    except NotSupportedError:
        raise
    except TracekitError as e:
        raise NotSupportedError("in-kernel BTF look-ups", "5.14", str(e)) from None


def close_all(found: Iterable[Found | None]) -> None:
    """Close the module fds of look-up results (idempotent)."""
    for f in found:
        if f is not None and f.module_fd is not None:
            f.module_fd.close()
