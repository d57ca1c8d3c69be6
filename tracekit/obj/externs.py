"""Kernel externs: kfuncs, ksyms and kconfig values, resolved from given kernel facts.

Pure: no syscalls, no file reads.  The loader gathers the facts (:class:`KernelFacts`:
target BTFs, the kallsyms entries it needs, the kernel config, a few probed features) and
this module decides, as libbpf's ``bpf_object__resolve_externs`` does:

* **kfunc** (an extern function in ``.ksyms``): the FUNC whose name is the extern's
  *essential* name (``bpf_task_acquire___v2`` -> ``bpf_task_acquire``) in vmlinux BTF,
  else in module BTFs in order.  Its FUNC_PROTO must be compatible with the local one
  (libbpf's ``bpf_core_types_are_compat``); only then is it resolved, so an object can
  declare several flavors with different prototypes and call whichever one the running
  kernel has behind ``bpf_ksym_exists()``.  Calls become ``BPF_PSEUDO_KFUNC_CALL`` with the
  kernel BTF id in ``imm`` and, for a module's kfunc, an index into the program's
  ``fd_array`` in ``off`` (slot 0 is never used: ``off == 0`` means vmlinux).
* **typed ksym** (a ``__ksym`` variable with a BTF type): a VAR of that essential name,
  type-compatible; the ldimm64 becomes ``BPF_PSEUDO_BTF_ID`` (imm = BTF id, second half =
  the module BTF's fd, 0 for vmlinux).
* **untyped ksym** (``extern const void sym __ksym``): its address from kallsyms.
* **kconfig** (``__kconfig``): ``CONFIG_*`` values from a user mapping, then the kernel
  config; virtual ``LINUX_KERNEL_VERSION``, ``LINUX_HAS_BPF_COOKIE``,
  ``LINUX_HAS_SYSCALL_WRAPPER``; written into the ``.kconfig`` map's contents.

A ``__weak`` extern that is missing (or, for kfuncs, incompatible) stays unresolved: its
ldimm64 reads 0 (so ``bpf_ksym_exists()`` is false and the verifier drops the guarded
branch) and its calls are poisoned (a call to an invalid helper the verifier only
complains about if it is reachable).  A strong one raises :class:`ExternError`, listing
every extern that failed and what was seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_BOOL, INT_CHAR, INT_SIGNED, Kind
from tracekit.errors import CORERelocationError, ExternError
from tracekit.obj.insn import (
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_KFUNC_CALL,
    POISON_EXTERN,
    Insn,
    poison,
    set_ldimm64,
)
from tracekit.obj.spec import ExternSpec, ObjectSpec, RelocKind

#: virtual kconfig externs libbpf (and tracekit) fill in themselves
VIRTUAL_KCONFIG = ("LINUX_KERNEL_VERSION", "LINUX_HAS_BPF_COOKIE", "LINUX_HAS_SYSCALL_WRAPPER")

# enum libbpf_tristate
TRI_NO = 0
TRI_YES = 1
TRI_MODULE = 2


@dataclass
class KernelFacts:
    """What the running (or a described) kernel offers, as plain data.

    ``targets[0]`` is vmlinux BTF, later entries module BTFs (split on vmlinux).
    ``kallsyms`` maps symbol names to addresses (only the names asked for are needed);
    ``None`` means kallsyms could not be read.  ``kconfig`` maps ``CONFIG_*`` names to
    their value text as written in a config file (``y``, ``m``, ``250``, ``"str"``);
    ``None`` means no config file was found.  ``user_kconfig`` (same format, or Python
    bools/ints/strs) overrides it.
    """

    targets: Sequence[BTF]
    kallsyms: Mapping[str, int] | None = None
    kconfig: Mapping[str, str] | None = None
    user_kconfig: Mapping[str, Any] = field(default_factory=dict)
    kernel_version: int = 0
    has_bpf_cookie: bool = False
    has_syscall_wrapper: bool = False
    #: where ``kconfig`` came from, for error messages
    kconfig_source: str = ""


@dataclass
class ResolvedExtern:
    """The outcome for one extern.  ``resolved`` False means: weak and absent (reads 0)."""

    spec: ExternSpec
    resolved: bool
    btf_id: int = 0  # kernel BTF id of the FUNC (kfunc) or VAR (typed ksym)
    target: int = 0  # index into KernelFacts.targets: 0 = vmlinux, > 0 = a module
    addr: int = 0  # untyped ksym address
    note: str = ""  # why a weak extern stayed unresolved

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class ExternResolution:
    """Every extern of an object resolved, plus the ``.kconfig`` map's contents."""

    externs: dict[str, ResolvedExtern]
    kconfig_map: str = ""  # name of the internal .kconfig map ("" when there is none)
    kconfig_data: bytes = b""

    def __getitem__(self, name: str) -> ResolvedExtern:
        return self.externs[name]


