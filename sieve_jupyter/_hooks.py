"""Where the layers above the manager hook in, without the manager importing them.

The package's public face (`sieve_jupyter/__init__.py`) registers the notebook layer here, so
that in a Jupyter kernel `import sieve_jupyter` alone routes worker output to the right cell;
and the deployment layer, so that `function.get("user/name")` (in a kernel, a script, or a
worker's chained call) finds a deployment when no function of this process has that name,
and so that the side panel (the notebook layer) lists and undeploys deployments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "DeploymentLister",
    "NameResolver",
    "deploy_hooks",
    "deployment_listers",
    "manager_created_hooks",
    "name_resolvers",
]

#: called with the manager right after it is created
manager_created_hooks: list[Callable[[Any], None]] = []


class NameResolver(Protocol):
    """Finds what a name means when no function of this process is registered under it."""

    def resolve(self, name: str) -> Any | None:
        """A handle with ``run`` / ``push`` / ``map`` for `name` (``user/name[:version]``), or
        None when this resolver knows no such name."""

    def known(self) -> list[str]:
        """The names this resolver would find (for "not found" messages)."""


#: asked in order after the manager's own registry (the deployment layer adds one)
name_resolvers: list[NameResolver] = []

#: ``handle.deploy(**options)`` calls the first of these with the handle and the options
deploy_hooks: list[Callable[..., Any]] = []


class DeploymentLister(Protocol):
    """What the side panel needs of the deployment layer (which sits above the notebook
    layer, so the panel's channel cannot import it)."""

    def user(self) -> str:
        """Whose deployments the panel shows (``sieve.config.user``)."""

    def rows(self) -> list[dict[str, Any]]:
        """Every running version of that user's deployments with its health, as
        ``Deployment.describe()`` dicts (never a token's value)."""

    def undeploy(self, name: str) -> None:
        """``sieve.undeploy(name)``, quietly; raises as it does (FunctionNotFoundError...)."""


#: the panel lists and undeploys deployments through the first of these (the public face
#: registers the deployment layer's); empty: the panel has no Deployments section
deployment_listers: list[DeploymentLister] = []
