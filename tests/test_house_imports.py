"""The package's import graph: one place enqueues jobs, and every module imports on its own.

glimpser.jobs imports every domain module (it holds the job entry points), so a domain or web
module that imported it back would make a cycle. Jobs are put on their queues by
glimpser.queues, which names them by dotted path; only the CLI (worker and scheduler) may
import glimpser.jobs.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "glimpser"
# The entry points that start workers and the scheduler, which register the jobs themselves.
MAY_IMPORT_JOBS = {"glimpser.cli", "glimpser.jobs"}


def _module_name(path) -> str:  # noqa: ANN001
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> list[str]:
    return sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def _imports_jobs(path) -> list[int]:  # noqa: ANN001
    """Line numbers of every import of glimpser.jobs in a file, at any depth."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            if any(
                a.name == "glimpser.jobs" or a.name.startswith("glimpser.jobs.") for a in node.names
            ):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (
                node.module == "glimpser.jobs"
                or (node.module == "glimpser" and any(a.name == "jobs" for a in node.names))
            )
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_entry_points_imports_jobs() -> None:
    offenders = {
        _module_name(path): lines
        for path in PACKAGE.rglob("*.py")
        if _module_name(path) not in MAY_IMPORT_JOBS and (lines := _imports_jobs(path))
    }
    assert offenders == {}, f"import glimpser.jobs only from the CLI; found in {offenders}"


def test_queues_names_only_real_job_entry_points() -> None:
    """Every dotted path queues.py enqueues is a function of glimpser.jobs."""
    import glimpser.jobs
    import glimpser.queues

    source = (PACKAGE / "queues.py").read_text()
    names = {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "_job"
        and isinstance(node.args[0], ast.Constant)
    }
    assert names, "queues.py enqueues through _job(name)"
    for name in names:
        assert callable(getattr(glimpser.jobs, name, None)), f"glimpser.jobs.{name} is missing"
    assert glimpser.jobs.__name__ == glimpser.queues.JOBS


@pytest.mark.slow
def test_every_module_imports_fresh_on_its_own() -> None:
    """Each module imported first thing in a new interpreter: an import cycle that only works
    in one order (the one a test run happens to use) fails here."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'glimpser']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    modules = [m for m in _modules() if m != "glimpser.wsgi"]  # wsgi builds an app at import
    done = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
