"""Tests for bcce.pricing: model id forms, the default table, override files, cost arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bcce import pricing
from bcce.errors import UsageError
from bcce.pricing import (
    Price,
    PriceTable,
    add_usage,
    cost_usd,
    default_table,
    load_table,
    model_id_forms,
)

ARN = "arn:aws:bedrock:us-east-1:123456789012"
APP_PROFILE = f"{ARN}:application-inference-profile/a1b2c3d4e5f6"


@pytest.fixture(autouse=True)
def fresh_tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No BCCE_PRICES_FILE from the caller's shell, and no table cached across tests."""
    monkeypatch.delenv(pricing.PRICES_FILE_ENV, raising=False)
    pricing._load_table.cache_clear()
    yield
    pricing._load_table.cache_clear()


# Model id forms

KNOWN = [
    # Bare Bedrock model ids
    ("anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1"),
    ("anthropic.claude-opus-4-20250514-v1:0", "claude-opus-4"),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
    ("anthropic.claude-3-haiku-20240307-v1:0:200k", "claude-3-haiku"),
    # Inference profiles with a geography
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("eu.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
    ("apac.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
    ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
    ("US.Anthropic.Claude-Opus-4-1-20250805-V1:0", "claude-opus-4-1"),
    # Inference-profile and foundation-model ARNs (any partition)
    (f"{ARN}:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1"),
    (
        f"{ARN}:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5",
    ),
    (
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        "claude-3-5-haiku",
    ),
    (
        "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/"
        "anthropic.claude-3-haiku-20240307-v1:0",
        "claude-3-haiku",
    ),
    # Claude Code aliases: the newest of the family in the table
    ("sonnet", "claude-sonnet-5-5"),
    ("opus", "claude-opus-5-5"),
    ("haiku", "claude-haiku-4-5"),
    (" Sonnet ", "claude-sonnet-5-5"),
    ("us.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
    ("global.anthropic.claude-opus-4-7-v1", "claude-opus-4-7"),
    # Anthropic API ids and aliases
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-opus-4-0", "claude-opus-4"),
    ("claude-sonnet-4-0", "claude-sonnet-4"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
    ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ("claude-3-haiku-20240307", "claude-3-haiku"),
]

UNKNOWN = [
    "gpt-4o",
    "amazon.nova-pro-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",  # not in the table: no nearest guess
    "claude-sonnet-4-9",
    "us.anthropic.claude-opus-4-9-v1",
    "opusplan",
    "default",
    "",
    APP_PROFILE,  # opaque without an aliases entry
    f"{ARN}:provisioned-model/abcdef",
    "arn:aws:bedrock:us-east-1:123:inference-profile/us.meta.llama3-1-70b-instruct-v1:0",
]


@pytest.mark.parametrize(("model", "key"), KNOWN)
def test_every_id_form_resolves_to_its_family_key(model: str, key: str) -> None:
    table = default_table()
    assert table.key(model) == key
    assert table.price(model) == table.prices[key]


@pytest.mark.parametrize("model", UNKNOWN)
def test_unknown_models_have_no_price(model: str) -> None:
    assert default_table().price(model) is None
    assert cost_usd(model, {"input_tokens": 1000}) is None


def test_id_forms_run_from_literal_to_family_key() -> None:
    arn = f"{ARN}:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert model_id_forms(arn) == [
        arn.lower(),
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "claude-sonnet-4",
    ]
    assert model_id_forms("claude-opus-4-0") == ["claude-opus-4-0", "claude-opus-4"]
    assert model_id_forms(APP_PROFILE) == [APP_PROFILE]


def test_aliases_pick_the_newest_of_each_family_by_version_not_by_name() -> None:
    table = PriceTable(
        {
            "claude-3-7-sonnet": Price(1, 1, 1, 1),
            "claude-sonnet-4": Price(2, 2, 2, 2),
            "claude-sonnet-4-5": Price(3, 3, 3, 3),
            "claude-3-5-haiku": Price(4, 4, 4, 4),
        }
    )
    assert table.newest == {"sonnet": "claude-sonnet-4-5", "haiku": "claude-3-5-haiku"}
    assert table.price("opus") is None


# The default table


def test_default_table_has_the_public_list_prices() -> None:
    prices = default_table().prices
    assert prices["claude-sonnet-4-5"] == Price(3.0, 15.0, 0.30, 3.75)
    assert prices["claude-sonnet-4"] == prices["claude-3-7-sonnet"] == prices["claude-sonnet-4-5"]
    assert prices["claude-opus-4"] == prices["claude-opus-4-1"] == Price(15.0, 75.0, 1.50, 18.75)
    assert prices["claude-opus-4-5"] == Price(5.0, 25.0, 0.50, 6.25)
    assert prices["claude-haiku-4-5"] == Price(1.0, 5.0, 0.10, 1.25)
    assert prices["claude-3-5-haiku"] == Price(0.80, 4.0, 0.08, 1.0)
    assert prices["claude-3-haiku"] == Price(0.25, 1.25, 0.03, 0.30)


def test_load_table_is_the_default_table_without_a_prices_file_and_is_cached() -> None:
    assert load_table() is default_table()
    assert load_table() is load_table()


# Cost arithmetic


def test_cost_counts_every_token_kind_at_its_rate() -> None:
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 1_000_000,
        "cache_read_input_tokens": 1_000_000,
        "cache_creation_input_tokens": 1_000_000,
    }
    assert cost_usd("claude-sonnet-4-5", usage) == pytest.approx(3 + 15 + 0.30 + 3.75)
    small = {
        "input_tokens": 1000,
        "output_tokens": 500,
        "cache_read_input_tokens": 20_000,
        "cache_creation_input_tokens": 4000,
    }
    # 1000*1 + 500*5 + 20000*0.10 + 4000*1.25 = 10500 (USD per million)
    assert cost_usd("anthropic.claude-haiku-4-5-20251001-v1:0", small) == pytest.approx(0.0105)
    assert cost_usd("claude-opus-4-5", {"output_tokens": 2000}) == pytest.approx(0.05)


def test_cost_ignores_other_token_kinds_and_missing_ones() -> None:
    assert cost_usd("claude-3-haiku", {}) == 0.0
    usage = {"input_tokens": 4_000_000, "server_tool_use": 7, "ephemeral_1h_input_tokens": 9}
    assert cost_usd("claude-3-haiku", usage) == pytest.approx(1.0)


def test_cost_of_no_model_is_none() -> None:
    assert cost_usd(None, {"input_tokens": 10}) is None


def test_cost_uses_the_table_given() -> None:
    table = PriceTable({"mine": Price(10, 20, 0, 0)})
    assert cost_usd("mine", {"input_tokens": 100_000}, table) == pytest.approx(1.0)
    assert cost_usd("sonnet", {"input_tokens": 100_000}, table) is None


def test_add_usage_sums_key_by_key() -> None:
    a = {"input_tokens": 1, "output_tokens": 2}
    b = {"output_tokens": 3, "cache_read_input_tokens": 4}
    assert add_usage(a, b) == {"input_tokens": 1, "output_tokens": 5, "cache_read_input_tokens": 4}
    assert add_usage({}, {}) == {}
    assert a == {"input_tokens": 1, "output_tokens": 2}  # inputs untouched


# Override files


OVERRIDE = f"""\
models:
  claude-sonnet-4-5: {{input: 2.5}}          # a negotiated input rate; the rest as listed
  Claude-Sonnet-6: {{input: 4, output: 20, cache_read: 0.4, cache_write: 5}}
  nova-pro: {{input: 0.8, output: 3.2, cache_read: 0.2, cache_write: 0}}
aliases:
  "{APP_PROFILE}": claude-haiku-4-5
"""


def test_prices_file_overrides_and_extends_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(OVERRIDE)
    monkeypatch.setenv("BCCE_PRICES_FILE", str(path))
    table = load_table()
    assert table.prices["claude-sonnet-4-5"] == Price(2.5, 15.0, 0.30, 3.75)
    assert table.prices["claude-opus-4-1"] == default_table().prices["claude-opus-4-1"]
    assert table.price("us.amazon.nova-pro-v1:0") == Price(0.8, 3.2, 0.2, 0.0)
    assert table.key("sonnet") == "claude-sonnet-6"  # newest of the family now
    assert table.key("opus") == "claude-opus-5-5"
    assert table.key(APP_PROFILE) == "claude-haiku-4-5"
    assert cost_usd(APP_PROFILE, {"output_tokens": 1_000_000}) == pytest.approx(5.0)
    assert cost_usd(
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0", {"input_tokens": 10**6}
    ) == (pytest.approx(2.5))
    assert default_table().prices["claude-sonnet-4-5"].input == 3.0  # defaults untouched


def test_an_empty_prices_file_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    monkeypatch.setenv("BCCE_PRICES_FILE", str(path))
    assert load_table().prices == default_table().prices


MALFORMED = [
    ("models: [\n", "invalid YAML at line 2"),
    ("- claude-sonnet-4-5\n", "expected a mapping with 'models' and 'aliases', got list"),
    ("prices: {}\n", "unknown key 'prices'"),
    ("models: [a, b]\n", "models: expected a mapping of model -> prices, got list"),
    ("models: {claude-sonnet-4-5: 3}\n", "models.claude-sonnet-4-5: expected a mapping"),
    ("models: {claude-sonnet-4-5: {cache_reads: 1}}\n", "unknown field 'cache_reads'"),
    ("models: {claude-sonnet-4-5: {input: -1}}\n", "models.claude-sonnet-4-5.input: expected"),
    ("models: {claude-sonnet-4-5: {input: three}}\n", "got 'three'"),
    ("models: {claude-sonnet-4-5: {input: true}}\n", "got True"),
    ("models: {claude-sonnet-4-5: {input: .nan}}\n", "got nan"),
    ("models: {new-model: {input: 1, output: 2}}\n", "missing cache_read, cache_write"),
    ("models: {7: {input: 1}}\n", "model names must be strings"),
    ("aliases: {my-profile: claude-sonnet-9}\n", "'claude-sonnet-9' is not a priced model"),
    ("aliases: [a]\n", "aliases: expected a mapping"),
]


@pytest.mark.parametrize(("text", "problem"), MALFORMED)
def test_a_malformed_prices_file_is_a_one_line_usage_error_naming_it(
    text: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    monkeypatch.setenv("BCCE_PRICES_FILE", str(path))
    with pytest.raises(UsageError) as caught:
        load_table()
    message = str(caught.value)
    assert message.startswith(f"BCCE_PRICES_FILE {path}: ")
    assert problem in message
    assert "\n" not in message
    with pytest.raises(UsageError):
        cost_usd("sonnet", {"input_tokens": 1})  # every caller sees the problem


def test_a_missing_prices_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nope.yaml"
    monkeypatch.setenv("BCCE_PRICES_FILE", str(path))
    with pytest.raises(UsageError, match=r"^BCCE_PRICES_FILE .*nope\.yaml: cannot read it: "):
        load_table()


def test_an_empty_prices_file_setting_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCCE_PRICES_FILE", "")
    assert load_table() is default_table()
