"""Getting a model's code and files onto this machine: git checkouts and downloads, cached.

Remote repositories are fetched shallowly with the ``git`` command into
``CACHE/modelyaml/repos/<url key>/<commit>``, one directory per commit, so a commit is fetched
once and a checkout never changes under a running worker. An access token reaches git only
through the environment of that one git process (``GIT_CONFIG_*`` setting an
``http.extraHeader``): it is never on a command line, in ``.git/config``, in a message or in the
cache. Files given as ``file://`` or ``http(s)://`` URLs are fetched into
``CACHE/modelyaml/files``.

The cache is ``$SIEVE_JUPYTER_CACHE_DIR``, else the platform's cache directory
(``$XDG_CACHE_HOME/sieve-jupyter``, ``~/.cache/sieve-jupyter``, ``~/Library/Caches/...``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sieve_jupyter._errors import SieveWarning

__all__ = [
    "Checkout",
    "FetchError",
    "cache_root",
    "checkout",
    "display_url",
    "fetch_file",
    "has_credentials",
    "is_git_remote",
]

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)")
_GIT_TIMEOUT = 900.0


class FetchError(Exception):
    """Something could not be fetched; args: (problem, fix). Messages never hold a secret."""

    @property
    def problem(self) -> str:
        return str(self.args[0])

    @property
    def fix(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else ""


def cache_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where fetched code and files are kept (see the module docstring)."""
    if explicit is not None:
        return Path(explicit)
    configured = os.environ.get("SIEVE_JUPYTER_CACHE_DIR")
    if configured:
        return Path(configured)
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sieve-jupyter"


def is_git_remote(url: str) -> bool:
    """A URL git fetches from (http(s), ssh, git, file, or ``user@host:path``), as opposed
    to a local directory used in place."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    return scheme in ("http", "https", "ssh", "git", "file") or bool(_SCP_LIKE.match(url))


def display_url(url: str) -> str:
    """The URL without any password or token in it (for messages, metadata and cache keys)."""
    parts = urllib.parse.urlsplit(url)
    secret = parts.password is not None or (parts.scheme in ("http", "https") and parts.username)
    if parts.scheme and secret:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def has_credentials(url: str) -> bool:
    """Whether the URL carries a password or token (which git would store with the fetch)."""
    return display_url(url) != url


def _key(url: str) -> str:
    shown = display_url(url).rstrip("/")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", shown.rsplit("/", 1)[-1].removesuffix(".git"))
    return f"{slug[:40] or 'repo'}-{hashlib.sha256(shown.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Checkout:
    """Code at one commit, on this machine."""

    root: Path
    commit: str
    #: the URL as shown to users (no credentials)
    url: str


class _Git:
    """Runs git for one remote; the token, if any, only in the child's environment."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self._secrets = [s for s in (token,) if s]
        self._env = dict(os.environ)
        self._env["GIT_TERMINAL_PROMPT"] = "0"  # fail instead of asking for a password
        self._env.setdefault("GIT_ASKPASS", "")
        if token:
            header = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            self._secrets.append(header)
            index = int(self._env.get("GIT_CONFIG_COUNT", "0") or 0)
            self._env["GIT_CONFIG_COUNT"] = str(index + 1)
            self._env[f"GIT_CONFIG_KEY_{index}"] = "http.extraHeader"
            self._env[f"GIT_CONFIG_VALUE_{index}"] = f"Authorization: Basic {header}"

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def run(self, *args: str, cwd: Path | None = None) -> str:
        """Run ``git ARGS``; returns stdout.

        Raises:
            FetchError: git is missing or failed (its message, redacted).
        """
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise FetchError(
                "git is not installed, and the model's repository must be fetched with it.",
                "install git (e.g. apt-get install git), or use a local directory as the "
                "repository.",
            ) from None
        except subprocess.TimeoutExpired:
            raise FetchError(
                f"git {args[0]} of {display_url(self.url)} took longer than {_GIT_TIMEOUT:.0f} s.",
                "check the network and the URL.",
            ) from None
        if done.returncode != 0:
            # git's first lines say what happened; the rest is advice about its own command
            lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()]
            message = self.redact(" ".join([line for line in lines if line][:2]))
            raise FetchError(message or f"git {args[0]} failed with code {done.returncode}.")
        return done.stdout


