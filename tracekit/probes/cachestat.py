"""cachestat: page cache hit/miss counters, from kernel functions or, where they cannot be
traced, from filemap tracepoints.

The object is ``cachestat.bpf.o`` (source ``cachestat.bpf.c``).  Its four counters are
.bss globals (``apcl`` insertions, ``mpa`` accesses, ``mbd`` buffers dirtied, ``apd``
pages dirtied); :meth:`CacheStat.read` returns the increments since the last call.
:attr:`CacheStat.mode` says which way they are counted (see the C source).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tracekit.errors import NotSupportedError
from tracekit.object import Object
from tracekit.probe import Probe

#: function mode: hook -> alternatives (program, target), in order of preference
FUNCTION_CHAINS: dict[str, list[tuple[str, str]]] = {
    "apcl": [("fentry_apcl", "filemap_add_folio"), ("fentry_apcl", "add_to_page_cache_lru"),
             ("kprobe_apcl", "filemap_add_folio"), ("kprobe_apcl", "add_to_page_cache_lru")],
    "mpa": [("fentry_mpa", "folio_mark_accessed"), ("fentry_mpa", "mark_page_accessed"),
            ("kprobe_mpa", "folio_mark_accessed"), ("kprobe_mpa", "mark_page_accessed")],
    "mbd": [("fentry_mbd", "mark_buffer_dirty"), ("kprobe_mbd", "mark_buffer_dirty")],
    "apd": [("fentry_apd", "folio_account_dirtied"), ("fentry_apd", "account_page_dirtied"),
            ("kprobe_apd", "folio_account_dirtied"), ("kprobe_apd", "account_page_dirtied"),
            ("tp_apd", "writeback/writeback_dirty_folio"), ("tp_apd_page", "writeback/writeback_dirty_page")],
}
#: tracepoint mode: the programs (the dirty count is optional)
TRACEPOINT_PROGRAMS = ("tp_add_to_page_cache", "tp_get_pages", "tp_fault")


class Counts(NamedTuple):
    """Increments of the four counters over one interval, and what BCC derives from them."""

    apcl: int
    mpa: int
    mbd: int
    apd: int

    def hits_misses(self) -> tuple[int, int]:
        """BCC's arithmetic: total = accesses - buffer dirties, misses = insertions -
        dirtied pages (a write inserts pages that no read missed), both floored at 0."""
        total = max(self.mpa - self.mbd, 0)
        misses = max(self.apcl - self.apd, 0)
        hits = total - misses
        if hits < 0:
            misses, hits = total, 0
        return hits, misses


class CacheStat(Probe[None]):
    """Counters of page-cache events; ``mode`` is "functions" or "tracepoints"."""

    object = "cachestat"
    event = None

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        #: "functions" (BCC's method) or "tracepoints"; set when the probe is opened
        self.mode = ""
        self._last = Counts(0, 0, 0, 0)

    def configure(self, obj: Object) -> None:
        from tracekit.hooks.fallback import why_unsupported

        for p in obj.programs.values():
            p.autoload = False
        picked: dict[str, tuple[str, str]] = {}
        tried: list[str] = []
        for hook, chain in FUNCTION_CHAINS.items():
            for prog, target in chain:
                kind = obj.programs[prog].attach_kind
                why = why_unsupported(kind, target)
                if why is None:
                    picked[hook] = (prog, target)
                    break
                tried.append(f"{kind}/{target}: {why}")
        if len(picked) == len(FUNCTION_CHAINS):
            self.mode = "functions"
            for hook, (prog, target) in picked.items():
                p = obj.programs[prog]
                p.set_attach_target(target)
                p.autoload = True
                self.chosen[hook] = (prog, f"{p.attach_kind}/{target}")
            return
        # no traceable page-cache functions (no kprobes, no fentry): tracepoints
        for prog in TRACEPOINT_PROGRAMS:
            p = obj.programs[prog]
            why = why_unsupported(p.attach_kind, p.attach_target)
            if why is not None and prog != "tp_fault":
                raise NotSupportedError(
                    "cachestat: this kernel can trace neither the page-cache functions ("
                    + "; ".join(tried) + f") nor the filemap tracepoints ({p.attach_target}: {why}); "
                    "it needs kprobes or fentry, or Linux 6.11+ for filemap:mm_filemap_get_pages")
            if why is None:
                p.autoload = True
                self.chosen[prog] = (prog, f"{p.attach_kind}/{p.attach_target}")
        for prog in ("tp_apd", "tp_apd_page"):
            p = obj.programs[prog]
            if why_unsupported(p.attach_kind, p.attach_target) is None:
                p.autoload = True
                self.chosen["apd"] = (prog, f"{p.attach_kind}/{p.attach_target}")
                break
        self.mode = "tracepoints"

    def totals(self) -> Counts:
        """The counters since the probe started."""
        assert self.obj is not None
        b = self.obj.bss
        return Counts(int(b.apcl), int(b.mpa), int(b.mbd), int(b.apd))

    def read(self) -> Counts:
        """The increments since the last call (since the start for the first)."""
        now = self.totals()
        last, self._last = self._last, now
        return Counts(*(a - b for a, b in zip(now, last)))
