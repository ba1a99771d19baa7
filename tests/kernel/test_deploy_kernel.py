"""A deployment made from a real kernel outlives it: `%sieve deploy`, then the kernel is
restarted (its process killed) and the new kernel calls the deployment by name, sees it in
`%sieve deployments` and its logs, and undeploys it."""

from __future__ import annotations

from _kernel import KernelSession

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
