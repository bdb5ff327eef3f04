"""Model prices and what tokens cost: ``bcce/data/prices.yaml``, extended by BCCE_PRICES_FILE.

A price table maps model family keys (``claude-sonnet-4-5``) to USD per million tokens of
input, output, cache reads and cache writes. Any form of a model id bcce meets is read down
to its key: Bedrock ids (``anthropic.claude-sonnet-4-5-20250929-v1:0``), inference profiles
with a geography (``us.``, ``eu.``, ``apac.``, ``global.``, ``us-gov.``), their ARNs and
foundation-model ARNs, Anthropic API ids (``claude-3-5-haiku-20241022``, ``...-latest``) and
the Claude Code aliases ``sonnet``, ``opus`` and ``haiku`` (the newest of the family in the
table). A model no rule reads, and no ``aliases`` entry names, has no price: never a guess.

File shape (the defaults and BCCE_PRICES_FILE alike)::

    models:
      claude-sonnet-4-5: {input: 3.0, output: 15.0, cache_read: 0.30, cache_write: 3.75}
    aliases:
      "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc": claude-sonnet-4-5

An override entry for a model already priced may give only the fields it changes; a new
model needs all four.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import yaml

from bcce.errors import UsageError

PRICES_FILE_ENV = "BCCE_PRICES_FILE"
PER_TOKENS = 1_000_000
FIELDS = ("input", "output", "cache_read", "cache_write")
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
"""The token counts a price applies to, in the order of :data:`FIELDS`."""
FAMILIES = ("opus", "sonnet", "haiku")
"""Claude Code's model aliases: each prices as the newest key of its family."""

_FAMILY_KEY = re.compile(
    r"^claude-(?:(?P<f1>opus|sonnet|haiku)-(?P<v1>\d+(?:-\d+)*)"
    r"|(?P<v2>\d+(?:-\d+)*)-(?P<f2>opus|sonnet|haiku))$"
)
_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:(?P<kind>[a-z-]+)/(?P<id>.+)$")
_ARN_KINDS = ("inference-profile", "foundation-model")
_PREFIXES = re.compile(r"^(?:[a-z][a-z0-9-]*\.){1,2}")  # us. / us-gov. / global., anthropic.
_BEDROCK_VERSION = re.compile(r"(?:-v\d+)?(?::[0-9a-z]+)+$|-v\d+$")  # -v1:0, -v2:0:200k, -v1
_DATE_OR_LATEST = re.compile(r"-(?:\d{8}|latest)$")


