"""Hostile-input harness for tracekit's pure layer: mutated ELF objects, BTF and targets.

Every input is run through what a user can reach with untrusted bytes -- ``tracekit.open``
(ELF parsing, BTF fix-ups, global data views), the load plan with CO-RE against a target
BTF, ``obj.event_type()``, global-data reads, and the BTF reader's type algebra -- and the
outcome must be a result or a :class:`tracekit.errors.TracekitError`.  Anything else (an
IndexError, a RecursionError, a MemoryError, a hang) is a *finding*.

Three input kinds:

* ``elf``: a whole object.  Mutations are applied to the whole file or inside one of its
  sections (``.BTF``, ``.BTF.ext``, ``.symtab``, code, ``.maps``, relocations), so the
  container usually survives and the inner parsers see hostile BTF / BTF.ext / symbols.
* ``btf``: a raw BTF blob (tracekit's writer output and hand-built graphs), walked type by
  type: decode, ``skip_mods``/``resolve``/``size_of``/``alignment_of``/``describe``, event
  type compilation, global-data codecs, re-encoding.
* ``target``: a raw BTF used as the CO-RE target of an unmutated seed object (named in the
  corpus file name: ``target--<seed>--...``).

Kernel objects are never created: no bpf() call, no file outside the harness's own.

Running: ``python3 -m tests.fuzz.harness run --seconds 600 --seed 1 --out /tmp/findings``
(forks a worker under RLIMIT_AS and a per-input CPU-time alarm; prints one JSON line per new
signature), ``python3 -m tests.fuzz.harness replay tests/fuzz/corpus`` (every corpus file
once).  :mod:`tests.fuzz.test_fuzz` drives both from pytest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"

#: seconds one input may take (the issue's bound: an error "within a second"); the loop
#: re-runs a timed-out input once with 4x the budget before calling it a hang, so a busy
#: shared machine does not produce false hangs
TIME_LIMIT = float(os.environ.get("TRACEKIT_FUZZ_INPUT_SECONDS", "1.0"))
#: address-space headroom a worker gets above what it uses after loading its seeds
MEM_HEADROOM = int(os.environ.get("TRACEKIT_FUZZ_MEM_MB", "768")) << 20

KINDS = ("elf", "btf", "target")


# --- outcome classification ----------------------------------------------------------


class InputTimeout(BaseException):
    """Raised by the alarm: a BaseException so no ``except Exception`` in tracekit swallows it."""


@dataclass
class Outcome:
    status: str  # "ok", "error" (a TracekitError), "crash", "timeout", "memory"
    signature: str = ""
    detail: str = ""


def _signature(exc: BaseException, tb: Any) -> str:
    """Exception type + the innermost tracekit frame: stable across inputs with one cause."""
    frames = traceback.extract_tb(tb)
    where = "?"
    for fr in reversed(frames):
        if "/tracekit/" in fr.filename and "/tests/" not in fr.filename:
            rel = fr.filename.split("/tracekit/", 1)[1]
            where = f"tracekit/{rel}:{fr.name}"
            break
    return f"{type(exc).__name__}@{where}"


def _alarm(_sig: int, _frame: Any) -> None:
    raise InputTimeout()


def classify(fn: Callable[[], None], limit: float = TIME_LIMIT) -> Outcome:
    """Run ``fn`` with ``limit`` seconds of CPU time; what kind of outcome it had.

    CPU time (ITIMER_PROF: user + system), not wall time: on a shared, loaded machine
    (load 10 on 2 cores) a wall-clock alarm fires on inputs that merely waited for a CPU.
    The pure layer never blocks, so a hang is always CPU spent.
    """
    from tracekit.errors import TracekitError

    old = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, limit)
    try:
        fn()
        return Outcome("ok")
    except InputTimeout as e:
        return Outcome("timeout", _signature(e, e.__traceback__), f"no result within {limit:.1f}s")
    except MemoryError as e:
        return Outcome("memory", _signature(e, e.__traceback__), "MemoryError")
    except TracekitError as e:
        return Outcome("error", type(e).__name__, str(e)[:200])
    except RecursionError as e:
        return Outcome("crash", _signature(e, e.__traceback__), "RecursionError")
    except Exception as e:  # noqa: BLE001 - the whole point: anything else is a finding
        return Outcome("crash", _signature(e, e.__traceback__), f"{type(e).__name__}: {str(e)[:200]}")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


# --- what runs on one input ----------------------------------------------------------


@dataclass
class Context:
    """Unmutated things inputs are run against (loaded once per worker)."""

    target: Any  # the BTF mutated objects are CO-RE-relocated against
    seed_objects: dict[str, bytes] = field(default_factory=dict)  # name -> ELF bytes (for ``target``)
    _specs: dict[str, Any] = field(default_factory=dict)

    def spec(self, name: str) -> Any:
        from tracekit.obj import elf

        s = self._specs.get(name)
        if s is None:
            s = self._specs[name] = elf.load_spec(self.seed_objects[name], name=name)
        return s


#: caps on how much of one input is exercised, so one input stays well under the limit
_MAX_TYPES = 1500
_MAX_EVENT_TYPES = 40
_MAX_CODEC_BYTES = 1 << 16


def _exercise_btf(btf: Any) -> None:
    """Walk every type of ``btf`` (up to a cap) through the reader, codecs and decoders."""
    from tracekit.btf.types import SIZED_KINDS, Kind
    from tracekit.btf.writer import BTFBuilder
    from tracekit.data.globaldata import Codec, GlobalData
    from tracekit.errors import TracekitError
    from tracekit.events.records import EventType

    events = 0
    for tid in list(btf.ids())[:_MAX_TYPES]:
        t = btf.type(tid)
        btf.kind_of(tid)
        btf.name_of(tid)
        for step in (btf.skip_mods, btf.resolve, btf.size_of, btf.alignment_of, btf.describe):
            try:
                step(tid)
            except TracekitError:
                pass
        if t.kind in (Kind.STRUCT, Kind.UNION) and events < _MAX_EVENT_TYPES:
            events += 1
            try:
                et = EventType.from_btf(btf, tid)
                if et.size <= _MAX_CODEC_BYTES:
                    rec = et.decode(bytes(et.size))
                    repr(rec)
                    rec._asdict()
                    et.decode(b"")
            except TracekitError:
                pass
        if t.kind in SIZED_KINDS or t.kind in (Kind.TYPEDEF, Kind.ARRAY, Kind.PTR, Kind.CONST, Kind.VAR):
            try:
                c = Codec(btf, tid)
                if 0 < c.size <= _MAX_CODEC_BYTES:
                    v = c.get(bytes(c.size), 0)
                    c.encode(v) if not isinstance(v, dict) else None
            except (TracekitError, ValueError, TypeError):
                # encode() documents ValueError/TypeError for values that do not fit
                pass
        if t.kind == Kind.DATASEC:
            try:
                if t.size <= _MAX_CODEC_BYTES:
                    gd = GlobalData(t.name, btf, tid, bytes(t.size))
                    gd.as_dict()
                    repr(gd)
            except TracekitError:
                pass
    if btf.base is None:
        try:
            BTFBuilder.from_btf(btf).encode()
        except TracekitError:
            pass
    for name in ("event", "task_struct", "data_t"):
        try:
            EventType.from_btf(btf, name)
        except TracekitError:
            pass


def run_elf(data: bytes, ctx: Context) -> None:
    """``tracekit.open(bytes, btf=...)``, globals, event types, the plan of every program."""
    import tracekit
    from tracekit.btf.sanitize import BTFFeatures, prepare
    from tracekit.errors import TracekitError
    from tracekit.obj import externs
    from tracekit.obj.plan import plan_program

    obj = tracekit.open(data, btf=ctx.target)
    spec = obj.spec
    for sec in list(obj._globals):
        gd = obj.section(sec)
        gd.as_dict()
        repr(gd)
    plans = {}
    for p in spec.programs.values():
        try:
            plans[p.name] = plan_program(spec, p, [ctx.target])
        except TracekitError:
            pass
    # the rest of load() before its first syscall: externs against the target (kernel
    # facts given as data: no kallsyms, a small config), then BTF sanitization for a
    # current and for an old kernel
    if spec.externs:
        facts = externs.KernelFacts(targets=[ctx.target], kallsyms={}, kconfig={"CONFIG_HZ": "250"},
                                    kernel_version=0x61200)
        try:
            res = externs.resolve_externs(spec, facts)
            for plan in plans.values():
                if plan.extern_refs:
                    externs.patch_program(plan, res)
        except TracekitError:
            pass
    if spec.btf is not None:
        progs = [(n, pl.spec.prog_type, pl.func_info) for n, pl in plans.items()]
        old = BTFFeatures(func=False, func_global=False, datasec=False, qmark_datasec=False, float=False,
                          decl_tag=False, type_tag=False, enum64=False)
        for feats in (BTFFeatures(), old):
            try:
                prepare(spec.btf, feats, progs, arg_ctx_native=feats.func)
            except TracekitError:
                pass
    if spec.btf is not None:
        from tracekit.events.records import EventType
        from tracekit.uapi import MapType

        try:
            obj.event_type("event")
        except TracekitError:
            pass
        for m in spec.maps.values():
            if m.type == MapType.RINGBUF:  # its event type, found by convention
                try:
                    EventType.for_map(spec, m.name)
                except TracekitError:
                    pass
        _exercise_btf(spec.btf)


def run_btf(data: bytes, ctx: Context) -> None:
    from tracekit.btf.reader import BTF

    _exercise_btf(BTF(data, name="fuzz"))


def run_target(data: bytes, ctx: Context, seed: str) -> None:
    """A hostile target BTF for an unmutated seed object (what ``btf=`` gives ``load()``)."""
    from tracekit.btf.reader import BTF
    from tracekit.errors import TracekitError
    from tracekit.obj.plan import plan_program

    target = BTF.from_bytes_or_elf(data, name="fuzz-target")
    spec = ctx.spec(seed)
    for p in spec.programs.values():
        try:
            plan_program(spec, p, [target])
        except TracekitError:
            pass


def run_input(kind: str, data: bytes, ctx: Context, pair: str = "") -> None:
    if kind == "elf":
        run_elf(data, ctx)
    elif kind == "btf":
        run_btf(data, ctx)
    elif kind == "target":
        run_target(data, ctx, pair or next(iter(ctx.seed_objects)))
    else:
        raise ValueError(kind)


# --- seeds ---------------------------------------------------------------------------


@dataclass
class Seed:
    kind: str
    name: str
    data: bytes
    pair: str = ""  # for "target": the seed object it is the target of


def _elf_section(data: bytes, want: str) -> bytes | None:
    """The bytes of section ``want`` of a well-formed ELF64 (seed preparation only)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
    so, ss = hdrs[shstrndx][4], hdrs[shstrndx][5]
    strtab = data[so : so + ss]
    for h in hdrs:
        name = strtab[h[0] : strtab.index(b"\0", h[0])].decode()
        if name == want:
            return data[h[4] : h[4] + h[5]]
    return None


