"""spec_from_callable: what the decorators record; every bad input fails at decoration time."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import sieve_jupyter as sieve
from sieve_jupyter import SpecError
from sieve_jupyter.spec import (
    DEFAULT_CUDA_VERSION,
    Env,
    FunctionSpec,
    GpuRequest,
    Metadata,
    gpu,
    spec_from_callable,
)


def multiply(x1: int, x2: int) -> int:
    """Multiply two numbers."""
    return x1 * x2


def build(
    obj: Any = multiply, kind: str = "function", name: Any = "multiplier", **options: Any
) -> FunctionSpec:
    return spec_from_callable(obj, kind=kind, name=name, **options)


def assert_spec_error(
    field: str, obj: Any = multiply, kind: str = "function", **kwargs: Any
) -> SpecError:
    kwargs.setdefault("name", "multiplier")
    with pytest.raises(SpecError) as info:
        spec_from_callable(obj, kind=kind, **kwargs)
    assert field in str(info.value), str(info.value)
    assert info.value.field.startswith(field.split("[")[0]) or field in info.value.field
    assert info.value.fix, "every SpecError tells the fix"
    return info.value


# --- what a function's spec records -------------------------------------------------------------


def test_function_spec_defaults() -> None:
    spec = build()
    assert spec.name == "multiplier"
    assert spec.kind == "function"
    assert spec.gpu is None
    assert spec.env == ()
    assert spec.metadata == Metadata()
    assert spec.restart_on_error is True
    assert spec.is_generator is False
    assert spec.signature == "(x1: int, x2: int) -> int"
    assert spec.doc == "Multiply two numbers."
    assert spec.environment.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert spec.environment.cuda_version is None
    assert spec.environment.needs_cuda is False
    assert spec.inputs["properties"] == {"x1": {"type": "integer"}, "x2": {"type": "integer"}}
    assert spec.inputs["required"] == ["x1", "x2"]
    assert spec.output == {"type": "integer"}


def test_all_options_are_recorded() -> None:
    spec = build(
        gpu=gpu.L4(split=2),
        python_version="3.10",
        python_packages=["numpy>=1.26", "torch==2.4.0"],
        system_packages=["ffmpeg", "libgl1"],
        cuda_version="12.2",
        run_commands=["mkdir -p /models"],
        environment_variables=[sieve.Env(name="API_KEY", description="the key")],
        metadata=sieve.Metadata(title="Multiplier", tags=["math"]),
        restart_on_error=False,
    )
    assert spec.gpu == GpuRequest("L4", 2)
    env = spec.environment
    assert env.python_version == "3.10"
    assert env.python_packages == ("numpy>=1.26", "torch==2.4.0")
    assert env.system_packages == ("ffmpeg", "libgl1")
    assert env.cuda_version == "12.2.2"
    assert env.run_commands == ("mkdir -p /models",)
    assert spec.env == (Env("API_KEY", "the key"),)
    assert spec.metadata.title == "Multiplier"
    assert spec.metadata.tags == ("math",)
    assert spec.restart_on_error is False


def test_generator_function() -> None:
    def count(n: int) -> Iterator[int]:
        yield from range(n)

    spec = build(count, name="count")
    assert spec.is_generator is True
    assert spec.output == {"type": "integer"}


def test_gpu_request_picks_the_default_cuda_version() -> None:
    assert build(gpu=gpu.T4()).environment.cuda_version == DEFAULT_CUDA_VERSION
    assert build(gpu=gpu.T4(), cuda_version="11.8").environment.cuda_version == "11.8.0"


def test_cpu_means_no_accelerator() -> None:
    spec = build(gpu=gpu.CPU())
    assert spec.gpu is None
    assert spec.environment.cuda_version is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (gpu.T4(split=3), GpuRequest("T4", 3)),
        (gpu.A100, GpuRequest("A100")),  # the constructor, not called
        ("a100-20gb", GpuRequest("A10020GB")),  # Sieve's older machine_type strings
        ("T4", GpuRequest("T4")),
        (True, GpuRequest("T4")),  # Sieve's older gpu=True
        ({"kind": "H100", "split": 2}, GpuRequest("H100", 2)),
        (None, None),
        (False, None),
    ],
)
def test_gpu_forms_sieve_users_write(value: Any, expected: GpuRequest | None) -> None:
    assert build(gpu=value).gpu == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"gpu": True, "machine_type": "a100-20gb"}, GpuRequest("A10020GB")),  # hifi_gan_plus
        ({"gpu": True, "machine_type": "a100"}, GpuRequest("A100")),  # controlnet
        ({"machine_type": "a100"}, GpuRequest("A100")),  # a GPU machine type asks for its GPU
        ({"gpu": None, "machine_type": "t4"}, GpuRequest("T4")),
        ({"gpu": gpu.A100(split=2), "machine_type": "a100"}, GpuRequest("A100", 2)),
        ({"gpu": "A10020GB", "machine_type": "a100-20gb"}, GpuRequest("A10020GB")),
        ({"gpu": {"kind": "L4", "split": 4}, "machine_type": "L4"}, GpuRequest("L4", 4)),
        ({"gpu": gpu.V100, "machine_type": "v100"}, GpuRequest("V100")),
        ({"machine_type": "cpu"}, None),
        ({"gpu": False, "machine_type": "cpu"}, None),
        ({"gpu": gpu.T4(), "machine_type": None}, GpuRequest("T4")),
    ],
)
def test_machine_type_decides_the_gpu(options: dict[str, Any], expected: GpuRequest | None) -> None:
    spec = build(**options)
    assert spec.gpu == expected
    assert "machine_type" not in spec.to_dict()  # only spec.gpu records it
    if expected is not None:
        assert spec.environment.cuda_version == DEFAULT_CUDA_VERSION


def test_machine_type_on_a_model_as_sieve_examples_write_it() -> None:
    spec = build(Adder, kind="model", name="hifi_gan_plus", gpu=True, machine_type="a100-20gb")
    assert spec.gpu == GpuRequest("A10020GB")


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"gpu": gpu.T4(), "machine_type": "a100"}, ["sieve.gpu.T4()", "'a100'", "A100()"]),
        ({"gpu": "l4", "machine_type": "a100-20gb"}, ["'l4'", "'a100-20gb'", "A10020GB()"]),
        ({"gpu": gpu.CPU(), "machine_type": "t4"}, ["sieve.gpu.CPU()", "'t4'"]),
        ({"gpu": False, "machine_type": "a100"}, ["gpu=False", "'a100'", "drop machine_type"]),
        ({"gpu": True, "machine_type": "cpu"}, ["gpu=True", "'cpu'"]),
    ],
)
def test_machine_type_contradicting_gpu_fails(options: dict[str, Any], mentions: list[str]) -> None:
    error = assert_spec_error("machine_type", **options)
    assert error.field == "machine_type"
    assert "Fix:" in str(error)
    for text in mentions:
        assert text in str(error), text


@pytest.mark.parametrize("value", ["a100-40gb", "tpu", "", 3, True])
def test_unknown_machine_type_lists_the_known_ones(value: Any) -> None:
    error = assert_spec_error("machine_type", machine_type=value)
    assert error.field == "machine_type"
    assert "Fix:" in str(error)
    assert "'a100-20gb'" in error.fix and "'t4'" in error.fix and "sieve.gpu.A100()" in error.fix


def test_a_bad_gpu_next_to_a_machine_type_names_gpu() -> None:
    assert assert_spec_error("gpu", gpu="T5", machine_type="t4").field == "gpu"


def test_machine_type_is_a_known_option() -> None:
    assert "machine_type" in sieve.spec.OPTIONS
    error = assert_spec_error("machine_types", machine_types="a100")
    assert "machine_type" in error.fix


def test_none_means_the_default() -> None:
    spec = build(
        **dict.fromkeys(
            [
                "gpu",
                "machine_type",
                "python_version",
                "python_packages",
                "system_packages",
                "cuda_version",
                "run_commands",
                "environment_variables",
                "metadata",
                "restart_on_error",
            ]
        )
    )
    assert spec == build()


def test_environment_variables_accept_names() -> None:
    spec = build(environment_variables=["HF_TOKEN", Env("OPENAI_API_KEY", default="x")])
    assert [e.name for e in spec.env] == ["HF_TOKEN", "OPENAI_API_KEY"]
    assert spec.env[1].default == "x"


def test_metadata_image_accepts_a_file() -> None:
    spec = build(metadata=sieve.Metadata(image=sieve.File(url="https://example.com/a.png")))
    assert spec.metadata.image == "https://example.com/a.png"


# --- models -----------------------------------------------------------------------------------


class Adder:
    """Adds numbers."""

    def __setup__(self) -> None:
        self.offset = 0

    def __predict__(self, x1: int, x2: int = 1) -> int:
        return x1 + x2 + self.offset


def test_model_spec_reads_predict_without_self() -> None:
    spec = build(Adder, kind="model", name="adder")
    assert spec.kind == "model"
    assert spec.signature == "(x1: int, x2: int = 1) -> int"
    assert list(spec.inputs["properties"]) == ["x1", "x2"]
    assert spec.inputs["required"] == ["x1"]
    assert spec.doc == "Adds numbers."


def test_model_without_setup_is_fine() -> None:
    class Echo:
        def __predict__(self, text: str) -> str:
            return text

    assert build(Echo, kind="model", name="echo").inputs["required"] == ["text"]


def test_generator_model() -> None:
    class Stream:
        def __predict__(self, n: int) -> Iterator[str]:
            yield from map(str, range(n))

    spec = build(Stream, kind="model", name="stream")
    assert spec.is_generator is True
    assert spec.output == {"type": "string"}


def test_class_given_to_function_is_a_model() -> None:
    # Sieve's SDK accepts @sieve.function on a class with __setup__/__predict__
    assert build(Adder, kind="function", name="adder").kind == "model"


def test_model_without_predict_fails() -> None:
    class NoPredict:
        def __setup__(self) -> None:
            pass

    assert_spec_error("__predict__", NoPredict, kind="model")


def test_model_predict_must_be_a_method() -> None:
    class Static:
        @staticmethod
        def __predict__(x: int) -> int:
            return x

    assert_spec_error("__predict__", Static, kind="model")


def test_setup_that_takes_arguments_fails() -> None:
    class Bad:
        def __setup__(self, weights: str) -> None:
            pass

        def __predict__(self, x: int) -> int:
            return x

    error = assert_spec_error("__setup__", Bad, kind="model")
    assert "weights" in str(error)


def test_model_decorating_a_function_fails() -> None:
    assert_spec_error("model", multiply, kind="model")


# --- bad input names the field ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "   ", None, "user/multiplier", "my function", "-lead", "a" * 65, "é"]
)
def test_bad_names(name: Any) -> None:
    assert_spec_error("name", name=name)


def test_name_with_slash_explains_the_user_part() -> None:
    error = assert_spec_error("name", name="me/multiplier")
    assert "'multiplier'" in error.fix


@pytest.mark.parametrize("name", ["multiplier", "yolo-v8", "text_to_speech", "model.v2", "A1"])
def test_good_names(name: str) -> None:
    assert build(name=name).name == name


def test_name_must_be_a_string() -> None:
    assert_spec_error("name", name=42)


def test_input_named_webhooks_fails() -> None:
    def f(video: str, webhooks: list[str]) -> None:
        pass

    assert_spec_error("webhooks", f)


@pytest.mark.parametrize("split", [0, 9, -1, "2", 2.0, True])
def test_bad_split(split: Any) -> None:
    with pytest.raises(SpecError) as info:
        gpu.T4(split=split)
    assert "gpu.split" in str(info.value)


@pytest.mark.parametrize("value", ["T5", "tpu", 3, object(), ["T4"]])
def test_unknown_gpu(value: Any) -> None:
    error = assert_spec_error("gpu", gpu=value)
    assert "T4" in error.fix  # lists what exists


@pytest.mark.parametrize("value", ["10.2", "12.7", "14", "twelve", "12.2.2.2", 12.2])
def test_bad_cuda_version(value: Any) -> None:
    assert_spec_error("cuda_version", cuda_version=value)


@pytest.mark.parametrize(
    "value", ["numpy>=", "numpy==1.0 foo", "==1.0", "numpy[", "--no-deps", "-e ."]
)
def test_bad_pip_requirement(value: str) -> None:
    error = assert_spec_error("python_packages[1]", python_packages=["torch", value])
    assert value in str(error) or value.split()[0] in str(error)


@pytest.mark.parametrize(
    "value",
    [
        "numpy",
        "numpy>=1.26,<3",
        "opencv-python-headless==4.10.0.84",
        "transformers[torch]>=4.40",
        'pywin32; sys_platform == "win32"',
        "mylib @ git+https://github.com/me/mylib@v1",
        "git+https://github.com/me/mylib",
        "--extra-index-url https://download.pytorch.org/whl/cu121",
    ],
)
def test_good_pip_requirements(value: str) -> None:
    assert build(python_packages=[value]).environment.python_packages == (value,)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("python_packages", "numpy"),
        ("python_packages", [1]),
        ("system_packages", "ffmpeg"),
        ("system_packages", [None]),
        ("run_commands", "echo hi"),
        ("environment_variables", "API_KEY"),
        ("environment_variables", Env("A")),
        ("environment_variables", [42]),
        ("metadata", "a title"),
        ("restart_on_error", "yes"),
        ("restart_on_error", 1),
        ("python_version", 3.10),
        ("python_version", 3),
    ],
)
def test_wrong_types_name_the_field(option: str, value: Any) -> None:
    assert_spec_error(option, **{option: value})


@pytest.mark.parametrize("value", ["3", "2.7", "3.7", "python3.11", "3.x", ""])
def test_bad_python_version(value: str) -> None:
    assert_spec_error("python_version", python_version=value)


def test_python_version_patch_is_dropped() -> None:
    assert build(python_version="3.11.7").environment.python_version == "3.11"


@pytest.mark.parametrize("value", ["FFmpeg", "ffmpeg libgl1", "lib;rm -rf /", ""])
def test_bad_system_package(value: str) -> None:
    assert_spec_error("system_packages[0]", system_packages=[value])


def test_run_command_with_newline_fails() -> None:
    assert_spec_error("run_commands[0]", run_commands=["echo a\necho b"])


@pytest.mark.parametrize("value", ["1KEY", "MY-KEY", "", "A B"])
def test_bad_env_name(value: str) -> None:
    assert_spec_error("environment_variables[0].name", environment_variables=[value])
    with pytest.raises(SpecError, match="environment_variables.name"):
        Env(value)


def test_env_default_and_description_types() -> None:
    with pytest.raises(SpecError, match="environment_variables.default"):
        Env("A", default=["3"])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="environment_variables.description"):
        Env("A", description=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("default", "expected"),
    [(30, "30"), (0.9, "0.9"), (0, "0"), (-1.5, "-1.5"), ("fast", "fast"), ("", ""), (None, None)],
)
def test_env_numeric_defaults_become_strings(default: Any, expected: str | None) -> None:
    # Sieve's examples write sieve.Env(name="FPS", default=30), default=0.9
    env = Env("FPS", default=default)
    assert env.default == expected
    assert Env.from_dict(env.to_dict()) == env
    assert env.to_dict()["default"] == expected


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_default_is_refused(default: bool) -> None:
    with pytest.raises(SpecError) as info:
        Env("DEBUG", default=default)
    assert info.value.field == "environment_variables.default"
    assert "Fix:" in str(info.value) and "bool" in str(info.value)
    error = assert_spec_error(
        "environment_variables[0].default",
        environment_variables=[{"name": "DEBUG", "default": default}],
    )
    assert "Fix:" in str(error)


def test_a_numeric_env_default_is_what_the_worker_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    from sieve_jupyter.manager import get_manager

    monkeypatch.delenv("FPS", raising=False)
    monkeypatch.delenv("TEMPERATURE", raising=False)
    spec = build(
        environment_variables=[
            sieve.Env(name="FPS", default=30),
            sieve.Env(name="TEMPERATURE", default=0.9),
        ]
    )
    assert get_manager().worker_environment(spec) == {"FPS": "30", "TEMPERATURE": "0.9"}
    assert FunctionSpec.from_dict(spec.to_dict()) == spec


def test_duplicate_env_fails() -> None:
    assert_spec_error("environment_variables[1]", environment_variables=["A", "A"])


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("metadata.title", {"title": 3}),
        ("metadata.tags", {"tags": "video"}),
        ("metadata.tags[0]", {"tags": [1]}),
        ("metadata.image", {"image": 3}),
        ("metadata.readme", {"readme": ["x"]}),
    ],
)
def test_bad_metadata(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        Metadata(**kwargs)
    assert field in str(info.value)


def test_unknown_option_suggests_the_right_one() -> None:
    error = assert_spec_error("python_package", python_package=["numpy"])
    assert "python_packages" in error.fix


def test_unknown_kind() -> None:
    assert_spec_error("kind", kind="job")


def test_not_callable() -> None:
    assert_spec_error("function", 42)
