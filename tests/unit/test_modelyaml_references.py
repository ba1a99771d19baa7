"""``${...}`` references: environment variables at load time, runtime variables per input."""

from __future__ import annotations

from typing import Any

import pytest
from modelyaml_repos import model_yaml

from sieve_jupyter._errors import YamlProblem
from sieve_jupyter.modelyaml._positions import parse_yaml
from sieve_jupyter.modelyaml._references import (
    ModelProblems,
    plan_inputs,
    reference_in,
    substitute_environment,
)
from sieve_jupyter.modelyaml._schema import ModelFile, validate_document

REPOSITORY = """\
    repository:
      url: ${REPO_URL}
      branch: ${BRANCH}
      access_token: ${GIT_KEY}
"""


def substituted(text: str, environ: dict[str, str]) -> tuple[Any, list[str]]:
    problems = ModelProblems()
    data = substitute_environment(parse_yaml(text, "model.yaml"), environ, problems)
    return data, [str(p) for p in problems.all()]


def test_a_value_is_a_literal_or_exactly_one_reference() -> None:
    assert reference_in("plain text") is None
    assert reference_in(3) is None
    assert reference_in("${datapoints}").name == "datapoints"  # type: ignore[union-attr]
    assert reference_in(" ${ model.files.params.url } ").name == "model.files.params.url"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="mixes text and a reference"):
        reference_in("weights/${VERSION}.pt")
    with pytest.raises(ValueError, match="not a valid reference"):
        reference_in("${}")


def test_environment_variables_are_substituted_except_the_token() -> None:
    environ = {
        "REPO_URL": "https://example.invalid/yolor",
        "BRANCH": "main",
        "GIT_KEY": "s3cret-token",
    }
    data, problems = substituted(model_yaml(repository=REPOSITORY), environ)
    assert problems == []
    repository = data["models"][0]["repository"]
    assert repository["url"] == "https://example.invalid/yolor"
    assert repository["branch"] == "main"
    assert repository["access_token"] == "${GIT_KEY}"  # read for the clone only
    # an entrypoint's inputs keep their references (the worker resolves them)
    inputs = data["models"][0]["runtime"]["load"]["inputs"]
    assert inputs[0]["value"] == "${model.files.params.url}"


def test_an_unset_variable_names_itself_and_its_line() -> None:
    _, problems = substituted(model_yaml(repository=REPOSITORY), {"GIT_KEY": "x"})
    assert problems[0].startswith(
        "model.yaml:4:12: models[0].repository.url: environment variable REPO_URL is not set."
    )
    assert problems[1].startswith(
        "model.yaml:5:15: models[0].repository.branch: environment variable BRANCH is not set."
    )
    assert all("Fix: set it before loading" in p for p in problems)


def test_an_unset_token_variable_is_reported_at_the_access_token() -> None:
    environ = {"REPO_URL": "u", "BRANCH": "b"}
    _, problems = substituted(model_yaml(repository=REPOSITORY), environ)
    [problem] = problems
    assert problem.startswith(
        "model.yaml:6:21: models[0].repository.access_token: environment "
        "variable GIT_KEY is not set."
    )


@pytest.mark.parametrize(
    ("old", "new", "where", "words"),
    [
        (
            "      branch: ${BRANCH}",
            "      branch: release-${BRANCH}",
            "models[0].repository.branch",
            "mixes text and a reference",
        ),
        (
            "      access_token: ${GIT_KEY}",
            "      access_token: ghp_literal",
            "",
            "",
        ),  # a literal token is not a reference; see the next test for its check
        (
            "      url: ${REPO_URL}",
            "      url: ${model.name}",
            "models[0].repository.url",
            "can only be used as the value of an entrypoint's input",
        ),
        (
            "      access_token: ${GIT_KEY}",
            "      access_token: ${model.name}",
            "models[0].repository.access_token",
            "is not an environment variable",
        ),
    ],
)
def test_misplaced_references_are_problems(old: str, new: str, where: str, words: str) -> None:
    environ = {"REPO_URL": "u", "BRANCH": "b", "GIT_KEY": "k"}
    _, problems = substituted(model_yaml(repository=REPOSITORY).replace(old, new), environ)
    if not where:
        assert problems == []
        return
    [problem] = problems
    assert f": {where}: " in problem and words in problem and "Fix: " in problem


def test_references_inside_a_literal_list_are_refused() -> None:
    text = model_yaml().replace(
        "value: ${model.runtime.device}", "value: ['${model.runtime.device}', cpu]"
    )
    _, problems = substituted(text, {})
    [problem] = problems
    assert "models[0].runtime.load.inputs[1].value: has a reference inside a list" in problem


