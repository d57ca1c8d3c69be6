"""Histograms over the usual BPF map layouts, printed exactly as BCC (or libbpf-tools) print them.

Layouts :func:`from_map` understands (a :class:`~tracekit.data.typed.TypedMap`, or an
``ObjectMap`` through ``obj.maps[name].histogram()``):

* **slot-keyed**: an array or hash whose integer key is the slot and whose integer value
  is the count (BCC's ``BPF_HISTOGRAM(dist)``; per-CPU values are summed);
* **label + slot key**: a hash keyed by a struct of label fields plus a slot field (BCC's
  ``BPF_HISTOGRAM(dist, disk_key_t)`` with ``struct { char disk[32]; u64 slot; }``): one
  histogram per distinct label value;
* **slots in the value**: a map whose value is ``struct hist { __u32 slots[N]; ... }`` (or a
  bare ``__u32[N]``) keyed by a label (an int, a struct, or key 0 of a one-element array):
  the libbpf-tools layout.  An array's all-zero elements are left out (arrays have every
  index; BCC-style hashes only hold the labels that were seen).

Slot conventions for log2 histograms (``slots=``): ``"bcc"`` — slot = ``bpf_log2l(v)`` =
floor(log2 v) + 1, so slot 1 counts 0 and 1, slot k counts 2^(k-1) .. 2^k - 1 (slot 0 is
never written and never printed, as in BCC); ``"libbpf"`` — slot = ``log2l(v)`` = floor(log2 v)
with slot 0 counting 0 and 1.  The default is ``"bcc"`` for slot-keyed maps and ``"libbpf"``
for slots in the value, which is what each family's BPF side produces.  The printing
``style=`` is independent of the convention ("bcc" by default).

Printing follows BCC's ``table.py``: header ``"     %-19s : count     distribution"``, rows
``"%10d -> %-10d : %-8d |%-40s|"`` with ``floor(40 * count / max)`` stars (wide columns and
20-star bars when the highest non-empty slot is above 32), rows from the first slot to the
highest non-empty one (or from the first non-empty one with ``strip_leading_zero``), nothing
at all for an empty histogram, and ``"\\n%s = %s"`` before each labelled histogram, in map
order unless ``sort=True``.

:meth:`Histogram.to_dict` / :meth:`Histogram.to_json` give strict JSON (buckets with
inclusive bounds, counts, total, sum when the map records it, labels);
:meth:`Histogram.cumulative` gives Prometheus ``le`` buckets; :meth:`Histogram.bcc_json`
reproduces the dict BCC tools print with ``-j``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from tracekit.errors import HistogramError

STARS = 40


@dataclass(frozen=True, slots=True)
class Bucket:
    """Values ``low`` .. ``high`` (both inclusive) were seen ``count`` times."""

    low: int
    high: int
    count: int


# --- BCC's and libbpf-tools' printing algorithms (reimplemented) ------------------------------


def _bcc_stars(val: int, val_max: int, width: int) -> str:
    # BCC counts stars with a float comparison: star i (from 0) is drawn while
    # i <= width*val/val_max - 1 and i < width.  Reproduced literally (float division) so
    # that even counts past 2**53 round the way BCC's do.
    if val_max <= 0:
        return ""
    x = width * val / val_max - 1
    n = 0 if x < 0 else min(math.floor(x) + 1, width)
    text = "*" * n
    if val > val_max:
        text = text[:-1] + "+"
    return text


def _libbpf_stars(val: int, val_max: int, width: int) -> str:
    # trace_helpers.c: integer arithmetic, then padded to the width, '+' past the max
    if val_max <= 0:
        return " " * width
    n = min(val, val_max) * width // val_max
    return "*" * n + " " * (width - n) + ("+" if val > val_max else "")


def _scan(vals: Sequence[int]) -> tuple[int, int]:
    idx_max, val_max = -1, 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        if v > val_max:
            val_max = v
    return idx_max, val_max


def format_log2_bcc(vals: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False) -> list[str]:
    """BCC's ``print_log2_hist`` lines for BCC-convention slots (``vals[k]``: 2^(k-1)..2^k-1)."""
    idx_max, val_max = _scan(vals)
    if idx_max <= 32:
        header, width, stars = f"     {val_type:<19} : count     distribution", 10, STARS
    else:
        header, width, stars = f"               {val_type:<29} : count     distribution", 20, STARS // 2
    out: list[str] = []
    if idx_max > 0:
        out.append(header)
    skipping = strip_leading_zero
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        val = vals[i]
        if skipping and not val:
            continue
        skipping = False
        out.append(f"{low:>{width}} -> {high:<{width}} : {val:<8} |{_bcc_stars(val, val_max, stars):<{stars}}|")
    return out