@dataclass
class ProgramExterns:
    """What the loader still has to do for one program after :func:`patch_program`.

    ``fd_array_targets[i]`` is the target index whose BTF fd goes into ``fd_array[i + 1]``
    (slot 0 stays 0).  ``btf_fd_insns`` lists ``(insn, target)`` pairs: the ldimm64 at
    ``insn`` needs that module BTF's fd in its second half.  (kconfig references need no
    fd of their own: they were appended to the plan's map refs.)
    """

    fd_array_targets: list[int] = field(default_factory=list)
    btf_fd_insns: list[tuple[int, int]] = field(default_factory=list)
    #: instruction index -> name of the unresolved weak kfunc whose call was poisoned there
    poisoned: dict[int, str] = field(default_factory=dict)

    @property
    def targets(self) -> set[int]:
        return set(self.fd_array_targets) | {t for _, t in self.btf_fd_insns}

    def fd_array(self, fds: Mapping[int, int]) -> list[int] | None:
        """The program's ``fd_array`` given target index -> BTF fd (``None`` if unneeded)."""
        if not self.fd_array_targets:
            return None
        return [0, *(fds[t] for t in self.fd_array_targets)]

    def fill_btf_fds(self, insns: list[Insn], fds: Mapping[int, int]) -> None:
        for at, t in self.btf_fd_insns:
            insns[at + 1].imm = fds[t]

    def explain_poison(self, verifier_log: str) -> str | None:
        """A hint when the verifier reached a poisoned call of an unresolved weak kfunc."""
        if str(POISON_EXTERN) not in verifier_log:
            return None
        names = set()
        for line in verifier_log.splitlines():
            if str(POISON_EXTERN) in line:
                head = line.split(":", 1)[0].strip()
                if head.isdigit() and int(head) in self.poisoned:
                    names.add(self.poisoned[int(head)])
        names = names or set(self.poisoned.values())
        return (
            f"the program calls weak kfunc(s) {', '.join(sorted(names))}, which this kernel lacks (or whose "
            "prototype does not match); guard each call with `if (bpf_ksym_exists(kfunc))`"
        )


# --- resolution ------------------------------------------------------------------------


def resolve_externs(spec: ObjectSpec, facts: KernelFacts,
                    kernel_ids: Mapping[str, tuple[int, int] | None] | None = None) -> ExternResolution:
    """Resolve every kernel extern of ``spec``; raise ExternError for strong failures.

    ``kernel_ids`` (extern name -> ``(btf_id, target index)``, None: no kernel BTF has it)
    gives ids the kernel found itself (tracekit.kernel.btf_lookup) for kfuncs and typed
    ksyms: they are taken as they are, without reading ``facts.targets`` -- so without
    the prototype / type compatibility checks, which need the kernel's BTF here (the
    verifier still checks every use against the kernel's types).

    Externs left for another BPF object (``kind`` ``func``/``var``) are not kernel
    externs; they are reported when a program actually references them
    (:func:`patch_program`), since the static linker should have resolved them.
    """
    out: dict[str, ResolvedExtern] = {}
    problems: list[str] = []
    kconfig_map = ""
    for name, m in spec.maps.items():
        if m.section == ".kconfig":
            kconfig_map = name
    kdata = bytearray(spec.maps[kconfig_map].value_size if kconfig_map else 0)
    for ext in spec.externs.values():
        try:
            if kernel_ids is not None and ext.name in kernel_ids:
                r = _resolve_by_kernel_id(spec, ext, kernel_ids[ext.name])
            elif ext.kind == "kfunc":
                r = _resolve_kfunc(spec, ext, facts)
            elif ext.kind == "ksym":
                r = _resolve_ksym(spec, ext, facts)
            elif ext.kind == "kconfig":
                r = _resolve_kconfig(spec, ext, facts, kdata)
            else:
                continue
        except ExternError as e:
            problems.append(str(e))
            continue
        out[ext.name] = r
    if problems:
        head = f"object {spec.name!r}: " + (
            "1 kernel extern could not be resolved" if len(problems) == 1
            else f"{len(problems)} kernel externs could not be resolved"
        )
        raise ExternError(head + ":\n  " + "\n  ".join(problems))
    return ExternResolution(out, kconfig_map, bytes(kdata))


