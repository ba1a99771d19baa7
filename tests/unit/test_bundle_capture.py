"""Source capture: which cells (and statements) a bundle takes, and why."""

from __future__ import annotations

import pytest

from sieve_jupyter import ExportError
from sieve_jupyter.bundle import Cell, capture
from sieve_jupyter.bundle._cells import magic_options_parser


def cells(*sources: str, tags: dict[int, set[str]] | None = None) -> list[Cell]:
    tags = tags or {}
    return [Cell(i, s, frozenset(tags.get(i, set()))) for i, s in enumerate(sources, 1)]


def test_takes_definitions_and_what_they_need_in_notebook_order() -> None:
    got = capture(
        cells(
            "import math\nimport sieve_jupyter as sieve",
            "SCALE = 3\n\ndef helper(x):\n    return math.floor(x) * SCALE",
            "@sieve.function(name='f')\ndef f(x: float) -> int:\n    return helper(x)\n\n"
            "f.run(2.5)",
            "unused = 1",
            "print(f.run(1))",
        )
    )
    assert [t.name for t in got.targets] == ["f"]
    src = got.source
    assert src.index("import math") < src.index("SCALE = 3") < src.index("def f")
    assert "f.run(2.5)" not in src and "unused" not in src and "print(" not in src
    assert got.report[0].startswith("cell 1: taken whole")
    assert "cell 3: took lines 1-3" in got.report[2] and "runs jobs" in got.report[2]
    assert got.report[3] == "cell 4: left out: nothing exported needs it"
    compile(src, "main.py", "exec")


def test_magic_cells_become_decorated_python() -> None:
    got = capture(
        cells(
            "%load_ext sieve_jupyter",
            "%%sieve_model --name adder --pip 'numpy>=1' --gpu T4:split=2 --env TOKEN "
            "--env MODE=fast --title Adds --tag a,b --restart-on-error no\n"
            "class Adder:\n    def __predict__(self, x: int) -> int:\n        return x",
            "%%time\nAdder.run(1)",
        )
    )
    assert got.targets[0].name == "adder" and got.targets[0].kind == "model"
    assert "import sieve_jupyter  #" in got.source
    decorator = [line for line in got.source.splitlines() if line.startswith("@")][0]
    assert decorator.startswith("@sieve_jupyter.Model(name='adder'")
    for part in (
        "python_packages=['numpy>=1']",
        "gpu={'kind': 'T4', 'split': 2}",
        "sieve_jupyter.Env(name='TOKEN')",
        "sieve_jupyter.Env(name='MODE', default='fast')",
        "title='Adds'",
        "tags=['a', 'b']",
        "restart_on_error=False",
    ):
        assert part in decorator, part
    assert "cell 3: left out: it runs the cell magic %%time" in got.report


def test_the_magic_option_parser_knows_every_option_of_the_magics() -> None:
    pytest.importorskip("IPython")
    from sieve_jupyter.jupyter._magics import SieveMagics

    magic = SieveMagics.sieve_function
    parser = getattr(magic, "parser", None) or magic.__wrapped__.parser  # type: ignore[attr-defined]
    ours = {o for a in magic_options_parser()._actions for o in a.option_strings}
    theirs = {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}
    assert ours == theirs


def test_a_machine_type_magic_option_becomes_the_decorator_keyword() -> None:
    pytest.importorskip("IPython")
    from sieve_jupyter.jupyter._cells import decorator_settings
    from sieve_jupyter.jupyter._magics import SieveMagics

    magic = SieveMagics.sieve_model
    parser = getattr(magic, "parser", None) or magic.__wrapped__.parser  # type: ignore[attr-defined]
    settings = decorator_settings(parser.parse_argstring("--gpu T4 --machine-type a100"))
    assert settings["machine_type"] == "a100" and settings["gpu"] == "T4"
    assert "machine_type" not in decorator_settings(parser.parse_argstring("--name m"))

    got = capture(
        cells(
            "%%sieve_model --name m --machine-type a100\n"
            "class M:\n    def __predict__(self, x: int) -> int:\n        return x",
        )
    )
    decorator = [line for line in got.source.splitlines() if line.startswith("@")][0]
    assert decorator == "@sieve_jupyter.Model(name='m', machine_type='a100')"


def test_an_undefined_name_names_the_cell_and_the_name() -> None:
    with pytest.raises(ExportError) as raised:
        capture(
            cells(
                "import sieve_jupyter as sieve",
                "@sieve.function(name='f')\ndef f(x: int) -> int:\n    return missing(x)",
            )
        )
    assert "cell 2: f uses 'missing', which no cell defines" in str(raised.value)
    assert "Fix:" in str(raised.value)


