"""model.yaml code and files from elsewhere: git remotes (a branch, a verified hash, cached by
commit), files over file:// and a real HTTP server, and an access token that is used for the
clone and found nowhere afterwards."""

from __future__ import annotations

import base64
import pickle
from pathlib import Path
from typing import Any

import pytest
from modelyaml_repos import (
    Repository,
    basic_auth,
    file_server,
    git_http_server,
    make_repository,
    model_yaml,
    remove,
    tree_contains,
)
from support import Unique

import sieve_jupyter as sieve
from sieve_jupyter._errors import ModelYamlError
from sieve_jupyter.manager import get_manager

TOKEN = "tok-8c1d6c9e-never-stored"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache directory for clones and downloads (through the variable users set)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SIEVE_JUPYTER_CACHE_DIR", str(path))
    return path


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    return make_repository(tmp_path / "upstream")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def remote(url: str, **keys: str) -> str:
    # (quoted, as the docs say: a commit's first ten characters are sometimes all digits)
    lines = [f'      {k}: "{v}"' for k, v in keys.items()]
    return "    repository:\n" + "\n".join([f"      url: {url}", *lines]) + "\n"


def checkouts(cache: Path) -> list[Path]:
    return sorted(
        p
        for p in (cache / "modelyaml" / "repos").glob("*/*")
        if p.is_dir() and p.name != "branches"
    )