def _handmade_btf() -> list[tuple[str, bytes]]:
    """Small graphs hitting every kind: typedef chains, pointers, nested arrays, a DATASEC."""
    from tracekit.btf.types import INT_CHAR, INT_SIGNED, EnumValue, Kind, Member, Param, Type, VarSecinfo
    from tracekit.btf.writer import BTFBuilder

    b = BTFBuilder()
    i32 = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    ch = b.add_type(Type(Kind.INT, "char", size=1, encoding=INT_CHAR, bits=8))
    u8 = b.add_type(Type(Kind.INT, "unsigned char", size=1, bits=8))
    td = b.add_type(Type(Kind.TYPEDEF, "pid_t", type=i32))
    cst = b.add_type(Type(Kind.CONST, type=td))
    arr = b.add_type(Type(Kind.ARRAY, type=ch, index_type=i32, nelems=16))
    arr2 = b.add_type(Type(Kind.ARRAY, type=arr, index_type=i32, nelems=3))
    u3 = b.add_type(Type(Kind.ARRAY, type=u8, index_type=i32, nelems=3))
    en = b.add_type(Type(Kind.ENUM, "state", size=4, values=[EnumValue("A", 0), EnumValue("B", -1)], kflag=True))
    inner = b.add_type(Type(Kind.STRUCT, "inner", size=8, members=[Member("a", i32, 0), Member("b", cst, 32)]))
    un = b.add_type(Type(Kind.UNION, "u", size=8, members=[Member("x", inner, 0), Member("y", i32, 0)]))
    ptr = b.add_type(Type(Kind.PTR, type=inner))
    ev = b.add_type(Type(Kind.STRUCT, "event", size=96, kflag=True, members=[
        Member("pid", td, 0), Member("st", en, 32), Member("comm", arr, 64), Member("names", arr2, 192),
        Member("in", inner, 576), Member("u", un, 640), Member("p", ptr, 704),
        Member("bf1", i32, 0x300, 3), Member("bf2", i32, 0x303, 5), Member("raw3", u3, 0x308),
    ]))
    fp = b.add_type(Type(Kind.FUNC_PROTO, type=i32, params=[Param("ctx", ptr), Param("", 0)]))
    b.add_type(Type(Kind.FUNC, "handler", type=fp, linkage=1))
    v1 = b.add_type(Type(Kind.VAR, "targ_pid", type=cst, linkage=1))
    v2 = b.add_type(Type(Kind.VAR, "last", type=ev, linkage=1))
    v3 = b.add_type(Type(Kind.VAR, "three", type=u3, linkage=1))
    b.add_type(Type(Kind.DATASEC, ".bss", size=104, secinfos=[
        VarSecinfo(v1, 0, 4), VarSecinfo(v3, 4, 3), VarSecinfo(v2, 8, 96)]))
    b.add_type(Type(Kind.FLOAT, "double", size=8))
    b.add_type(Type(Kind.DECL_TAG, "tag", type=ev, component_idx=1))
    b.add_type(Type(Kind.TYPE_TAG, "user", type=i32))
    b.add_type(Type(Kind.ENUM64, "big", size=8, values=[EnumValue("Z", 1 << 40)]))
    b.add_type(Type(Kind.FWD, "task_struct"))
    return [("handmade", b.encode())]


