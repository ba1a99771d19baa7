"""The panel protocol is defined once per language; these tests keep the two definitions equal."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sieve_jupyter.jupyter import _channel_protocol as protocol

TS_PROTOCOL = Path(__file__).parents[2] / "labextension" / "src" / "protocol.ts"


def _typescript_spec() -> dict[str, object]:
    text = TS_PROTOCOL.read_text(encoding="utf-8")
    match = re.search(
        r"// PROTOCOL-SPEC-BEGIN\s*(?:// prettier-ignore\s*)?export const PROTOCOL ="
        r"(.*?)as const;\s*// PROTOCOL-SPEC-END",
        text,
        re.DOTALL,
    )
    assert match, f"{TS_PROTOCOL} lost its PROTOCOL-SPEC markers"
    spec: dict[str, object] = json.loads(match.group(1))
    return spec


def test_typescript_and_python_define_the_same_protocol() -> None:
    typescript = _typescript_spec()
    for key in protocol.PROTOCOL:
        assert typescript.get(key) == protocol.PROTOCOL[key], (
            f"protocol.ts and _channel_protocol.py disagree on {key!r}: "
            f"{typescript.get(key)!r} != {protocol.PROTOCOL[key]!r}"
        )
    assert set(typescript) == set(protocol.PROTOCOL)


def test_every_message_names_its_version_and_type() -> None:
    for group in ("kernelMessages", "panelMessages"):
        for name, fields in protocol.PROTOCOL[group].items():
            assert {"v", "type"} <= set(fields), name


def test_the_panel_settings_default_job_limit_matches() -> None:
    schema = json.loads((TS_PROTOCOL.parents[1] / "schema" / "panel.json").read_text("utf-8"))
    job_limit = schema["properties"]["jobLimit"]
    assert job_limit["default"] == protocol.DEFAULT_JOB_LIMIT
    assert job_limit["maximum"] == protocol.MAX_JOB_LIMIT
    model = (TS_PROTOCOL.parent / "model.ts").read_text(encoding="utf-8")
    assert f"DEFAULT_JOB_LIMIT = {protocol.DEFAULT_JOB_LIMIT};" in model