def test_a_branch_is_cloned_shallow_and_cached_by_commit(
    tmp_path: Path, cache: Path, repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    for branch, scale, commit in (("main", 3.0, repository.head), ("v1", 2.0, repository.first)):
        path = write(
            tmp_path / f"{branch}.yaml",
            model_yaml(name, repository=remote(repository.url, branch=branch)),
        )
        model = sieve.load_yaml(path)[name]
        [prediction] = model.run(datapoints=[1.5])
        assert prediction["boxes"] == [1.5 * scale]
        checkout = cache / "modelyaml" / "repos"
        assert [p.name for p in checkouts(cache)].count(commit) == 1
        assert f"Code: {repository.url} at commit `{commit}`" in model.spec.metadata.readme
        assert model.spec.metadata.code_url == repository.url
        # shallow: the checkout holds its one commit only
        root = next(p for p in checkout.glob(f"*/{commit}"))
        assert (root / ".git" / "shallow").read_text().split() == [commit]
    # the default branch, when none is named, is the remote's HEAD
    path = write(tmp_path / "head.yaml", model_yaml(name, repository=remote(repository.url)))
    assert sieve.load_yaml(path)[name].run(datapoints=[1.0])[0]["boxes"] == [3.0]
    assert len(checkouts(cache)) == 2


def test_an_unreachable_remote_falls_back_to_the_branchs_last_checkout(
    tmp_path: Path, cache: Path, repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    path = write(
        tmp_path / "model.yaml", model_yaml(name, repository=remote(repository.url, branch="v1"))
    )
    assert sieve.load_yaml(path)[name].run([1.0])[0]["boxes"] == [2.0]
    remove(repository.path)
    with pytest.warns(
        sieve.SieveWarning,
        match="cannot reach the remote .* using the cached "
        "checkout of v1 at " + repository.first[:12],
    ):
        model = sieve.load_yaml(path)[name]
    assert model.run([1.0])[0]["boxes"] == [2.0]


@pytest.mark.parametrize("abbreviated", [False, True], ids=["full-hash", "short-hash"])
def test_a_hash_is_verified_and_later_loads_need_no_remote(
    tmp_path: Path, cache: Path, repository: Repository, unique: Unique, abbreviated: bool
) -> None:
    name = unique("yolor")
    commit = repository.first[:10] if abbreviated else repository.first
    path = write(
        tmp_path / "model.yaml", model_yaml(name, repository=remote(repository.url, hash=commit))
    )
    model = sieve.load_yaml(path)[name]
    assert model.run([1.0])[0]["boxes"] == [2.0]
    [checkout] = checkouts(cache)
    assert checkout.name == repository.first
    remove(repository.path)  # the cache has that commit: the remote is not needed again
    again = sieve.load_yaml(path)[name]
    assert again.run([2.0])[0]["boxes"] == [4.0]
    assert checkouts(cache) == [checkout]


@pytest.mark.parametrize(
    ("keys", "where", "words"),
    [
        ({"branch": "no-such-branch"}, "models[0].repository.branch", "has no branch"),
        (
            {"hash": "0123456789abcdef0123456789abcdef01234567"},
            "models[0].repository.hash",
            "has no commit",
        ),
        ({"hash": "abcdef12"}, "models[0].repository.hash", "has no commit"),
        (
            {"branch": "main", "hash": "abcdef12"},
            "models[0].repository.hash",
            "together with branch",
        ),
    ],
)
def test_a_remote_problem_is_reported_at_its_line(
    tmp_path: Path,
    cache: Path,
    repository: Repository,
    unique: Unique,
    keys: dict[str, str],
    where: str,
    words: str,
) -> None:
    name = unique("yolor")
    path = write(
        tmp_path / "model.yaml", model_yaml(name, repository=remote(repository.url, **keys))
    )
    with pytest.raises(ModelYamlError) as info:
        sieve.load_yaml(path)
    [problem] = info.value.problems
    assert problem.key_path == where and words in problem.problem, problem
    assert problem.line == 4 + len(keys) and problem.fix  # the last key written
    assert name not in [r.name for r in get_manager().records()]  # nothing registered


def test_an_unreachable_remote_is_reported_at_the_url(
    tmp_path: Path, cache: Path, unique: Unique
) -> None:
    path = write(
        tmp_path / "model.yaml",
        model_yaml(
            unique("yolor"), repository=remote((tmp_path / "nowhere").as_uri(), branch="main")
        ),
    )
    with pytest.raises(ModelYamlError) as info:
        sieve.load_yaml(path)
    assert str(info.value).startswith(f"{path}:4:12: models[0].repository.url: cannot reach")


def test_a_local_repository_directory_is_used_in_place(
    tmp_path: Path, cache: Path, repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    path = write(
        tmp_path / "defs" / "model.yaml", model_yaml(name, repository=remote("../upstream"))
    )
    model = sieve.load_yaml(path)[name]
    assert model.run([1.0])[0]["boxes"] == [3.0]  # the working tree as it is
    assert f"{repository.path}" in model.spec.mounts  # writable: it is the user's own
    assert not (cache / "modelyaml").exists()  # nothing was cloned
    bad = write(
        tmp_path / "defs" / "bad.yaml",
        model_yaml(name, repository=remote("../upstream", branch="main")),
    )
    with pytest.raises(
        ModelYamlError, match="bad.yaml:5:15: models.0..repository.branch: applies to a git remote"
    ):
        sieve.load_yaml(bad)


def test_files_come_from_http_and_file_urls_into_the_cache(
    tmp_path: Path, cache: Path, repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    served = tmp_path / "served"
    write(served / "weights" / "scale.txt", "5.0\n")
    local = write(tmp_path / "elsewhere" / "scale.txt", "7.0\n")
    with file_server(served) as base:
        files = (
            f"    files:\n      - name: params\n        url: {base}/weights/scale.txt\n"
            f"      - name: other\n        url: {local.as_uri()}\n"
        )
        path = write(repository.path / "http.yaml", model_yaml(name, files=files))
        model = sieve.load_yaml(path)[name]
        assert model.run([1.0])[0]["boxes"] == [5.0]
    downloaded = Path(model.spec.mounts[1].removesuffix(":ro"))
    assert downloaded.is_relative_to(cache) and downloaded.read_text() == "5.0\n"
    copied = Path(model.spec.mounts[2].removesuffix(":ro"))
    assert copied.is_relative_to(cache) and copied.read_text() == "7.0\n"
    # the server is gone: the download is cached
    assert sieve.load_yaml(path)[name].run([2.0])[0]["boxes"] == [10.0]
    # a changed file:// source is copied again; refresh fetches a download again
    write(served / "weights" / "scale.txt", "6.0\n")
    with file_server(served) as base2:
        moved = path.read_text().replace(base, base2)
        path.write_text(moved)
        assert sieve.load_yaml(path)[name].run([1.0])[0]["boxes"] == [6.0]
        missing = path.read_text().replace("weights/scale.txt", "weights/nope.txt")
        path.write_text(missing)
        with pytest.raises(ModelYamlError) as info:
            sieve.load_yaml(path, refresh=True)
    assert str(info.value).startswith(f"{path}:5:14: models[0].files[0].url: downloading")
    assert "HTTP 404" in str(info.value)


def test_a_missing_file_is_reported_at_its_url(
    tmp_path: Path, repository: Repository, unique: Unique
) -> None:
    path = write(
        repository.path / "model.yaml",
        model_yaml(unique("yolor")).replace("results/params.txt", "results/nope.pt"),
    )
    with pytest.raises(ModelYamlError) as info:
        sieve.load_yaml(path)
    problem = info.value.problems[0]
    assert (problem.line, problem.column, problem.key_path) == (5, 14, "models[0].files[0].url")
    assert "does not exist" in problem.problem


# --- the access token ---------------------------------------------------------------------------


def everything_recorded(model: Any, future: Any) -> bytes:
    """What a kernel keeps about a loaded model and its job, as bytes to search."""
    record = get_manager().record(model.name)
    return b"\n".join(
        [
            model.spec.to_json().encode(),
            record.payload,
            pickle.dumps(record.sources),
            repr(model).encode(),
            model._repr_html_().encode(),
            pickle.dumps(future.logs),
            pickle.dumps(future.snapshot()),
        ]
    )


def test_the_token_is_sent_for_the_clone_and_kept_nowhere(
    tmp_path: Path,
    cache: Path,
    repository: Repository,
    unique: Unique,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_KEY", TOKEN)
    name = unique("yolor")
    with git_http_server(tmp_path / "served", token=TOKEN) as server:
        url = server.publish(repository)
        path = write(
            tmp_path / "model.yaml",
            model_yaml(name, repository=remote(url, branch="main", access_token="${GIT_KEY}")),
        )
        model = sieve.load_yaml(path)[name]
    assert basic_auth(TOKEN) in server.seen  # git really sent it
    future = model.push([1.0])
    assert future.result(timeout=120)[0]["boxes"] == [3.0]
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    for secret in (TOKEN, encoded):
        assert tree_contains(cache, secret) == []  # not in .git/config or anywhere in the clone
        assert secret.encode() not in everything_recorded(model, future)


def test_a_wrong_token_fails_at_the_url_without_saying_either_token(
    tmp_path: Path,
    cache: Path,
    repository: Repository,
    unique: Unique,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_KEY", "wrong-" + TOKEN)
    with git_http_server(tmp_path / "served", token=TOKEN) as server:
        url = server.publish(repository)
        path = write(
            tmp_path / "model.yaml",
            model_yaml(
                unique("yolor"), repository=remote(url, branch="main", access_token="${GIT_KEY}")
            ),
        )
        with pytest.raises(ModelYamlError) as info:
            sieve.load_yaml(path)
    text = str(info.value) + repr(info.value.problems)
    assert text.startswith(f"{path}:4:12: models[0].repository.url: cannot reach")
    assert TOKEN not in text and "x-access-token" not in text
    assert base64.b64encode(f"x-access-token:wrong-{TOKEN}".encode()).decode() not in text


def test_an_unset_token_variable_fails_before_anything_is_fetched(
    tmp_path: Path,
    cache: Path,
    repository: Repository,
    unique: Unique,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GIT_KEY", raising=False)
    with git_http_server(tmp_path / "served", token=TOKEN) as server:
        url = server.publish(repository)
        path = write(
            tmp_path / "model.yaml",
            model_yaml(
                unique("yolor"), repository=remote(url, branch="main", access_token="${GIT_KEY}")
            ),
        )
        with pytest.raises(ModelYamlError) as info:
            sieve.load_yaml(path)
    assert server.seen == []
    assert str(info.value).startswith(
        f"{path}:6:21: models[0].repository.access_token: environment variable GIT_KEY is not set."
    )


def test_credentials_written_into_the_url_are_refused(
    tmp_path: Path, cache: Path, unique: Unique
) -> None:
    path = write(
        tmp_path / "model.yaml",
        model_yaml(
            unique("yolor"), repository=remote("https://user:pa55@example.invalid/yolor.git")
        ),
    )
    with pytest.raises(ModelYamlError) as info:
        sieve.load_yaml(path)
    assert "models[0].repository.url: holds a user name or password" in str(info.value)
    assert "pa55" not in str(info.value).split("Fix:")[0].split("password")[1]