def seed_objects() -> dict[str, bytes]:
    """Bundled probes and the test objects tests/support.py has built (whatever exists)."""
    out: dict[str, bytes] = {}
    for p in sorted((ROOT / "tracekit" / "probes").glob("*.bpf.o")):
        out[p.name.split(".")[0]] = p.read_bytes()
    build = Path(os.environ.get("TRACEKIT_TEST_BUILD", ROOT / "build" / "tests")) / "objects"
    for p in sorted(build.glob("*.o")):
        if p.stat().st_size <= 256 << 10:  # big vmlinux.h objects add DWARF, not coverage
            out.setdefault(p.name.rsplit("-", 1)[0], p.read_bytes())
    return out


def seeds(objects: dict[str, bytes]) -> list[Seed]:
    from tracekit.obj import elf

    out: list[Seed] = []
    for name, data in objects.items():
        out.append(Seed("elf", name, data))
        raw = _elf_section(data, ".BTF")
        if raw:
            out.append(Seed("btf", name + ".BTF", raw))
        try:
            spec = elf.load_spec(data, name=name)
        except Exception:  # noqa: BLE001 - a seed that is a negative test object
            continue
        if spec.btf is not None and spec.programs:
            # the writer's re-encoding, used as a target for the object itself: every local
            # type finds its namesake, so matching goes deep
            out.append(Seed("target", name + ".fixed", bytes(spec.btf.data), pair=name))
            out.append(Seed("btf", name + ".fixed", bytes(spec.btf.data)))
    for name, blob in _handmade_btf():
        out.append(Seed("btf", name, blob))
    return out