def format_log2_libbpf(vals: Sequence[int], val_type: str = "value") -> list[str]:
    """libbpf-tools' ``print_log2_hist`` lines for libbpf-convention slots (``vals[k]``: 2^k..2^(k+1)-1)."""
    idx_max, val_max = _scan(vals)
    if idx_max < 0:
        return []
    narrow = idx_max <= 32
    pad, tw, width = (5, 19, 10) if narrow else (15, 29, 20)
    stars = STARS if narrow else STARS // 2
    out = [f"{'':{pad}}{val_type:<{tw}} : count    distribution"]
    for i in range(idx_max + 1):
        low, high = (1 << (i + 1)) >> 1, (1 << (i + 1)) - 1
        if low == high:
            low -= 1
        val = vals[i]
        out.append(f"{low:>{width}} -> {high:<{width}} : {val:<8} |{_libbpf_stars(val, val_max, stars)}|")
    return out


def format_linear_bcc(vals: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False,
                      base: int = 0, step: int = 1) -> list[str]:
    """BCC's ``print_linear_hist`` lines (row label ``base + i*step``; BCC itself prints ``i``)."""
    idx_max, val_max = _scan(vals)
    out: list[str] = []
    if idx_max >= 0:
        out.append(f"     {val_type:<13} : count     distribution")
    skipping = strip_leading_zero
    for i in range(idx_max + 1):
        val = vals[i]
        if skipping and not val:
            continue
        skipping = False
        out.append(f"        {base + i * step:<10} : {val:<8} |{_bcc_stars(val, val_max, STARS):<{STARS}}|")
    return out


def format_linear_libbpf(vals: Sequence[int], val_type: str = "value", base: int = 0, step: int = 1) -> list[str]:
    """libbpf-tools' ``print_linear_hist``: from the first to the last non-empty slot."""
    idx_max, val_max = _scan(vals)
    if idx_max < 0:
        return []
    idx_min = next(i for i, v in enumerate(vals) if v > 0)
    out = [f"     {val_type:<13} : count     distribution"]
    for i in range(idx_min, idx_max + 1):
        val = vals[i]
        out.append(f"        {base + i * step:<10} : {val:<8} |{_libbpf_stars(val, val_max, STARS)}|")
    return out


# --- the histogram object ---------------------------------------------------------------------


