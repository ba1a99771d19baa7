"""How a function handle shows itself: a text summary in terminals, an HTML card in notebooks."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sieve_jupyter.sdk._handles import FunctionHandle

__all__ = ["handle_html", "handle_summary", "handle_text"]


def handle_summary(handle: FunctionHandle[..., Any]) -> dict[str, Any]:
    spec = handle.spec
    info = handle._record.describe()
    env = spec.environment
    workers = info["workers"]
    setups = [w["setup_seconds"] for w in workers if w.get("setup_seconds") is not None]
    return {
        "name": spec.name,
        "kind": spec.kind,
        "signature": f"{spec.name}{spec.signature}",
        "backend": info["backend"],
        "state": info["state"],
        "workers": f"{len(workers)}/{info['size']}",
        "setup": f"{max(setups):.2f} s" if setups else "not yet",
        "gpu": str(spec.gpu) if spec.gpu is not None else "none",
        "python": env.python_version,
        "packages": ", ".join(env.python_packages) or "none",
        "system packages": ", ".join(env.system_packages) or "none",
        "cuda": env.cuda_version or "none",
    }


def handle_text(handle: FunctionHandle[..., Any]) -> str:
    s = handle_summary(handle)
    return (
        f"<sieve {s['kind']} {s['signature']} backend={s['backend']} state={s['state']} "
        f"workers={s['workers']} gpu={s['gpu']}>"
    )


def handle_html(handle: FunctionHandle[..., Any]) -> str:
    s = handle_summary(handle)
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in s.items()
        if k not in ("name", "signature")
    )
    return (
        "<div class='sieve-function'>"
        f"<b>sieve {html.escape(s['kind'])}</b> <code>{html.escape(s['signature'])}</code>"
        f"<table>{rows}</table></div>"
    )
