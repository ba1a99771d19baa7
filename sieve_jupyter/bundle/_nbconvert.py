"""``jupyter nbconvert --to sieve-bundle NOTEBOOK --output-dir DIR``: the bundle exporter
(``--to sieve-modelyaml``, or ``--SieveBundleExporter.format=model.yaml``: a model.yaml and its
code instead).

nbconvert writes an exporter's main output as ``<name><extension>`` and its ``outputs``
resources beside it, so the main output is ``sieve.yaml`` (``model.yaml``) and every other file
is a resource. The capture report (and a model.yaml's notes) go to nbconvert's log.
"""

from __future__ import annotations

from typing import Any

from nbconvert.exporters import Exporter
from traitlets import List, Unicode, default

from sieve_jupyter.bundle._export import cells_from_notebook, export_cells

__all__ = ["SieveBundleExporter", "SieveModelYamlExporter"]


class SieveBundleExporter(Exporter):
    """Export a notebook's sieve functions and models as a deployable bundle."""

    export_from_notebook = "Sieve bundle"
    output_mimetype = "text/yaml"

    names = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="Functions or models to export (default: all).",
    ).tag(config=True)
    default = Unicode(
        None, allow_none=True, help="The function that also answers /predictions."
    ).tag(config=True)
    base_image = Unicode(None, allow_none=True, help="Base image of the bundle's Dockerfile.").tag(
        config=True
    )
    ca_bundle = Unicode(
        None, allow_none=True, help="A CA bundle the image must trust (TLS proxies)."
    ).tag(config=True)
    format = Unicode(
        "bundle", help="What to write: a bundle, or a model.yaml and its code (model.yaml)."
    ).tag(config=True)

    def _file_extension_default(self) -> str:
        return ".yaml"

    def from_notebook_node(  # type: ignore[override]  # (its main output is text, as nbconvert's
        self,
        nb: Any,
        resources: dict[str, Any] | None = None,
        **kw: Any,  # templated ones)
    ) -> tuple[str, dict[str, Any]]:
        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        metadata = resources.get("metadata", {})
        name = metadata.get("name") or "notebook"
        result = export_cells(
            cells_from_notebook(nb_copy),
            None,
            names=list(self.names) if self.names else None,
            default=self.default,
            origin=f"{name}.ipynb",
            cwd=metadata.get("path") or None,
            base_image=self.base_image,
            ca_bundle=self.ca_bundle,
            format=self.format,
        )
        for line in result.capture.report:
            self.log.info("sieve-bundle: %s", line)
        for note in result.notes:
            self.log.warning("sieve-bundle: %s", note)
        files = dict(result.files)
        stem = "model" if self.format == "model.yaml" else "sieve"
        main = files.pop(f"{stem}.yaml").decode()
        resources["outputs"] = {**resources.get("outputs", {}), **files}
        resources["unique_key"] = stem
        resources["output_extension"] = ".yaml"
        return main, resources


class SieveModelYamlExporter(SieveBundleExporter):
    """Export a notebook's sieve functions and models as a model.yaml and its code."""

    export_from_notebook = "Sieve model.yaml"

    @default("format")
    def _model_yaml(self) -> str:
        return "model.yaml"
