"""Hydra sweep syntax -> Optuna distributions, with the official Optuna sweeper's semantics."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.optuna_pruning_sweeper._errors import SweepConfigError
from hydra_plugins.optuna_pruning_sweeper._search_space import (
    create_params_from_overrides,
    parse_search_space,
)
from hydra_plugins.optuna_pruning_sweeper._study import grid_choices, sampler_for_trial

DEFAULT = {
    "model.lr": "tag(log, interval(1e-5, 1e-1))",
    "model.net.dropout": "interval(0.0, 0.8)",
    "model.net.fc1_neurons": "int(interval(32, 512))",
    "data.batch_size": "choice(64, 128, 256, 512)",
}


def test_default_search_space_maps_to_optuna_distributions() -> None:
    space = parse_search_space(DEFAULT, [])
    assert space.distributions == {
        "model.lr": FloatDistribution(1e-5, 1e-1, log=True),
        "model.net.dropout": FloatDistribution(0.0, 0.8),
        "model.net.fc1_neurons": IntDistribution(32, 512),
        "data.batch_size": CategoricalDistribution([64, 128, 256, 512]),
    }
    assert space.fixed == []


def test_command_line_sweeps_replace_config_ones_and_plain_values_fix_a_key() -> None:
    space = parse_search_space(
        DEFAULT,
        ["model.lr=tag(log,interval(1e-4,1e-2))", "data.batch_size=128", "trainer.max_epochs=3"],
    )
    assert space.distributions["model.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert "data.batch_size" not in space.distributions
    assert space.fixed == ["data.batch_size=128", "trainer.max_epochs=3"]


def test_nested_params_mirror_the_task_config_and_null_drops_a_key() -> None:
    nested = {
        "model": {"lr": "interval(0.1, 0.2)", "net": {"dropout": None}},
        "data.batch_size": "choice(8)",
    }
    assert set(parse_search_space(nested, []).distributions) == {"model.lr", "data.batch_size"}


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        # Both ends, as the official plugin (Optuna's distributions include high).
        ("range(1,3)", IntDistribution(1, 3)),
        ("range(1, 10, 2)", IntDistribution(1, 9, step=2)),
        ("range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1.0)),
        ("interval(1, 5)", FloatDistribution(1, 5)),  # int(interval(...)) for integers
        ("tag(log, int(interval(1, 64)))", IntDistribution(1, 64, log=True)),
        ("choice(true, false)", CategoricalDistribution([True, False])),
        ("choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
    ],
)
def test_each_sweep_means_the_set_the_official_plugin_draws_from(sweep, expected) -> None:
    assert parse_search_space({}, [f"key={sweep}"]).distributions["key"] == expected


def test_shuffled_range_is_a_choice_of_pythons_range() -> None:
    (distribution,) = parse_search_space({"k": "shuffle(range(1,4))"}, []).distributions.values()
    assert isinstance(distribution, CategoricalDistribution)
    assert sorted(distribution.choices) == [1, 2, 3]  # 4 excluded, as range(1, 4)


def test_a_plain_param_is_fixed_and_deletions_pass_through_in_order() -> None:
    space = parse_search_space({"y": 0.5, "x": "interval(0, 1)"}, ["~z", "+w=1", "~v=10"])
    assert set(space.distributions) == {"x"}
    assert space.fixed == ["y=0.5", "~z", "+w=1", "~v=10"]
    assert create_params_from_overrides(["k=choice(1,2)", "y=5", "~z"]) == (
        {"k": CategoricalDistribution([1, 2])},
        {"y": "5"},
        ["~z"],
    )


def test_a_later_fixed_value_replaces_an_earlier_sweep_and_the_reverse() -> None:
    space = parse_search_space({"x": "interval(0, 1)", "y": 3}, ["x=0.2", "y=choice(1,2)"])
    assert set(space.distributions) == {"y"} and space.fixed == ["x=0.2"]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("interval(0.5, 0.1)", "`low <= high` must hold"),
        ("tag(log, interval(0, 1))", "`low > 0` must hold"),
        ("tag(log, range(1, 5))", "range() takes no log tag"),
    ],
)
def test_bad_ranges_are_one_line_errors(sweep, message) -> None:
    with pytest.raises(SweepConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_search_space({}, [f"key={sweep}"])


def test_the_grid_is_built_as_the_official_plugin_builds_it() -> None:
    space = parse_search_space(
        {}, ["x=choice(-1, 1)", "y=range(-1.0, 1.0, step=1)", "n=range(1, 4)"]
    ).distributions
    assert grid_choices(space) == {"x": [-1, 1], "y": [-1.0, 0.0], "n": [1, 2, 3]}
    with pytest.raises(SweepConfigError, match="grid sampler takes only choice"):
        grid_choices({"lr": FloatDistribution(0.1, 1.0)})


def test_sampler_seed_is_offset_by_trial_number_except_for_qmc() -> None:
    tpe = {"_target_": "optuna.samplers.TPESampler", "seed": 42}
    first, second = sampler_for_trial(tpe, 0), sampler_for_trial(tpe, 1)
    space = {"x": FloatDistribution(0, 1)}
    draw = lambda sampler: optuna.create_study(sampler=sampler).ask(space).params["x"]  # noqa: E731
    assert draw(sampler_for_trial(tpe, 0)) == draw(first)
    assert draw(first) != draw(second)
    qmc = sampler_for_trial({"_target_": "optuna.samplers.QMCSampler", "seed": 42}, 5)
    assert isinstance(qmc, optuna.samplers.QMCSampler) and qmc._seed == 42