class Histogram:
    """One histogram: slot counts plus how to read them.

    ``counts[i]`` is slot ``i`` of the BPF side's convention (``slots``); ``labels`` maps
    label field names to this histogram's values (empty for a single histogram).
    """

    def __init__(self, counts: Iterable[int], kind: str = "log2", *, slots: str = "bcc",
                 labels: dict[str, Any] | None = None, base: int = 0, step: int = 1,
                 sum: int | None = None, unit: str = "value") -> None:
        if kind not in ("log2", "linear"):
            raise HistogramError(f"histogram kind {kind!r}: use 'log2' or 'linear'")
        if kind == "log2" and slots not in ("bcc", "libbpf"):
            raise HistogramError(f"log2 slot convention {slots!r}: use 'bcc' (bpf_log2l, slot 1 = 0..1) "
                                 "or 'libbpf' (log2l, slot 0 = 0..1)")
        if step < 1:
            raise HistogramError(f"linear histogram step {step}: must be at least 1")
        self.counts = [int(c) for c in counts]
        self.kind = kind
        self.slots = slots
        self.labels: dict[str, Any] = dict(labels or {})
        self.base, self.step = base, step
        self.sum = sum
        self.unit = unit

    def __repr__(self) -> str:
        lab = f" {self.labels}" if self.labels else ""
        return f"<Histogram {self.kind}{lab} total={self.total}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def total(self) -> int:
        return sum(b.count for b in self.buckets())

    def __add__(self, other: Histogram) -> Histogram:
        """Slot-wise sum of two histograms of the same shape and labels: what an exporter of
        cumulative (Prometheus) histograms adds up from read-and-reset intervals."""
        if not isinstance(other, Histogram):
            return NotImplemented
        same = (self.kind, self.slots, self.base, self.step, self.labels) == (
            other.kind, other.slots, other.base, other.step, other.labels)
        if not same:
            raise HistogramError("cannot add histograms of different kinds, slot conventions, steps or labels")
        n = max(len(self.counts), len(other.counts))
        a = self.counts + [0] * (n - len(self.counts))
        b = other.counts + [0] * (n - len(other.counts))
        total = None if self.sum is None or other.sum is None else self.sum + other.sum
        return Histogram([x + y for x, y in zip(a, b)], self.kind, slots=self.slots, labels=self.labels,
                         base=self.base, step=self.step, sum=total, unit=self.unit)

    # -- buckets -------------------------------------------------------------------------------

    def _bcc_vals(self) -> list[int]:
        return self.counts if self.slots == "bcc" else [0, *self.counts]

    def _libbpf_vals(self) -> list[int]:
        return self.counts if self.slots == "libbpf" else self.counts[1:]

    def buckets(self, *, trim: bool = True) -> list[Bucket]:
        """Buckets in value order, through the highest non-empty one (``trim=False``: all slots).

        For BCC-convention log2 data slot 0 (never written by ``bpf_log2l``) is left out,
        as BCC's printing and JSON leave it out.
        """
        if self.kind == "linear":
            out = [Bucket(self.base + i * self.step, self.base + (i + 1) * self.step - 1, c)
                   for i, c in enumerate(self.counts)]
        else:
            out = []
            for i, c in enumerate(self._libbpf_vals()):
                low, high = (0 if i == 0 else 1 << i), (1 << (i + 1)) - 1
                out.append(Bucket(low, high, c))
        if trim:
            while out and out[-1].count == 0:
                out.pop()
        return out

    def cumulative(self) -> list[tuple[float, int]]:
        """Prometheus buckets: ``(le, count of values <= le)`` ending with ``(inf, total)``.

        Values are integers, so a bucket's inclusive ``high`` is its ``le`` bound.
        """
        out: list[tuple[float, int]] = []
        run = 0
        for b in self.buckets():
            run += b.count
            out.append((float(b.high), run))
        out.append((math.inf, run))
        return out

    # -- output --------------------------------------------------------------------------------

    def lines(self, val_type: str | None = None, *, style: str = "bcc", strip_leading_zero: bool = False) -> list[str]:
        vt = self.unit if val_type is None else val_type
        if style not in ("bcc", "libbpf"):
            raise HistogramError(f"histogram style {style!r}: use 'bcc' or 'libbpf'")
        if self.kind == "linear":
            if style == "bcc":
                return format_linear_bcc(self.counts, vt, strip_leading_zero, self.base, self.step)
            return format_linear_libbpf(self.counts, vt, self.base, self.step)
        if style == "bcc":
            return format_log2_bcc(self._bcc_vals(), vt, strip_leading_zero)
        return format_log2_libbpf(self._libbpf_vals(), vt)

    def format(self, val_type: str | None = None, *, style: str = "bcc", strip_leading_zero: bool = False) -> str:
        """The printed table (each line ends with a newline; empty histograms print nothing)."""
        return "".join(line + "\n" for line in self.lines(val_type, style=style, strip_leading_zero=strip_leading_zero))

    def print(self, val_type: str | None = None, *, file: TextIO | None = None, **kw: Any) -> None:
        (file or sys.stdout).write(self.format(val_type, **kw))

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-able form: ``kind``, ``unit``, ``labels``, ``buckets`` (``low``, ``high``,
        ``count``), ``count`` (total) and ``sum`` (None when the map does not record it)."""
        return {
            "kind": self.kind,
            "unit": self.unit,
            "labels": {k: _jsonable(v) for k, v in self.labels.items()},
            "buckets": [{"low": b.low, "high": b.high, "count": b.count} for b in self.buckets()],
            "count": self.total,
            "sum": self.sum,
        }

    def to_json(self, **dumps: Any) -> str:
        return json.dumps(self.to_dict(), **dumps)

    def bcc_json(self, ts: str | None = None, section: tuple[str, Any] | None = None) -> dict[str, Any]:
        """The dict BCC's ``print_json_hist`` prints (log2): ``ts``, ``val_type``, ``data``
        of ``interval-start``/``interval-end``/``count``, plus the section key if given."""
        vals = self._bcc_vals()
        last = max((i for i, v in enumerate(vals) if v), default=0)
        data = [{"interval-start": (1 << (i - 1)) if i > 1 else 0, "interval-end": (1 << i) - 1, "count": vals[i]}
                for i in range(1, last + 1)]
        out: dict[str, Any] = {"ts": ts if ts is not None else time.strftime("%Y-%m-%d %H:%M:%S"),
                               "val_type": self.unit, "data": data}
        if section:
            out[section[0]] = section[1]
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, tuple) and hasattr(v, "_asdict"):
        return {k: _jsonable(x) for k, x in v._asdict().items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class HistogramSet(list[Histogram]):
    """The histograms of one map: a single one, or one per label value (map order)."""

    def __init__(self, hists: Iterable[Histogram] = (), *, section_header: str = "", keyed: bool = False) -> None:
        super().__init__(hists)
        self.section_header = section_header
        self.keyed = keyed

    def label_text(self, h: Histogram, section_print_fn: Callable[[Any], str] | None = None) -> str:
        vals = list(h.labels.values())
        one = vals[0] if len(vals) == 1 else tuple(vals)
        if section_print_fn is not None:
            return section_print_fn(one)
        if len(vals) == 1:
            return _label_str(vals[0])
        return ", ".join(_label_str(v) for v in vals)

    def format(self, val_type: str | None = None, *, style: str = "bcc", strip_leading_zero: bool = False,
               section_header: str | None = None, section_print_fn: Callable[[Any], str] | None = None) -> str:
        """BCC's keyed printing: ``"\\n%s = %s"`` then the histogram, for each label value."""
        parts: list[str] = []
        head = self.section_header if section_header is None else section_header
        for h in self:
            if self.keyed:
                parts.append(f"\n{head} = {self.label_text(h, section_print_fn)}\n")
            parts.append(h.format(val_type, style=style, strip_leading_zero=strip_leading_zero))
        return "".join(parts)

    def print(self, val_type: str | None = None, *, file: TextIO | None = None, **kw: Any) -> None:
        (file or sys.stdout).write(self.format(val_type, **kw))

    def to_dict(self) -> list[dict[str, Any]]:
        return [h.to_dict() for h in self]

    def to_json(self, **dumps: Any) -> str:
        return json.dumps(self.to_dict(), **dumps)

    def bcc_json(self, ts: str | None = None, section_header: str | None = None) -> list[dict[str, Any]]:
        """One BCC ``-j`` dict per histogram, with the section key for labelled ones."""
        head = self.section_header if section_header is None else section_header
        return [h.bcc_json(ts, (head, self.label_text(h)) if self.keyed else None) for h in self]

    def by_label(self) -> dict[Any, Histogram]:
        """Histograms by label value (the value itself for one label field, else a tuple)."""
        out: dict[Any, Histogram] = {}
        for h in self:
            vals = tuple(h.labels.values())
            out[vals[0] if len(vals) == 1 else vals] = h
        return out


