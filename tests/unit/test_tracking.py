"""logger=mlflow: a real training run records its parameters and metrics in a local store."""

import socket
from pathlib import Path

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
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2  # one value per epoch
    assert run.data.metrics["test/acc"] == metrics["test/acc"]
    assert (run_dir / "csv" / "metrics.csv").is_file()  # the CSV logger still runs beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no ./mlruns or mlflow.db
