"""Subskeletons: a BPF library's variables, maps and programs inside any object that linked it.

A library (``lib.bpf.o``) linked into different final objects lands at different
offsets in each: other objects' globals come before or after its own in ``.bss``,
``.data`` and ``.rodata``.  User-space code of the library must not care, so
:class:`LibraryView` (libbpf's subskeleton, ``bpftool gen subskeleton``) looks every
variable up *by name* in the final object's DATASEC BTF of the variable's section, and
reads and writes it through the final object's global-data view: before load for
``.rodata`` knobs, live (the map's mmap) for ``.bss``/``.data`` after load.

::

    obj = tracekit.open("app.bpf.o", link=["lib.bpf.o"])
    lib = tracekit.LibraryView(obj, "lib.bpf.o")
    lib.lib_factor = 5          # .rodata, before load
    obj.load()
    print(lib.lib_counter)      # .bss, live
    lib.maps["shared_map"]      # the final object's ObjectMap
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracekit.btf.types import LINKAGE_STATIC, Kind
from tracekit.errors import LinkerError
from tracekit.obj.spec import ObjectSpec

if TYPE_CHECKING:
    from tracekit.data.globaldata import GlobalData
    from tracekit.object import Object, ObjectMap, Program

_DATA_PREFIXES = (".data", ".rodata", ".bss")


def _is_data_section(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _DATA_PREFIXES)


@dataclass(frozen=True, slots=True)
class LibraryVariable:
    """One global variable of a library, as found in a final object."""

    name: str
    section: str  # data section in the final object (".bss", ".rodata", ".data.foo", ...)
    offset: int  # byte offset inside that section of the final object
    size: int


def _datasec_vars(spec: ObjectSpec) -> dict[str, tuple[str, int, int]]:
    """Non-static variables of ``spec``'s data sections: name -> (section, offset, size)."""
    out: dict[str, tuple[str, int, int]] = {}
    btf = spec.btf
    if btf is None:
        return out
    for m in spec.maps.values():
        if not m.is_internal or not m.datasec_type_id or not _is_data_section(m.section):
            continue
        for si in btf.type(m.datasec_type_id).secinfos:
            v = btf.type(si.type)
            if v.kind == Kind.VAR and v.linkage != LINKAGE_STATIC and v.name:
                out[v.name] = (m.section, si.offset, si.size)
    return out


class LibraryView:
    """A library's globals, maps and programs by name inside a final :class:`~tracekit.Object`.

    ``library`` is the library's object file (path or ELF bytes) or its parsed
    :class:`~tracekit.obj.spec.ObjectSpec`; only its *declarations* are used, so the same view
    code works against every final object that linked it.  Construction fails with
    :class:`~tracekit.errors.LinkerError` when the final object lacks any of the library's
    variables, maps or programs, or holds a variable of a different size.
    """

    def __init__(self, obj: Object, library: str | os.PathLike[str] | bytes | ObjectSpec, *,
                 name: str | None = None) -> None:
        if isinstance(library, ObjectSpec):
            lib = library
        else:
            from tracekit.obj.elf import load_spec

            lib = load_spec(bytes(library) if isinstance(library, (bytes, bytearray, memoryview)) else library,
                            name=name)
        final = _datasec_vars(obj.spec)
        want = _datasec_vars(lib)
        vars_: dict[str, LibraryVariable] = {}
        problems: list[str] = []
        for vname, (sec, _off, size) in want.items():
            got = final.get(vname)
            if got is None:
                problems.append(f"missing variable {vname!r} ({sec})")
                continue
            fsec, foff, fsize = got
            if fsize != size:
                problems.append(f"variable {vname!r} is {fsize} bytes in the final object but {size} in the library")
                continue
            vars_[vname] = LibraryVariable(vname, fsec, foff, fsize)
        lib_maps = [n for n, m in lib.maps.items() if not m.is_internal]
        problems += [f"missing map {n!r}" for n in lib_maps if n not in obj.maps]
        problems += [f"missing program {n!r}" for n in lib.programs if n not in obj.programs]
        if problems:
            raise LinkerError(
                f"object {obj.name!r} does not contain library {lib.name!r} as declared (was it linked with it?): "
                + "; ".join(problems)
            )
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_lib", lib)
        object.__setattr__(self, "_vars", vars_)
        object.__setattr__(self, "maps", {n: obj.maps[n] for n in lib_maps})
        object.__setattr__(self, "programs", {n: obj.programs[n] for n in lib.programs})

    # maps: dict[str, ObjectMap]; programs: dict[str, Program] (set in __init__)
    maps: dict[str, ObjectMap]
    programs: dict[str, Program]

    @property
    def name(self) -> str:
        """The library's object name."""
        return self._lib.name

    def variables(self) -> list[str]:
        return list(self._vars)

    def variable(self, name: str) -> LibraryVariable:
        """Where the library's variable ``name`` lives in the final object."""
        try:
            return self._vars[name]
        except KeyError:
            known = ", ".join(self._vars) or "none"
            raise AttributeError(f"library {self.name!r} has no global variable {name!r} (variables: {known})") from None

    def _view(self, name: str) -> tuple[GlobalData, str]:
        v = self.variable(name)
        return self._obj.section(v.section), name

    def __contains__(self, name: object) -> bool:
        return name in self._vars

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __dir__(self) -> list[str]:
        return [*self._vars, "maps", "programs", "variables", "variable", "name", "as_dict"]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        gd, n = self._view(name)
        return gd[n]

    __getitem__ = __getattr__

    def __setattr__(self, name: str, value: Any) -> None:
        gd, n = self._view(name)
        gd[n] = value

    __setitem__ = __setattr__

    def as_dict(self) -> dict[str, Any]:
        return {n: self[n] for n in self._vars}

    def __repr__(self) -> str:
        return f"<LibraryView {self.name} in {self._obj.name}: {', '.join(self._vars)}>"