def _target_label(facts: KernelFacts, i: int) -> str:
    name = facts.targets[i].name if i < len(facts.targets) else ""
    if i == 0:
        return "vmlinux"
    base = (name or "").rstrip("/").rsplit("/", 1)[-1]
    return f"module {base}" if base else f"module BTF #{i}"


def _find_own(facts: KernelFacts, name: str, kind: Kind) -> list[tuple[int, int]]:
    """``(target index, type id)`` of every ``kind`` named ``name``: vmlinux first, then
    modules (their own types only: a split BTF also sees its base's)."""
    found: list[tuple[int, int]] = []
    targets = facts.targets
    if not targets:
        return found
    for tid in targets[0].find(name, kind):
        found.append((0, tid))
    if found:
        return found  # libbpf looks at modules only when vmlinux has no such name
    base_len = len(targets[0])
    for i in range(1, len(targets)):
        for tid in targets[i].find(name, kind):
            if tid >= base_len:
                found.append((i, tid))
        if found:
            return found
    return found


def _compat(local: BTF, lid: int, target: BTF, tid: int) -> bool:
    # libbpf's bpf_core_types_are_compat, shared with the CO-RE engine
    from tracekit.obj.core import _types_compat

    try:
        return _types_compat(local, lid, target, tid)
    except CORERelocationError:
        return False


def _resolve_kfunc(spec: ObjectSpec, ext: ExternSpec, facts: KernelFacts) -> ResolvedExtern:
    local = _local_btf(spec, ext)
    lproto = local.type(ext.btf_id).type
    ess = ext.essential_name
    cands = _find_own(facts, ess, Kind.FUNC)
    seen: list[str] = []
    for ti, tid in cands:
        tb = facts.targets[ti]
        kproto = tb.type(tid).type
        if _compat(local, lproto, tb, kproto):
            return ResolvedExtern(ext, True, btf_id=tid, target=ti)
        seen.append(f"{_target_label(facts, ti)} [{tid}] {ess}: {tb.describe(kproto)}")
    mine = f"{ext.name}: {local.describe(lproto)}"
    if not cands:
        note = f"no kernel function {ess!r} in vmlinux or module BTF"
    else:
        note = f"local prototype {mine} is incompatible with " + "; ".join(seen)
    if ext.weak:
        return ResolvedExtern(ext, False, note=note)
    if not cands:
        raise ExternError(
            f"kfunc {ext.name!r} (declared {mine}): {note}; declare it __weak and guard its "
            f"calls with bpf_ksym_exists() to run on kernels without it"
        )
    raise ExternError(f"kfunc {ext.name!r}: {note}")


def _resolve_by_kernel_id(spec: ObjectSpec, ext: ExternSpec, got: tuple[int, int] | None) -> ResolvedExtern:
    """A kfunc or typed ksym whose id the kernel looked up; the errors for a missing
    strong one say what the user-space search would say."""
    if got is not None:
        return ResolvedExtern(ext, True, btf_id=got[0], target=got[1])
    local = _local_btf(spec, ext)
    ess = ext.essential_name
    if ext.kind == "kfunc":
        note = f"no kernel function {ess!r} in vmlinux or module BTF"
        if ext.weak:
            return ResolvedExtern(ext, False, note=note)
        mine = f"{ext.name}: {local.describe(local.type(ext.btf_id).type)}"
        raise ExternError(
            f"kfunc {ext.name!r} (declared {mine}): {note}; declare it __weak and guard its "
            f"calls with bpf_ksym_exists() to run on kernels without it"
        )
    if ext.weak:
        return ResolvedExtern(ext, False, note="no such VAR in kernel BTF")
    raise ExternError(
        f"ksym {ext.name!r} ({local.describe(ext.type_id)}): no kernel variable {ess!r} in vmlinux "
        "or module BTF (only per-CPU variables are described by kernel BTF)"
    )


