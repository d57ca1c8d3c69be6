"""BTF: the BPF Type Format — reader, model, writer, BTF.ext and kernel BTF access."""

from .reader import BTF
from .types import Kind, Member, Param, EnumValue, VarSecinfo, Type, essential_name

__all__ = ["BTF", "Kind", "Member", "Param", "EnumValue", "VarSecinfo", "Type", "essential_name"]
