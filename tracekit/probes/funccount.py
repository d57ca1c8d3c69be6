"""funccount: count calls of kernel functions, user functions and tracepoints (BCC's funccount).

The object is ``funccount.bpf.o`` (source ``funccount.bpf.c``).  One program per hook kind
is attached once per matched function, each attachment carrying its slot in the per-CPU
``counts`` array as the BPF cookie; kprobe.multi / uprobe.multi links (one link, one cookie
per function) are used where the kernel has them, single kprobes/uprobes elsewhere.

::

    targets = resolve("/usr/bin/python3:PyObject_Call*")      # or "t:syscalls:sys_enter_*", "vfs_*"
    async with FuncCount(targets) as fc:
        ...
        for target, n in fc.counts(reset=True).items(): print(target.name, n)

Pattern forms (BCC's): ``func`` / ``p::func`` (kernel), ``lib:func`` / ``p:lib:func`` /
``/path:func`` (user), ``t:category:event`` (tracepoint).  ``*`` is the wildcard and the
pattern is anchored; ``regexp=True`` makes it a full regular expression.  USDT (``u:``)
is not offered yet (:class:`FuncCountError` says so).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tracekit.errors import AttachError, NotSupportedError, TracekitError
from tracekit.object import Object
from tracekit.probe import Probe

#: FUNCCOUNT_MAX_PROBES of funccount.h (BCC's BCC_PROBE_LIMIT is 1000)
MAX_PROBES = 1024
#: BCC's default probe limit
PROBE_LIMIT = int(os.environ.get("BCC_PROBE_LIMIT", "1000"))

# kernel symbols BCC never probes: init code, the kprobe blacklist's helpers, perf itself,
# static-call trampolines and split-off cold parts
_KERNEL_SKIP = re.compile(r"^(_kbl_addr_.*|perf_.*|__perf.*|__SCT__.*|.*\.cold(\.\d+)?)$")


class FuncCountError(TracekitError):
    """A pattern that matches nothing, or too much."""


@dataclass(frozen=True, slots=True)
class Target:
    """One counted function or tracepoint."""

    kind: str          # "kprobe", "uprobe" or "tracepoint"
    name: str          # what the report prints: the function, or "category:event"
    path: str = ""     # uprobe: the ELF file
    offset: int = 0    # uprobe: the function's file offset

    @property
    def attach_target(self) -> str:
        if self.kind == "tracepoint":
            return self.name.replace(":", "/", 1)
        if self.kind == "uprobe":
            return f"{self.path}:{self.offset:#x}"
        return self.name


def _matcher(pattern: str, regexp: bool) -> Any:
    if regexp:
        rx = re.compile(pattern)
        return lambda s: rx.fullmatch(s) is not None
    return lambda s: fnmatch.fnmatchcase(s, pattern) if "*" in pattern else s == pattern


def _kernel_blacklist() -> set[str]:
    """Functions kprobes refuse (debugfs kprobes/blacklist: 'start-end name' lines)."""
    for path in ("/sys/kernel/debug/kprobes/blacklist", "/sys/kernel/tracing/../debug/kprobes/blacklist"):
        try:
            with open(path) as f:
                return {line.split()[-1] for line in f if line.strip()}
        except OSError:
            continue
    return set()


def kernel_functions(pattern: str, regexp: bool = False) -> list[str]:
    from tracekit.hooks import kprobe

    match = _matcher(pattern, regexp)
    glob = "*" if regexp else pattern
    skip = _kernel_blacklist()
    return [n for n in kprobe.match_functions(glob) if match(n) and n not in skip and not _KERNEL_SKIP.match(n)]


def user_functions(path: str, pattern: str, regexp: bool = False) -> list[Target]:
    from tracekit.hooks import uprobe

    real = uprobe.resolve_path(path)
    match = _matcher(pattern, regexp)
    glob = "*" if regexp else pattern
    # one probe per address (aliases share one), as BCC does
    return [Target("uprobe", name, real, off) for name, off in uprobe.match_symbols(real, glob) if match(name)]


def tracepoints(category: str, event: str, regexp: bool = False) -> list[Target]:
    from tracekit.kernel.syscalls import fs

    root = os.path.join(fs.tracefs_path(), "events")
    cat_ok, ev_ok = _matcher(category, regexp), _matcher(event, regexp)
    out = []
    for cat in sorted(os.listdir(root)):
        d = os.path.join(root, cat)
        if not os.path.isdir(d) or not cat_ok(cat):
            continue
        for ev in sorted(os.listdir(d)):
            if os.path.isdir(os.path.join(d, ev)) and ev_ok(ev):
                out.append(Target("tracepoint", f"{cat}:{ev}"))
    return out


def resolve(pattern: str, *, regexp: bool = False, limit: int = PROBE_LIMIT) -> list[Target]:
    """The targets of a BCC funccount pattern; :class:`FuncCountError` if none or too many."""
    parts = pattern.split(":")
    if len(parts) == 1:
        kind, lib, name = "p", "", parts[0]
    elif len(parts) == 2:
        kind, lib, name = "p", parts[0], parts[1]
    elif len(parts) == 3:
        kind, lib, name = parts
    else:
        raise FuncCountError(f"invalid pattern {pattern!r}: use func, lib:func, p:lib:func, t:cat:event")
    if kind == "t":
        if not lib or not name:
            raise FuncCountError(f"invalid tracepoint pattern {pattern!r}: use t:category:event")
        found = tracepoints(lib, name, regexp)
    elif kind == "u":
        raise FuncCountError(f"USDT probes ({pattern}) are not supported by funccount yet: count them with a "
                             "SEC(\"usdt\") program of your own (tracekit.Program.attach_usdt)")
    elif kind == "p" and not lib:
        found = [Target("kprobe", n) for n in kernel_functions(name, regexp)]
    elif kind == "p":
        try:
            found = user_functions(lib, name, regexp)
        except AttachError as e:
            raise FuncCountError(str(e)) from None
    else:
        raise FuncCountError(f"invalid probe type {kind!r} in {pattern!r}: p (function), t (tracepoint)")
    if not found:
        raise FuncCountError(f"No functions matched by pattern {pattern}")
    if len(found) > min(limit, MAX_PROBES):
        raise FuncCountError(f"{len(found)} functions matched by pattern {pattern}, more than the limit of "
                             f"{min(limit, MAX_PROBES)}: narrow the pattern (BCC_PROBE_LIMIT raises it up to "
                             f"{MAX_PROBES})")
    return found


class FuncCount(Probe[None]):
    """Counts calls of ``targets`` (from :func:`resolve`); read them with :meth:`counts`."""

    object = "funccount"
    event = None

    targ_tgid: int = 0   # process id to count (0: all)
    targ_cpu: int = -1   # CPU to count on (-1: all)

    def __init__(self, targets: Sequence[Target], **knobs: Any) -> None:
        if not targets:
            raise FuncCountError("nothing to count: give at least one target")
        if len(targets) > MAX_PROBES:
            raise FuncCountError(f"at most {MAX_PROBES} targets, not {len(targets)}")
        super().__init__(map_entries={"counts": len(targets)}, **knobs)
        self.targets = list(targets)
        #: how each kind was attached ("kprobe.multi", "kprobe", ...), for the curious
        self.attached: dict[str, str] = {}

    def configure(self, obj: Object) -> None:
        from tracekit.hooks import fallback, uprobe
        from tracekit.kernel import features

        kinds = {t.kind for t in self.targets}
        want = set()
        if "tracepoint" in kinds:
            want.add("tracepoint_count")
        if "kprobe" in kinds:
            why = fallback.why_unsupported("kprobe", self.targets[0].name)
            if why is not None:
                raise NotSupportedError("counting kernel functions", None,
                                        f"{why}; tracepoints (t:category:event) and user functions still work")
            want.add("kprobe_count")
            if features.attach_type("trace_kprobe_multi"):
                want.add("kprobe_multi_count")
        if "uprobe" in kinds:
            want.add("uprobe_multi_count" if uprobe.uprobe_multi_supported() else "uprobe_count")
        for p in obj.programs.values():
            p.autoload = p.name in want

    def start(self) -> FuncCount:
        obj = self.obj or self.open()
        try:
            obj.load()
            self._attach(obj)
        except BaseException:
            self.close()
            raise
        return self

    def _attach(self, obj: Object) -> None:
        pid = self.values["targ_tgid"] or -1
        progs = obj.programs
        kprobes = [(i, t) for i, t in enumerate(self.targets) if t.kind == "kprobe"]
        if kprobes and progs["kprobe_multi_count"].loaded:
            try:
                from tracekit.hooks import kprobe

                link = kprobe.attach_kprobe_multi(progs["kprobe_multi_count"].fd, [t.name for _, t in kprobes],
                                                  cookies=[i for i, _ in kprobes])
                obj._links.append(link)
                self.attached["kprobe"] = "kprobe.multi"
                kprobes = []
            except NotSupportedError:
                pass
        for i, t in kprobes:
            progs["kprobe_count"].attach(t.name, cookie=i)
            self.attached["kprobe"] = "kprobe"
        uprobes = [(i, t) for i, t in enumerate(self.targets) if t.kind == "uprobe"]
        if uprobes and progs["uprobe_multi_count"].loaded:
            by_path: dict[str, list[tuple[int, Target]]] = {}
            for i, t in uprobes:
                by_path.setdefault(t.path, []).append((i, t))
            for path, items in by_path.items():
                progs["uprobe_multi_count"].attach_uprobe_multi(path, offsets=[t.offset for _, t in items],
                                                                cookies=[i for i, _ in items], pid=pid)
            self.attached["uprobe"] = "uprobe.multi"
        elif uprobes:
            for i, t in uprobes:
                progs["uprobe_count"].attach(t.attach_target, cookie=i, pid=pid)
            self.attached["uprobe"] = "uprobe"
        for i, t in enumerate(self.targets):
            if t.kind == "tracepoint":
                progs["tracepoint_count"].attach(t.attach_target, cookie=i)
                self.attached["tracepoint"] = "tracepoint"

    def counts(self, *, reset: bool = False) -> dict[Target, int]:
        """Calls per target since the start (or the last reset), zero counts included."""
        if self.obj is None or not self.obj.loaded:
            raise TracekitError("FuncCount is not started: use 'async with' or start()")
        m = self.obj.maps["counts"].typed
        out = {}
        for i, t in enumerate(self.targets):
            out[t] = int(m[i].sum())
            if reset and out[t]:
                m.zero(i)
        return out