def default_target() -> Any:
    """vmlinux when readable (realistic CO-RE), else a bundled probe's BTF."""
    from tracekit.btf.reader import BTF
    from tracekit.obj import elf

    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            return BTF(f.read(), name="vmlinux")
    except OSError:
        return elf.load_spec(ROOT / "tracekit" / "probes" / "opensnoop.bpf.o").btf


# --- mutations -----------------------------------------------------------------------

_BOUNDARY32 = [0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
_BOUNDARY64 = [*_BOUNDARY32, 1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


def _sections(data: bytes) -> list[tuple[str, int, int, int]]:
    """(name, header offset, data offset, size) of every section; [] if unparseable."""
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
        if shnum > 512:
            return []
        hdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
        so, ss = hdrs[shstrndx][4], hdrs[shstrndx][5]
        strtab = data[so : so + ss]
        out = []
        for i, h in enumerate(hdrs):
            end = strtab.find(b"\0", h[0])
            out.append((strtab[h[0] : end].decode("latin1") if end >= 0 else "", shoff + 64 * i, h[4], h[5]))
        return out
    except (struct.error, IndexError):
        return []


class Mutator:
    """Byte-level and structure-aware mutations, all drawn from one seeded RNG."""

    def __init__(self, rng: random.Random, corpus: list[bytes]) -> None:
        self.rng = rng
        self.corpus = corpus  # other inputs, for splicing

    def _put(self, buf: bytearray, off: int, width: int, value: int) -> None:
        if off >= 0 and off + width <= len(buf):
            buf[off : off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")

    def _int(self, width: int, around: int = 0) -> int:
        r = self.rng
        choice = r.random()
        if choice < 0.5:
            return r.choice(_BOUNDARY64 if width == 8 else _BOUNDARY32)
        if choice < 0.8 and around:
            return max(0, around + r.randint(-4, 4))
        return r.getrandbits(8 * width)

    # -- generic byte mutations over a window [lo, hi) --

    def bytes_in(self, buf: bytearray, lo: int, hi: int) -> None:
        r = self.rng
        if hi <= lo:
            return
        op = r.randrange(7)
        if op == 0:  # bit flips
            for _ in range(r.randint(1, 4)):
                i = r.randrange(lo, hi)
                buf[i] ^= 1 << r.randrange(8)
        elif op == 1:  # random bytes
            for _ in range(r.randint(1, 8)):
                buf[r.randrange(lo, hi)] = r.randrange(256)
        elif op == 2:  # an aligned u32 set to a boundary value
            i = lo + (r.randrange(max(1, (hi - lo) // 4)) * 4)
            self._put(buf, i, 4, self._int(4, int.from_bytes(buf[i : i + 4], "little")))
        elif op == 3:  # a u16 (ELF header fields, vlen halves of BTF info words)
            i = lo + (r.randrange(max(1, (hi - lo) // 2)) * 2)
            self._put(buf, i, 2, self._int(2) & 0xFFFF)
        elif op == 4:  # copy a chunk of the input over another place (duplicated structure)
            n = r.randint(1, min(64, hi - lo))
            a, b = r.randrange(lo, hi - n + 1), r.randrange(lo, hi - n + 1)
            buf[b : b + n] = buf[a : a + n]
        elif op == 5:  # splice from another corpus input
            other = r.choice(self.corpus)
            if other:
                n = r.randint(1, min(256, len(other), hi - lo))
                a, b = r.randrange(0, len(other) - n + 1), r.randrange(lo, hi - n + 1)
                buf[b : b + n] = other[a : a + n]
        else:  # zero a run
            n = r.randint(1, min(32, hi - lo))
            b = r.randrange(lo, hi - n + 1)
            buf[b : b + n] = bytes(n)

    # -- BTF-aware mutations over a BTF blob at [base, base + len) --

    def btf_in(self, buf: bytearray, base: int, length: int) -> None:
        r = self.rng
        if length < 24:
            return self.bytes_in(buf, base, base + length)
        try:
            hdr_len, type_off, type_len = struct.unpack_from("<III", buf, base + 4)
        except struct.error:
            return
        op = r.randrange(7)
        if op >= 5 and self.btf_refs_in(buf, base, length):
            return
        if op == 0:  # header field boundary values
            field_off = base + r.choice([4, 8, 12, 16, 20])
            self._put(buf, field_off, 4, self._int(4, int.from_bytes(buf[field_off : field_off + 4], "little")))
            return
        tstart = base + hdr_len + type_off
        tend = min(tstart + type_len, len(buf))
        if tend - tstart < 12:
            return self.bytes_in(buf, base, base + length)
        nwords = (tend - tstart) // 4
        w = tstart + 4 * r.randrange(nwords)
        if op == 1:  # point a word at another type id: cycles through typedefs, pointers
            ntypes = max(2, nwords // 3)
            self._put(buf, w, 4, r.choice([0, 1, r.randrange(ntypes), ntypes, ntypes + 1, 0xFFFFFFFF]))
        elif op == 2:  # an info word: kind and vlen
            kind = r.randrange(32)
            vlen = r.choice([0, 1, 2, 3, 0xFFFF, r.randrange(64)])
            self._put(buf, w, 4, (kind << 24) | vlen | (r.getrandbits(1) << 31))
        elif op == 3:  # sizes / counts
            self._put(buf, w, 4, self._int(4, int.from_bytes(buf[w : w + 4], "little")))
        else:
            self.bytes_in(buf, tstart, tend)

    def btf_refs_in(self, buf: bytearray, base: int, length: int) -> bool:
        """Re-point one type reference (a typedef's target, a member's type, an array's
        element) at another id: itself (cycles), a neighbour, 0 or past the end."""
        from tracekit.btf.reader import BTF
        from tracekit.btf.types import KIND_EXTRA_PER_VLEN, Kind
        from tracekit.errors import TracekitError

        r = self.rng
        try:
            btf = BTF(bytes(buf[base : base + length]))
        except TracekitError:
            return False
        n = btf.type_count
        if not n:
            return False
        tstart = base + btf.hdr_len + struct.unpack_from("<I", buf, base + 8)[0]
        for _ in range(8):
            tid = r.randrange(1, n + 1)
            o = btf.offsets[tid - 1]
            info = btf._words[o + 1]
            k, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            spots: list[int] = []
            if k in (Kind.PTR, Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG,
                     Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR, Kind.DECL_TAG):
                spots.append(o + 2)
            if k == Kind.ARRAY:
                spots += [o + 3, o + 4, o + 5]  # element type, index type, nelems
            per = KIND_EXTRA_PER_VLEN.get(k, 0) // 4
            if k in (Kind.STRUCT, Kind.UNION, Kind.FUNC_PROTO, Kind.DATASEC) and vlen:
                j = r.randrange(vlen)
                first = o + 3 + j * per
                spots += {Kind.STRUCT: [first + 1, first + 2], Kind.UNION: [first + 1, first + 2],
                          Kind.FUNC_PROTO: [first + 1], Kind.DATASEC: [first, first + 1, first + 2]}[Kind(k)]
            if not spots:
                continue
            w = r.choice(spots)
            value = r.choice([tid, tid, tid - 1, tid + 1, 0, n, n + 1, r.randrange(1, n + 1), 0xFFFFFFFF])
            self._put(buf, tstart + 4 * w, 4, value)
            return True
        return False

    def btf_ext_in(self, buf: bytearray, base: int, length: int) -> None:
        r = self.rng
        if length < 32 or r.random() < 0.3:
            return self.bytes_in(buf, base, base + length)
        # header (hdr_len, func/line/core offsets and lengths) or a rec_size / num_info word
        words = [4, 8, 12, 16, 20, 24, 28]
        hdr_len = int.from_bytes(buf[base + 4 : base + 8], "little")
        for fo in (8, 16, 24):
            off = int.from_bytes(buf[base + fo : base + fo + 4], "little")
            p = base + hdr_len + off
            if p + 16 <= base + length:
                words += [p - base, p - base + 4 + 4, p - base + 8]  # rec_size, first num_info
        if r.random() < 0.5:
            # a field of one record (insn_off, type_id, access string / name offsets, kind)
            fo = r.randrange(hdr_len, length - 4) & ~3
        else:
            fo = r.choice(words)
        cur = int.from_bytes(buf[base + fo : base + fo + 4], "little")
        self._put(buf, base + fo, 4, self._int(4, cur) if r.random() < 0.7 else cur + r.choice([-8, -1, 1, 8]))

    def elf(self, data: bytes) -> bytes:
        r = self.rng
        buf = bytearray(data)
        secs = _sections(data)
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            op = r.random()
            if op < 0.08:  # truncate
                del buf[r.randrange(len(buf)) :]
                break
            if op < 0.2 and secs:  # a section header field: offset, size, link, info, entsize
                _, hoff, _, size = r.choice(secs)
                fo, width = r.choice([(0x18, 8), (0x20, 8), (0x28, 4), (0x2C, 4), (0x38, 8), (0x04, 4), (0x08, 8)])
                self._put(buf, hoff + fo, width, self._int(width, size))
            elif op < 0.26:  # ELF header fields
                fo, width = r.choice([(0x28, 8), (0x3A, 2), (0x3C, 2), (0x3E, 2), (0x10, 2), (0x12, 2)])
                self._put(buf, fo, width, self._int(width))
            elif secs and op < 0.9:  # inside one section, aware of what it holds
                live = [s for s in secs if s[3] and s[2] + s[3] <= len(buf)] or secs
                # what tracekit reads (DWARF is ignored): mostly mutate those
                relevant = [s for s in live if not s[0].startswith((".debug", ".rel.debug", ".llvm"))]
                name, _, off, size = r.choice(relevant if relevant and r.random() < 0.9 else live)
                if off + size > len(buf) or size == 0:
                    self.bytes_in(buf, 0, len(buf))
                elif name == ".BTF":
                    self.btf_in(buf, off, size)
                elif name == ".BTF.ext":
                    self.btf_ext_in(buf, off, size)
                elif name == ".symtab" and size >= 24:
                    # a symbol field: name, info, other, shndx, value, size
                    sym = off + 24 * r.randrange(size // 24)
                    fo, width = r.choice([(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)])
                    self._put(buf, sym + fo, width, self._int(width, int.from_bytes(buf[sym + fo : sym + fo + width], "little")))
                else:
                    self.bytes_in(buf, off, off + size)
            else:
                self.bytes_in(buf, 0, len(buf))
        return bytes(buf)

    def btf(self, data: bytes) -> bytes:
        r = self.rng
        buf = bytearray(data)
        for _ in range(r.choice([1, 1, 2, 3])):
            if r.random() < 0.06:
                del buf[r.randrange(len(buf)) :]
                break
            self.btf_in(buf, 0, len(buf)) if r.random() < 0.8 else self.bytes_in(buf, 0, len(buf))
        return bytes(buf)

    def mutate(self, seed: Seed) -> bytes:
        return self.elf(seed.data) if seed.kind == "elf" else self.btf(seed.data)


# --- the loop ------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def corpus_name(kind: str, pair: str, data: bytes) -> str:
    return f"{kind}--{pair}--{_digest(data)}.bin" if pair else f"{kind}--{_digest(data)}.bin"


def parse_corpus_name(name: str) -> tuple[str, str]:
    parts = name.split("--")
    kind = parts[0]
    pair = parts[1] if kind == "target" and len(parts) >= 3 else ""
    return kind, pair


def _confirm(kind: str, data: bytes, ctx: Context, pair: str, first: Outcome) -> Outcome:
    """A timeout is re-run with 4x the budget: only a real hang (or a crash) is kept."""
    if first.status != "timeout":
        return first
    again = classify(functools.partial(run_input, kind, data, ctx, pair), TIME_LIMIT * 4)
    return again if again.status != "ok" and again.status != "error" else Outcome("ok")


def worker_loop(seed: int, seconds: float, out: Path, max_inputs: int = 0) -> dict[str, Any]:
    """Mutate seeds for ``seconds``; write each finding (first per signature) to ``out``."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    rng = random.Random(seed)
    objects = seed_objects()
    ctx = Context(default_target(), objects)
    pool = seeds(objects)
    pairs = [s for s in pool if s.kind == "target"]
    mut = Mutator(rng, [s.data for s in pool])
    out.mkdir(parents=True, exist_ok=True)
    found: dict[str, int] = {}
    counts = {"inputs": 0, "ok": 0, "error": 0}
    slowest = 0.0
    slowest_input = ("", b"")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (not max_inputs or counts["inputs"] < max_inputs):
        s = rng.choice(pool)
        data = mut.mutate(s)
        pair = s.pair if s.kind == "target" else ""
        if s.kind == "btf" and pairs and rng.random() < 0.3:
            # a mutated BTF doubles as a target for some seed object
            kind, pair = "target", rng.choice(pairs).pair
        else:
            kind = s.kind
        t0 = time.process_time()
        o = classify(functools.partial(run_input, kind, data, ctx, pair))
        took = time.process_time() - t0
        if took > slowest:
            slowest, slowest_input = took, (corpus_name(kind, pair, data), data)
        o = _confirm(kind, data, ctx, pair, o)
        counts["inputs"] += 1
        if o.status in ("ok", "error"):
            counts[o.status] += 1
            continue
        n = found.get(o.signature, 0)
        found[o.signature] = n + 1
        if n < 3:  # a few examples of each signature, to pick the smallest
            name = corpus_name(kind, pair, data)
            (out / name).write_bytes(data)
            print(json.dumps({"signature": o.signature, "status": o.status, "detail": o.detail,
                              "file": str(out / name), "size": len(data)}), flush=True)
    summary: dict[str, Any] = dict(counts)
    summary["signatures"] = found
    summary["slowest_input_s"] = round(slowest, 3)
    if slowest_input[0]:  # kept to see where the time goes
        (out / (slowest_input[0] + ".slowest")).write_bytes(slowest_input[1])
    summary["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return summary


def replay(paths: list[Path]) -> list[dict[str, Any]]:
    """Run every corpus file once; the failures (empty when all are results or errors)."""
    objects = seed_objects()
    ctx = Context(default_target(), objects)
    bad = []
    for p in paths:
        kind, pair = parse_corpus_name(p.name)
        if pair and pair not in objects:
            pair = next(iter(objects))
        data = p.read_bytes()
        o = classify(functools.partial(run_input, kind, data, ctx, pair))
        o = _confirm(kind, data, ctx, pair, o)
        if o.status not in ("ok", "error"):
            bad.append({"file": p.name, "status": o.status, "signature": o.signature, "detail": o.detail})
    return bad


def _limit_memory() -> None:
    """preexec_fn: cap the worker's address space (MemoryError instead of swapping)."""
    with open("/proc/self/status") as f:
        vm = next((int(line.split()[1]) << 10 for line in f if line.startswith("VmSize:")), 0)
    # the child is a fresh interpreter: its size after start-up is tiny; leave room for
    # vmlinux BTF (5 MB) and the seeds, then the headroom the input may use
    limit = vm + (256 << 20) + MEM_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def spawn(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run this module in a child under RLIMIT_AS (a hang in C code still ends: ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.harness", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory,
    )


def iter_findings(stdout: str) -> Iterator[dict[str, Any]]:
    for line in stdout.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m tests.fuzz.harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="the mutation loop itself (run it through 'run')")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--seconds", type=float, default=60)
    w.add_argument("--max-inputs", type=int, default=0)
    w.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run", help="the mutation loop in a memory-limited child")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seconds", type=float, default=60)
    r.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("replay", help="run corpus files (in a memory-limited child)")
    p.add_argument("paths", nargs="*", type=Path)
    p.add_argument("--here", action="store_true", help="in this process (no memory limit)")
    a = ap.parse_args(argv)
    if a.cmd == "worker":
        counts = worker_loop(a.seed, a.seconds, a.out, a.max_inputs)
        print("SUMMARY " + json.dumps(counts), flush=True)
        return 0
    if a.cmd == "run":
        # output streamed (findings appear as they are made), memory-limited child
        return subprocess.run(
            [sys.executable, "-m", "tests.fuzz.harness", "worker", "--seed", str(a.seed),
             "--seconds", str(a.seconds), "--out", str(a.out)],
            cwd=ROOT, timeout=a.seconds + 120, preexec_fn=_limit_memory, check=False,
        ).returncode
    paths = [q for x in (a.paths or [CORPUS]) for q in (sorted(x.iterdir()) if x.is_dir() else [x])]
    paths = [q for q in paths if q.suffix == ".bin"]
    if not a.here:
        cp = spawn(["replay", "--here", *map(str, paths)], timeout=60 + 5 * len(paths))
        sys.stdout.write(cp.stdout)
        sys.stderr.write(cp.stderr[-4000:])
        return cp.returncode
    bad = replay(paths)
    for b in bad:
        print(json.dumps(b), flush=True)
    print(f"SUMMARY {len(paths)} inputs, {len(bad)} failures", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
