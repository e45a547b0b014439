import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from emnist_lightning.errors import ConfigError
from emnist_lightning.tuning.search_space import parse_search_space
from emnist_lightning.tuning.study import sampler_for_trial

DEFAULT = {
    "model.lr": "tag(log, interval(1e-5, 1e-1))",
    "model.net.dropout": "interval(0.0, 0.8)",
    "model.net.fc1_neurons": "int(interval(32, 512))",
    "data.batch_size": "choice(64, 128, 256, 512)",
}


def test_default_search_space_maps_to_optuna_distributions() -> None:
    space, fixed = parse_search_space(DEFAULT, [])
    assert space["model.lr"] == FloatDistribution(1e-5, 1e-1, log=True)
    assert space["model.net.dropout"] == FloatDistribution(0.0, 0.8)
    assert space["model.net.fc1_neurons"] == IntDistribution(32, 512)
    assert space["data.batch_size"] == CategoricalDistribution([64, 128, 256, 512])
    assert fixed == []


def test_command_line_sweeps_replace_config_ones_and_plain_values_fix_a_key() -> None:
    space, fixed = parse_search_space(
        DEFAULT,
        ["model.lr=tag(log,interval(1e-4,1e-2))", "data.batch_size=128", "trainer.max_epochs=3"],
    )
    assert space["model.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert "data.batch_size" not in space
    assert fixed == ["data.batch_size=128", "trainer.max_epochs=3"]


def test_nested_params_mirror_the_task_config_and_null_drops_a_key() -> None:
    nested = {
        "model": {"lr": "interval(0.1, 0.2)", "net": {"dropout": None}},
        "data.batch_size": "choice(8)",
    }
    space, _ = parse_search_space(nested, [])
    assert set(space) == {"model.lr", "data.batch_size"}


def test_range_sweeps_become_stepped_distributions() -> None:
    space, _ = parse_search_space({"a": "range(1, 10, 2)", "b": "range(0.1, 0.5, 0.1)"}, [])
    assert space["a"] == IntDistribution(1, 9, step=2)
    assert space["b"].low == pytest.approx(0.1) and space["b"].high == pytest.approx(0.4)


def test_a_param_that_is_not_a_sweep_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a sweep"):
        parse_search_space({"model.lr": "0.1"}, [])


def test_sampler_seed_is_offset_by_trial_number_except_for_qmc() -> None:
    tpe = {"_target_": "optuna.samplers.TPESampler", "seed": 42}
    first, second = sampler_for_trial(tpe, 0), sampler_for_trial(tpe, 1)
    space = {"x": FloatDistribution(0, 1)}
    draw = lambda sampler: optuna.create_study(sampler=sampler).ask(space).params["x"]  # noqa: E731
    assert draw(sampler_for_trial(tpe, 0)) == draw(first)
    assert draw(first) != draw(second)
    qmc = sampler_for_trial({"_target_": "optuna.samplers.QMCSampler", "seed": 42}, 5)
    assert isinstance(qmc, optuna.samplers.QMCSampler)