def _resolve_ksym(spec: ObjectSpec, ext: ExternSpec, facts: KernelFacts) -> ResolvedExtern:
    local = _local_btf(spec, ext)
    ltype = local.skip_mods(ext.type_id) if ext.type_id else 0
    if ltype == 0:
        # untyped (const void): an address from kallsyms
        if facts.kallsyms is None:
            if ext.weak:
                return ResolvedExtern(ext, False, note="kallsyms unavailable")
            raise ExternError(
                f"ksym {ext.name!r} is untyped (void), so its address must come from /proc/kallsyms, "
                "which could not be read"
            )
        addr = facts.kallsyms.get(ext.name)
        if addr is None:
            if ext.weak:
                return ResolvedExtern(ext, False, note="not in kallsyms")
            raise ExternError(f"ksym {ext.name!r}: no such symbol in /proc/kallsyms")
        if addr == -1:
            raise ExternError(f"ksym {ext.name!r}: /proc/kallsyms lists several addresses for it (ambiguous)")
        if addr == 0 and not ext.weak:
            raise ExternError(
                f"ksym {ext.name!r}: /proc/kallsyms shows address 0 (hidden by kernel.kptr_restrict? "
                "run as root or set it to 0)"
            )
        return ResolvedExtern(ext, True, addr=addr)
    ess = ext.essential_name
    cands = _find_own(facts, ess, Kind.VAR)
    if not cands:
        if ext.weak:
            return ResolvedExtern(ext, False, note="no such VAR in kernel BTF")
        raise ExternError(
            f"ksym {ext.name!r} ({local.describe(ext.type_id)}): no kernel variable {ess!r} in vmlinux "
            "or module BTF (only per-CPU variables are described by kernel BTF)"
        )
    ti, tid = cands[0]
    tb = facts.targets[ti]
    ktype = tb.type(tid).type
    # both sides without modifiers/typedefs, as libbpf compares them (const int ~ int)
    if not _compat(local, ltype, tb, tb.skip_mods(ktype)):
        # libbpf refuses this even for weak externs: the declaration is wrong, not absent
        raise ExternError(
            f"ksym {ext.name!r}: declared {local.describe(ext.type_id)}, but the kernel's "
            f"{ess!r} ({_target_label(facts, ti)} [{tid}]) is {tb.describe(ktype)}"
        )
    return ResolvedExtern(ext, True, btf_id=tid, target=ti)


def _local_btf(spec: ObjectSpec, ext: ExternSpec) -> BTF:
    if spec.btf is None:  # elf.py refuses externs without BTF; keep the invariant explicit
        raise ExternError(f"extern {ext.name!r} needs the object's BTF")
    return spec.btf


# --- kconfig ---------------------------------------------------------------------------


def _kcfg_class(btf: BTF, tid: int) -> tuple[str, int, bool]:
    """(class, size, signed): class is bool, char, int, tristate or char_array."""
    t = btf.resolve(tid)
    if t.kind == Kind.INT:
        if t.encoding & INT_BOOL:
            return "bool", 1, False
        if t.size == 1 and (t.encoding & INT_CHAR or t.name in ("char", "signed char", "unsigned char")):
            return "char", 1, bool(t.encoding & INT_SIGNED)
        return "int", t.size, bool(t.encoding & INT_SIGNED)
    if t.kind in (Kind.ENUM, Kind.ENUM64) and t.name == "libbpf_tristate":
        return "tristate", t.size, False
    if t.kind == Kind.ARRAY:
        return "char_array", btf.size_of(tid), False
    return "unknown", btf.size_of(tid), False


def _put_num(ext: ExternSpec, cls: str, size: int, signed: bool, value: int, buf: bytearray, what: str) -> None:
    if cls not in ("int", "char", "bool"):
        raise ExternError(f"kconfig {ext.name!r} ({cls}): {what} is a number, which needs an integer, char or bool")
    if cls == "bool" and value not in (0, 1):
        raise ExternError(f"kconfig {ext.name!r} (bool): value {value} is neither 0 nor 1")
    bits = size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if signed and value > hi and value < (1 << bits):
        value -= 1 << bits  # a config's 0xffffffff into an int: the same bits, as C would store
    if not (lo <= value <= hi):
        raise ExternError(f"kconfig {ext.name!r}: value {value} ({what}) does not fit in {size} bytes")
    buf[ext.offset : ext.offset + size] = (value & ((1 << bits) - 1)).to_bytes(size, "little")