def _label_str(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return v.rstrip(b"\0").decode("utf-8", "replace")
    return str(v)


# --- reading maps -----------------------------------------------------------------------------


def _scalar(v: Any) -> int:
    """A count: an int, or per-CPU ints summed."""
    if isinstance(v, list) and hasattr(v, "sum"):
        return int(v.sum())
    if isinstance(v, int):
        return v
    raise HistogramError(f"a histogram count must be an integer, got {type(v).__name__}")


def _fields(rec: Any) -> dict[str, Any]:
    names = getattr(rec, "_fields", None)
    if names is None or not isinstance(rec, tuple):
        return {}
    return {k: getattr(rec, k) for k in names}


def _sum_counts(vals: Sequence[Any]) -> list[int]:
    """Per-CPU slot arrays added element-wise (one list for a non-per-CPU value)."""
    if not vals:
        return []
    n = max(len(v) for v in vals)
    out = [0] * n
    for v in vals:
        for i, c in enumerate(v):
            out[i] += int(c)
    return out


def from_map(tmap: Any, kind: str = "log2", *, slots: str | None = None, slot_field: str | None = None,
             label_fields: Sequence[str] | None = None, slots_field: str | None = None,
             sum_field: str | None = None, base: int = 0, step: int = 1, unit: str = "value",
             section_header: str | None = None, reset: bool = False, sort: bool = False) -> HistogramSet:
    """Read the histogram(s) of a typed map (see the module doc for the layouts).

    ``slot_field``: the slot member of a struct key (default: a field named ``slot``, else
    the last one); ``label_fields``: which key fields label a histogram (default: the
    others, skipping ``__pad*``); ``slots_field``: the slot array of a struct value (default:
    ``slots``, else its first array of ints); ``sum_field``: a value field holding the sum
    of observed values (default: ``sum`` if the value struct has one).  ``reset=True`` reads
    with :meth:`TypedMap.pop_all` (read and clear in one pass, for interval tools).
    ``sort=True`` orders sections by label value instead of map order.
    """
    from tracekit.data.typed import TypedMap

    if not isinstance(tmap, TypedMap):
        tmap = tmap.typed  # an ObjectMap
    pairs = tmap.pop_all() if reset else tmap.items()
    vc, kc = tmap.value_codec, tmap.key_codec
    value_is_record = vc.event_type is not None
    value_is_array = tmap._array_value

    def mk(counts: Iterable[int], labels: dict[str, Any], conv: str, total: int | None = None) -> Histogram:
        return Histogram(counts, kind, slots=conv, labels=labels, base=base, step=step, sum=total, unit=unit)

    if value_is_record or value_is_array:
        conv = slots or "libbpf"
        hists: list[Histogram] = []
        label_names: list[str] = []
        for k, v in pairs:
            per = list(v) if isinstance(v, list) and hasattr(v, "sum") else [v]
            arrays, total = [], None
            for one in per:
                if value_is_array:
                    arrays.append(list(one))
                    continue
                f = _fields(one)
                name = slots_field or ("slots" if "slots" in f else next(
                    (n for n, x in f.items() if isinstance(x, tuple) and x and isinstance(x[0], int)), None))
                if name is None or name not in f:
                    raise HistogramError(f"map {tmap.name!r}: its value {vc.type_name} has no slot array "
                                         "(name it with slots_field=)")
                arrays.append(list(f[name]))
                sf = sum_field or ("sum" if "sum" in f else None)
                if sf is not None:
                    if sf not in f:
                        raise HistogramError(f"map {tmap.name!r}: value {vc.type_name} has no field {sf!r}")
                    total = (total or 0) + int(f[sf])
            counts = _sum_counts(arrays)
            if tmap.is_array and not any(counts):
                continue  # preallocated, never touched
            labels: dict[str, Any]
            kf = _fields(k)
            if kf:
                names = list(label_fields) if label_fields is not None else [n for n in kf if not n.startswith("__pad")]
                labels = {n: kf[n] for n in names}
            elif tmap.is_array and tmap.raw.max_entries == 1:
                labels = {}
            else:
                labels = {(label_fields[0] if label_fields else "key"): k}
            label_names = list(labels)
            hists.append(mk(counts, labels, conv, total))
        keyed = bool(label_names)
        return _finish(hists, keyed, section_header, label_names, sort)

    conv = slots or "bcc"
    kf_names = list(kc.event_type.fields) if kc.event_type is not None else []
    if not kf_names:
        # slot-keyed: one histogram
        size = 0
        counts_by_slot: dict[int, int] = {}
        for k, v in pairs:
            if not isinstance(k, int):
                raise HistogramError(f"map {tmap.name!r}: key {kc.type_name} is not a slot number")
            counts_by_slot[k] = counts_by_slot.get(k, 0) + _scalar(v)
            size = max(size, k + 1)
        counts = [counts_by_slot.get(i, 0) for i in range(size)]
        return HistogramSet([mk(counts, {}, conv)] if pairs else [], keyed=False)
    sfield = slot_field or ("slot" if "slot" in kf_names else kf_names[-1])
    if sfield not in kf_names:
        raise HistogramError(f"map {tmap.name!r}: key {kc.type_name} has no field {sfield!r} "
                             f"(fields: {', '.join(kf_names)})")
    names = list(label_fields) if label_fields is not None else [
        n for n in kf_names if n != sfield and not n.startswith("__pad")]
    groups: dict[tuple[Any, ...], dict[int, int]] = {}
    for k, v in pairs:
        f = _fields(k)
        lab = tuple(f[n] for n in names)
        g = groups.setdefault(lab, {})
        slot = int(f[sfield])
        g[slot] = g.get(slot, 0) + _scalar(v)
    hists = []
    for lab, g in groups.items():
        size = max(g) + 1 if g else 0
        hists.append(mk([g.get(i, 0) for i in range(size)], dict(zip(names, lab)), conv))
    return _finish(hists, bool(names), section_header, names, sort)


def _finish(hists: list[Histogram], keyed: bool, section_header: str | None, names: list[str],
            sort: bool) -> HistogramSet:
    if sort:
        hists.sort(key=lambda h: tuple(_sort_key(v) for v in h.labels.values()))
    head = section_header if section_header is not None else ", ".join(names)
    return HistogramSet(hists, section_header=head, keyed=keyed)


def _sort_key(v: Any) -> tuple[int, Any]:
    # labels of one map share a type; the tag keeps mixed types (never expected) comparable
    if isinstance(v, (int, float)):
        return (0, v)
    return (1, str(v))


__all__ = [
    "Bucket", "Histogram", "HistogramError", "HistogramSet", "format_linear_bcc", "format_linear_libbpf",
    "format_log2_bcc", "format_log2_libbpf", "from_map",
]
