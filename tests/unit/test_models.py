"""Tests for bcce.models and ``bcce models``: Bedrock answers come from a botocore Stubber.

The response shapes follow the botocore service model (bedrock 2023-04-20:
ListFoundationModels, ListInferenceProfiles, GetFoundationModelAvailability), which the
Stubber validates each response against.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from click.testing import CliRunner, Result

from bcce import aws
from bcce.cli import cli
from bcce.errors import ExitCode, InfrastructureError
from bcce.models import (
    MODEL,
    PROFILE,
    USE_CASES,
    BedrockUnavailable,
    ModelEntry,
    NoSuitableModel,
    aws_problem,
    candidates,
    check_access,
    entries_from,
    find,
    geographies,
    list_entries,
    parse_model_id,
    recommend,
)

ACCOUNT = "123456789012"
CREATED = datetime.datetime(2025, 9, 29, tzinfo=datetime.UTC)

SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
OPUS_45 = "anthropic.claude-opus-4-5-20251101-v1:0"
OPUS_41 = "anthropic.claude-opus-4-1-20250805-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_35 = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SONNET_3_28K = "anthropic.claude-3-sonnet-20240229-v1:0:28k"

# region -> the regions its geography's profiles route to
ROUTES = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-west-1", "eu-west-3"),
}


def summary(
    model_id: str,
    name: str,
    types: list[str],
    status: str = "ACTIVE",
    region: str = "us-east-1",
) -> dict[str, Any]:
    """A FoundationModelSummary as ListFoundationModels returns it."""
    return {
        "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
        "modelId": model_id,
        "modelName": name,
        "providerName": "Anthropic",
        "inputModalities": ["TEXT", "IMAGE"],
        "outputModalities": ["TEXT"],
        "responseStreamingSupported": True,
        "customizationsSupported": [],
        "inferenceTypesSupported": types,
        "modelLifecycle": {"status": status},
    }


def profile(
    geo: str, model_id: str, name: str, region: str = "us-east-1", kind: str = "SYSTEM_DEFINED"
) -> dict[str, Any]:
    """An InferenceProfileSummary as ListInferenceProfiles returns it."""
    if kind == "APPLICATION":
        profile_id = geo  # application profiles have opaque ids
        arn = f"arn:aws:bedrock:{region}:{ACCOUNT}:application-inference-profile/{profile_id}"
        regions: tuple[str, ...] = (region,)
    else:
        profile_id = f"{geo}.{model_id}"
        arn = f"arn:aws:bedrock:{region}:{ACCOUNT}:inference-profile/{profile_id}"
        regions = ("",) if geo == "global" else ROUTES[geo]
    return {
        "inferenceProfileName": name,
        "description": f"Routes requests to {name}.",
        "createdAt": CREATED,
        "updatedAt": CREATED,
        "inferenceProfileArn": arn,
        "models": [
            {"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{model_id}"} for r in regions
        ],
        "inferenceProfileId": profile_id,
        "status": "ACTIVE",
        "type": kind,
    }


US_MODELS = [
    summary(SONNET_45, "Claude Sonnet 4.5", ["INFERENCE_PROFILE"]),
    summary(OPUS_45, "Claude Opus 4.5", ["INFERENCE_PROFILE"]),
    summary(OPUS_41, "Claude Opus 4.1", ["INFERENCE_PROFILE"]),
    summary(HAIKU_45, "Claude Haiku 4.5", ["INFERENCE_PROFILE"]),
    summary(HAIKU_3, "Claude 3 Haiku", ["ON_DEMAND", "INFERENCE_PROFILE"]),
    summary(SONNET_35, "Claude 3.5 Sonnet", ["ON_DEMAND", "INFERENCE_PROFILE"], "LEGACY"),
    summary(SONNET_3_28K, "Claude 3 Sonnet", ["PROVISIONED"]),
]
US_PAGE_1 = [
    profile("global", SONNET_45, "Global Anthropic Claude Sonnet 4.5"),
    profile("us", SONNET_45, "US Anthropic Claude Sonnet 4.5"),
    profile("us", OPUS_45, "US Anthropic Claude Opus 4.5"),
    {  # not Anthropic: left out
        **profile("us", "amazon.nova-pro-v1:0", "US Nova Pro"),
        "inferenceProfileId": "us.amazon.nova-pro-v1:0",
    },
]
US_PAGE_2 = [
    profile("us", OPUS_41, "US Anthropic Claude Opus 4.1"),
    profile("us", HAIKU_45, "US Anthropic Claude Haiku 4.5"),
    profile("global", HAIKU_45, "Global Anthropic Claude Haiku 4.5"),
    profile("us", HAIKU_3, "US Anthropic Claude 3 Haiku"),
    profile("us", SONNET_35, "US Anthropic Claude 3.5 Sonnet"),
]
US_APPLICATION = [
    profile("a1b2c3d4e5f6", SONNET_45, "team-sonnet", kind="APPLICATION"),
]


def availability(model_id: str, authorized: bool = True) -> dict[str, Any]:
    """A GetFoundationModelAvailability response."""
    return {
        "modelId": model_id,
        "agreementAvailability": {"status": "AVAILABLE"},
        "authorizationStatus": "AUTHORIZED" if authorized else "NOT_AUTHORIZED",
        "entitlementAvailability": "AVAILABLE",
        "regionAvailability": "AVAILABLE",
    }


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that sign requests but are never sent: no test reaches AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bedrock(region: str = "us-east-1") -> tuple[Any, Stubber]:
    """A bedrock client made as bcce makes them, and its stubber (not yet active)."""
    client = aws.client("bedrock", region_name=region, max_attempts=1)
    return client, Stubber(client)


def stub_listing(
    stubber: Stubber,
    models: list[dict[str, Any]],
    pages: list[list[dict[str, Any]]],
    application: list[dict[str, Any]] | None = None,
) -> None:
    """Queue a full listing: the models, system-defined profiles in pages, then APPLICATION."""
    stubber.add_response(
        "list_foundation_models", {"modelSummaries": models}, {"byProvider": "Anthropic"}
    )
    for n, page in enumerate(pages):
        answer: dict[str, Any] = {"inferenceProfileSummaries": page}
        if n + 1 < len(pages):
            answer["nextToken"] = f"token-{n + 1}"
        expected: dict[str, Any] = {"typeEquals": "SYSTEM_DEFINED"}
        if n:
            expected["nextToken"] = f"token-{n}"
        stubber.add_response("list_inference_profiles", answer, expected)
    stubber.add_response(
        "list_inference_profiles",
        {"inferenceProfileSummaries": application or []},
        {"typeEquals": "APPLICATION"},
    )


@pytest.fixture
def us_client() -> Iterator[Any]:
    client, stubber = bedrock("us-east-1")
    stub_listing(stubber, US_MODELS, [US_PAGE_1, US_PAGE_2], US_APPLICATION)
    with stubber:
        yield client
        stubber.assert_no_pending_responses()


@pytest.fixture
def us_entries(us_client: Any) -> list[ModelEntry]:
    return list_entries(us_client)


def by_id(entries: list[ModelEntry]) -> dict[str, ModelEntry]:
    return {e.id: e for e in entries}


# parsing ids


@pytest.mark.parametrize(
    ("model_id", "family", "version", "date"),
    [
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "sonnet", "3.5", "20241022"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "haiku", "3", "20240307"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "sonnet", "4.5", "20250929"),
        ("anthropic.claude-sonnet-4-20250514-v1:0", "sonnet", "4", "20250514"),
        ("anthropic.claude-opus-4-1-20250805-v1:0", "opus", "4.1", "20250805"),
        ("us-gov.anthropic.claude-3-7-sonnet-20250219-v1:0", "sonnet", "3.7", "20250219"),
        ("anthropic.claude-opus-4-6-v1", "opus", "4.6", ""),
    ],
)
def test_parse_model_id_reads_family_version_and_date(
    model_id: str, family: str, version: str, date: str
) -> None:
    parsed = parse_model_id(model_id)
    assert parsed is not None
    assert (parsed.family, parsed.version, parsed.date) == (family, version, date)


@pytest.mark.parametrize(
    "model_id", ["anthropic.claude-v2:1", "anthropic.claude-instant-v1", "amazon.nova-pro-v1:0"]
)
def test_parse_model_id_ignores_ids_without_family_and_version(model_id: str) -> None:
    assert parse_model_id(model_id) is None


def test_parse_model_id_marks_context_window_variants() -> None:
    parsed = parse_model_id(SONNET_3_28K)
    assert parsed is not None and parsed.variant == "28k"


@pytest.mark.parametrize(
    ("region", "first"),
    [
        ("us-east-1", "us"),
        ("us-gov-west-1", "us-gov"),
        ("eu-west-1", "eu"),
        ("ap-south-1", "apac"),
        ("ap-northeast-1", "jp"),
        ("sa-east-1", "global"),
    ],
)
def test_geographies_puts_the_regions_own_first_and_global_last(region: str, first: str) -> None:
    prefixes = geographies(region)
    assert prefixes[0] == first and prefixes[-1] == "global"


# listing


def test_list_reads_models_and_every_profile_page(us_entries: list[ModelEntry]) -> None:
    ids = by_id(us_entries)
    assert {e.id for e in us_entries if e.kind == MODEL} == {s["modelId"] for s in US_MODELS}
    profiles = {e.id for e in us_entries if e.kind == PROFILE}
    assert f"us.{OPUS_41}" in profiles  # from the second page
    assert "a1b2c3d4e5f6" in profiles  # the application profile
    assert "us.amazon.nova-pro-v1:0" not in ids
    app = ids["a1b2c3d4e5f6"]
    assert (app.profile_type, app.base_model, app.name) == ("APPLICATION", SONNET_45, "team-sonnet")


def test_list_says_how_each_entry_is_invoked(us_entries: list[ModelEntry]) -> None:
    ids = by_id(us_entries)
    sonnet = ids[SONNET_45]
    assert sonnet.kind == MODEL and sonnet.status == "ACTIVE"
    assert sonnet.invocable is False  # INFERENCE_PROFILE only: not by its bare id
    assert sonnet.use_profile == f"us.{SONNET_45}"  # the region's geography before global
    assert sonnet.invocation() == f"not by this id: use us.{SONNET_45}"
    haiku = ids[HAIKU_3]
    assert haiku.invocable is None and haiku.use_profile is None
    assert haiku.invocation() == "on demand by this id"
    assert ids[SONNET_3_28K].invocation() == "provisioned throughput only"
    assert ids[SONNET_35].status == "LEGACY"
    us_profile = ids[f"us.{SONNET_45}"]
    assert us_profile.geography == "us" and us_profile.regions == ROUTES["us"]
    assert us_profile.invocation() == "on demand by this id, routed to " + ", ".join(ROUTES["us"])
    assert ids[f"global.{SONNET_45}"].geography == "global"


def test_list_is_newest_first(us_entries: list[ModelEntry]) -> None:
    assert us_entries[0].parsed is not None and us_entries[0].parsed.version == "4.5"
    versions = [e.parsed.version for e in us_entries if e.parsed]
    assert versions.index("4.1") > versions.index("4.5")
    assert versions.index("3") > versions.index("3.5")


def test_find_matches_id_or_arn(us_entries: list[ModelEntry]) -> None:
    sonnet = find(us_entries, SONNET_45)
    assert sonnet is not None and find(us_entries, sonnet.arn) is sonnet
    assert find(us_entries, "anthropic.claude-nope") is None


@pytest.mark.parametrize(
    ("code", "message", "reason", "fix"),
    [
        (
            "AccessDeniedException",
            f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: "
            "bedrock:ListFoundationModels",
            "access denied (AccessDeniedException: User:",
            "allow bedrock:ListFoundationModels and bedrock:ListInferenceProfiles",
        ),
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            "credentials rejected",
            "aws sso login",
        ),
    ],
)
def test_list_turns_aws_errors_into_one_infrastructure_line(
    code: str, message: str, reason: str, fix: str
) -> None:
    client, stubber = bedrock("eu-west-1")
    stubber.add_client_error(
        "list_foundation_models", service_error_code=code, service_message=message
    )
    with stubber, pytest.raises(BedrockUnavailable) as caught:
        list_entries(client)
    error = caught.value
    assert isinstance(error, InfrastructureError) and error.exit_code == ExitCode.INFRASTRUCTURE
    text = str(error)
    assert text.startswith("cannot list Bedrock models in eu-west-1: ")
    assert reason in text and fix in text and "\n" not in text


def test_aws_problem_names_no_credentials_and_unreachable_endpoints() -> None:
    from botocore.exceptions import NoCredentialsError

    reason, fix = aws_problem(NoCredentialsError(), "bedrock:ListFoundationModels")
    assert "no usable AWS credentials" in reason and "aws configure" in fix
    down = EndpointConnectionError(endpoint_url="https://bedrock.us-east-1.amazonaws.com/")
    reason, fix = aws_problem(down, "bedrock:ListFoundationModels")
    assert reason.startswith("endpoint unreachable") and "HTTPS_PROXY" in fix
    _, sts_fix = aws_problem(down, "sts:GetCallerIdentity")
    assert "Bedrock" not in sts_fix


# model access


def test_check_access_sets_invocable_from_availability(us_entries: list[ModelEntry]) -> None:
    client, stubber = bedrock("us-east-1")
    wanted = sorted({e.base_model for e in us_entries if e.on_demand and e.invocable is not False})
    for model_id in wanted:
        stubber.add_response(
            "get_foundation_model_availability",
            availability(model_id, authorized=model_id != OPUS_45),
            {"modelId": model_id},
        )
    with stubber:
        checked, problem = check_access(client, us_entries, workers=1)
    assert problem is None
    ids = by_id(checked)
    assert ids[f"us.{SONNET_45}"].invocable is True
    assert ids[f"us.{OPUS_45}"].invocable is False  # not authorized
    assert ids[HAIKU_3].invocable is True
    assert ids[SONNET_45].invocable is False  # still: not callable by its bare id


def test_check_access_leaves_unknown_when_the_api_is_denied(us_entries: list[ModelEntry]) -> None:
    client, stubber = bedrock("us-east-1")
    entry = by_id(us_entries)[HAIKU_3]
    stubber.add_client_error(
        "get_foundation_model_availability",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: bedrock:GetFoundationModelAvailability",
    )
    with stubber:
        [checked], problem = check_access(client, [entry])
    assert checked.invocable is None
    assert problem is not None and "bedrock:GetFoundationModelAvailability" in problem


# recommending


def test_coding_picks_the_newest_sonnet_through_the_regions_profile(
    us_entries: list[ModelEntry],
) -> None:
    pick = recommend(us_entries, "coding", "us-east-1")
    assert pick.pick.id == f"us.{SONNET_45}"
    assert "Sonnet 4.5" in pick.reason and "cannot be invoked by its bare id" in pick.reason
    assert "us. profile" in pick.reason
    alternatives = [a.id for a in pick.alternatives]
    assert alternatives[0] == f"global.{SONNET_45}"  # same model, other route
    assert f"us.{OPUS_45}" in alternatives
    assert SONNET_35 not in alternatives and f"us.{SONNET_35}" not in alternatives  # legacy


def test_review_prefers_opus_at_the_same_version(us_entries: list[ModelEntry]) -> None:
    assert recommend(us_entries, "review", "us-east-1").pick.id == f"us.{OPUS_45}"


def test_fast_picks_the_newest_haiku(us_entries: list[ModelEntry]) -> None:
    pick = recommend(us_entries, "fast", "us-east-1")
    assert pick.pick.id == f"us.{HAIKU_45}"
    assert HAIKU_3 in [a.id for a in pick.alternatives]


def test_a_model_callable_on_demand_is_used_by_its_own_id() -> None:
    entries = entries_from(
        [summary(HAIKU_3, "Claude 3 Haiku", ["ON_DEMAND", "INFERENCE_PROFILE"])],
        [profile("us", HAIKU_3, "US Anthropic Claude 3 Haiku")],
        "us-west-2",
    )
    pick = recommend(entries, "fast", "us-west-2")
    assert pick.pick.id == HAIKU_3
    assert "invoked on demand by its model id" in pick.reason
    assert [a.id for a in pick.alternatives] == [f"us.{HAIKU_3}"]


def test_recommend_prefers_the_geography_of_the_region_then_global() -> None:
    models = [summary(SONNET_45, "Claude Sonnet 4.5", ["INFERENCE_PROFILE"], region="eu-west-1")]
    both = [
        profile("global", SONNET_45, "Global Anthropic Claude Sonnet 4.5", "eu-west-1"),
        profile("eu", SONNET_45, "EU Anthropic Claude Sonnet 4.5", "eu-west-1"),
    ]
    entries = entries_from(models, both, "eu-west-1")
    assert recommend(entries, "coding", "eu-west-1").pick.id == f"eu.{SONNET_45}"
    only_global = entries_from(models, both[:1], "eu-west-1")
    pick = recommend(only_global, "coding", "eu-west-1")
    assert pick.pick.id == f"global.{SONNET_45}"
    assert "any commercial region" in pick.reason


def test_recommend_skips_entries_known_not_invocable(us_entries: list[ModelEntry]) -> None:
    denied = [replace(e, invocable=False) if e.base_model == SONNET_45 else e for e in us_entries]
    assert recommend(denied, "coding", "us-east-1").pick.id == f"us.{OPUS_45}"


def test_recommend_without_a_fitting_model_says_why() -> None:
    entries = entries_from(
        [summary(SONNET_45, "Claude Sonnet 4.5", ["INFERENCE_PROFILE"])],
        [profile("us", SONNET_45, "US Anthropic Claude Sonnet 4.5")],
        "us-east-1",
    )
    with pytest.raises(NoSuitableModel) as caught:
        recommend(entries, "fast", "us-east-1")
    assert caught.value.exit_code == ExitCode.STEP_FAILED
    assert "no active, invocable haiku model for fast in us-east-1" in str(caught.value)
    legacy_only = entries_from(
        [summary(SONNET_35, "Claude 3.5 Sonnet", ["ON_DEMAND"], "LEGACY")], [], "us-east-1"
    )
    assert candidates(legacy_only, USE_CASES["coding"]) == []
    with pytest.raises(NoSuitableModel, match=r"legacy"):
        recommend(legacy_only, "coding", "us-east-1")


# the CLI


def bcce(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="bcce")


@pytest.fixture
def cli_client(us_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI's bcce.aws.client returns the stubbed us-east-1 client."""
    made: list[tuple[str, dict[str, Any]]] = []

    def client(service: str, **kwargs: Any) -> Any:
        made.append((service, kwargs))
        return us_client

    monkeypatch.setattr(aws, "client", client)
    us_client.made = made
    return us_client


