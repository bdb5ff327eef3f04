"""Anthropic models and inference profiles on Amazon Bedrock: what a region offers, which to use.

The functions take a ``bedrock`` client (made with :func:`bcce.aws.client`), so tests pass a
stubbed one; ``bcce models`` and ``bcce doctor`` print what they return. Nothing here
hard-codes a model id: every pick comes from what the region lists, ranked by the family and
version parsed from the ids.

botocore is imported inside the functions: ``bcce --help`` must not pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from bcce.errors import BcceError, ExitCode, InfrastructureError

PROVIDER = "Anthropic"
Kind = Literal["model", "inference-profile"]
MODEL: Kind = "model"
PROFILE: Kind = "inference-profile"
ACTIVE = "ACTIVE"
ON_DEMAND = "ON_DEMAND"
INFERENCE_PROFILE = "INFERENCE_PROFILE"
PROVISIONED = "PROVISIONED"
SYSTEM_DEFINED = "SYSTEM_DEFINED"
APPLICATION = "APPLICATION"
LIST_ACTIONS = "bedrock:ListFoundationModels and bedrock:ListInferenceProfiles"
ACCESS_ACTION = "bedrock:GetFoundationModelAvailability"
CREDENTIALS_FIX = (
    "configure credentials (`aws configure`, `aws sso login`, AWS_PROFILE, "
    "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
)

# anthropic.claude-3-5-sonnet-20241022-v2:0, us.anthropic.claude-sonnet-4-5-20250929-v1:0,
# anthropic.claude-opus-4-1-20250805-v1:0, anthropic.claude-3-sonnet-20240229-v1:0:28k
_MODEL_ID = re.compile(
    r"^(?:[a-z][a-z-]*\.)?anthropic\.claude-"
    r"(?:(?P<old_major>\d+)(?:-(?P<old_minor>\d))?-(?P<old_family>[a-z]+)"
    r"|(?P<family>[a-z]+)-(?P<major>\d+)(?:-(?P<minor>\d{1,2})(?!\d))?)"
    r"(?:-(?P<date>\d{8}))?"
    r"(?:-v(?P<revision>\d+)(?::\d+)?)?"
    r"(?::(?P<variant>[a-z0-9]+))?$"
)


class BedrockUnavailable(InfrastructureError):
    """Raised when a region's models cannot be listed: no credentials, denied, unreachable."""

    def __init__(self, region: str, reason: str, fix: str) -> None:
        self.region, self.reason, self.fix = region, reason, fix
        super().__init__(f"cannot list Bedrock models in {region}: {reason}; {fix}")


class NoSuitableModel(BcceError):
    """Raised when the region offers no active model that fits the use case."""

    exit_code = ExitCode.STEP_FAILED


@dataclass(frozen=True)
class ModelVersion:
    """What a Claude model id says about the model: family, version, release date."""

    family: str
    """``sonnet``, ``opus``, ``haiku``."""
    major: int
    minor: int
    date: str
    """``YYYYMMDD``, or empty when the id has none."""
    revision: int
    variant: str
    """A context-window variant such as ``200k`` (provisioned throughput only), or empty."""

    @property
    def version(self) -> str:
        """``4.5``, or ``4`` for a .0 release."""
        return f"{self.major}.{self.minor}" if self.minor else str(self.major)

    @property
    def released(self) -> str:
        """The release date as ``YYYY-MM-DD``, or empty."""
        d = self.date
        return f"{d[:4]}-{d[4:6]}-{d[6:]}" if d else ""

    @property
    def label(self) -> str:
        """``Sonnet 4.5``."""
        return f"{self.family.title()} {self.version}"


def parse_model_id(model_id: str) -> ModelVersion | None:
    """The family and version in a Claude model or profile id; None for other ids."""
    m = _MODEL_ID.match(model_id)
    if m is None:
        return None
    old = m["old_family"] is not None
    return ModelVersion(
        family=m["old_family"] if old else m["family"],
        major=int(m["old_major"] if old else m["major"]),
        minor=int((m["old_minor"] if old else m["minor"]) or 0),
        date=m["date"] or "",
        revision=int(m["revision"] or 0),
        variant=m["variant"] or "",
    )