def test_ipython_only_names_are_refused() -> None:
    with pytest.raises(ExportError, match="only exists inside IPython"):
        capture(
            cells(
                "import sieve_jupyter as sieve",
                "@sieve.function(name='f')\ndef f(x: int) -> int:\n    display(x)\n    return x",
            )
        )


def test_a_needed_value_computed_by_running_a_job_is_refused() -> None:
    with pytest.raises(ExportError) as raised:
        capture(
            cells(
                "import sieve_jupyter as sieve",
                "@sieve.function(name='g')\ndef g() -> int:\n    return 1",
                "BASE = g.run()",
                "@sieve.function(name='f')\ndef f(x: int) -> int:\n    return x + BASE",
            ),
            ["f"],
        )
    assert "'BASE', which cell 3 computes with a statement that runs jobs" in str(raised.value)


def test_tags_override_the_analysis() -> None:
    got = capture(
        cells(
            "import sieve_jupyter as sieve",
            "import json\nprint('side effect on import, on purpose')",
            "@sieve.function(name='f')\ndef f(x: int) -> int:\n    return x",
            tags={2: {"sieve-export"}},
        )
    )
    assert "print('side effect on import, on purpose')" in got.source
    with pytest.raises(ExportError, match="tagged sieve-skip"):
        capture(
            cells(
                "import sieve_jupyter as sieve",
                "LIMIT = 3",
                "@sieve.function(name='f')\ndef f(x: int) -> int:\n    return min(x, LIMIT)",
                tags={2: {"sieve-skip"}},
            )
        )


def test_choosing_functions_and_the_functions_they_call() -> None:
    got = capture(
        cells(
            "import sieve_jupyter as sieve",
            "@sieve.function(name='tok')\ndef tok(s: str) -> list:\n    return s.split()",
            "@sieve.function(name='count')\ndef count(s: str) -> int:\n    return len(tok.run(s))",
            "@sieve.function(name='other')\ndef other() -> int:\n    return 0",
        ),
        ["count"],
    )
    assert [t.name for t in got.targets] == ["count", "tok"]
    assert "def other" not in got.source
    with pytest.raises(ExportError, match="found: count, other, tok"):
        capture(
            cells(
                "import sieve_jupyter as sieve",
                "@sieve.function(name='count')\ndef count() -> int:\n    return 1",
                "@sieve.function(name='tok')\ndef tok() -> int:\n    return 1",
                "@sieve.function(name='other')\ndef other() -> int:\n    return 1",
            ),
            ["nope"],
        )


def test_nothing_to_export_says_so() -> None:
    with pytest.raises(ExportError, match="no sieve function or model"):
        capture(cells("x = 1"))


def test_a_line_that_continues_an_expression_with_percent_is_python_not_a_magic() -> None:
    # Sieve's scene-detection example formats a message across lines; the `% (` line was
    # taken for a line magic and the whole file left out
    body = (
        "import sieve_jupyter as sieve\n\n"
        "@sieve.function(name='scenes')\n"
        "def scenes(n: int) -> str:\n"
        "    return (\n"
        '        "Scene %2d"\n'
        "        % (\n"
        "            n,\n"
        "        )\n"
        "    )\n"
    )
    got = capture(cells(body))
    assert [t.name for t in got.targets] == ["scenes"]
    assert "        % (\n" in got.source
    namespace: dict[str, object] = {}
    exec(compile(got.source, "main.py", "exec"), namespace)  # noqa: S102 - the captured module
    assert got.report == ["cell 1: taken whole: defines function 'scenes'"]
    # a real magic is still stripped where the cell is not plain Python
    magic = capture(cells("%time x = 1\nimport sieve_jupyter as sieve", body))
    assert "%time" not in magic.source


def test_a_name_from_a_star_import_takes_the_star_import() -> None:
    got = capture(
        cells(
            "import sieve_jupyter as sieve\nfrom string import *\nfrom math import *",
            "print(pi)",
            "@sieve.function(name='f')\ndef f() -> str:\n    return ascii_lowercase[:3]",
        )
    )
    assert "from string import *" in got.source and "from math import *" in got.source
    assert "'ascii_lowercase' (from its *), needed by f" in got.report[0]
    namespace: dict[str, object] = {}
    exec(compile(got.source, "main.py", "exec"), namespace)  # noqa: S102 - the captured module
    with pytest.raises(ExportError, match="'missing', which no cell defines"):
        capture(
            cells(
                "import sieve_jupyter as sieve",
                "@sieve.function(name='g')\ndef g() -> int:\n    return missing",
            )
        )