def test_cli_list_json_is_a_list_of_entries(cli_client: Any) -> None:
    result = bcce("models", "list", "--region", "us-east-1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert isinstance(data, list)
    sonnet = next(d for d in data if d["id"] == SONNET_45)
    assert sonnet["kind"] == "model" and sonnet["invocable"] is False
    assert sonnet["use_profile"] == f"us.{SONNET_45}"
    assert sonnet["inference_types"] == ["INFERENCE_PROFILE"]
    assert {d["kind"] for d in data} == {"model", "inference-profile"}
    service, kwargs = cli_client.made[0]
    assert service == "bedrock" and kwargs["region_name"] == "us-east-1"


def test_cli_list_prints_a_table(cli_client: Any) -> None:
    result = CliRunner().invoke(cli, ["models", "list"], prog_name="bcce", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Anthropic models on Bedrock in us-east-1" in result.output
    assert f"us.{SONNET_45}" in result.output and "inference-profile" in result.output
    assert "LEGACY" in result.output and "--check-access" in result.output


def test_cli_recommend_prints_the_id_first_then_why(cli_client: Any) -> None:
    result = bcce("models", "recommend", "--use-case", "coding")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"us.{SONNET_45}"
    assert "newest Sonnet or Opus model active in us-east-1" in result.output
    assert "alternatives:" in result.output


def test_cli_recommend_json(cli_client: Any) -> None:
    result = bcce("models", "recommend", "--use-case", "fast", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["id"] == f"us.{HAIKU_45}" and data["use_case"] == "fast"
    assert data["region"] == "us-east-1" and data["reason"]
    assert all({"id", "name", "kind"} <= set(a) for a in data["alternatives"])


def test_cli_recommend_exits_1_when_nothing_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    client, stubber = bedrock("us-east-1")
    stub_listing(
        stubber, [summary(SONNET_45, "Claude Sonnet 4.5", ["INFERENCE_PROFILE"])], [[]], []
    )
    monkeypatch.setattr(aws, "client", lambda service, **kwargs: client)
    with stubber:
        result = bcce("models", "recommend", "--use-case", "fast")
    assert result.exit_code == 1
    assert result.output.startswith("bcce: no active, invocable haiku model for fast")


def test_cli_list_access_denied_is_one_line_exit_7(monkeypatch: pytest.MonkeyPatch) -> None:
    client, stubber = bedrock("us-east-1")
    stubber.add_client_error(
        "list_foundation_models",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: bedrock:ListFoundationModels",
        http_status_code=403,
    )
    monkeypatch.setattr(aws, "client", lambda service, **kwargs: client)
    with stubber:
        result = bcce("models", "list")
    assert result.exit_code == 7
    lines = result.output.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bcce: cannot list Bedrock models in us-east-1: access denied")
    assert "; allow bedrock:ListFoundationModels" in lines[0]


def test_cli_list_without_credentials_is_exit_7(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    result = bcce("models", "list", "--region", "eu-west-1")
    assert result.exit_code == 7
    assert result.output.startswith(
        "bcce: cannot list Bedrock models in eu-west-1: no usable AWS credentials"
    )
    assert "aws configure" in result.output and len(result.output.splitlines()) == 1


def test_cli_check_access_marks_invocable(monkeypatch: pytest.MonkeyPatch) -> None:
    client, stubber = bedrock("us-west-2")
    stub_listing(
        stubber, [summary(HAIKU_3, "Claude 3 Haiku", ["ON_DEMAND"], region="us-west-2")], [[]]
    )
    stubber.add_response(
        "get_foundation_model_availability", availability(HAIKU_3), {"modelId": HAIKU_3}
    )
    monkeypatch.setattr(aws, "client", lambda service, **kwargs: client)
    with stubber:
        result = bcce("models", "list", "--region", "us-west-2", "--check-access", "--json")
        stubber.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.output)
    assert (entry["id"], entry["invocable"]) == (HAIKU_3, True)
