"""The panel's rows, read from the manager's JSON: exactly the protocol's fields, whatever else
the manager adds, so the panel never depends on more than ``_channel_protocol`` promises."""

from __future__ import annotations

from typing import Any

from sieve_jupyter.jupyter._channel_protocol import (
    DeploymentRow,
    FunctionRow,
    JobRow,
    Progress,
    WorkerRow,
)

__all__ = ["deployment_row", "function_row", "job_row"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def function_row(data: dict[str, Any]) -> FunctionRow:
    """The panel's view of a manager ``function`` event/snapshot: exactly the protocol fields."""
    workers: list[WorkerRow] = [
        {
            "id": str(w.get("id", "")),
            "state": str(w.get("state", "")),
            "setup_seconds": _number(w.get("setup_seconds")),
            "setup_at": _number(w.get("setup_at")),
            "description": str(w.get("description") or ""),
            "node": None if not w.get("node") else str(w["node"]),
        }
        for w in data.get("workers") or []
        if isinstance(w, dict)
    ]
    error = data.get("error")
    return {
        "name": str(data["name"]),
        "kind": str(data.get("kind", "function")),
        "backend": str(data.get("backend", "")),
        "state": str(data.get("state", "idle")),
        "workers": workers,
        "spec_hash": str(data.get("spec_hash") or ""),
        "error": None if error is None else str(error),
    }


def _progress(value: Any) -> Progress | None:
    if value is None:
        return None
    if isinstance(value, dict):
        fraction, message = value.get("fraction"), value.get("message")
    elif isinstance(value, list | tuple) and len(value) == 2:
        fraction, message = value
    else:
        return None
    return {"fraction": _number(fraction), "message": "" if message is None else str(message)}


def job_row(data: dict[str, Any]) -> JobRow:
    """The panel's view of a ``JobFuture.snapshot()``: exactly the protocol fields."""
    error = data.get("error")
    return {
        "job_id": str(data["job_id"]),
        "function": str(data.get("function", "")),
        "status": str(data.get("status", "queued")),
        "submitted_at": _number(data.get("submitted_at")),
        "started_at": _number(data.get("started_at")),
        "finished_at": _number(data.get("finished_at")),
        "duration": _number(data.get("duration")),
        "error": None if error is None else str(error),
        "progress": _progress(data.get("progress")),
    }


_UNHEALTHY = {
    "UNREACHABLE": "its server does not answer at {url}",
    "SETUP_FAILED": "its setup failed; %sieve logs {name} --deployment shows why",
    "DEFUNCT": "its server is defunct; %sieve logs {name} --deployment shows why",
}


def deployment_row(data: dict[str, Any]) -> DeploymentRow:
    """The panel's view of ``Deployment.describe()``: exactly the protocol fields (so never a
    token), with what an unhealthy server's health means."""
    name, url = str(data["name"]), str(data.get("url", ""))
    health = data.get("health")
    health = None if health is None else str(health)
    explain = _UNHEALTHY.get(health or "")
    ready = data.get("ready_workers")
    return {
        "name": name,
        "version": str(data.get("version", "")),
        "backend": str(data.get("backend", "")),
        "url": url,
        "state": str(data.get("state", "")),
        "health": health,
        "draining": bool(data.get("draining")),
        "workers": int(data.get("workers") or 0) * max(1, len(data.get("functions") or ())),
        "ready_workers": ready if isinstance(ready, int) and not isinstance(ready, bool) else None,
        "started_at": _number(data.get("started_at")),
        "error": None if explain is None else f"{health}: {explain.format(name=name, url=url)}",
    }
