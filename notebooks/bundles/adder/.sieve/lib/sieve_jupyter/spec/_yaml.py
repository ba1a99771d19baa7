"""YAML I/O for specs: the same data as `FunctionSpec.to_dict`, in a file people read and edit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import SpecError

if TYPE_CHECKING:
    from sieve_jupyter.spec._model import FunctionSpec

__all__ = ["spec_from_yaml", "spec_to_yaml"]


def spec_to_yaml(spec: FunctionSpec) -> str:
    """The spec as YAML, keys in `to_dict` order."""
    import yaml

    text: str = yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True)
    return text


def spec_from_yaml(text: str) -> FunctionSpec:
    """Read a spec written by `spec_to_yaml` (validated like `FunctionSpec.from_dict`).

    Raises:
        SpecError: the text is not YAML, or the spec in it is invalid.
    """
    import yaml

    from sieve_jupyter.spec._model import FunctionSpec

    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError("spec", f"is not valid YAML ({exc}).", "fix the YAML syntax.") from None
    return FunctionSpec.from_dict(data)