def checkout(
    url: str,
    *,
    branch: str | None,
    commit: str | None,
    token: str | None,
    cache: Path,
    refresh: bool = False,
) -> Checkout:
    """The repository at `url` checked out at `commit` (or the head of `branch`, or of the
    remote's default branch), fetched shallowly unless the cache has it.

    Raises:
        FetchError: the remote, branch or commit cannot be reached (redacted message).
    """
    git = _Git(url, token)
    shown = display_url(url)
    home = cache / "modelyaml" / "repos" / _key(url)
    wanted = commit.lower() if commit else None
    if wanted is not None:
        cached = _cached(home, wanted)
        if cached is not None and not refresh:
            return Checkout(cached, cached.name, shown)
    else:
        ref = f"refs/heads/{branch}" if branch else "HEAD"
        try:
            head = git.run("ls-remote", "--", url, ref).split()
        except FetchError as exc:
            remembered = _remembered(home, branch)
            if remembered is None:
                raise FetchError(
                    f"cannot reach {shown}: {exc.problem}",
                    "check the URL, the network and the access token (repository.access_token "
                    "naming a variable that holds it).",
                ) from None
            warnings.warn(
                f"{shown}: cannot reach the remote ({exc.problem}); using the cached checkout of "
                f"{branch or 'its default branch'} at {remembered.name[:12]}.",
                SieveWarning,
                stacklevel=3,
            )
            return Checkout(remembered, remembered.name, shown)
        if not head:
            raise FetchError(
                f"{shown} has no branch {branch!r}." if branch else f"{shown} has no HEAD.",
                "check the branch name (git ls-remote lists them).",
            )
        cached = home / head[0]
        if cached.is_dir() and not refresh:
            _remember(home, branch, head[0])
            return Checkout(cached, head[0], shown)
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=home))
    try:
        found = _fetch(git, work, branch, wanted, shown)
        target = home / found
        try:
            os.rename(work, target)
        except OSError:  # fetched meanwhile by someone else: theirs is the same commit
            shutil.rmtree(work, ignore_errors=True)
        if wanted is None:
            _remember(home, branch, found)
        return Checkout(target, found, shown)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _fetch(git: _Git, work: Path, branch: str | None, wanted: str | None, shown: str) -> str:
    git.run("-c", "init.defaultBranch=main", "init", "-q", str(work))
    if wanted is not None and len(wanted) == 40:
        try:
            git.run("fetch", "-q", "--depth", "1", "--no-tags", "--", git.url, wanted, cwd=work)
            target = "FETCH_HEAD"
        except FetchError:  # a server that refuses unadvertised commits: fetch its branches
            target = _fetch_all(git, work, wanted, shown)
    elif wanted is not None:  # an abbreviated hash names nothing a server can send alone
        target = _fetch_all(git, work, wanted, shown)
    else:
        ref = f"refs/heads/{branch}" if branch else "HEAD"
        try:
            git.run("fetch", "-q", "--depth", "1", "--no-tags", "--", git.url, ref, cwd=work)
        except FetchError as exc:
            raise FetchError(
                f"cannot fetch {branch or 'the default branch'} of {shown}: {exc.problem}",
                "check the URL, the branch and the access token.",
            ) from None
        target = "FETCH_HEAD"
    git.run("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", target, cwd=work)
    found = git.run("rev-parse", "HEAD", cwd=work).strip()
    if wanted is not None and not found.startswith(wanted):
        raise FetchError(
            f"{shown} gave commit {found} for hash {wanted}.",
            "check the hash: it must be a commit of that repository.",
        )
    # What git remembers of the fetch names the remote; only the checkout is wanted.
    (work / ".git" / "FETCH_HEAD").unlink(missing_ok=True)
    return found


def _fetch_all(git: _Git, work: Path, wanted: str, shown: str) -> str:
    try:
        git.run(
            "fetch", "-q", "--tags", "--", git.url, "+refs/heads/*:refs/remotes/origin/*", cwd=work
        )
    except FetchError as exc:
        raise FetchError(
            f"cannot fetch {shown}: {exc.problem}",
            "check the URL and the access token.",
        ) from None
    try:
        return git.run("rev-parse", "--verify", "-q", f"{wanted}^{{commit}}", cwd=work).strip()
    except FetchError:
        raise FetchError(
            f"{shown} has no commit {wanted} on any branch or tag.",
            "check the hash (git log in a clone of the repository shows it).",
        ) from None


def _cached(home: Path, wanted: str) -> Path | None:
    if not home.is_dir():
        return None
    matches = [p for p in home.iterdir() if p.is_dir() and p.name.startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _remember(home: Path, branch: str | None, commit: str) -> None:
    """Note which commit a branch was at, for loading offline later."""
    try:
        marks = home / "branches"
        marks.mkdir(parents=True, exist_ok=True)
        (marks / _branch_file(branch)).write_text(commit + "\n")
    except OSError:
        pass  # only a convenience


def _remembered(home: Path, branch: str | None) -> Path | None:
    try:
        commit = (home / "branches" / _branch_file(branch)).read_text().strip()
    except OSError:
        return None
    path = home / commit
    return path if commit and path.is_dir() else None


def _branch_file(branch: str | None) -> str:
    return hashlib.sha256((branch or "HEAD").encode()).hexdigest()[:16]


# --- files -------------------------------------------------------------------------------------


def fetch_file(url: str, *, cache: Path, refresh: bool = False) -> Path:
    """A ``file://``, ``http://`` or ``https://`` URL's content as a file in the cache.

    A ``file://`` source is copied again when it changed (size or modification time); a
    download is kept until `refresh`.

    Raises:
        FetchError: the source is missing or the download failed.
    """
    parts = urllib.parse.urlsplit(url)
    name = Path(urllib.parse.unquote(parts.path)).name or "download"
    folder = cache / "modelyaml" / "files" / hashlib.sha256(url.encode()).hexdigest()[:16]
    target = folder / name
    if parts.scheme == "file":
        source = Path(urllib.request.url2pathname(parts.path))
        if not source.is_file():
            raise FetchError(f"{url} is not a file.", "check the path.")
        stat = source.stat()
        if (
            target.is_file()
            and not refresh
            and target.stat().st_size == stat.st_size
            and target.stat().st_mtime >= stat.st_mtime
        ):
            return target
        folder.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as data:
            _atomically(target, lambda out: shutil.copyfileobj(data, out, 1 << 20))
        os.utime(target, (stat.st_atime, stat.st_mtime))
        return target
    if target.is_file() and not refresh:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "sieve-jupyter"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - http(s)
            _atomically(target, lambda out: shutil.copyfileobj(response, out, 1 << 20))
    except urllib.error.HTTPError as exc:
        raise FetchError(
            f"downloading {display_url(url)} failed: HTTP {exc.code} {exc.reason}.",
            "check the URL (and that it needs no login).",
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"downloading {display_url(url)} failed: {reason}.", "check the URL and the network."
        ) from None
    return target


def _atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file renamed over `target`, so a reader never sees half."""
    handle, temporary = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
