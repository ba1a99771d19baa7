"""A model made of two entrypoint functions (a model.yaml's ``load`` and ``predict``), as it
runs inside a worker.

The notebook side (`sieve_jupyter.modelyaml`) validates the file and hands over plain data: the
code root, the files, and each function's entrypoint and inputs, every input already classified
as a literal, an environment variable, a runtime variable or a call argument. Here `__setup__`
imports the load entrypoint from the code root and calls it once; `__predict__` calls the predict
entrypoint with its inputs resolved for each call and checks the declared output keys.

Standard library only: this runs in containers and bundles where nothing else of sieve-jupyter
is installed, and its classes travel by value (cloudpickle) with their configuration.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from sieve_jupyter.runtime._context import current_context

__all__ = ["EntrypointModel", "entrypoint_model_class", "gpu_given"]

# How an input's value is found (the second item of each ``(name, (kind, data))`` input):
LITERAL = "literal"  # data: the value itself
ENV = "env"  # data: an environment variable's name, read in the worker (secrets stay out)
VARIABLE = "variable"  # data: a runtime variable, e.g. "model.files.params.url"
ARGUMENT = "argument"  # data: the name of a `.run()` / `.push()` argument


def gpu_given() -> bool:
    """Whether this worker was given a GPU: the local backend sets ``CUDA_VISIBLE_DEVICES`` (empty
    for none); a container has NVIDIA device nodes only when it was given cards."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return visible.strip() not in ("", "-1", "none", "void", "NoDevFiles")
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def _import_entrypoint(function: Mapping[str, Any]) -> Callable[..., Any]:
    entrypoint = function["entrypoint"]
    module_name, _, function_name = entrypoint.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, function_name, None)
    if found is None or not callable(found):
        what = "is not callable" if found is not None else "is not defined there"
        raise ImportError(
            f"{function['at']['entrypoint']}: {function_name} {what} (module "
            f"{getattr(module, '__file__', module_name)}). Fix: point the entrypoint at a "
            "function of that module."
        )
    return found  # type: ignore[no-any-return]


def _check_output(model: str, function: Mapping[str, Any], result: Any) -> None:
    """Raise when a declared output key is missing from the result (or from any item of a list
    result: one prediction per datapoint)."""
    output = function.get("output") or {}
    keys = list(output.get("keys") or ())
    if not keys:
        return
    where = function["at"]["keys"]
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    for index, item in enumerate(items):
        label = f"item {index} of " if isinstance(result, (list, tuple)) else ""
        if not isinstance(item, Mapping):
            raise ValueError(
                f"{model}: {label}the output {output.get('name', '')!r} of "
                f"{function['entrypoint']} is a {type(item).__name__}, not a mapping with the keys "
                f"{keys} ({where}). Fix: return a dict with those keys (a list of dicts, one per "
                "datapoint), or remove output.keys."
            )
        missing = [key for key in keys if key not in item]
        if missing:
            raise ValueError(
                f"{model}: {label}the output {output.get('name', '')!r} of "
                f"{function['entrypoint']} has no key {missing[0]!r}; it has "
                f"{sorted(map(str, item))} ({where} lists {keys}). Fix: return every listed key, "
                f"or remove {missing[0]!r} from output.keys."
            )