def _parse_number(text: str) -> int | None:
    s = text.strip()
    neg = s.startswith("-")
    body = s[1:] if neg else s
    try:
        if body[:2].lower() == "0x":
            v = int(body[2:], 16)
        elif len(body) > 1 and body.startswith("0") and body.isdigit():
            v = int(body, 8)  # C's strtoull(base 0), which libbpf uses
        else:
            v = int(body, 10)
    except ValueError:
        return None
    return -v if neg else v


def _set_kconfig(ext: ExternSpec, btf: BTF, raw: Any, buf: bytearray, source: str) -> None:
    cls, size, signed = _kcfg_class(btf, ext.type_id)
    what = f"{raw!r} from {source}"
    if isinstance(raw, bool):
        raw = "y" if raw else "n"
    if isinstance(raw, int):
        _put_num(ext, cls, size, signed, raw, buf, what)
        return
    if isinstance(raw, bytes):
        raw = raw.decode()
    text = str(raw)
    if text in ("y", "n", "m"):
        if cls == "bool":
            if text == "m":
                raise ExternError(f"kconfig {ext.name!r} is bool, but the kernel has it as a module (m): "
                                  "declare it enum libbpf_tristate")
            buf[ext.offset] = 1 if text == "y" else 0
        elif cls == "tristate":
            tri = {"y": TRI_YES, "n": TRI_NO, "m": TRI_MODULE}[text]
            buf[ext.offset : ext.offset + size] = tri.to_bytes(size, "little")
        elif cls == "char":
            buf[ext.offset] = ord(text)
        else:
            raise ExternError(f"kconfig {ext.name!r} ({btf.describe(ext.type_id)}): value {text!r} "
                              f"({source}) needs bool, char or enum libbpf_tristate")
        return
    if cls == "char_array":
        if text.startswith('"'):
            if len(text) < 2 or not text.endswith('"'):
                raise ExternError(f"kconfig {ext.name!r}: malformed string value {what}")
            text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        data = text.encode()[: size - 1]  # always NUL-terminated, like libbpf (truncating)
        buf[ext.offset : ext.offset + size] = data + bytes(size - len(data))
        return
    if text.startswith('"'):
        raise ExternError(f"kconfig {ext.name!r} ({btf.describe(ext.type_id)}): string value {what} "
                          "needs a char array")
    v = _parse_number(text)
    if v is None:
        raise ExternError(f"kconfig {ext.name!r}: cannot parse value {what}")
    _put_num(ext, cls, size, signed, v, buf, what)


def _resolve_kconfig(spec: ObjectSpec, ext: ExternSpec, facts: KernelFacts, buf: bytearray) -> ResolvedExtern:
    btf = _local_btf(spec, ext)
    name = ext.name
    if name in facts.user_kconfig:
        _set_kconfig(ext, btf, facts.user_kconfig[name], buf, "the kconfig mapping given to load()")
        return ResolvedExtern(ext, True)
    if name.startswith("LINUX_"):
        if name == "LINUX_KERNEL_VERSION":
            if not facts.kernel_version:
                raise ExternError("kconfig 'LINUX_KERNEL_VERSION': the kernel version is unknown")
            value = facts.kernel_version
        elif name == "LINUX_HAS_BPF_COOKIE":
            value = int(facts.has_bpf_cookie)
        elif name == "LINUX_HAS_SYSCALL_WRAPPER":
            value = int(facts.has_syscall_wrapper)
        elif ext.weak:
            return ResolvedExtern(ext, False, note="unknown virtual extern")
        else:
            raise ExternError(f"kconfig {name!r}: unknown virtual extern (known: {', '.join(VIRTUAL_KCONFIG)})")
        cls, size, signed = _kcfg_class(btf, ext.type_id)
        if cls == "tristate":
            raise ExternError(f"kconfig {name!r}: declare it as an integer or bool, not a tristate")
        _put_num(ext, cls, size, signed, value, buf, "computed by tracekit")
        return ResolvedExtern(ext, True)
    if not name.startswith("CONFIG_"):
        raise ExternError(f"kconfig {name!r}: __kconfig externs must be named CONFIG_* (or LINUX_* virtual ones)")
    if facts.kconfig is not None and name in facts.kconfig:
        _set_kconfig(ext, btf, facts.kconfig[name], buf, facts.kconfig_source or "the kernel config")
        return ResolvedExtern(ext, True)
    if ext.weak:
        return ResolvedExtern(ext, False, note="not set in the kernel config")
    if facts.kconfig is None:
        raise ExternError(
            f"kconfig {name!r}: no kernel config found (/boot/config-$(uname -r), /proc/config.gz); "
            f"pass it to load(kconfig={{{name!r}: ...}}) or declare it __weak"
        )
    raise ExternError(
        f"kconfig {name!r} is not set in {facts.kconfig_source or 'the kernel config'}; declare it __weak "
        "to read 0 instead"
    )


