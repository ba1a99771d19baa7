"""Local deployments (the embedded default, no Docker): a detached server per version, found
by name from any process, redeployed without a failed call, and gone without a trace when
undeployed or killed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _deployed import ClientLoop, Deploy, adder_cells, caller_script, cli, deploy_script
from support import processes_under, run_script

import sieve_jupyter as sieve
from sieve_jupyter._errors import SieveWarning
from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.deploy._registry import LocalRegistry


def test_a_script_deploys_and_exits_and_another_process_calls_it_by_name(tmp_path: Path) -> None:
    deployed = run_script(deploy_script("alice"), tmp_path / "deploy_adder.py")
    assert "Deployed alice/adder version 1-" in deployed.stdout

    first = json.loads(run_script(caller_script("alice"), tmp_path / "caller.py").stdout)
    second = json.loads(run_script(caller_script("alice"), tmp_path / "caller2.py").stdout)
    assert (first["run"], first["push"]) == (3, 5)
    assert second == first

    listed = json.loads(cli("deployments", "--json").stdout)
    assert [(d["name"], d["backend"], d["health"], d["token"]) for d in listed] == [
        ("alice/adder", "local", "READY", False)
    ]
    assert listed[0]["version"] == first["version"]
    logs = cli("logs", "alice/adder", "-n", "200").stdout
    # warm: setup ran once, in the deployment, for both callers
    assert logs.count("setting up the adder") == 1
    assert "worker adder-w1 ready" in logs

    (entry,) = LocalRegistry().entries()
    server = ProcessIdentity.parse(entry["process"])
    assert server is not None and server.is_alive()
    undeployed = cli("undeploy", "alice/adder")
    assert undeployed.returncode == 0, undeployed.stderr
    assert "Undeployed alice/adder" in undeployed.stdout
    assert not server.is_alive()
    assert LocalRegistry().entries() == []
    assert processes_under(tmp_path) == []
    with pytest.raises(sieve.FunctionNotFoundError, match="deployments: none"):
        sieve.function.get("alice/adder")


def test_a_redeploy_under_a_client_loop_loses_no_call(tmp_path: Path, deploy_cells: Deploy) -> None:
    sieve.configure(user="alice")
    first = deploy_cells(adder_cells(offset=0, delay=0.2), tmp_path / "v1.ipynb")
    assert first.outcome == "new"
    again = deploy_cells(adder_cells(offset=0, delay=0.2), tmp_path / "v1.ipynb")
    assert again.outcome == "unchanged" and again.version == first.version
    assert "unchanged" in str(again)

    handle = sieve.function.get("alice/adder")  # obtained before the redeploy
    with ClientLoop(handle, pushes=(False, True, True)) as clients:
        clients.wait_for(5)
        second = deploy_cells(adder_cells(offset=100, delay=0.2), tmp_path / "v2.ipynb")
        clients.wait_for(len(clients.results) + 6)
    results = clients.results
    assert clients.failures == []
    assert second.outcome == "updated" and second.version.startswith("2-")
    assert [r.version for r in second.retired] == [first.version]
    assert set(results) == {3, 103}
    assert results[-3:] == [103, 103, 103]
    assert handle.version == second.version  # the handle followed the name
    assert [e["version"] for e in LocalRegistry().entries()] == [second.version]
    with pytest.raises(sieve.FunctionNotFoundError, match="has no version '1'"):
        sieve.function.get("alice/adder:1")
    assert sieve.function.get("alice/adder:2").run(1, 1) == 102


def test_a_redeploy_whose_setup_fails_leaves_the_old_version_serving(
    tmp_path: Path, deploy_cells: Deploy
) -> None:
    sieve.configure(user="alice")
    first = deploy_cells(adder_cells(offset=0), tmp_path / "v1.ipynb")
    broken = adder_cells(offset=5, setup='raise RuntimeError("no weights here")')
    with pytest.raises(sieve.DeployError, match="no weights here") as caught:
        deploy_cells(broken, tmp_path / "v2.ipynb", timeout=120)
    assert f"version {first.version} keeps serving" in str(caught.value)
    assert [e["version"] for e in LocalRegistry().entries()] == [first.version]
    assert sieve.function.get("alice/adder").run(1, 2) == 3
    # the failed version left no folder behind
    versions = LocalRegistry().root / "alice" / "adder"
    assert sorted(p.name for p in versions.iterdir()) == [first.version]


def test_two_users_deployments_of_one_name_stay_apart(tmp_path: Path, deploy_cells: Deploy) -> None:
    sieve.configure(user="alice")
    alice = deploy_cells(adder_cells(offset=0), tmp_path / "alice.ipynb")
    sieve.configure(user="bob")
    bob = deploy_cells(adder_cells(offset=0), tmp_path / "bob.ipynb")
    assert bob.outcome == "new" and bob.url != alice.url
    assert [d.key for d in sieve.deployments()] == ["alice/adder", "bob/adder"]
    assert sieve.function.get("adder").url == bob.url  # (this process is bob now)
    assert sieve.function.get("alice/adder").url == alice.url
    sieve.undeploy("alice/adder", log=lambda line: None)
    assert [d.key for d in sieve.deployments()] == ["bob/adder"]
    assert sieve.function.get("bob/adder").run(2, 2) == 4


def test_a_killed_server_is_detected_and_its_entry_cleaned(
    tmp_path: Path, deploy_cells: Deploy
) -> None:
    sieve.configure(user="alice")
    result = deploy_cells(adder_cells(offset=0), tmp_path / "v1.ipynb")
    pid = result.deployment.pid
    assert pid is not None
    directory = Path(result.deployment.directory or "")
    assert directory.is_dir()
    os.kill(pid, signal.SIGKILL)
    identity = ProcessIdentity.parse(result.deployment.process or "")
    assert identity is not None
    while identity.is_alive():
        time.sleep(0.05)
    with pytest.warns(SieveWarning, match=f"alice/adder version {result.version} had stopped"):
        assert sieve.deployments() == []
    assert LocalRegistry().entries() == []
    assert not directory.exists()
    with pytest.raises(sieve.FunctionNotFoundError, match="alice/adder"):
        sieve.function.get("alice/adder")


def test_a_name_found_nowhere_lists_what_exists(tmp_path: Path, deploy_cells: Deploy) -> None:
    sieve.configure(user="alice")
    deploy_cells(adder_cells(offset=0), tmp_path / "v1.ipynb")
    with pytest.raises(sieve.FunctionNotFoundError) as caught:
        sieve.function.get("alice/nothing")
    assert "deployments: alice/adder" in str(caught.value)
    with pytest.raises(sieve.FunctionNotFoundError, match="deployments: alice/adder"):
        sieve.undeploy("alice/nothing", log=lambda line: None)


def test_chained_calls_reach_a_deployment(
    tmp_path: Path, unique: Any, deploy_cells: Deploy
) -> None:
    sieve.configure(user="alice")
    deploy_cells(adder_cells(offset=0), tmp_path / "adder.ipynb")
    caller = [
        "import sieve_jupyter as sieve",
        '@sieve.function(name="twice")\ndef twice(x: int) -> int:\n'
        '    return sieve.function.get("alice/adder").run(x, x)',
    ]
    deploy_cells(caller, tmp_path / "twice.ipynb")
    # a deployment's function calls another deployment by name
    assert sieve.function.get("alice/twice").run(4) == 8

    @sieve.function(name=unique("chain"))
    def chain(x: int) -> int:
        return int(sieve.function.get("alice/adder").run(x, 1))

    # a kernel's worker calls a deployment by name (through the kernel's manager)
    assert chain.run(2) == 3


def test_secrets_reach_the_deployment_but_no_file_and_another_interface_needs_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deploy_cells: Deploy
) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    monkeypatch.setenv("GREETING_KEY", secret)
    cells = [
        "import os\n\nimport sieve_jupyter as sieve",
        '@sieve.function(name="greeter", environment_variables=[sieve.Env(name="GREETING_KEY")])\n'
        "def greeter(name: str) -> str:\n"
        '    print("greeting", name)\n'
        '    return name + ":" + str(len(os.environ["GREETING_KEY"]))',
    ]
    sieve.configure(user="alice")
    result = deploy_cells(cells, tmp_path / "greeter.ipynb", host="0.0.0.0")  # noqa: S104
    token = result.deployment.token
    assert token is not None and len(token) >= 32
    assert "It wants a token" in str(result)
    assert sieve.function.get("alice/greeter").run("ann") == f"ann:{len(secret)}"
    import httpx

    refused = httpx.post(f"{result.url}/predictions", json={"input": {"name": "x"}}, timeout=30)
    assert refused.status_code == 401
    listed = cli("deployments", "--json")
    assert token not in listed.stdout and json.loads(listed.stdout)[0]["token"] is True
    registry = LocalRegistry()
    assert oct(registry.path.stat().st_mode & 0o777) == "0o600"
    assert token in registry.path.read_text()  # (kept for function.get, readable by you only)
    for path in registry.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_crashed_worker_is_replaced_and_the_logs_follow_it(
    tmp_path: Path, deploy_cells: Deploy
) -> None:
    from sieve_jupyter.deploy import deployment_logs

    cells = [
        "import os\n\nimport sieve_jupyter as sieve",
        '@sieve.function(name="fragile")\ndef fragile(crash: bool) -> int:\n'
        '    print("fragile called, crash =", crash)\n'
        "    if crash:\n        os._exit(3)\n    return os.getpid()",
    ]
    sieve.configure(user="alice")
    deploy_cells(cells, tmp_path / "fragile.ipynb")
    followed: list[str] = []
    follower = threading.Thread(
        target=lambda: followed.extend(deployment_logs("alice/fragile", lines=1000, follow=True))
    )
    follower.start()
    handle = sieve.function.get("alice/fragile")
    first = handle.run(False)
    with pytest.raises(sieve.SieveError):
        handle.run(True)
    second = handle.run(False)  # a new worker took the crashed one's place
    assert second != first
    sieve.undeploy("alice/fragile", log=lambda line: None)
    follower.join(60)
    assert not follower.is_alive()
    text = "".join(followed)
    assert "fragile called, crash = True" in text
    assert "worker fragile-w1 exited" in text or "crashed" in text
    assert text.rstrip().endswith("--- alice/fragile is no longer deployed ---")


def test_the_command_line_deploys_a_notebook_and_says_when_nothing_changed(tmp_path: Path) -> None:
    from _deployed import notebook

    path = notebook(adder_cells(offset=0), tmp_path / "adder.ipynb")
    first = cli("deploy", str(path), "--user", "alice")
    assert first.returncode == 0, first.stderr
    assert "Deployed alice/adder version 1-" in first.stdout
    again = cli("deploy", str(path), "--user", "alice")
    assert again.returncode == 0 and "alice/adder is unchanged" in again.stdout
    assert sieve.function.get("alice/adder").run(2, 2) == 4
    bundle = tmp_path / "bundle"
    from sieve_jupyter.bundle import export_notebook

    export_notebook(path, bundle)
    refused = cli("deploy", str(bundle), "--name", "adder")
    assert refused.returncode == 2 and "a bundle is deployed whole" in refused.stderr
