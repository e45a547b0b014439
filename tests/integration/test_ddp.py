"""Multi-process training with Lightning DDP on CPU (gloo): sharding, one run folder, test
figures equal to a single-process evaluation, resume after a kill, two "nodes" on 127.0.0.1.

Each DDP run costs a process launch per rank, so the end-to-end tests combine their checks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.configs import compose_config
from helpers.emnist_fixtures import write_emnist_fixture

from emnist_lightning.data.sampling import EpochSeededBatchSampler, unshard
from emnist_lightning.errors import ConfigError
from emnist_lightning.evaluation.evaluate import evaluate
from emnist_lightning.evaluation.report import CONFUSION_CSV, PER_CLASS_CSV
from emnist_lightning.inference.model_files import CARD_NAME, STATE_DICT_NAME
from emnist_lightning.training.run import (
    RESUME_ENV,
    resolve_sync_batchnorm,
    resume_checkpoint,
    train,
)

REPO = Path(__file__).resolve().parents[2]
QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "++callbacks.progress_bar=null",
]
DDP_ON_CPU = ["trainer=ddp", "trainer.accelerator=cpu"]
TEST_FIGURES = ("test/acc", "test/f1", "test/precision", "test/recall")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _shards(n: int, batch_size: int, world_size: int, pad: bool) -> list[EpochSeededBatchSampler]:
    return [
        EpochSeededBatchSampler(
            n, batch_size, shuffle=pad, seed=5, rank=r, world_size=world_size, pad=pad
        )
        for r in range(world_size)
    ]


# -- sharding --------------------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [2, 3])
def test_every_rank_gets_the_same_number_of_batches_for_any_size(world_size: int) -> None:
    for n in range(world_size, 80):
        for batch_size in (2, 5, 8, 64):
            training = _shards(n, batch_size, world_size, pad=True)
            evaluation = _shards(n, batch_size, world_size, pad=False)
            for samplers in (training, evaluation):
                batches = [list(sampler) for sampler in samplers]
                counts = {len(b) for b in batches} | {len(s) for s in samplers}
                assert len(counts) == 1, (n, batch_size, world_size, counts)
                # A lone last training image joins the batch before (batch norm needs two).
                limit = batch_size + (samplers is training)
                assert all(0 < len(batch) <= limit for rank in batches for batch in rank)
                if samplers is training:
                    assert all(len(b) > 1 for rank in batches if len(rank) > 1 for b in rank)
            seen = [i for sampler in training for batch in sampler for i in batch]
            # Training pads with repeats to equal shards, and only as much as that needs.
            assert set(seen) == set(range(n)) and len(seen) == -(-n // world_size) * world_size
            shards = [torch.tensor([i for b in s for i in b], dtype=torch.long) for s in evaluation]
            # Evaluation counts every image once, and unshard puts them back in loader order.
            assert torch.equal(unshard(shards), torch.arange(n))


def test_one_process_keeps_plain_batches_of_batch_size() -> None:
    for pad in (True, False):
        (sampler,) = _shards(103, 10, 1, pad=pad)
        sizes = [len(batch) for batch in sampler]
        assert sizes == [10] * 10 + [3]


def test_evaluation_that_cannot_give_every_rank_a_batch_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="5 evaluation images cannot give 2 processes"):
        EpochSeededBatchSampler(5, 1, shuffle=False, rank=0, world_size=2)
    with pytest.raises(
        ConfigError, match="use data.eval_batch_size >= 2 and no more processes than images"
    ):
        EpochSeededBatchSampler(2, 64, shuffle=False, rank=0, world_size=3)


def test_sync_batchnorm_is_kept_on_gpus_and_switched_off_on_cpu() -> None:
    assert resolve_sync_batchnorm(True, "gpu") and resolve_sync_batchnorm(True, "cuda")
    assert not resolve_sync_batchnorm(True, "cpu")
    assert resolve_sync_batchnorm(True, "auto") == torch.cuda.is_available()
    assert not resolve_sync_batchnorm(False, "gpu") and not resolve_sync_batchnorm(None, "gpu")


def test_ddp_inside_a_tuning_trial_is_refused_in_one_line(make_train_cfg, tmp_path: Path) -> None:
    cfg = make_train_cfg(*DDP_ON_CPU, "trainer.devices=2", "++trial_number=3")
    with pytest.raises(ConfigError, match=r"2 processes cannot run inside a -m sweep or tune.py"):
        train(cfg)
    assert not (tmp_path / "run" / "config_resolved.yaml").exists()  # refused before fitting


def test_processes_lightning_starts_resume_what_their_launcher_resolved(
    make_train_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_train_cfg()  # no ckpt_path of its own
    chosen = tmp_path / "older_run" / "checkpoints" / "last.ckpt"
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv(RESUME_ENV, f"{os.getppid()}:{chosen}")
    assert resume_checkpoint(cfg) == chosen
    monkeypatch.setenv(RESUME_ENV, f"{os.getppid()}:")
    assert resume_checkpoint(cfg) is None
    # A value this process did not get from its parent (inherited from further up) is ignored,
    # and replaced by this process's own choice for the processes it may start.
    monkeypatch.setenv(RESUME_ENV, f"{os.getppid() + 1}:{chosen}")
    assert resume_checkpoint(cfg) is None
    assert os.environ[RESUME_ENV] == f"{os.getpid()}:"


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_run_with_single_process_test_figures(
    tmp_path: Path,
) -> None:
    # Odd sizes everywhere: 611 training, 47 validation, 141 test images. Evaluation batches
    # of 23 would give ranks of 24 and 23 validation images 2 and 1 batches (DDP hangs)
    # unless the sampler evens them out.
    data = write_emnist_fixture(tmp_path / "data", train_per_class=14, test_per_class=3)
    logs = tmp_path / "logs"
    result = _train(
        "experiment=best",  # batch norm: sync_batchnorm must be switched off on CPU
        *DDP_ON_CPU,
        "trainer.devices=2",
        f"data.data_dir={data}",
        "data.download=false",
        "data.batch_size=8",
        "data.eval_batch_size=23",
        "trainer.max_epochs=2",
        "trainer.precision=32-true",  # evaluate() below runs in fp32 too
        f"paths.log_dir={logs}",
        *QUIET,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sync_batchnorm is off" in result.stdout + result.stderr

    # One run folder: the re-launched rank 1 made none of its own and wrote only its log.
    (run,) = (logs / "train" / "runs").iterdir()
    assert {p.name for p in run.iterdir()} == {
        ".hydra",
        "checkpoints",
        "csv",
        "report",
        "config_resolved.yaml",
        "metrics.json",
        STATE_DICT_NAME,
        CARD_NAME,
        "train.log",
        "train_ddp_process_1.log",
    }
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * 39  # 306 images a rank
    # Every rank's generator states, and each rank drew from its own stream.
    first, second = last["random_states"]
    assert not torch.equal(first["torch"], second["torch"])

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["global_step"] == 2 * 39
    cfg = compose_config(
        "evaluate",
        [f"ckpt_path={best}", f"data.data_dir={data}", "data.download=false"],
        tmp_path / "evaluated",
    )
    single = evaluate(cfg)
    for name in TEST_FIGURES:
        assert metrics[name] == pytest.approx(single[name], abs=1e-6), name
    # Rank 0's report holds both ranks' predictions, each test image once.
    for name in (CONFUSION_CSV, PER_CLASS_CSV):
        assert (run / "report" / name).read_text() == (tmp_path / "evaluated" / name).read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _live_members(session: int) -> list[int]:
    """Processes of a session that are still running (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            members.append(int(entry.name))
    return members


def _stop(processes: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(sig)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _train_on_two_local_nodes(common: list[str], run_dir: Path) -> None:
    """torchrun as two nodes on 127.0.0.1 with one process each, sharing one run folder."""
    port = _free_port()
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc_per_node=1",
                f"--node_rank={node}",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                "train.py",
                *DDP_ON_CPU,
                "trainer.devices=1",
                "trainer.num_nodes=2",
                *common,
                f"hydra.run.dir={run_dir}",
            ],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    try:
        outputs = [agent.communicate(timeout=300)[0] for agent in agents]
    finally:
        _stop(agents)
    for agent, output in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, output[-3000:]


@pytest.mark.slow
def test_ddp_resumed_after_a_launcher_kill_ends_equal_to_a_straight_run_on_two_nodes(
    tmp_path: Path,
) -> None:
    # 1,457 training images: an odd number, so the sampler pads the shorter shard to 729
    # (91 batches of 8, the lone 729th image joining the last batch).
    data = write_emnist_fixture(tmp_path / "data", train_per_class=34, test_per_class=1)
    common = [
        f"data.data_dir={data}",
        "data.download=false",
        "data.batch_size=8",
        "trainer.max_epochs=3",
        "deterministic=true",
        "test=false",
        "logger=none",
        *QUIET,
    ]
    # The straight 3-epoch run: torchrun, two "nodes" on this machine.
    straight_dir = tmp_path / "two_nodes"
    _train_on_two_local_nodes(common, straight_dir)
    straight = torch.load(straight_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert straight["epoch"] == 2 and straight["global_step"] == 3 * 91
    assert len(straight["random_states"]) == 2
    assert (straight_dir / "metrics.json").is_file()

    # The same run with Lightning's launcher, killed with SIGKILL once two epochs are saved.
    logs = tmp_path / "logs"
    ddp = [*DDP_ON_CPU, "trainer.devices=2", *common, f"paths.log_dir={logs}"]
    launcher = subprocess.Popen(
        [sys.executable, "train.py", *ddp],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = logs / "train" / "runs"
    try:
        versions: set[int] = set()
        deadline = time.time() + 240
        while len(versions) < 2 and time.time() < deadline and launcher.poll() is None:
            # Each save renames a new file into place: a new inode per saved epoch.
            versions |= {last.stat().st_ino for last in runs.glob("*/checkpoints/last.ckpt")}
            time.sleep(0.02)
        assert len(versions) == 2, "the DDP run did not save two epochs"
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        # Rank 1 loses its peer and exits on its own: no orphaned worker.
        deadline = time.time() + 60
        while _live_members(launcher.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _live_members(launcher.pid), "rank 1 outlived its killed launcher"
    finally:
        for pid in _live_members(launcher.pid):
            os.kill(pid, signal.SIGKILL)
        _stop([launcher], signal.SIGKILL)
    (last,) = runs.glob("*/checkpoints/last.ckpt")
    killed = torch.load(last, weights_only=True)
    assert killed["epoch"] == 1 and 0 < killed["global_step"] < straight["global_step"]

    resumed_run = _train(*ddp, "ckpt_path=last")
    assert resumed_run.returncode == 0, resumed_run.stderr[-3000:]
    resumed = torch.load(last, weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (
        straight["epoch"],
        straight["global_step"],
    )
    # Both ranks restored their own generators: the 2+1 run is the straight run, bit for bit.
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    for rank in (0, 1):
        assert torch.equal(
            resumed["random_states"][rank]["torch"], straight["random_states"][rank]["torch"]
        )