# --- patching --------------------------------------------------------------------------


def patch_program(plan: Any, res: ExternResolution) -> ProgramExterns:
    """Rewrite ``plan``'s extern instructions in place (a :class:`tracekit.obj.plan.ProgramPlan`).

    kconfig references become map-value references to the ``.kconfig`` map (appended to
    ``plan.map_refs``, so the usual fd filling covers them).  Returns what needs kernel
    fds: module BTFs in ``fd_array`` and in typed-ksym ldimm64s.
    """
    from tracekit.obj.plan import MapRef

    insns: list[Insn] = plan.insns
    out = ProgramExterns()
    slots: dict[int, int] = {}
    for ref in plan.extern_refs:
        at = ref.insn
        r = res.externs.get(ref.name)
        if r is None:
            raise ExternError(
                f"program {plan.name!r}: instruction {at} refers to {ref.name!r}, which is not a kernel extern "
                "(a function or variable of another BPF object? link the objects first: tracekit link)"
            )
        ext = r.spec
        ins = insns[at]
        if ref.kind == RelocKind.EXTERN_CALL:
            if ext.kind != "kfunc" or not ins.is_call:
                raise ExternError(f"program {plan.name!r}: instruction {at} calls {ref.name!r}, which is a {ext.kind}")
            if not r.resolved:
                poison(insns, at, POISON_EXTERN)
                out.poisoned[at] = ext.name
                continue
            ins.src = BPF_PSEUDO_KFUNC_CALL
            ins.imm = r.btf_id
            if r.target:
                slot = slots.get(r.target)
                if slot is None:
                    out.fd_array_targets.append(r.target)
                    slot = slots[r.target] = len(out.fd_array_targets)
                ins.off = slot
            else:
                ins.off = 0
            continue
        if not ins.is_ldimm64:
            raise ExternError(f"program {plan.name!r}: instruction {at} refers to {ref.name!r} but is not an ldimm64")
        if ext.kind == "kconfig":
            if not res.kconfig_map:
                raise ExternError(f"program {plan.name!r}: kconfig {ref.name!r} but the object has no .kconfig map")
            ins.src = 0
            plan.map_refs.append(MapRef(at, res.kconfig_map, ext.offset))
        elif r.resolved and r.btf_id:
            # typed ksym, or a kfunc's address (bpf_ksym_exists): the kernel's BTF object
            ins.src = BPF_PSEUDO_BTF_ID
            ins.imm = r.btf_id
            insns[at + 1].imm = 0
            if r.target:
                out.btf_fd_insns.append((at, r.target))
        else:
            # untyped ksym address, or 0 for an unresolved weak extern
            set_ldimm64(insns, at, r.addr if r.resolved else 0, src=0)
    return out


def kernel_version_code(release: str) -> int:
    """``KERNEL_VERSION(a, b, c)`` from a release string such as ``6.1.0-28-amd64``."""
    parts = []
    for piece in release.split("-", 1)[0].split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    a, b, c = parts
    return (a << 16) + (b << 8) + min(c, 255)


__all__ = [
    "ExternResolution",
    "KernelFacts",
    "ProgramExterns",
    "ResolvedExtern",
    "kernel_version_code",
    "patch_program",
    "resolve_externs",
]
