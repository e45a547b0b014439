"""The README's commands run as written: each shell block's first command, in a fresh shell.

Each command runs in `bash -c` after `source .venv/bin/activate` (what the README tells a
reader to do once), in a sandbox folder that links the repository's Makefile, configs, docs
and entry scripts, so runs land in the sandbox's `logs/`. Only the data and the size change:
a `python` shim appends tiny-data overrides for each entry script (the tiny EMNIST fixture,
one epoch of one batch, one more epoch when resuming, two sweep trials, a free port), and `make` runs with that shim
as its Python and without the proxy data. Blocks run in README order, so `make train` leaves
the model that resume, predict, evaluate, export and serve use, as for a reader. A server is
stopped with Ctrl-C (SIGINT to its process group) once it says it is ready, and every process
it started must be gone.

Not exercised: `make install` is asked with its install stamp taken as up to date
(`make -o .venv/.installed`): the suite already runs inside that environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.markdown_commands import ShellBlock, shell_blocks
from helpers.serving_process import free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
LINKED = [
    "Makefile",
    "pyproject.toml",
    "mkdocs.yml",
    "conf",
    "docs",
    "train.py",
    "tune.py",
    "predict.py",
    "evaluate.py",
    "export.py",
    "serve.py",
]
# Tasks that change what later commands find (a new training run) or hold a port: run alone.
ALONE_TASKS = {"train", "serve"}
COMMAND_TIMEOUT = 300
SERVER_TIMEOUT = 180
STOP_TIMEOUT = 120
# What serve.py prints once it answers: the moment a reader would press Ctrl-C.
READY_LINE = "Ctrl-C stops the server."


def tiny_overrides(data_dir: Path, port: int) -> dict[str, list[str]]:
    """What each entry script gets appended: tiny data, one batch per epoch, a free port."""
    data = [f"data.data_dir={data_dir}", "data.download=false"]
    training = [
        *data,
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.limit_train_batches=1",
        "trainer.max_epochs=$epochs",
        "trainer.enable_progress_bar=false",
    ]
    return {
        "train.py": training,
        "tune.py": [*training, "hydra.sweeper.n_trials=2"],
        "predict.py": data,
        "evaluate.py": data,
        "export.py": [],
        "serve.py": [f"port={port}", "host=127.0.0.1"],
    }


# Training commands run one epoch; a resume (ckpt_path=...) one more than the run it continues.
EPOCHS = """epochs=1
for arg in "$@"; do case "$arg" in ckpt_path=*) epochs=2 ;; esac; done
"""


def _quoted(override: str) -> str:
    """Double-quoted for bash, so the shim's `$epochs` expands inside it."""
    return '"' + override.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_python_shim(path: Path, overrides: dict[str, list[str]]) -> None:
    """A `python` that appends the overrides of the entry script it runs, then runs it."""
    cases = "\n".join(
        f'  {script}) set -- "$@" {" ".join(_quoted(o) for o in extra)} ;;'
        for script, extra in overrides.items()
    )
    path.write_text(
        "#!/usr/bin/env bash\n"
        f"{EPOCHS}"
        'case "$(basename -- "${1:-}")" in\n'
        f"{cases}\n"
        "esac\n"
        f'exec {sys.executable} "$@"\n'
    )
    path.chmod(0o755)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from helpers.emnist_fixtures import write_emnist_fixture

    root = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (root / name).symlink_to(REPO / name)
    (root / ".venv").symlink_to(Path(sys.prefix))
    (root / "shim").mkdir()
    data = write_emnist_fixture(tmp_path_factory.mktemp("emnist"))
    return root, data


def shell_line(sandbox: Path, command: str) -> str:
    """The command after the README's activation line, with the shim first on PATH."""
    return (
        "set -e\n"
        "source .venv/bin/activate\n"
        f'export PATH="{sandbox}/shim:$PATH"\n'
        f'make() {{ command make -o .venv/.installed PY="{sandbox}/shim/python" '
        'PROXY_DATA=/nonexistent "$@"; }\n'
        f"{command}\n"
    )


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}