def geographies(region: str) -> tuple[str, ...]:
    """Inference profile prefixes that suit region, nearest first, ``global`` last.

    A geography profile (``us.``, ``eu.``, ``apac.``) keeps requests in that geography; a
    ``global.`` one may route them to any commercial region.
    """
    if region.startswith("us-gov-"):
        near: tuple[str, ...] = ("us-gov",)
    elif region.startswith("us-"):
        near = ("us",)
    elif region.startswith("ca-"):
        near = ("ca", "us")
    elif region.startswith("eu-"):
        near = ("eu",)
    elif region == "ap-northeast-1":
        near = ("jp", "apac")
    elif region in ("ap-southeast-2", "ap-southeast-4"):
        near = ("au", "apac")
    elif region.startswith("ap-"):
        near = ("apac",)
    else:
        near = ()
    return (*near, "global")


@dataclass(frozen=True)
class ModelEntry:
    """One Anthropic foundation model or inference profile a region lists."""

    id: str
    """What to pass as ``modelId``: the model id, or the inference profile id."""
    name: str
    kind: Kind
    status: str
    """A model's lifecycle status (ACTIVE, LEGACY) or a profile's status (ACTIVE)."""
    arn: str = ""
    model_ids: tuple[str, ...] = ()
    """The foundation models it runs: a model itself, or the models behind a profile."""
    inference_types: tuple[str, ...] = ()
    """A model's ``inferenceTypesSupported`` (ON_DEMAND, INFERENCE_PROFILE, PROVISIONED)."""
    profile_type: str | None = None
    """SYSTEM_DEFINED or APPLICATION, for a profile."""
    regions: tuple[str, ...] = ()
    """The regions a profile routes requests to."""
    use_profile: str | None = None
    """For a model that cannot be called by its bare id: the profile to call instead."""
    invocable: bool | None = None
    """Whether this id can be invoked on demand: False where the API says not, None unknown."""

    @property
    def base_model(self) -> str:
        """The foundation model id this entry runs."""
        return self.model_ids[0] if self.model_ids else self.id

    @property
    def parsed(self) -> ModelVersion | None:
        """Family and version of the model it runs."""
        return parse_model_id(self.base_model)

    @property
    def on_demand(self) -> bool:
        """True when its id can be passed to InvokeModel/Converse without provisioning."""
        return self.kind == PROFILE or ON_DEMAND in self.inference_types

    @property
    def geography(self) -> str | None:
        """A system-defined profile's prefix (``us``, ``eu``, ``apac``, ``global``)."""
        if self.kind != PROFILE or self.profile_type == APPLICATION:
            return None
        prefix, sep, rest = self.id.partition(".")
        return prefix if sep and rest.startswith("anthropic.") else None

    def invocation(self) -> str:
        """How this id can be invoked, in a few words."""
        if self.kind == PROFILE:
            where = f", routed to {', '.join(self.regions)}" if self.regions else ""
            return f"on demand by this id{where}"
        if ON_DEMAND in self.inference_types:
            return "on demand by this id"
        if INFERENCE_PROFILE in self.inference_types:
            if self.use_profile:
                return f"not by this id: use {self.use_profile}"
            return "only through an inference profile (none listed here)"
        if PROVISIONED in self.inference_types:
            return "provisioned throughput only"
        return "unknown"

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "arn": self.arn,
            "models": list(self.model_ids),
            "inference_types": list(self.inference_types),
            "profile_type": self.profile_type,
            "regions": list(self.regions),
            "use_profile": self.use_profile,
            "invocation": self.invocation(),
            "invocable": self.invocable,
        }


def aws_problem(exc: BaseException, actions: str) -> tuple[str, str]:
    """Why an AWS call failed and what to do about it, each as a short phrase.

    actions names the IAM actions the call needs (``bedrock:ListFoundationModels``).
    """
    from botocore import exceptions as bx

    text = " ".join(str(exc).split()) or type(exc).__name__
    credentials = (
        bx.NoCredentialsError,
        bx.PartialCredentialsError,
        bx.CredentialRetrievalError,
        bx.NoAuthTokenError,
        bx.TokenRetrievalError,
        bx.SSOError,
        bx.ProfileNotFound,
    )
    if isinstance(exc, credentials):
        return f"no usable AWS credentials ({text})", CREDENTIALS_FIX
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = " ".join(str(error.get("Message", "")).split())
        said = f"{code}: {message}" if message else code
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return f"access denied ({said})", f"allow {actions} for these credentials"
        if code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "ExpiredTokenException",
            "RequestExpired",
        ):
            return (
                f"credentials rejected ({said})",
                "refresh them (`aws sso login`, new keys) and check the system clock",
            )
        if code in ("ThrottlingException", "Throttling", "TooManyRequestsException"):
            return f"throttled ({said})", "try again in a minute"
        return said, "check --region and the account's Bedrock setup"
    if isinstance(exc, bx.InvalidRegionError):
        return text, "pass a valid region such as us-east-1 (--region or AWS_REGION)"
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
        fix = "check the network and proxy (HTTPS_PROXY)"
        if actions.startswith("bedrock:"):
            fix += ", and that Bedrock is offered in the region (--region)"
        return f"endpoint unreachable ({text})", fix
    return text, "check the AWS configuration (`aws configure list`)"


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def region_of(client: Any) -> str:
    """The region a client calls."""
    return str(client.meta.region_name)


