"""A deployment made from a real kernel outlives it: `%sieve deploy`, then the kernel is
restarted (its process killed) and the new kernel calls the deployment by name, sees it in
`%sieve deployments` and its logs, and undeploys it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from _kernel import KernelSession, start_kernel
from support import processes_under

from sieve_jupyter._errors import SieveWarning

CELLS = [
    "import sieve_jupyter as sieve",
    "%load_ext sieve_jupyter",
    "sieve.configure(user='alice')\nOFFSET = 100",
    """%%sieve_model --name adder
class Adder:
    def __setup__(self):
        print("setting up the adder")
        self.offset = OFFSET
    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2 + self.offset""",
]


@pytest.fixture
def deploying_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelSession]:
    """A kernel whose deployments go to a registry of this test's own; whatever it deployed
    is undeployed afterwards, and no process started from here may remain."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    session = start_kernel(tmp_path)
    try:
        yield session
    finally:
        session.close()
        from sieve_jupyter.deploy import undeploy
        from sieve_jupyter.deploy._registry import LocalRegistry

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SieveWarning)
            left = LocalRegistry().entries()
        for key in sorted({f"{e['user']}/{e['name']}" for e in left}):
            undeploy(key, log=lambda line: None)
        assert left == []
        assert processes_under(tmp_path) == []


def test_a_deployment_outlives_its_kernel(deploying_kernel: KernelSession) -> None:
    kernel = deploying_kernel
    for cell in CELLS:
        kernel.ok(cell)
    deployed = kernel.ok("%sieve deploy adder", timeout=300)
    assert "Deployed alice/adder version 1-" in deployed.stream()

    kernel.manager.restart_kernel(now=True)  # the kernel process is killed and replaced
    kernel.client.wait_for_ready(timeout=60)
    called = kernel.ok(
        "import sieve_jupyter as sieve\n"
        "adder = sieve.function.get('alice/adder')\n"
        "print(adder.run(1, 2), adder.push(2, 3).result())"
    )
    assert called.stream().split() == ["103", "105"]
    kernel.ok("%load_ext sieve_jupyter")
    listed = kernel.ok("%sieve deployments")
    assert "alice/adder" in listed.text and "READY" in listed.text
    logs = kernel.ok("%sieve logs alice/adder --deployment -n 50")
    assert logs.stream().count("setting up the adder") == 1  # warm: setup ran once
    gone = kernel.ok("%sieve undeploy alice/adder")
    assert "Undeployed alice/adder" in gone.stream()
    missing = kernel.run("sieve.function.get('alice/adder')")
    assert not missing.ok and missing.error is not None
    assert missing.error["ename"] == "FunctionNotFoundError"
