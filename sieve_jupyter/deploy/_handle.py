"""`function.get("user/name")` for a deployment: a handle that follows the name.

It is the HTTP client handle (same `run` / `push` / `map`, futures and errors) pointed at the
version the name means now; when that server stops answering or drains (a redeploy replaced
it), the handle looks the name up again and carries on with the new version, as a Sieve
reference does. ``user/name:3`` stays on version 3 and fails once it is gone.
"""

from __future__ import annotations

from sieve_jupyter._config import config
from sieve_jupyter._errors import ConfigurationError, FunctionNotFoundError
from sieve_jupyter.deploy._catalog import Catalog
from sieve_jupyter.deploy._model import Deployment, NameRef, parse_name
from sieve_jupyter.sdk._remote import HttpFunction

__all__ = ["DeploymentFunction", "DeploymentResolver"]


def _url(deployment: Deployment, function: str | None) -> str:
    return deployment.url if function is None else f"{deployment.url}/functions/{function}"


class DeploymentFunction(HttpFunction):
    """A deployed function, called by name (see the module docstring)."""

    def __init__(
        self, ref: NameRef, deployment: Deployment, function: str | None, catalog: Catalog
    ) -> None:
        self.ref = ref
        self.deployment = deployment
        self._function_name = function
        self._catalog = catalog
        super().__init__(_url(deployment, function), token=deployment.token, locate=self._where)

    def _where(self) -> tuple[str, str | None]:
        target = (
            self.ref
            if self._function_name is None or self.ref.version
            else NameRef(self.deployment.user, self.deployment.name, None)
        )
        try:
            found = self._catalog.find(target)
        except FunctionNotFoundError as exc:
            raise FunctionNotFoundError(
                f"{self.ref} is no longer deployed (it was at {self.deployment.url}): {exc}"
            ) from None
        self.deployment = found
        return _url(found, self._function_name), found.token

    @property
    def version(self) -> str:
        """The version the handle calls now."""
        return self.deployment.version

    def __repr__(self) -> str:
        what = f"{self.ref}" + (f" ({self._function_name})" if self._function_name else "")
        return (
            f"<sieve deployment {what}, version {self.deployment.version} "
            f"({self.deployment.backend}) at {self.deployment.url}>"
        )


class DeploymentResolver:
    """The deployment layer's part of name lookups (`_hooks.name_resolvers`). Each lookup
    reads the registry afresh (where it lives comes from the environment)."""

    def resolve(self, name: str) -> DeploymentFunction | None:
        try:
            ref = parse_name(name, config.user)
        except ConfigurationError:
            return None
        catalog = Catalog()
        found = catalog.serving(name)
        if found is None:
            return None
        deployment, function = found
        return DeploymentFunction(ref, deployment, function, catalog)

    def known(self) -> list[str]:
        try:
            return Catalog().names()
        except Exception:  # noqa: BLE001 - only for an error message
            return []
