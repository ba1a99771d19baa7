"""model.yaml as a document: positions, the schema and its messages, the published JSON Schema."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from modelyaml_repos import model_yaml

import sieve_jupyter.modelyaml as modelyaml
from sieve_jupyter import SpecError
from sieve_jupyter._errors import ModelYamlError
from sieve_jupyter.modelyaml._positions import format_location, parse_yaml
from sieve_jupyter.modelyaml._schema import validate_document


def problems_of(text: str) -> list[str]:
    with pytest.raises(ModelYamlError) as info:
        validate_document(parse_yaml(text, "model.yaml"))
    return [str(p) for p in info.value.problems]


def test_every_value_and_key_keeps_its_line_and_column() -> None:
    document = parse_yaml(model_yaml(), "model.yaml")
    assert document.position(("models", 0, "name")) == (2, 11)
    assert document.position(("models", 0, "runtime", "load", "entrypoint")) == (9, 21)
    assert document.position(("models", 0, "runtime", "device"), key=True) == (7, 7)
    value = ("models", 0, "runtime", "predict", "inputs", 1, "value")
    assert document.position(value) == (23, 20)
    # an absent part falls back to the nearest one present (where a missing key belongs)
    assert document.position(("models", 0, "runtime", "load", "nope")) == (9, 9)
    assert format_location(("models", 0, "runtime", "load", "inputs", 1, "value")) == (
        "models[0].runtime.load.inputs[1].value"
    )


def test_the_example_of_the_format_validates() -> None:
    content = validate_document(parse_yaml(model_yaml(), "model.yaml"))
    [model] = content.models
    assert model.name == "YOLOR-P6"
    assert model.runtime is not None and model.runtime.load is not None
    assert model.runtime.load.entrypoint == "inference:get_model"
    assert model.runtime.predict.output is not None
    assert model.runtime.predict.output.keys == ["boxes", "classes", "scores"]


def test_unknown_key_says_where_and_suggests_the_known_one() -> None:
    text = model_yaml().replace("      load:\n", "      laod:\n")
    [problem] = problems_of(text)
    assert problem.startswith("model.yaml:8:7: models[0].runtime.laod: is not a known key.")
    assert "did you mean 'load'?" in problem


def test_a_misspelled_required_key_is_one_problem_not_two() -> None:
    text = model_yaml().replace(
        "        entrypoint: inference:predict", "        entrypont: inference:predict"
    )
    [problem] = problems_of(text)
    assert "models[0].runtime.predict.entrypont" in problem and "'entrypoint'" in problem


def test_all_problems_are_reported_at_once_in_file_order() -> None:
    text = (
        model_yaml()
        .replace("device: cpu", "device: tpu")
        .replace("inference:get_model", "inference.get_model")
        .replace("name: YOLOR-P6", "name: YOLOR P6")
    )
    problems = problems_of(text)
    assert [p.split(": ")[0] for p in problems] == [
        "model.yaml:2:11",
        "model.yaml:7:15",
        "model.yaml:9:21",
    ]
    assert "models[0].name: 'YOLOR P6' is not a name" in problems[0]
    assert "models[0].runtime.device: must be one of 'cpu', 'gpu' or 'cuda'" in problems[1]
    assert (
        "models[0].runtime.load.entrypoint: 'inference.get_model' is not "
        "module[.sub]:function" in problems[2]
    )
    assert all("Fix: " in p for p in problems)


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("models: []\n", "model.yaml:1:9: models:", "lists no model"),
        ("- 1\n", "model.yaml:1:1: (document):", "must be a mapping with a 'models' list"),
        (
            "models:\n  - description: x\n    runtime: {predict: {entrypoint: a:b}}\n",
            "model.yaml:2:5: models[0].name:",
            "is required",
        ),
        (
            "models:\n  - name: m\n    runtime: {}\n",
            "model.yaml:3:14: models[0].runtime.predict:",
            "is required",
        ),
        (
            "models:\n  - name: m\n    files: {params: x}\n"
            "    runtime: {predict: {entrypoint: a:b}}\n",
            "model.yaml:3:12: models[0].files:",
            "must be a list",
        ),
        (
            "models:\n  - name: m\n    repository: {url: x, hash: main}\n"
            "    runtime: {predict: {entrypoint: a:b}}\n",
            "model.yaml:3:32: models[0].repository.hash:",
            "is not a commit hash",
        ),
        (
            "models:\n  - name: m\n    repository: {url: x, hash: 1234567890}\n"
            "    runtime: {predict: {entrypoint: a:b}}\n",
            "model.yaml:3:32: models[0].repository.hash:",
            "YAML reads it as the number 1234567890",
        ),
        (
            "models:\n  - name: m\n    runtime: {predict: {entrypoint: a:b, inputs: [{name: 1x, "
            "value: 2}]}}\n",
            "model.yaml:3:58: models[0].runtime.predict.inputs[0].name:",
            "Python identifier",
        ),
        (
            "models:\n  - name: m\n    runtime:\n      predict: {entrypoint: a:b}\n"
            "      predict: {entrypoint: c:d}\n",
            "model.yaml:5:7: models[0].runtime.predict:",
            "is given twice (first on line 4)",
        ),
        (
            "models:\n  - name: m\n    runtime: {predict: {entrypoint: a:b\n",
            "model.yaml:4:1: (document):",
            "is not valid YAML",
        ),
        ("models: []\n---\nmodels: []\n", "model.yaml:2:1: (document):", "is not valid YAML"),
    ],
)
def test_each_shape_problem_names_line_column_key_path_and_fix(
    text: str, where: str, words: str
) -> None:
    problems = problems_of(text)
    assert problems[0].startswith(where), problems
    assert words in problems[0] and "Fix: " in problems[0]


def test_versions_written_as_numbers_are_text_and_other_efemarai_sections_are_accepted() -> None:
    text = "project: {name: p}\ndatasets: []\n" + model_yaml().replace(
        "  - name: YOLOR-P6\n", "  - name: YOLOR-P6\n    version: 1.0\n"
    )
    content = validate_document(parse_yaml(text, "model.yaml"))
    assert content.models[0].version == "1.0"


def test_the_error_is_a_spec_error_that_pickles_with_its_problems() -> None:
    with pytest.raises(SpecError) as info:
        validate_document(parse_yaml("models: []\n", "model.yaml"))
    error = info.value
    assert isinstance(error, ModelYamlError)
    assert error.field == "models"
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == error.problems and str(again) == str(error)


def test_the_published_json_schema_is_current() -> None:
    written = modelyaml.SCHEMA_PATH.read_text()
    assert written == modelyaml.json_schema_text(), (
        'model.schema.json is out of date. Regenerate it: python -c "import '
        'sieve_jupyter.modelyaml as m; m.SCHEMA_PATH.write_text(m.json_schema_text())"'
    )
    schema = json.loads(written)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["required"] == ["models"]
    definitions = schema["$defs"]
    assert definitions["Runtime"]["additionalProperties"] is False
    assert definitions["Runtime"]["required"] == ["predict"]
    assert "pattern" in definitions["Entrypoint"]["properties"]["entrypoint"]


def test_the_schema_ships_inside_the_package() -> None:
    assert modelyaml.SCHEMA_PATH.parent == Path(modelyaml.__file__).parent
