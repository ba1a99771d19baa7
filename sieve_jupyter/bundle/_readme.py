"""A bundle's README.md: what `sieve.Metadata` says, then how to build, run and call it."""

from __future__ import annotations

import json
import keyword
from collections.abc import Sequence
from typing import Any

from sieve_jupyter.spec import Environment, FunctionSpec

__all__ = ["bundle_readme", "call_arguments", "example_input"]


def _example(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if "examples" in schema and schema["examples"]:
        return schema["examples"][0]
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if schema.get("format") == "sieve-file":
        return "data:text/plain;base64,aGVsbG8="
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _example(option)
    kind = schema.get("type")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1.0, float(schema.get("minimum", 1.0)))
    if kind == "boolean":
        return True
    if kind == "array":
        return [_example(schema.get("items", {}))]
    if kind == "object":
        return {k: _example(v) for k, v in schema.get("properties", {}).items()}
    return "text"


def example_input(spec: FunctionSpec) -> dict[str, Any]:
    """An input that fits the spec's schema: defaults where given, small values otherwise."""
    required = set(spec.inputs.get("required", []))
    properties = spec.inputs.get("properties", {})
    return {k: _example(v) for k, v in properties.items() if k in required}


def call_arguments(example: dict[str, Any]) -> str:
    """`example` as a call's arguments: ``x1=1, x2=1`` (``**{...}`` for names Python cannot
    take as keywords)."""
    if all(name.isidentifier() and not keyword.iskeyword(name) for name in example):
        return ", ".join(f"{name}={value!r}" for name, value in example.items())
    return f"**{example!r}"


def bundle_readme(specs: Sequence[FunctionSpec], *, default: str, environment: Environment) -> str:
    main = next(s for s in specs if s.name == default)
    meta = main.metadata
    title = meta.title or main.name
    lines = [f"# {title}", ""]
    if meta.description:
        lines += [meta.description, ""]
    if meta.tags:
        lines += ["Tags: " + ", ".join(f"`{t}`" for t in meta.tags), ""]
    if meta.readme:
        lines += [meta.readme.rstrip(), ""]
    body = json.dumps({"input": example_input(main)})
    lines += [
        "A sieve-jupyter bundle. Its HTTP API is Cog's prediction API (see `openapi.json`).",
        "",
        "## Functions",
        "",
        "| function | kind | signature | route |",
        "|---|---|---|---|",
    ]
    for spec in specs:
        route = f"`/functions/{spec.name}/predictions`"
        if spec.name == default:
            route += " and `/predictions`"
        summary = f"{spec.name}{spec.signature}".replace("|", "\\|")
        lines.append(f"| {spec.name} | {spec.kind} | `{summary}` | {route} |")
    lines += [
        "",
        "## Run it",
        "",
        "Without Docker (needs `pip install 'sieve-jupyter[serve]'` "
        "and the packages in requirements.txt):",
        "",
        "```bash",
        "sieve-jupyter serve . --port 8000",
        "```",
        "",
        "With Docker:",
        "",
        "```bash",
        "docker build -t my-bundle .",
        "docker run --rm -p 127.0.0.1:8000:8000 my-bundle",
        "```",
        "",
    ]
    envs = sorted({e.name for s in specs for e in s.env})
    if envs:
        flags = " ".join(f"-e {name}" for name in envs)
        lines += [
            "It reads these environment variables (their values are never stored in the "
            "bundle; pass them when it starts):",
            "",
        ]
        lines += [
            f"- `{e.name}`" + (f": {e.description}" if e.description else "")
            for e in sorted(
                {e.name: e for s in specs for e in s.env}.values(), key=lambda e: e.name
            )
        ]
        lines += [
            "",
            "```bash",
            f"docker run --rm -p 127.0.0.1:8000:8000 {flags} my-bundle",
            "```",
            "",
        ]
    if environment.cuda_version:
        lines += [
            f"The image starts from a CUDA {environment.cuda_version} base; run it with "
            "`--gpus all`.",
            "",
        ]
    lines += [
        "## Call it",
        "",
        "```bash",
        "curl -s localhost:8000/predictions -H 'content-type: application/json' \\",
        f"     -d '{body}'",
        "```",
        "",
        "```python",
        "import sieve_jupyter as sieve",
        "",
        'remote = sieve.function.get("http://127.0.0.1:8000")',
        f"remote.run({call_arguments(example_input(main))})",
        "```",
        "",
        "`Prefer: respond-async` answers at once (then `GET /predictions/{id}`), "
        "`Accept: text/event-stream` streams events, `GET /health-check` tells whether it is "
        "ready. With `SIEVE_SERVE_TOKEN` set, every route but `/health-check` needs "
        "`Authorization: Bearer <token>`.",
        "",
    ]
    return "\n".join(lines)
