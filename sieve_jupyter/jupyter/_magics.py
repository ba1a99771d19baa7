"""`%%sieve_function`, `%%sieve_model` and the `%sieve` line magic."""

from __future__ import annotations

import ast
import shlex
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from sieve_jupyter._config import config, configure
from sieve_jupyter.jupyter._cells import decorator_settings, find_entry
from sieve_jupyter.jupyter._listing import functions_table, job_logs, jobs_table
from sieve_jupyter.manager import get_manager
from sieve_jupyter.sdk import register

__all__ = ["EXTRA_COMMANDS", "SieveMagics"]

_HELP = """\
%sieve ls                      functions and models: kind, backend, workers, state, setup time
%sieve jobs [NAME] [-n N]      recent jobs (newest first) with status and duration
%sieve logs JOB                a job's captured stdout/stderr and error
%sieve stop NAME | --all       stop workers (queued and running jobs are cancelled)
%sieve restart NAME            fresh workers; __setup__ runs again
%sieve build NAME              prepare the environment ahead of the first call (docker: build)
%sieve form NAME               a form generated from the type hints (submit pushes a job)
%sieve load FILE [--name N] [--backend B] [--workers N] [--refresh]
                               load the models of a model.yaml (returns {name: model})
%sieve config [KEY=VALUE ...]  show or change settings (backend, workers, user, gpu_fallback, ...)
%sieve help                    this text{extra}

%%sieve_function / %%sieve_model take the decorator's options; see %%sieve_function?"""


