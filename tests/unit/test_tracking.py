"""Experiment trackers read back with their own tools: a real training run with logger=mlflow
(MLflow's client, offline) and logger=tensorboard (TensorBoard's event reader and its hparams
plugin's data)."""

import json
import socket
from pathlib import Path

import pytest
import torch
from helpers.configs import compose_config

from emnist_lightning.training.run import train


def test_mlflow_logger_records_params_and_metrics_offline(
    make_train_cfg, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder shows here
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    connections: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        connections.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    run_dir = tmp_path / "run"
    cfg = make_train_cfg("logger=mlflow", "trainer.max_epochs=2", output_dir=run_dir)
    metrics = train(cfg)

    import mlflow.telemetry
    from mlflow.tracking import MlflowClient

    assert mlflow.telemetry.get_telemetry_client() is None  # nothing sent to mlflow.org
    assert connections == []
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emnist-train")
    assert experiment.artifact_location == (run_dir / "logs" / "mlartifacts").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["output_dir"] == str(run_dir)
    params = run.data.params  # the model's hyperparameters, flattened
    assert float(params["lr"]) == cfg.model.lr
    assert float(params["net/dropout"]) == cfg.model.net.dropout
    assert params["split"] == "balanced" and params["num_classes"] == "47"
    assert params["data/batch_size"] == "64" and params["trainer/max_epochs"] == "2"
    assert run.info.run_name == "run"  # the run folder's name
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [m.step for m in history] == [0, 1]  # stepped by epoch
    lr_steps = [m.step for m in client.get_metric_history(run.info.run_id, "lr-Adam")]
    assert lr_steps == [0, 1]
    # MLflow's own Default experiment is not listed beside ours, nor pointed at ./mlruns.
    assert [e.name for e in client.search_experiments()] == ["emnist-train"]
    (default,) = [e for e in client.search_experiments(view_type=3) if e.experiment_id == "0"]
    assert default.artifact_location.startswith(experiment.artifact_location)
    # The run's files, as a user downloads them.
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config_resolved.yaml", "metrics.json", "model_card.json"} <= listed
    assert {"character_recognition.torch", "checkpoints", "report"} <= listed
    fetched = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "fetched")))
    assert json.loads((fetched / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    card = json.loads((fetched / "model_card.json").read_text())
    assert card["net"] == "seed_cnn" and len(card["class_names"]) == 47
    (best,) = (fetched / "checkpoints").iterdir()  # the best one, not last.ckpt
    assert best.name == next((run_dir / "checkpoints").glob("epoch_*")).name
    assert torch.load(best, weights_only=True)["state_dict"].keys()
    assert (fetched / "report" / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    weights = torch.load(fetched / "character_recognition.torch", weights_only=True)
    assert set(weights) >= {"conv1.weight", "fc2.bias"}
    assert run.data.metrics["test/acc"] == metrics["test/acc"]
    assert (run_dir / "csv" / "metrics.csv").is_file()  # the CSV logger still runs beside it
    # no ./mlruns or mlflow.db in the working folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fetched", "run"]


@pytest.mark.slow
def test_an_export_of_a_tracked_run_joins_its_mlflow_run(
    make_train_cfg, tmp_path: Path, monkeypatch
) -> None:
    from mlflow.tracking import MlflowClient

    from emnist_lightning.inference.export import export

    run_dir = tmp_path / "run"
    train(make_train_cfg("logger=mlflow", "trainer.max_epochs=1", "test=false", output_dir=run_dir))
    (best,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    monkeypatch.chdir(tmp_path)  # export.py run from another folder than the training
    cfg = compose_config(
        "export", [f"ckpt_path={best}", "formats=[onnx,state_dict]"], tmp_path / "exported"
    )
    written = export(cfg)

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'logs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("emnist-train").experiment_id])
    exported = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    assert exported == {"export/model.onnx", "export/character_recognition.torch"}
    fetched = client.download_artifacts(run.info.run_id, "export/model.onnx", str(tmp_path / "f"))
    assert Path(fetched).read_bytes() == written["onnx"].read_bytes()
    assert not (tmp_path / "logs").exists()  # no second, empty store where export ran


@pytest.mark.slow
def test_tensorboard_hparams_record_holds_hyperparameters_and_final_metrics(
    make_train_cfg, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "run"
    cfg = make_train_cfg(
        "logger=tensorboard", "model.optimizer._target_=torch.optim.AdamW", output_dir=run_dir
    )
    metrics = train(cfg)

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    records = events.PluginTagToContent("hparams")
    # One experiment record and one session: what the HParams tab shows as one run.
    starts = [
        value.tag
        for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        for event in EventFileLoader(str(path)).Load()
        for value in event.summary.value
        if value.tag == "_hparams_/session_start_info"
    ]
    assert len(starts) == 1  # Lightning's run-settings record and the module's are not written
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        records["_hparams_/experiment"]
    ).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(
        records["_hparams_/session_start_info"]
    ).session_start_info
    hparams = {name: value for name, value in start.hparams.items()}
    assert hparams["lr"].number_value == cfg.model.lr
    assert hparams["dropout"].number_value == cfg.model.net.dropout
    assert hparams["fc1_neurons"].number_value == cfg.model.net.fc1_neurons
    assert hparams["batch_size"].number_value == 64
    assert hparams["net"].string_value == "seed_cnn"
    assert hparams["optimizer"].string_value == "AdamW"
    assert "hp_metric" not in events.Tags()["scalars"]
    compared = {info.name.tag for info in experiment.metric_infos}
    assert {"test/acc", "val/acc_best", "test/f1"} <= compared
    # The values the tab shows for those metrics: the scalars under the same tags.
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
    assert events.Scalars("val/acc_best")[-1].value == pytest.approx(metrics["val/acc_best"])


def test_a_planted_mlflow_record_cannot_send_exports_elsewhere(tmp_path: Path) -> None:
    import sqlite3

    from mlflow.tracking import MlflowClient

    from emnist_lightning.training.tracking import MLFLOW_RUN_FILE, log_exports, mlflow_run_of

    model = tmp_path / "shared_run" / "checkpoints" / "best.ckpt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"x")
    record = model.parent.parent / MLFLOW_RUN_FILE

    # A SQLite file that is not an MLflow store: MLflow would create its tables in it.
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text)")
    before = other.read_bytes()
    record.write_text(json.dumps({"tracking_uri": f"sqlite:///{other}", "run_id": "a" * 32}))
    assert mlflow_run_of(model) is None
    assert other.read_bytes() == before

    # A real store whose run keeps its files outside the store's folder.
    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    outside = tmp_path / "outside"
    experiment = client.create_experiment("planted", artifact_location=str(outside))
    run_id = client.create_run(experiment).info.run_id
    record.write_text(json.dumps({"tracking_uri": f"sqlite:///{store}", "run_id": run_id}))
    assert mlflow_run_of(model) is not None
    assert log_exports(model, [model]) is None
    assert not outside.exists()

    record.write_text("[" * 5_000)  # not a record at all: ignored, no traceback
    assert mlflow_run_of(model) is None
