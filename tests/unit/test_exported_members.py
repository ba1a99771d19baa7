"""The public API is pinned: `sieve_jupyter.__all__` changes only on purpose.

Everything else in the package is private and may move. The package loads its names lazily so
a worker process (which imports `sieve_jupyter.runtime.worker`) starts with nothing but the
standard library and cloudpickle; the subprocess tests hold that line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import sieve_jupyter

EXPORTED = [
    "Audio",
    "BackendError",
    "BuildError",
    "ConfigurationError",
    "DependencyError",
    "DeployError",
    "DeployResult",
    "Deployment",
    "Env",
    "EnvironmentVariableError",
    "ExportError",
    "FatalException",
    "File",
    "FunctionHandle",
    "FunctionNotFoundError",
    "FunctionSpec",
    "GpuFallbackWarning",
    "GpuUnavailableError",
    "Image",
    "InputError",
    "InstallationError",
    "JobCancelledError",
    "JobFuture",
    "JobStatus",
    "Metadata",
    "Model",
    "ModelHandle",
    "PythonVersionMismatchError",
    "RemoteError",
    "ResultReleasedError",
    "SetupError",
    "SieveError",
    "SieveWarning",
    "SpecError",
    "SwapError",
    "Video",
    "WorkerCrashedError",
    "WorkerError",
    "__version__",
    "as_completed",
    "config",
    "configure",
    "deploy",
    "deployments",
    "export",
    "form",
    "function",
    "gather",
    "gpu",
    "load_ipython_extension",
    "load_yaml",
    "progress",
    "report_progress",
    "undeploy",
    "unload_ipython_extension",
    "wait",
]

#: what the notebook side needs and a worker must never pay for (or have installed)
NOTEBOOK_ONLY = ("pydantic", "IPython", "ipywidgets", "yaml", "packaging", "docker")


def test_all_is_the_pinned_sorted_list() -> None:
    assert sorted(EXPORTED) == EXPORTED
    assert sieve_jupyter.__all__ == EXPORTED


def test_every_exported_name_resolves() -> None:
    for name in EXPORTED:
        value = getattr(sieve_jupyter, name)
        assert value is not None, name
        if name[0].isupper():
            # classes live in private modules but keep their own names
            assert getattr(value, "__name__", name) == name


def test_dir_lists_exactly_the_public_names() -> None:
    assert sorted(dir(sieve_jupyter)) == EXPORTED


def test_errors_share_one_base() -> None:
    for name in EXPORTED:
        if name.endswith("Error"):
            assert issubclass(getattr(sieve_jupyter, name), sieve_jupyter.SieveError), name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sieve_jupyter.nope  # noqa: B018


def _python(code: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_importing_the_package_loads_nothing_else() -> None:
    result = _python(
        """
        import json, sys
        import sieve_jupyter
        print(json.dumps({"loaded": sorted(m for m in sys.modules if m.startswith("sieve_"))}))
        """
    )
    # (the hook list the notebook layer registers in: a few lines of the standard library)
    assert result["loaded"] == ["sieve_jupyter", "sieve_jupyter._hooks", "sieve_jupyter._version"]


def test_worker_runtime_imports_only_the_standard_library_and_cloudpickle() -> None:
    result = _python(
        """
        import json, sys
        baseline = {m.split(".")[0] for m in sys.modules}  # what site.py loaded already
        import sieve_jupyter.runtime.worker
        added = {m.split(".")[0] for m in sys.modules} - baseline
        ours = sorted(m for m in sys.modules if m.startswith("sieve_jupyter"))
        print(json.dumps({
            "third_party": sorted(added - set(sys.stdlib_module_names)),
            "ours": ours,
        }))
        """
    )
    assert result["third_party"] == ["cloudpickle", "sieve_jupyter"]
    for module in result["ours"]:
        assert module in (
            "sieve_jupyter",
            "sieve_jupyter._hooks",
            "sieve_jupyter._version",
        ) or module.startswith("sieve_jupyter.runtime"), module


def test_worker_starts_where_notebook_packages_are_missing() -> None:
    # None in sys.modules makes `import name` raise ImportError, as if it were not installed.
    blocked = ", ".join(repr(m) for m in NOTEBOOK_ONLY)
    result = _python(
        f"""
        import json, sys
        for name in ({blocked},):
            sys.modules[name] = None
        import sieve_jupyter.runtime.worker as worker
        import sieve_jupyter
        ok = callable(worker.main) and callable(sieve_jupyter.report_progress)
        print(json.dumps({{"ok": [str(ok)]}}))
        """
    )
    assert result["ok"] == ["True"]