def run_to_end(sandbox: Path, block: ShellBlock) -> str | None:
    """Run a command that ends by itself; a problem as text, or None."""
    result = subprocess.run(
        ["bash", "-c", shell_line(sandbox, block.first_command)],
        cwd=sandbox,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=environment(),
    )
    if result.returncode != 0:
        return (
            f"{block} exited with {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return None


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _group_gone(process: subprocess.Popen, seconds: float) -> bool:
    """Whether every process of the group `process` leads has ended (the leader reaped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def run_server(sandbox: Path, block: ShellBlock, port: int) -> str | None:
    """Start a serving command, wait until it answers, stop it with Ctrl-C; a problem or None."""
    log = sandbox / f"serve_{block.line}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", shell_line(sandbox, block.first_command)],
            cwd=sandbox,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(),
            start_new_session=True,
        )
    problem = None
    deadline = time.monotonic() + SERVER_TIMEOUT
    while not (_answers(port) and READY_LINE in log.read_text(errors="replace")):
        if process.poll() is not None or time.monotonic() > deadline:
            problem = f"{block} did not answer on port {port}"
            break
        time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):  # it may have stopped by itself: say why below
        os.killpg(process.pid, signal.SIGINT)
    if not _group_gone(process, STOP_TIMEOUT):
        left = subprocess.run(
            ["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(process.pid)],
            capture_output=True,
            text=True,
        ).stdout
        os.killpg(process.pid, signal.SIGKILL)
        problem = problem or f"{block} left processes running after Ctrl-C:\n{left}"
    process.wait(10)
    if problem:
        return f"{problem}:\n{log.read_text(errors='replace')[-3000:]}"
    return None


def test_readme_shows_a_command_for_every_task() -> None:
    commands = [block.first_command for block in shell_blocks(README)]
    for task in ("install", "train", "tune", "predict", "evaluate", "export", "serve", "docs"):
        assert any(f"make {task}" in c or f"{task}.py" in c for c in commands), task
    assert any("ckpt_path=last" in c for c in commands), "no resume example"


def task_of(command: str) -> str:
    """The task a command runs: `make <task> ...` or `python <task>.py ...`."""
    words = command.split()
    if words[:1] == ["make"] and len(words) > 1:
        return words[1]
    script = next((w for w in words if w.endswith(".py")), "")
    return Path(script).stem


def in_stages(blocks: list[ShellBlock]) -> list[list[ShellBlock]]:
    """README order, with neighbouring blocks that leave training runs alone run side by side.

    Training and resuming change which model `ckpt_path=best` finds, and a server holds its
    port, so those run alone; the readers of a trained model (and tune, which writes only
    logs/tune/) do not depend on each other.
    """
    stages: list[list[ShellBlock]] = []
    for block in blocks:
        alone = task_of(block.first_command) in ALONE_TASKS
        if stages and not alone and task_of(stages[-1][0].first_command) not in ALONE_TASKS:
            stages[-1].append(block)
        else:
            stages.append([block])
    return stages


def run_block(root: Path, block: ShellBlock, port: int) -> str | None:
    """Run one block's first command to its end (or serve, then Ctrl-C); a problem or None."""
    started = time.monotonic()
    if task_of(block.first_command) == "serve":
        problem = run_server(root, block, port)
    else:
        problem = run_to_end(root, block)
    print(f"{block}: {time.monotonic() - started:.1f} s")
    return problem


@pytest.mark.slow
def test_every_readme_command_block_runs_as_written_on_tiny_data(sandbox) -> None:
    root, data = sandbox
    port = free_port()
    write_python_shim(root / "shim" / "python", tiny_overrides(data, port))
    blocks = shell_blocks(README)
    assert len(blocks) >= 8
    problems = []
    # Two at a time where blocks are independent: the suite runs on 2 cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for stage in in_stages(blocks):
            results = pool.map(lambda block: run_block(root, block, port), stage)
            problems += [problem for problem in results if problem]
    assert not problems, "\n\n".join(problems)


def test_a_broken_readme_command_fails_the_check(sandbox, tmp_path: Path) -> None:
    root, data = sandbox
    page = tmp_path / "page.md"
    page.write_text("```bash\nmake no-such-task ARGS=x   # a typo a reader would hit\n```\n")
    (block,) = shell_blocks(page)
    assert block.first_command == "make no-such-task ARGS=x"
    assert run_to_end(root, block) is not None