def test_problems_are_filed_by_model_so_other_entries_do_not_block_a_load() -> None:
    text = model_yaml() + model_yaml(name="other").removeprefix("models:\n").replace(
        "url: results/params.txt", "url: ${MISSING}"
    )
    problems = ModelProblems()
    substitute_environment(parse_yaml(text, "model.yaml"), {}, problems)
    assert problems.of([0]) == []
    [problem] = problems.of([1])
    assert "MISSING" in problem.problem


# --- runtime references -------------------------------------------------------------------------


def plan(text: str, files: tuple[str, ...] = ("params",)) -> tuple[Any, list[str]]:
    document = parse_yaml(text, "model.yaml")
    content: ModelFile = validate_document(document)
    runtime = content.models[0].runtime
    assert runtime is not None
    problems: list[YamlProblem] = []
    result = plan_inputs(
        document,
        ("models", 0, "runtime"),
        {"load": runtime.load, "predict": runtime.predict},
        list(files),
        problems,
    )
    return result, [str(p) for p in problems]


def test_each_input_is_classified_for_the_worker() -> None:
    text = model_yaml().replace(
        "          - name: datapoints\n",
        "          - name: threshold\n            value: ${inputs.threshold}\n"
        "          - name: key\n            value: ${API_KEY}\n"
        "          - name: scale\n            value: 2.5\n"
        "          - name: datapoints\n",
    )
    result, problems = plan(text)
    assert problems == []
    assert result.inputs["load"] == [
        ("params_url", ("variable", "model.files.params.url")),
        ("device", ("variable", "model.runtime.device")),
    ]
    assert result.inputs["predict"] == [
        ("model", ("variable", "model.runtime.load.output.model")),
        ("threshold", ("argument", "threshold")),
        ("key", ("env", "API_KEY")),
        ("scale", ("literal", 2.5)),
        ("datapoints", ("argument", "datapoints")),
    ]
    assert list(result.arguments) == ["threshold", "datapoints"]
    assert result.environment == ["API_KEY"]


@pytest.mark.parametrize(
    ("old", "new", "where", "words"),
    [
        (
            "${model.files.params.url}",
            "${model.files.parms.url}",
            "model.yaml:12:20: models[0].runtime.load.inputs[0].value",
            "no file named 'parms'",
        ),
        (
            "${model.runtime.device}",
            "${datapoints}",
            "model.yaml:14:20: models[0].runtime.load.inputs[1].value",
            "load never gets",
        ),
        (
            "${model.runtime.device}",
            "${model.runtime.load.output.model}",
            "model.yaml:14:20: models[0].runtime.load.inputs[1].value",
            "does not exist while load",
        ),
        (
            "${model.runtime.load.output.model}",
            "${model.runtime.load.output.weights}",
            "model.yaml:21:20: models[0].runtime.predict.inputs[0].value",
            "load declares no output 'weights'",
        ),
        (
            "${model.runtime.load.output.model}",
            "${model.runtime.devcie}",
            "model.yaml:21:20: models[0].runtime.predict.inputs[0].value",
            "did you mean ${model.runtime.device}?",
        ),
        (
            "${model.runtime.load.output.model}",
            "${model.runtime.load.inputs.params}",
            "model.yaml:21:20: models[0].runtime.predict.inputs[0].value",
            "load has no input 'params'",
        ),
        (
            "${model.runtime.device}",
            "${model.runtime.predict.inputs.datapoints}",
            "model.yaml:14:20: models[0].runtime.load.inputs[1].value",
            "depends on a call argument",
        ),
        (
            "${model.runtime.device}",
            "${model.runtime.load.inputs.device}",
            "model.yaml:14:20: models[0].runtime.load.inputs[1].value",
            "refers to itself",
        ),
        (
            "${datapoints}",
            "${inputs.9lives}",
            "model.yaml:23:20: models[0].runtime.predict.inputs[1].value",
            "not a valid argument",
        ),
    ],
)
def test_each_runtime_reference_problem_says_where_and_how(
    old: str, new: str, where: str, words: str
) -> None:
    _, problems = plan(model_yaml().replace(old, new))
    assert len(problems) == 1, problems
    assert problems[0].startswith(where + ": ") and words in problems[0], problems
    assert "Fix: " in problems[0]


def test_a_cycle_between_inputs_is_found() -> None:
    text = (
        model_yaml()
        .replace("${model.files.params.url}", "${model.runtime.load.inputs.device}")
        .replace("${model.runtime.device}", "${model.runtime.load.inputs.params_url}")
    )
    _, problems = plan(text)
    assert problems and all("refers to itself" in p for p in problems)


def test_an_input_given_twice_is_a_problem() -> None:
    text = model_yaml().replace("          - name: device\n", "          - name: params_url\n")
    _, problems = plan(text)
    [problem] = problems
    assert "models[0].runtime.load.inputs[1].name: 'params_url' is given twice" in problem
