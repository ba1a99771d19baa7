"""The look the sieve widgets share: one style sheet in JupyterLab's theme variables.

ipywidgets has no style sheet of its own to extend, so each top-level widget (form, progress)
carries a hidden HTML child holding a ``<style>`` element; browsers apply it wherever it sits.
Every colour is a JupyterLab theme variable (with a fallback for other frontends), so the
widgets follow the light and dark themes. Saved notebooks show a static HTML copy, which uses
inline styles only (`INLINE`), since a frontend may drop ``<style>`` from untrusted output.
"""

from __future__ import annotations

import ipywidgets as widgets

__all__ = ["COLORS", "INLINE", "plural", "style_widget"]

COLORS = {
    "finished": "var(--jp-success-color1, #388e3c)",
    "error": "var(--jp-error-color1, #d32f2f)",
    "cancelled": "var(--jp-ui-font-color3, #9e9e9e)",
    "processing": "var(--jp-brand-color1, #1976d2)",
    "track": "var(--jp-layout-color3, #e0e0e0)",
    "muted": "var(--jp-ui-font-color2, #616161)",
}

INLINE = {
    "muted": f"color:{COLORS['muted']}",
    "error": f"color:{COLORS['error']}",
    "pre": (
        "white-space:pre-wrap;word-break:break-word;margin:2px 0;max-height:320px;"
        "overflow:auto;font-family:var(--jp-code-font-family, monospace);"
        "font-size:var(--jp-code-font-size, 13px)"
    ),
}


def plural(count: int, noun: str) -> str:
    """``1 error``, ``4 errors``, ``1,200 jobs``: the one plural style of the widgets."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


_CSS = """
.sieve-widget .widget-html > .widget-html-content { line-height: 1.45; }
.sieve-widget .sieve-muted { color: var(--jp-ui-font-color2, #616161); }
.sieve-widget .sieve-error { color: var(--jp-error-color1, #d32f2f); }
.sieve-widget details > summary { cursor: pointer; list-style: none; }
.sieve-widget details > summary::-webkit-details-marker { display: none; }
.sieve-widget details > summary::before,
.sieve-widget .sieve-disclosure::before {
  content: '▸'; display: inline-block; width: 1em; color: var(--jp-ui-font-color2, #616161);
}
.sieve-widget details[open] > summary::before,
.sieve-widget .sieve-disclosure.sieve-open::before { content: '▾'; }
.sieve-widget pre.sieve-pre {
  white-space: pre-wrap; word-break: break-word; margin: 2px 0 4px 1em; max-height: 320px;
  overflow: auto; font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 13px); color: var(--jp-content-font-color1, inherit);
}
.sieve-widget .sieve-heading {
  font-size: var(--jp-ui-font-size0, 11px); font-weight: 600; letter-spacing: 0.5px;
  text-transform: uppercase; color: var(--jp-ui-font-color2, #616161); margin: 8px 0 2px;
}
.sieve-widget .sieve-bar {
  display: flex; height: 10px; width: 100%; border-radius: 2px; overflow: hidden;
  background: var(--jp-layout-color3, #e0e0e0); margin: 3px 0 6px;
}
.sieve-widget .sieve-bar > div { height: 100%; }
.sieve-widget .sieve-stripes {
  background-image: linear-gradient(45deg, rgba(255,255,255,.28) 25%, transparent 25%,
    transparent 50%, rgba(255,255,255,.28) 50%, rgba(255,255,255,.28) 75%, transparent 75%,
    transparent);
  background-size: 14px 14px;
  animation: sieve-stripes 0.8s linear infinite;
}
.sieve-widget .sieve-indeterminate { width: 100%; opacity: 0.55; }
@keyframes sieve-stripes { from { background-position: 14px 0; } to { background-position: 0 0; } }
.sieve-widget .sieve-head { display: flex; flex-wrap: wrap; gap: 0 8px; align-items: baseline; }
.sieve-widget .sieve-head .sieve-timing { margin-left: auto; }
.sieve-widget button.sieve-disclosure {
  background: none; border: none; box-shadow: none; padding: 0; height: auto; width: auto;
  text-align: left; font-weight: 600; color: var(--jp-ui-font-color1, inherit); cursor: pointer;
  line-height: 1.6;
}
.sieve-widget button.sieve-disclosure:hover,
.sieve-widget button.sieve-disclosure:focus { background: none; box-shadow: none; }
.sieve-widget button.sieve-disclosure:focus:not(:focus-visible) { outline: none; }
.sieve-form { border: var(--jp-border-width, 1px) solid var(--jp-border-color2, #e0e0e0);
  border-radius: 2px; padding: 8px 12px; background: var(--jp-layout-color0, transparent); }
.sieve-form .sieve-header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 10px; }
.sieve-form .sieve-title { font-size: var(--jp-content-font-size2, 1.2em); font-weight: 600; }
.sieve-form .sieve-signature { margin-left: auto; }
.sieve-form .sieve-signature[open] { flex-basis: 100%; margin-left: 0; }
.sieve-form .sieve-signature code { white-space: pre-wrap; }
.sieve-form .sieve-fields { grid-gap: 2px 12px; align-items: start; margin: 4px 0 2px; }
.sieve-form .sieve-label > .widget-html-content {
  line-height: var(--jp-widgets-inline-height, 28px); white-space: nowrap;
}
.sieve-form .sieve-label b { font-weight: 600; }
.sieve-form .sieve-required { color: var(--jp-error-color1, #d32f2f); }
.sieve-form .sieve-cell { margin: 0; }
.sieve-form .sieve-cell > .jupyter-widgets,
.sieve-form .sieve-cell > .widget-hbox > .jupyter-widgets { margin-top: 0; margin-bottom: 0; }
.sieve-form .sieve-caption > .widget-label, .sieve-form .sieve-field-error > .widget-label {
  display: none;
}
.sieve-form .sieve-caption, .sieve-form .sieve-field-error {
  height: auto; min-height: 0; margin-top: 0; margin-bottom: 0;
}
.sieve-form .sieve-caption > .widget-html-content,
.sieve-form .sieve-field-error > .widget-html-content {
  font-size: var(--jp-ui-font-size0, 11px); line-height: 1.3; padding: 1px 0 2px 2px;
}
.sieve-form .sieve-caption { color: var(--jp-ui-font-color2, #616161); }
.sieve-form .sieve-field-error { color: var(--jp-error-color1, #d32f2f); }
.sieve-form .sieve-invalid input, .sieve-form .sieve-invalid textarea {
  border-color: var(--jp-error-color1, #d32f2f) !important;
}
.sieve-form button.sieve-step { width: 26px; padding: 0; min-width: 26px; }
.sieve-form .sieve-actions { margin-top: 4px; align-items: center; }
.sieve-form .sieve-message > .widget-html-content { line-height: 1.35; }
"""


def style_widget() -> widgets.HTML:
    """A hidden widget carrying the shared style sheet (add it to a top-level widget)."""
    return widgets.HTML(f"<style>{_CSS}</style>", layout=widgets.Layout(display="none"))