def list_entries(client: Any) -> list[ModelEntry]:
    """The Anthropic models and inference profiles (system-defined and application) in the
    client's region, newest model first; BedrockUnavailable (exit 7) when AWS says no."""
    region = region_of(client)
    try:
        answer = client.list_foundation_models(byProvider=PROVIDER)
        summaries = answer.get("modelSummaries", [])
        profiles = [p for kind in (SYSTEM_DEFINED, APPLICATION) for p in _profiles(client, kind)]
    except _aws_errors() as exc:
        raise BedrockUnavailable(region, *aws_problem(exc, LIST_ACTIONS)) from None
    return entries_from(summaries, profiles, region)


def _profiles(client: Any, kind: str) -> Iterator[dict[str, Any]]:
    token: str | None = None
    seen: set[str] = set()
    while True:
        args: dict[str, Any] = {"typeEquals": kind}
        if token:
            args["nextToken"] = token
        page = client.list_inference_profiles(**args)
        yield from page.get("inferenceProfileSummaries", [])
        token = page.get("nextToken")
        if not token or token in seen:
            return
        seen.add(token)


def _model_id_of(arn: str) -> str:
    return arn.partition("foundation-model/")[2] or arn.rpartition("/")[2]


def _region_of_arn(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def entries_from(
    summaries: Iterable[Mapping[str, Any]],
    profiles: Iterable[Mapping[str, Any]],
    region: str,
) -> list[ModelEntry]:
    """ModelEntry for each Anthropic model summary and each profile running Anthropic models
    (the ``ListFoundationModels`` and ``ListInferenceProfiles`` response items)."""
    entries: list[ModelEntry] = []
    for s in summaries:
        model_id = str(s["modelId"])
        if s.get("providerName", PROVIDER) != PROVIDER and not model_id.startswith("anthropic."):
            continue
        types = tuple(s.get("inferenceTypesSupported") or ())
        entries.append(
            ModelEntry(
                id=model_id,
                name=str(s.get("modelName") or model_id),
                kind=MODEL,
                status=str((s.get("modelLifecycle") or {}).get("status", "UNKNOWN")),
                arn=str(s.get("modelArn", "")),
                model_ids=(model_id,),
                inference_types=types,
                invocable=False if types and ON_DEMAND not in types else None,
            )
        )
    for p in profiles:
        arns = [str(m.get("modelArn", "")) for m in p.get("models") or ()]
        model_ids = tuple(dict.fromkeys(_model_id_of(a) for a in arns if a))
        if not any(m.startswith("anthropic.") for m in model_ids):
            continue
        entries.append(
            ModelEntry(
                id=str(p["inferenceProfileId"]),
                name=str(p.get("inferenceProfileName") or p["inferenceProfileId"]),
                kind=PROFILE,
                status=str(p.get("status", "UNKNOWN")),
                arn=str(p.get("inferenceProfileArn", "")),
                model_ids=model_ids,
                profile_type=str(p.get("type", SYSTEM_DEFINED)),
                regions=tuple(dict.fromkeys(r for r in map(_region_of_arn, arns) if r)),
            )
        )
    with_profiles = [
        replace(e, use_profile=_best_profile(e, entries, region))
        if e.kind == MODEL and not e.on_demand and INFERENCE_PROFILE in e.inference_types
        else e
        for e in entries
    ]
    return sorted(with_profiles, key=lambda e: _display_order(e, region))


def _profile_rank(entry: ModelEntry, region: str) -> tuple[int, str]:
    near = geographies(region)
    if entry.profile_type == APPLICATION:
        return len(near) + 1, entry.id
    geo = entry.geography
    return (near.index(geo) if geo in near else len(near)), entry.id


def _best_profile(model: ModelEntry, entries: Sequence[ModelEntry], region: str) -> str | None:
    profiles = [
        e for e in entries if e.kind == PROFILE and e.status == ACTIVE and model.id in e.model_ids
    ]
    profiles.sort(key=lambda e: _profile_rank(e, region))
    return profiles[0].id if profiles else None


def _newest_first(parsed: ModelVersion | None) -> tuple[int, int, int, int]:
    if parsed is None:
        return (1, 0, 0, 0)
    return (0, -parsed.major, -parsed.minor, -int(parsed.date or 0))


def _display_order(entry: ModelEntry, region: str) -> tuple[Any, ...]:
    parsed = entry.parsed
    return (
        _newest_first(parsed),
        parsed.family if parsed else "",
        entry.base_model,
        entry.kind != MODEL,
        _profile_rank(entry, region),
    )


def find(entries: Iterable[ModelEntry], wanted: str) -> ModelEntry | None:
    """The entry whose id or ARN is wanted."""
    return next((e for e in entries if wanted in (e.id, e.arn)), None)


# Model access


def check_access(
    client: Any, entries: Sequence[ModelEntry], workers: int = 8
) -> tuple[list[ModelEntry], str | None]:
    """Entries with ``invocable`` set from GetFoundationModelAvailability, one call a model.

    A model needs access, entitlement, agreement and regional availability; a profile needs
    all but the last (it routes to other regions). Where the API does not answer, invocable
    stays None, and the second value says why.
    """
    wanted = sorted({e.base_model for e in entries if e.on_demand and e.invocable is not False})
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wanted) or 1))) as pool:
        answers = dict(
            zip(wanted, pool.map(lambda m: _availability(client, m), wanted), strict=True)
        )
    problem = next((a for a in answers.values() if isinstance(a, str)), None)
    updated = []
    for e in entries:
        answer = answers.get(e.base_model)
        if isinstance(answer, tuple) and e.invocable is not False:
            granted, in_region = answer
            e = replace(e, invocable=granted and (in_region or e.kind == PROFILE))
        updated.append(e)
    return updated, problem


