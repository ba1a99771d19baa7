"""`sieve.deployments()`: every deployment of this machine with its health, as a list that
shows as a table (HTML in notebooks, aligned text elsewhere)."""

from __future__ import annotations

from typing import Any

from sieve_jupyter.deploy._catalog import Catalog
from sieve_jupyter.deploy._model import Deployment, uptime_text

__all__ = ["Deployments", "deployments"]

_COLUMNS = ["name", "version", "backend", "state", "health", "workers", "uptime", "address"]


class Deployments(list[Deployment]):
    """Deployments, newest version of each name first; displays as a table."""

    def rows(self) -> list[list[str]]:
        rows = []
        for d in self:
            ready = "-" if d.ready_workers is None else str(d.ready_workers)
            workers = f"{ready}/{d.workers * max(1, len(d.functions))}"
            restarts = f", {d.restarts} restarts" if d.restarts else ""
            rows.append(
                [
                    d.key,
                    d.version,
                    d.backend,
                    d.state + restarts,
                    (d.health or "-") + (" (draining)" if d.draining else ""),
                    workers,
                    uptime_text(d.uptime),
                    d.url + (" (token)" if d.token else ""),
                ]
            )
        return rows

    def _table(self) -> Any:
        from sieve_jupyter.jupyter._listing import Table

        return Table(
            _COLUMNS,
            self.rows(),
            "No deployments: deploy a function with "
            "Model.deploy(), %sieve deploy NAME or sieve-jupyter deploy.",
        )

    def __repr__(self) -> str:
        return repr(self._table())

    def _repr_html_(self) -> str:
        return str(self._table()._repr_html_())


def deployments(user: str | None = None) -> Deployments:
    """The deployments running on this machine (local processes and, when a Docker engine
    answers, containers), with their servers' health: name, version, backend, address,
    health, ready workers, uptime. `user` keeps one user's.
    """
    catalog = Catalog()
    found = [d for d in catalog.versions() if user is None or d.user == user]
    return Deployments(catalog.with_health(found))
