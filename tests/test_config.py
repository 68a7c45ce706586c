"""Config and Section: checked when they are defined."""

from __future__ import annotations

import pytest

import samplez
from tests.conftest import unique_name


def make(**overrides):
    args = {"name": unique_name("cfg"), "period": 60, "samples": 100, "by_value": True}
    args.update(overrides)
    return samplez.Config(**args)


def test_defaults():
    config = make()
    assert (config.rate, config.max_key_length, config.tolerance) == (1.0, 75, 10)
    assert config.title == config.name and config.key_name == "Key" and config.value_units == ""


@pytest.mark.parametrize(
    "overrides, field",
    [
        pytest.param({"name": ""}, "name", id="empty-name"),
        pytest.param({"name": "has space"}, "name", id="space-in-name"),
        pytest.param({"name": "a" * 65}, "name", id="long-name"),
        pytest.param({"name": "tab\tname"}, "name", id="control-char-name"),
        pytest.param({"name": 5}, "name", id="int-name"),
        pytest.param({"period": 0}, "period", id="zero-period"),
        pytest.param({"period": -5}, "period", id="negative-period"),
        pytest.param({"period": 1.5}, "period", id="float-period"),
        pytest.param({"period": "60"}, "period", id="str-period"),
        pytest.param({"samples": 0}, "samples", id="zero-samples"),
        pytest.param({"samples": 10**6}, "samples", id="huge-samples"),
        pytest.param({"rate": 0}, "rate", id="zero-rate"),
        pytest.param({"rate": 1.5}, "rate", id="rate-over-one"),
        pytest.param({"rate": True}, "rate", id="bool-rate"),
        pytest.param({"tolerance": -1}, "tolerance", id="negative-tolerance"),
        pytest.param({"tolerance": float("inf")}, "tolerance", id="infinite-tolerance"),
        pytest.param({"max_key_length": 0}, "max_key_length", id="zero-key-length"),
        pytest.param({"by_value": False}, "by_value", id="neither-by"),
        pytest.param({"by_domain": True}, "by_domain", id="both-by"),
        pytest.param({"title": 3}, "title", id="int-title"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_field(overrides, field):
    with pytest.raises(samplez.ConfigError, match=field):
        make(**overrides)


def test_config_error_is_a_value_error_under_the_samplez_root():
    with pytest.raises(ValueError):
        make(period=-5)
    try:
        make(period=-5)
    except samplez.SamplezError as exc:
        assert "period must be an int > 0, got -5" in str(exc)


def test_names_are_unique_per_process():
    config = make()
    with pytest.raises(samplez.ConfigError, match="unique"):
        make(name=config.name)


def test_a_forgotten_name_can_be_defined_again():
    config = make()
    samplez.unregister(config)
    assert make(name=config.name).name == config.name


def test_section_holds_configs():
    a, b = make(), make()
    section = samplez.Section("Popular", a, b)
    assert section.configs == (a, b) and list(section) == [a, b]


@pytest.mark.parametrize(
    "args",
    [pytest.param((), id="empty"), pytest.param(("not a config",), id="str"), pytest.param((None,), id="none")],
)
def test_bad_sections(args):
    with pytest.raises(samplez.ConfigError):
        samplez.Section("Bad", *args)
