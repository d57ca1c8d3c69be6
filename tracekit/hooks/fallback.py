"""Does the running kernel support a hook?  The check behind fallback chains.

A tool that must run on many kernels lists alternatives for one hook (fentry -> kprobe,
tp_btf -> raw_tp -> tracepoint, a function renamed across versions) and loads the first
the kernel takes (:attr:`tracekit.Probe.fallbacks`).  libbpf-tools does the same by hand
(``fentry_can_attach``, ``tracepoint_exists``, ``kprobe_exists``); this module answers
for every kind with the cheapest test that is still the truth:

* tracepoint: its tracefs directory exists;
* raw_tp / tp_btf: the tracepoint's ``btf_trace_<name>`` typedef is in vmlinux BTF; for
  tp_btf a minimal program is also loaded against it (BPF_PROG_TYPE_TRACING);
* fentry / fexit / fmod_ret: the function is a BTF FUNC, and a minimal program loads *and
  attaches* to it (a kernel can refuse either: lockdown, no ftrace direct calls);
* kprobe / kretprobe / ksyscall: the kernel has kprobes (PMU or kprobe_events) and the
  symbol is a text symbol in /proc/kallsyms;
* uprobe / uretprobe: the kernel has uprobes.

Answers are memoized per process (bounded), since they do not change while it runs.
"""

from __future__ import annotations

import errno
import functools
import os

from tracekit import _log, uapi
from tracekit.errors import TracekitError

log = _log.getLogger(__name__)

_TRACING_ATTACH = {"fentry": uapi.AttachType.TRACE_FENTRY, "fexit": uapi.AttachType.TRACE_FEXIT,
                   "fmod_ret": uapi.AttachType.MODIFY_RETURN}


def why_unsupported(kind: str, target: str) -> str | None:
    """None when hook ``kind``/``target`` can be used on this kernel, else the reason."""
    return _why(kind, target)


@functools.lru_cache(maxsize=512)
def _why(kind: str, target: str) -> str | None:
    try:
        if kind == "tracepoint":
            from tracekit.kernel.syscalls import fs

            cat, _, name = target.partition("/")
            return None if fs.tracepoint_exists(cat, name) else f"no tracepoint {target} in tracefs"
        if kind in ("raw_tp", "raw_tracepoint", "tp_btf"):
            tid = _vmlinux_id(f"btf_trace_{target}", "TYPEDEF")
            if tid is None:
                return f"no tracepoint {target!r} in the kernel's BTF (no btf_trace_{target})"
            return _load_tracing(uapi.AttachType.TRACE_RAW_TP, tid, attach=False) if kind == "tp_btf" else None
        if kind in _TRACING_ATTACH:
            tid = _vmlinux_id(target, "FUNC")
            if tid is None:
                return f"no function {target!r} in the kernel's BTF"
            return _load_tracing(_TRACING_ATTACH[kind], tid, attach=True)
        if kind in ("kprobe", "kretprobe", "ksyscall", "kretsyscall"):
            from tracekit.hooks import kprobe

            if not (kprobe.kprobe_pmu_available() or kprobe._kprobe_events_available()):
                return "the kernel has no kprobes (no kprobe PMU, no kprobe_events: CONFIG_KPROBES off)"
            sym = target.split("+", 1)[0]
            if kind in ("ksyscall", "kretsyscall"):
                return None if _kallsyms_has(f"__x64_sys_{sym}") or _kallsyms_has(f"sys_{sym}") else \
                    f"no syscall {sym!r} in /proc/kallsyms"
            return None if _kallsyms_has(sym) else f"no function {sym!r} in /proc/kallsyms"
        if kind in ("uprobe", "uretprobe"):
            from tracekit.hooks import kprobe

            ok = kprobe.pmu_type("uprobe") is not None or os.path.exists("/sys/kernel/tracing/uprobe_events")
            return None if ok else "the kernel has no uprobes (CONFIG_UPROBES off)"
    except TracekitError as e:
        return str(e)
    except OSError as e:
        return f"cannot check: {e.strerror}"
    return None


def _vmlinux_id(name: str, kind: str) -> int | None:
    from tracekit.btf.types import Kind
    from tracekit.kernel import btf_lookup

    want = Kind[kind]
    # The kernel's own look-up where it has one (tracekit.kernel.btf_lookup): choosing
    # between tp_btf and raw_tp then reads no vmlinux BTF in this process, as the kernel
    # CO-RE load after it does not (a cold tracekit-runqlat would parse ~127k types here).
    try:
        found = btf_lookup.find_one(name, int(want))
    except TracekitError:
        pass  # read the BTF below
    else:
        if found is not None and not found.in_module:
            return found.btf_id
        btf_lookup.close_all([found])
        return None  # none, or a module's: the probe loads below take vmlinux ids only
    from tracekit.kernel import btf as kernel_btf

    vm = kernel_btf.vmlinux()
    return next((i for i in vm.find(name) if vm.kind_of(i) == want), None)


def _load_tracing(attach_type: int, btf_id: int, *, attach: bool) -> str | None:
    """Load ``r0 = 0; exit`` as a tracing program against ``btf_id`` (and attach it)."""
    from tracekit.hooks import links
    from tracekit.kernel.syscalls import bpf
    from tracekit.obj.insn import encode, exit_insn, mov64_imm

    insns = encode([mov64_imm(0, 0), exit_insn()])
    fd, err, _ = bpf.prog_load(uapi.ProgType.TRACING, insns, license="GPL", name="tk_hook_probe",
                               expected_attach_type=attach_type, attach_btf_id=btf_id)
    if fd < 0 or err:
        name = uapi.AttachType(attach_type).name.lower()
        return f"the kernel refuses {name} programs here ({errno.errorcode.get(err, err)}: {os.strerror(err)})"
    try:
        if attach:
            try:
                links.attach_tracing(fd, attach_type).close()
            except TracekitError as e:
                return f"loads but does not attach: {e}"
        return None
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=256)
def kallsyms_has(name: str) -> bool:
    """Whether ``name`` is a text symbol in /proc/kallsyms (memoized, bounded).

    One streaming pass that compares bytes, no index kept: a tool asks a handful of names
    once, and kallsyms is ~10 MB.  Lines are "addr type name[\tmodule]"."""
    needle = b" " + name.encode() + b"\n"
    needle_mod = b" " + name.encode() + b"\t"
    with open("/proc/kallsyms", "rb") as f:
        for line in f:
            if (line.endswith(needle) or needle_mod in line) and line[17:18] in b"tTwW" \
                    and line.split(None, 3)[2] == name.encode():
                return True
    return False


_kallsyms_has = kallsyms_has


def reset() -> None:
    """Forget memoized answers (after loading a module, in tests)."""
    _why.cache_clear()
    kallsyms_has.cache_clear()
