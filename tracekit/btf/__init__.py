"""BTF: the BPF Type Format — reader, model, writer, BTF.ext and kernel BTF access."""

from tracekit.btf.reader import BTF
from tracekit.btf.types import (
    EnumValue,
    Kind,
    Member,
    Param,
    Type,
    VarSecinfo,
    essential_name,
)

__all__ = ["BTF", "Kind", "Member", "Param", "EnumValue", "VarSecinfo", "Type", "essential_name"]
