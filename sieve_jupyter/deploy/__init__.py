"""Deployments: functions that serve after the kernel that made them is gone, found by name.

    Adder.deploy()                              # or sieve.deploy(Adder); %sieve deploy adder
    sieve.function.get("alice/adder").run(1, 2) # from any kernel, script or worker
    sieve.deployments()                         # name, version, backend, health, uptime
    sieve.undeploy("alice/adder")

A deployment is a served bundle: a detached ``sieve-jupyter serve`` process recorded in a
registry under the Jupyter data directory (`_registry`), or, with the Docker backend, a
container from the bundle's image whose labels are its registry (`_docker`). `_catalog` finds
them and says which version a name means; `_deploy` starts, switches and retires versions;
`_handle` is what `function.get` returns; `_runner` is the deployment's server side.
"""

from __future__ import annotations

from sieve_jupyter.deploy._deploy import DeployResult, deploy, deploy_bundle, undeploy
from sieve_jupyter.deploy._handle import DeploymentFunction, DeploymentResolver
from sieve_jupyter.deploy._listing import Deployments, deployments
from sieve_jupyter.deploy._logs import deployment_logs
from sieve_jupyter.deploy._model import Deployment
from sieve_jupyter.deploy._options import DeployOptions

__all__ = [
    "DeployOptions",
    "DeployResult",
    "Deployment",
    "DeploymentFunction",
    "DeploymentResolver",
    "Deployments",
    "deploy",
    "deploy_bundle",
    "deployment_logs",
    "deployments",
    "undeploy",
]
