"""Does an attach target exist on the running kernel, and if not, what is close?

:meth:`tracekit.Program.set_attach_target` asks here so that a typo fails at once, with
the names the user probably meant, instead of at load or attach time with a bare ENOENT.
Only existence is checked (whether the kernel *allows* the hook is
:mod:`tracekit.hooks.fallback`'s question).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

_BTF_KINDS = {"tp_btf": ("btf_trace_", "TYPEDEF"), "fentry": ("", "FUNC"), "fexit": ("", "FUNC"),
              "fmod_ret": ("", "FUNC"), "lsm": ("bpf_lsm_", "FUNC"), "iter": ("bpf_iter_", "FUNC"),
              "raw_tp": ("btf_trace_", "TYPEDEF")}


def missing_target(kind: str, target: str) -> str | None:
    """None if ``target`` exists for hook ``kind``; else a message with close matches."""
    if kind in _BTF_KINDS:
        prefix, kind_name = _BTF_KINDS[kind]
        if _btf_has(prefix + target, kind_name):
            return None
        names = _btf_names(kind_name, prefix)  # a miss only: the full scan for close matches
        what = "tracepoint" if kind_name == "TYPEDEF" else ("LSM hook" if kind == "lsm" else "kernel function")
        return f"no {what} {target!r} in the kernel's BTF" + _close(target, names)
    if kind == "tracepoint":
        from tracekit.kernel.syscalls import fs

        cat, sep, name = target.partition("/")
        if sep and fs.tracepoint_exists(cat, name):
            return None
        root = os.path.join(fs.tracefs_path(), "events")
        try:
            cats = os.listdir(root)
            events = [f"{c}/{e}" for c in cats if c == cat or not sep for e in _listdir(os.path.join(root, c))]
        except OSError:
            events = []
        return f"no tracepoint {target!r} (form: category/name)" + _close(target, events)
    if kind in ("kprobe", "kretprobe"):
        from tracekit.hooks.fallback import kallsyms_has

        sym = target.split("+", 1)[0]
        if kallsyms_has(sym):  # the common case: one streaming pass, no set built
            return None
        return f"no kernel function {sym!r} in /proc/kallsyms" + _close(sym, _kallsyms_text())
    if kind in ("uprobe", "uretprobe"):
        path = target.rsplit(":", 1)[0]
        return None if os.path.exists(path) else f"no such file {path!r}"
    return None


def _listdir(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _btf_has(name: str, kind_name: str) -> bool:
    from tracekit.btf.types import Kind
    from tracekit.errors import TracekitError
    from tracekit.kernel import btf as kernel_btf
    from tracekit.kernel import btf_lookup

    want = Kind[kind_name]
    # the kernel's own look-up where it has one: a hit reads no vmlinux BTF in this process
    # (only a miss scans it, for the close matches of the message)
    try:
        found = btf_lookup.find_one(name, int(want))
    except TracekitError:
        found = None
    if found is not None:
        btf_lookup.close_all([found])
        return True
    return any(b.find(name, want) for b in (kernel_btf.vmlinux(), *kernel_btf.modules().values()))


def _btf_names(kind_name: str, prefix: str) -> set[str]:
    from tracekit.btf.types import Kind
    from tracekit.kernel import btf as kernel_btf

    want = Kind[kind_name]
    out: set[str] = set()
    for b in (kernel_btf.vmlinux(), *kernel_btf.modules().values()):
        for tid in range(1, len(b)):
            if b.kind_of(tid) == want:
                name = b.name_of(tid)
                if name.startswith(prefix):
                    out.add(name[len(prefix):])
    return out


def _kallsyms_text() -> set[str]:
    out: set[str] = set()
    with open("/proc/kallsyms", encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in "tTwW":
                out.add(parts[2])
    return out


def _close(word: str, names: Iterable[str]) -> str:
    # difflib over ~60k names is slow; names sharing a 3-character piece are the candidates.
    pool = [n for n in names if word[:3] in n or n[:3] in word] or list(names)
    close = difflib.get_close_matches(word, pool[:20000], n=5, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""