class EntrypointModel:
    """Base of the classes `entrypoint_model_class` makes; one per loaded model.

    ``__sieve_entrypoints__`` is the configuration (plain data, see the module docstring):
    ``name``, ``root``, ``device`` ("cpu" or "gpu"), ``files`` (name -> path or URL) and
    ``functions`` (``load`` and ``predict``: ``entrypoint``, ``inputs``, ``output``, and ``at``,
    the model.yaml positions its messages point to).
    """

    __sieve_entrypoints__: ClassVar[dict[str, Any]] = {}

    def __setup__(self) -> None:
        config = self.__sieve_entrypoints__
        root = config["root"]
        if root not in sys.path:
            sys.path.insert(0, root)
        if current_context() is not None:
            # Research code opens its configs relative to the repository; a worker serves only
            # this model, so it may move there (an instance in the notebook leaves cwd alone).
            os.chdir(root)
        device = "cuda" if config["device"] == "gpu" and gpu_given() else "cpu"
        variables: dict[str, Any] = {
            "model.name": config["name"],
            "model.runtime.device": device,
        }
        for name, location in config["files"].items():
            variables[f"model.files.{name}.url"] = location
        self._sieve_variables = variables
        functions = config["functions"]
        self._sieve_callables = {
            kind: _import_entrypoint(function) for kind, function in functions.items()
        }
        load = functions.get("load")
        if load is not None:
            kwargs = self._sieve_inputs("load", {})
            result = self._sieve_callables["load"](**kwargs)
            _check_output(config["name"], load, result)
            output = load.get("output") or {}
            if output.get("name"):
                variables[f"model.runtime.load.output.{output['name']}"] = result
            for key in output.get("keys") or ():
                variables[f"model.runtime.load.output.{key}"] = result[key]
        self._sieve_signature = inspect.signature(self.__predict__)  # type: ignore[attr-defined]

    def _sieve_inputs(self, kind: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of one call of `kind`; an argument the caller left out is
        left out here too, so the function's own default applies."""
        values: dict[str, Any] = {}
        done: dict[tuple[str, str], Any] = {}
        for name, _ in self.__sieve_entrypoints__["functions"][kind]["inputs"]:
            value = self._sieve_input(kind, name, arguments, done, ())
            if value is not _OMITTED:
                values[name] = value
        return values

    def _sieve_input(
        self,
        kind: str,
        name: str,
        arguments: Mapping[str, Any],
        done: dict[tuple[str, str], Any],
        stack: tuple[tuple[str, str], ...],
    ) -> Any:
        key = (kind, name)
        if key in done:
            return done[key]
        if key in stack:  # the notebook side refuses cycles; this keeps a bad config finite
            raise RuntimeError(f"model.runtime.{kind}.inputs.{name} refers to itself")
        function = self.__sieve_entrypoints__["functions"][kind]
        source, data = dict(function["inputs"])[name]
        if source == LITERAL:
            value = data
        elif source == ENV:
            value = os.environ[data]
        elif source == ARGUMENT:
            value = arguments.get(data, _OMITTED)
        else:
            parts = data.split(".")
            if len(parts) == 5 and parts[:2] == ["model", "runtime"] and parts[3] == "inputs":
                value = self._sieve_input(parts[2], parts[4], arguments, done, (*stack, key))
            else:
                value = self._sieve_variables[data]
        done[key] = value
        return value

    def _sieve_predict(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        arguments = self._sieve_signature.bind(*args, **kwargs).arguments
        config = self.__sieve_entrypoints__
        result = self._sieve_callables["predict"](**self._sieve_inputs("predict", arguments))
        _check_output(config["name"], config["functions"]["predict"], result)
        return result


class _Omitted:
    def __repr__(self) -> str:
        return "<omitted>"


_OMITTED = _Omitted()


def entrypoint_model_class(
    config: dict[str, Any],
    *,
    class_name: str,
    parameters: list[inspect.Parameter],
    annotations: dict[str, Any],
    doc: str,
) -> type[EntrypointModel]:
    """A model class for one configuration, whose ``__predict__`` has `parameters` (the call
    arguments) and `annotations` (their types, and ``return``), which forms and schemas read.

    The class and its ``__predict__`` are made here, not importable by name, so cloudpickle
    ships them (and the configuration) by value.
    """

    def __predict__(self: EntrypointModel, *args: Any, **kwargs: Any) -> Any:
        return self._sieve_predict(args, kwargs)

    me = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return_annotation = annotations.get("return", inspect.Signature.empty)
    __predict__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [me, *parameters], return_annotation=return_annotation
    )
    __predict__.__annotations__ = dict(annotations)
    __predict__.__doc__ = doc or None
    __predict__.__qualname__ = f"{class_name}.__predict__"
    namespace = {
        "__sieve_entrypoints__": config,
        "__predict__": __predict__,
        # The docstring is __predict__'s: a spec reads the class's and __predict__'s both (so
        # the same text twice), and None would let the class inherit EntrypointModel's own.
        "__doc__": "",
        "__module__": __name__,
        "__qualname__": class_name,
    }
    return type(class_name, (EntrypointModel,), namespace)