def _cell_options(func: Any) -> Any:
    """The options shared by both cell magics (one per decorator keyword)."""
    options = [
        argument("--name", "-n", help="the function's name (default: the definition's name)"),
        argument("--gpu", help="GPU kind, optionally shared: T4, A100, T4:split=2"),
        argument(
            "--machine-type",
            help="Sieve's older way to name the GPU, e.g. a100-20gb (prefer --gpu)",
        ),
        argument("--python-version", help='Python version of the environment, e.g. "3.11"'),
        argument(
            "--python-packages",
            "--pip",
            nargs="+",
            metavar="REQ",
            help="pip requirements, e.g. numpy 'torch==2.3'",
        ),
        argument(
            "--system-packages",
            "--apt",
            nargs="+",
            metavar="PKG",
            help="apt packages (docker backend), e.g. ffmpeg libgl1",
        ),
        argument("--cuda-version", help='CUDA version for GPU images, e.g. "12.2"'),
        argument(
            "--run-command",
            action="append",
            metavar="CMD",
            help="a shell command run while building the image (repeatable)",
        ),
        argument(
            "--env",
            action="append",
            metavar="NAME[=DEFAULT]",
            help="an environment variable read from the kernel at run time (repeatable)",
        ),
        argument("--title", help="metadata: title"),
        argument("--description", help="metadata: description"),
        argument("--code-url", help="metadata: link to the code"),
        argument("--image", help="metadata: cover image URL"),
        argument("--tag", action="append", metavar="TAG", help="metadata: a tag (repeatable)"),
        argument("--readme", help="metadata: readme text"),
        argument(
            "--restart-on-error",
            choices=["yes", "no"],
            help="restart the worker after an error (default yes)",
        ),
        argument("--backend", help="where workers run: local or docker"),
        argument("--workers", type=int, help="warm workers for this function"),
        argument("--entry", help="which definition to register when the cell has several"),
        argument(
            "--fresh-setup",
            action="store_true",
            help="run __setup__ again even if it and the environment are unchanged",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return magic_arguments()(func)


#: `%sieve` subcommands of the layers above this one (export, serve), registered by them:
#: name -> (handler taking the words after the command, help line)
EXTRA_COMMANDS: dict[str, tuple[Any, str]] = {}


def _help() -> str:
    extra = "".join(f"\n{line}" for _, line in EXTRA_COMMANDS.values())
    return _HELP.replace("{extra}", extra)  # (the help text has braces of its own)


@magics_class
class SieveMagics(Magics):
    """The magics of `%load_ext sieve_jupyter`."""

    @cell_magic
    @_cell_options
    def sieve_function(self, line: str, cell: str) -> None:
        """Define and register a Sieve function (the decorator's options as flags)."""
        self._define(line, cell, "function", self.sieve_function)

    @cell_magic
    @_cell_options
    def sieve_model(self, line: str, cell: str) -> None:
        """Define and register a Sieve model: a class with __setup__ and __predict__."""
        self._define(line, cell, "model", self.sieve_model)

    def _define(self, line: str, cell: str, kind: str, magic: Any) -> None:
        args = parse_argstring(magic, line)
        settings = decorator_settings(args)
        shell = self.shell
        assert shell is not None
        source = shell.transform_cell(cell)
        entry = find_entry(source, kind, args.entry)
        filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
        code = shell.compile(ast.parse(source), filename, "exec")
        namespace = shell.user_ns
        previous = namespace.get(entry, _MISSING)
        exec(code, namespace)  # noqa: S102 - this is the user's own cell
        obj = namespace[entry]
        try:
            handle, registration = register(
                obj, kind=kind, name=settings.pop("name", None), **settings
            )
        except Exception:
            # Nothing half-registered: the name keeps what it meant before this cell.
            if previous is _MISSING:
                namespace.pop(entry, None)
            else:
                namespace[entry] = previous
            raise
        namespace[entry] = handle
        print(self._outcome_text(handle, registration))

    @staticmethod
    def _outcome_text(handle: Any, registration: Any) -> str:
        what = f"{handle.kind} {handle.name!r}"
        record = registration.record
        backend = record.backend
        outcome = registration.outcome
        if outcome == "swapped" and not registration.swapped_workers:
            return (
                f"Updated {what}: its workers exited meanwhile; the next call starts fresh "
                "ones with the new code."
            )
        if outcome == "swapped":
            took = registration.swapped_workers
            workers = [w for w in record.pool.live_workers() if w.worker_id in took]
            ages = [time.time() - w.setup_at for w in workers if w.setup_at]
            ago = f", it ran {_ago(max(ages))} ago" if ages else ""
            noun = "worker" if len(took) == 1 else "workers"
            return (
                f"Updated {what}: the new code now answers calls on {len(took)} warm "
                f"{noun} ({', '.join(took)}); __setup__ kept{ago}."
            )
        if outcome == "replaced":
            return (
                f"Replaced {what} ({backend}); the previous workers retire after their jobs "
                "and the next call starts fresh ones."
            )
        return (
            f"Registered {what} ({backend}, {record.workers} worker"
            f"{'s' if record.workers != 1 else ''}); workers start on the first call."
        )

    @line_magic
    def sieve(self, line: str) -> Any:
        """Manage functions, workers and jobs: %sieve help lists the commands."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%sieve: {exc}") from None
        command, rest = (words[0], words[1:]) if words else ("help", [])
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None and command in EXTRA_COMMANDS:
            handler = EXTRA_COMMANDS[command][0]
        if handler is None:
            raise UsageError(f"%sieve {command}: unknown command.\n\n{_help()}")
        return handler(rest)

    # -- %sieve subcommands ----------------------------------------------------------------

    def _cmd_help(self, rest: list[str]) -> None:
        print(_help())

    def _cmd_ls(self, rest: list[str]) -> Any:
        return functions_table(get_manager())

    def _cmd_jobs(self, rest: list[str]) -> Any:
        limit = 20
        name = None
        words = list(rest)
        while words:
            word = words.pop(0)
            if word in ("-n", "--limit"):
                if not words or not words[0].isdigit():
                    raise UsageError("%sieve jobs -n N: N must be a number of jobs.")
                limit = int(words.pop(0))
            elif word == "--all":
                limit = 10**9
            else:
                name = word
        return jobs_table(get_manager(), name=name, limit=limit)

    def _cmd_logs(self, rest: list[str]) -> Any:
        if "--deployment" in rest and "logs --deployment" in EXTRA_COMMANDS:
            # (a deployment's logs: the layer above this one answers)
            words = [w for w in rest if w != "--deployment"]
            return EXTRA_COMMANDS["logs --deployment"][0](words)
        if len(rest) != 1:
            raise UsageError("%sieve logs JOB: give one job id (see %sieve jobs).")
        print(job_logs(get_manager(), rest[0]))

    def _cmd_stop(self, rest: list[str]) -> None:
        manager = get_manager()
        if rest == ["--all"]:
            manager.stop_all()
            print("Stopped every function's workers.")
            return
        if len(rest) != 1:
            raise UsageError("%sieve stop NAME | --all")
        manager.stop(rest[0])
        print(f"Stopped the workers of {rest[0]!r}.")

    def _cmd_restart(self, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UsageError("%sieve restart NAME")
        get_manager().restart(rest[0])
        print(f"Restarting the workers of {rest[0]!r}: __setup__ runs again.")

    def _cmd_build(self, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UsageError("%sieve build NAME")
        manager = get_manager()
        record = manager.record(rest[0])
        backend = manager.backend(record.backend)
        started = time.monotonic()
        backend.prepare(
            record.spec, lambda text: print(text, end="" if text.endswith("\n") else "\n")
        )
        print(
            f"{record.name}: environment ready for the {record.backend} backend "
            f"({time.monotonic() - started:.1f} s)."
        )

    def _cmd_form(self, rest: list[str]) -> Any:
        if len(rest) != 1:
            raise UsageError("%sieve form NAME")
        from sieve_jupyter.jupyter.widgets import form

        return form(rest[0])

    def _cmd_load(self, rest: list[str]) -> Any:
        usage = "%sieve load FILE [--name NAME] [--backend B] [--workers N] [--refresh]"
        words, options, refresh = list(rest), {}, False
        path = None
        while words:
            word = words.pop(0)
            if word == "--refresh":
                refresh = True
            elif word in ("--name", "--backend", "--workers"):
                if not words:
                    raise UsageError(f"{usage}: {word} needs a value.")
                options[word[2:]] = words.pop(0)
            elif path is None and not word.startswith("-"):
                path = word
            else:
                raise UsageError(f"{usage}: unexpected {word!r}.")
        if path is None:
            raise UsageError(f"{usage}: give the model.yaml to load.")
        if "workers" in options and not options["workers"].isdigit():
            raise UsageError(f"{usage}: --workers takes a number.")
        from sieve_jupyter.modelyaml import load_yaml

        models = load_yaml(
            path,
            name=options.get("name"),
            backend=options.get("backend"),
            workers=int(options["workers"]) if "workers" in options else None,
            refresh=refresh,
        )
        for handle in models.values():
            record = handle._record
            print(
                f"Loaded model {handle.name!r} ({record.backend}, {record.workers} worker"
                f"{'s' if record.workers != 1 else ''}): {handle.name}{handle.spec.signature}"
            )
        return models

    def _cmd_config(self, rest: list[str]) -> Any:
        if not rest:
            return {k: v for k, v in vars(config).items()}
        settings: dict[str, Any] = {}
        for item in rest:
            key, eq, value = item.partition("=")
            if not eq:
                raise UsageError(f"%sieve config {item}: expected KEY=VALUE, e.g. workers=2.")
            settings[key.replace("-", "_")] = _parse_value(value)
        configure(**settings)
        print(", ".join(f"{k}={v!r}" for k, v in settings.items()))
        return None


_MISSING = object()


def _parse_value(text: str) -> Any:
    if text.lower() in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
