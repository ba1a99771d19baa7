"""Grants (`_ray_grants.py`) in the cluster's key-value store: a burst takes one, a `.run()`
loop none; a worker's goes with it, and a kernel that ended without closing leaves none behind
once another connects."""

from __future__ import annotations

import time
from typing import Any

from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.backends import _ray_grants
from sieve_jupyter.manager import get_manager


def _backend() -> Any:
    backend = get_manager().backend("ray")
    backend.connect()  # type: ignore[attr-defined]
    return backend


def _keys() -> list[str]:
    from ray.experimental import internal_kv

    return [
        key.decode() for key in internal_kv._internal_kv_list("", namespace=_ray_grants._NAMESPACE)
    ]


def test_a_burst_takes_a_grant_a_run_loop_none_and_a_stopped_worker_leaves_none(
    unique: Unique,
) -> None:
    @sieve.function(name=unique("granted"), backend="ray")
    def add(a: int, b: int) -> int:
        return a + b

    assert [add.run(i, 1) for i in range(50)] == list(range(1, 51))
    pool = get_manager().record(add.name).pool
    assert pool is not None
    (worker_id,) = [w["id"] for w in pool.describe()]
    backend = _backend()
    # Each call was sent with nothing ahead of it: none waited for a grant.
    assert backend.granted(worker_id) == 0

    futures = [add.push(i, 1) for i in range(2000)]
    assert [f.result(timeout=120) for f in futures] == list(range(1, 2001))
    granted = backend.granted(worker_id)
    # Calls behind others were granted, a grant for many quick ones (numbers count every
    # call sent: the 50 runs, then the burst).
    assert granted > 50
    assert any(key.endswith("/" + worker_id) for key in _keys())

    # Stopped straight after a burst, while its grant is still being lowered: the lowering
    # must not land after the grant was deleted.
    assert [f.result(timeout=120) for f in [add.push(i, 1) for i in range(500)]][-1] == 500
    add.stop()
    wait_for(lambda: not any(key.endswith("/" + worker_id) for key in _keys()), timeout=60)
    time.sleep(20 * _ray_grants.LOWER_AFTER)
    assert not any(key.endswith("/" + worker_id) for key in _keys())


def test_a_closed_grant_is_deleted_and_not_lowered_after(unique: Unique) -> None:
    _backend()  # (connected: the store is the cluster's)
    key = _ray_grants.grant_key("test", unique("hub"), "w1")
    grants = _ray_grants.Grants(key)
    grants.ran(1e-6)  # quick jobs: one grant covers many
    grants.admit(1)
    assert _ray_grants.read_grant(key) > 1  # reaching past the call started: a lowering is due
    grants.close()
    assert key not in _keys()
    time.sleep(10 * _ray_grants.LOWER_AFTER)
    assert key not in _keys()  # the lowering thread wrote nothing after
    grants.admit(2)
    assert key not in _keys()


def test_grants_of_a_kernel_that_is_gone_are_swept(unique: Unique) -> None:
    from ray.experimental import internal_kv

    from sieve_jupyter.backends.ray import _hub_exists

    backend = _backend()
    ours = _ray_grants.grant_key(backend._namespace, backend._hub_name, unique("w1"))
    gone = _ray_grants.grant_key(backend._namespace, "sieve-hub-gone000000", unique("w1"))
    for key in (ours, gone):
        internal_kv._internal_kv_put(key, "7", namespace=_ray_grants._NAMESPACE)
    backend._ensure_hub()  # (ours is alive: a worker of it may hold a grant)
    _ray_grants.sweep_grants(_hub_exists)
    keys = _keys()
    assert ours in keys
    assert gone not in keys
    _ray_grants.delete_grants(ours)
    assert ours not in _keys()