@dataclass(frozen=True)
class Price:
    """USD per million tokens of one model."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    """Writing the prompt cache (``cache_creation_input_tokens``, 5-minute cache)."""

    def cost(self, usage: Mapping[str, int]) -> float:
        """What usage costs in USD; token kinds other than :data:`USAGE_KEYS` are free."""
        rates = (self.input, self.output, self.cache_read, self.cache_write)
        pairs = zip(rates, USAGE_KEYS, strict=True)
        total = sum(rate * int(usage.get(key) or 0) for rate, key in pairs)
        return total / PER_TOKENS


class PriceTable:
    """Prices by model family key, and the model ids that resolve to them."""

    def __init__(
        self, prices: Mapping[str, Price], aliases: Mapping[str, str] | None = None
    ) -> None:
        self.prices: dict[str, Price] = {k.lower(): p for k, p in prices.items()}
        self.aliases: dict[str, str] = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
        unknown = sorted(v for v in self.aliases.values() if v not in self.prices)
        if unknown:
            raise ValueError(f"aliases name models without a price: {', '.join(unknown)}")
        self.newest: dict[str, str] = _newest_of_families(self.prices)
        """``opus``/``sonnet``/``haiku`` -> the key of the newest model of the family."""

    def key(self, model: str) -> str | None:
        """The table key model resolves to, or None when it has no price."""
        for candidate in model_id_forms(model):
            found = self.aliases.get(candidate) or (
                candidate if candidate in self.prices else self.newest.get(candidate)
            )
            if found:
                return found
        return None

    def price(self, model: str) -> Price | None:
        """The price of model (any id form), or None when the table does not know it."""
        key = self.key(model)
        return None if key is None else self.prices[key]

    def cost_usd(self, model: str | None, usage: Mapping[str, int]) -> float | None:
        """What usage of model costs in USD, or None for no model or an unknown one."""
        price = None if model is None else self.price(model)
        return None if price is None else price.cost(usage)


def model_id_forms(model: str) -> list[str]:
    """The forms of a model id to look up, most literal first, ending with its family key.

    ``arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0``
    gives the ARN, ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``, ``claude-sonnet-4-5`` and
    (for API aliases like ``claude-sonnet-4-0``) the key without a trailing ``-0``. ARNs of
    other kinds (application inference profiles, provisioned models) give only themselves.
    """
    forms = [model.strip().lower()]
    arn = _ARN.match(forms[0])
    if arn:
        if arn["kind"] not in _ARN_KINDS:
            return forms
        forms.append(arn["id"])
    name = _PREFIXES.sub("", forms[-1], count=1)
    name = _BEDROCK_VERSION.sub("", name, count=1)
    name = _DATE_OR_LATEST.sub("", name, count=1)
    forms.append(name)
    if name.endswith("-0"):
        forms.append(name[:-2])
    return list(dict.fromkeys(f for f in forms if f))


def cost_usd(
    model: str | None, usage: Mapping[str, int], table: PriceTable | None = None
) -> float | None:
    """What usage of model costs in USD, by table (default :func:`load_table`).

    None when model is None or has no price: the caller decides what that means.
    """
    if model is None:
        return None
    return (table or load_table()).cost_usd(model, usage)


def add_usage(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """The sum of two token-usage dicts, key by key."""
    total = dict(a)
    for key, count in b.items():
        total[key] = total.get(key, 0) + count
    return total


def load_table() -> PriceTable:
    """The default prices, extended by the file BCCE_PRICES_FILE names (read once per file)."""
    return _load_table(os.environ.get(PRICES_FILE_ENV) or None)


@functools.cache
def default_table() -> PriceTable:
    """The prices shipped with bcce (``bcce/data/prices.yaml``)."""
    text = resources.files("bcce").joinpath("data/prices.yaml").read_text(encoding="utf-8")
    return parse_table(yaml.safe_load(text), "bcce/data/prices.yaml")


def read_table(path: Path, base: PriceTable | None = None) -> PriceTable:
    """The prices of a YAML file over base; UsageError naming the file for any problem."""
    where = f"{PRICES_FILE_ENV} {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{where}: invalid YAML{at}: {problem}") from None
    return parse_table(data, where, base)


def parse_table(data: object, source: str, base: PriceTable | None = None) -> PriceTable:
    """A table from parsed YAML over base (which it overrides and extends).

    Raises UsageError naming source and the first problem found.
    """

    def fail(problem: str) -> UsageError:
        return UsageError(f"{source}: {problem}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(f"expected a mapping with 'models' and 'aliases', got {_kind(data)}")
    extra = sorted(str(k) for k in data if k not in ("models", "aliases"))
    if extra:
        raise fail(f"unknown key {extra[0]!r} (expected 'models' and 'aliases')")
    prices = dict(base.prices) if base else {}
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise fail(f"models: expected a mapping of model -> prices, got {_kind(models)}")
    for name, fields in models.items():
        if not isinstance(name, str) or not name.strip():
            raise fail(f"models: model names must be strings, got {name!r}")
        key = name.strip().lower()
        prices[key] = _price(fields, prices.get(key), f"models.{name}", fail)
    aliases = dict(base.aliases) if base else {}
    given = data.get("aliases") or {}
    if not isinstance(given, dict):
        raise fail(f"aliases: expected a mapping of model id -> model, got {_kind(given)}")
    for alias, target in given.items():
        if not isinstance(alias, str) or not isinstance(target, str):
            raise fail(f"aliases: expected model id: model strings, got {alias!r}: {target!r}")
        if target.strip().lower() not in prices:
            raise fail(f"aliases.{alias}: {target!r} is not a priced model")
        aliases[alias.strip()] = target.strip()
    return PriceTable(prices, aliases)


def _price(
    fields: object, old: Price | None, where: str, fail: Callable[[str], UsageError]
) -> Price:
    if not isinstance(fields, dict):
        raise fail(f"{where}: expected a mapping of {', '.join(FIELDS)}, got {_kind(fields)}")
    extra = sorted(str(k) for k in fields if k not in FIELDS)
    if extra:
        raise fail(f"{where}: unknown field {extra[0]!r} (expected {', '.join(FIELDS)})")
    values: dict[str, float] = {}
    for field, value in fields.items():
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not number_ok or not math.isfinite(value) or value < 0:
            raise fail(
                f"{where}.{field}: expected a number >= 0 (USD per million tokens), got {value!r}"
            )
        values[field] = float(value)
    if old is not None:
        return replace(old, **values)
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise fail(
            f"{where}: missing {', '.join(missing)} (a new model needs all of {', '.join(FIELDS)})"
        )
    return Price(**values)


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _newest_of_families(prices: Mapping[str, Price]) -> dict[str, str]:
    best: dict[str, tuple[tuple[int, ...], str]] = {}
    for key in prices:
        match = _FAMILY_KEY.match(key)
        if not match:
            continue
        family = match["f1"] or match["f2"]
        version = tuple(int(n) for n in (match["v1"] or match["v2"]).split("-"))
        if family not in best or (version, key) > best[family]:
            best[family] = (version, key)
    return {family: key for family, (_, key) in best.items()}


@functools.lru_cache(maxsize=8)
def _load_table(path: str | None) -> PriceTable:
    base = default_table()
    return base if path is None else read_table(Path(path), base)
