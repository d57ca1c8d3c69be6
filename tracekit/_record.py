"""Plain value classes for the start path, without :mod:`dataclasses` (issue 13).

``import dataclasses`` pulls in inspect (with ast, dis, tokenize, linecache: ~4 ms), and
every ``@dataclass`` compiles its generated ``__init__``/``__repr__``/``__eq__`` with
``exec`` at import (~0.1 ms a class; tracekit's loader has some thirty).  Together that is
a sixth of a bundled tool's start-up.  The classes on the loader's path instead write
their ``__init__`` by hand (compiled into the .pyc like any other code, and as fast as the
generated one) and get the rest from here:

- :class:`Record`: ``__repr__`` and ``__eq__`` over the class's ``_fields`` (in order, the
  way dataclasses do: equal when the other object is of the very same class and every
  field is equal), unhashable like a non-frozen dataclass, and ``_asdict()``;
- :class:`FrozenRecord`: the same, immutable after ``__init__`` (which sets fields with
  ``object.__setattr__``) and hashable over its fields.

``_fields`` is declared once per class; :meth:`Record.__init_subclass__` derives the
C-level ``attrgetter`` used to compare and hash, so no per-call Python loop runs.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar


class Record:
    __slots__ = ()
    #: the value's fields, in ``__init__`` order (what repr, ==, and _asdict use)
    _fields: ClassVar[tuple[str, ...]] = ()
    _key: ClassVar[Any] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        # a 1-tuple of fields would make attrgetter return a scalar: wrap it so keys of
        # different classes never compare equal by accident (same class is checked first)
        fields = cls._fields
        cls._key = attrgetter(*fields) if len(fields) > 1 else (
            (lambda self, _g=attrgetter(fields[0]): (_g(self),)) if fields else (lambda self: ()))

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = self._key
        return bool(key(self) == key(other))

    __hash__ = None  # type: ignore[assignment]  # mutable, like @dataclass(eq=True)

    def _asdict(self) -> dict[str, Any]:
        """Field name -> value (shallow, like a namedtuple's ``_asdict``)."""
        return {n: getattr(self, n) for n in self._fields}


class FrozenRecord(Record):
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __hash__(self) -> int:  # type: ignore[override]  # Record's is None (unhashable)
        return hash(self._key(self))