def _availability(client: Any, model_id: str) -> tuple[bool, bool] | str | None:
    """(access granted, offered in this region); a problem text; None when not known."""
    from botocore.exceptions import ClientError

    try:
        a = client.get_foundation_model_availability(modelId=model_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ResourceNotFoundException", "ValidationException"):
            return None
        reason, fix = aws_problem(exc, ACCESS_ACTION)
        return f"cannot check model access in {region_of(client)}: {reason}; {fix}"
    except _aws_errors() as exc:
        reason, fix = aws_problem(exc, ACCESS_ACTION)
        return f"cannot check model access in {region_of(client)}: {reason}; {fix}"
    granted = (
        a.get("authorizationStatus") == "AUTHORIZED"
        and a.get("entitlementAvailability") == "AVAILABLE"
        and (a.get("agreementAvailability") or {}).get("status") == "AVAILABLE"
    )
    return granted, a.get("regionAvailability") == "AVAILABLE"


# Recommendation


@dataclass(frozen=True)
class UseCase:
    """What a use case needs, as model families in order of preference at equal version."""

    name: str
    families: tuple[str, ...]
    purpose: str


USE_CASES: dict[str, UseCase] = {
    "coding": UseCase(
        "coding",
        ("sonnet", "opus"),
        "agent steps that write and change code, where tool use and code quality matter "
        "and Sonnet's price suits long runs (Opus at the same version ranks second)",
    ),
    "review": UseCase(
        "review",
        ("opus", "sonnet"),
        "reviewing diffs and designs, where depth of reasoning matters more than cost "
        "(Sonnet at the same version ranks second)",
    ),
    "fast": UseCase(
        "fast",
        ("haiku",),
        "quick, cheap prompt steps such as triage, classification and summaries",
    ),
}


@dataclass(frozen=True)
class Recommendation:
    """The id to use for a use case, why, and what else would do."""

    use_case: str
    region: str
    pick: ModelEntry
    reason: str
    alternatives: tuple[ModelEntry, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "use_case": self.use_case,
            "region": self.region,
            "id": self.pick.id,
            "name": self.pick.name,
            "kind": self.pick.kind,
            "invocable": self.pick.invocable,
            "reason": self.reason,
            "alternatives": [
                {"id": a.id, "name": a.name, "kind": a.kind, "invocable": a.invocable}
                for a in self.alternatives
            ],
        }


def candidates(entries: Sequence[ModelEntry], use_case: UseCase) -> list[ModelEntry]:
    """Entries fit for use_case: its families, active, callable on demand, not known to be
    denied, and (for a profile) not running a model the region marks legacy."""
    legacy = {e.id for e in entries if e.kind == MODEL and e.status != ACTIVE}
    return [
        e
        for e in entries
        if (p := e.parsed) is not None
        and p.family in use_case.families
        and not p.variant
        and e.status == ACTIVE
        and e.on_demand
        and e.invocable is not False
        and e.base_model not in legacy
    ]


def recommend(entries: Sequence[ModelEntry], use_case: str, region: str) -> Recommendation:
    """The best id for use_case among entries (as :func:`list_entries` returns them).

    Newest version first (parsed from the ids), then the use case's family order, then
    release date. A model callable on demand is used by its id; one that needs an inference
    profile by the profile of the region's geography, else ``global.``, else another.
    """
    case = USE_CASES[use_case]
    fit = candidates(entries, case)
    if not fit:
        raise NoSuitableModel(_no_match(entries, case, region))
    groups: dict[str, list[ModelEntry]] = {}
    for e in fit:
        groups.setdefault(e.base_model, []).append(e)
    for ids in groups.values():
        ids.sort(key=lambda e: (e.invocable is not True, e.kind != MODEL, _profile_rank(e, region)))

    def rank(model_id: str) -> tuple[Any, ...]:
        p = parse_model_id(model_id)
        assert p is not None  # candidates() kept parsed ids only
        return (-p.major, -p.minor, case.families.index(p.family), -int(p.date or 0), model_id)

    ranked = sorted(groups, key=rank)
    best = groups[ranked[0]]
    pick = best[0]
    alternatives = (*best[1:2], *(groups[m][0] for m in ranked[1:3]))
    return Recommendation(
        use_case=case.name,
        region=region,
        pick=pick,
        reason=_reason(pick, entries, case, region, len(ranked)),
        alternatives=tuple(alternatives),
    )


def _reason(
    pick: ModelEntry, entries: Sequence[ModelEntry], case: UseCase, region: str, count: int
) -> str:
    p = pick.parsed
    assert p is not None
    families = " or ".join(f.title() for f in case.families)
    released = f" (released {p.released})" if p.released else ""
    fit = "the only one that fits" if count == 1 else f"of {count} that fit"
    text = (
        f"Claude {p.label}{released} is the newest {families} model active in {region} "
        f"({fit}), and {case.name} means {case.purpose}. "
    )
    if pick.kind == MODEL:
        text += "It is invoked on demand by its model id. "
    else:
        model = find(entries, pick.base_model)
        needs = (
            f"Its model {pick.base_model} cannot be invoked by its bare id "
            f"(inferenceTypesSupported: {', '.join(model.inference_types)}), so "
            if model is not None and not model.on_demand
            else ""
        )
        geo = pick.geography
        if geo == "global":
            where = "the global profile, which may route requests to any commercial region"
        elif geo:
            where = f"the {geo}. profile, which keeps requests in that geography"
        else:
            where = f"the {pick.profile_type or 'inference'} profile {pick.name}"
        routed = f" ({', '.join(pick.regions)})" if pick.regions else ""
        text += (needs + "use " if needs else "Use ") + where + routed + ". "
    if pick.invocable:
        text += "Bedrock reports model access granted for this account."
    else:
        text += (
            "Model access was not checked (--check-access, or `bcce doctor --model ID`): "
            "Anthropic models need it granted once per account."
        )
    return text


def _no_match(entries: Sequence[ModelEntry], case: UseCase, region: str) -> str:
    families = "/".join(case.families)
    legacy = {e.id for e in entries if e.kind == MODEL and e.status != ACTIVE}
    seen = [
        e
        for e in entries
        if (p := e.parsed) is not None and p.family in case.families and not p.variant
    ]
    if not seen:
        found = f"none of the {len(entries)} Anthropic entries listed is {families}"
    else:
        shown = ", ".join(f"{e.id} ({_why_not(e, legacy)})" for e in seen[:3])
        more = f" and {len(seen) - 3} more" if len(seen) > 3 else ""
        found = f"only unusable ones: {shown}{more}"
    return (
        f"no active, invocable {families} model for {case.name} in {region}: {found}; "
        "try another --region (e.g. us-east-1 or us-west-2), or grant model access in "
        "the Bedrock console"
    )


def _why_not(entry: ModelEntry, legacy: set[str]) -> str:
    if entry.status != ACTIVE:
        return entry.status.lower()
    if entry.base_model in legacy:
        return "its model is legacy"
    if not entry.on_demand:
        return entry.invocation()
    return "no model access"
