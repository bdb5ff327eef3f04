"""Tests for bcce.redact: token shapes, registered values, JSON data, env secrets.

Fake tokens are built by concatenation at run time, so that no real-looking secret sits in
this file as one literal for secret scanners to flag.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bcce.redact
from bcce.redact import DEFAULT, MASK, Redactor, redact, secret_key, secret_values

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"


def fake(prefix: str, n: int, alphabet: str = ALNUM) -> str:
    """``prefix`` and ``n`` random characters, the same on every run."""
    rng = random.Random(f"{prefix}/{n}/{alphabet}")
    return prefix + "".join(rng.choice(alphabet) for _ in range(n))


def b64url(data: object) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


AWS_KEY_ID = fake("AK" + "IA", 16, UPPER)
AWS_SECRET = fake("", 40, B64)
GITHUB_PAT = fake("gh" + "p_", 36)
JWT = ".".join(
    [b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": "1234567890", "iat": 1}), fake("", 43)]
)
PEM = "\n".join(
    [
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        *(fake(f"MII{i}", 61, B64) for i in range(4)),
        fake("", 20, B64) + "==",
        "-----END RSA " + "PRIVATE KEY-----",
    ]
)

SHAPES = [
    # (kind, text holding the secret, what it becomes)
    ("aws-access-key", f"key id {AWS_KEY_ID} here", "key id [REDACTED:aws-access-key] here"),
    (
        "aws-access-key",
        f"AWS_ACCESS_KEY_ID={fake('AS' + 'IA', 16, UPPER)}",
        "AWS_ACCESS_KEY_ID=[REDACTED:aws-access-key]",
    ),
    (
        "aws-secret-key",
        f"aws_secret_access_key = {AWS_SECRET}",
        "aws_secret_access_key = [REDACTED:aws-secret-key]",
    ),
    (
        "aws-secret-key",
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        "export AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key]",
    ),
    (
        "aws-secret-key",
        f'{{"SecretAccessKey": "{AWS_SECRET}", "Expiration": "2024"}}',
        '{"SecretAccessKey": "[REDACTED:aws-secret-key]", "Expiration": "2024"}',
    ),
    (
        "aws-secret-key",
        f"<SecretAccessKey>{AWS_SECRET}</SecretAccessKey>",
        "<SecretAccessKey>[REDACTED:aws-secret-key]</SecretAccessKey>",
    ),
    (
        "aws-session-token",
        f'"SessionToken": "{fake("IQoJb3JpZ2lu", 300, B64)}"',
        '"SessionToken": "[REDACTED:aws-session-token]"',
    ),
    ("github-token", f"GH_TOKEN={GITHUB_PAT}", "GH_TOKEN=[REDACTED:github-token]"),
    ("github-token", f"token {fake('gh' + 's_', 36)}.", "token [REDACTED:github-token]."),
    (
        "github-token",
        f"pat: {fake('github' + '_pat_', 22)}_{fake('', 59)}",
        "pat: [REDACTED:github-token]",
    ),
    ("gitlab-token", f"x {fake('gl' + 'pat-', 20)} y", "x [REDACTED:gitlab-token] y"),
    (
        "anthropic-key",
        f"ANTHROPIC_API_KEY={fake('sk-' + 'ant-api03-', 93, ALNUM + '_-')}AA",
        "ANTHROPIC_API_KEY=[REDACTED:anthropic-key]",
    ),
    (
        "openai-key",
        f"key: {fake('sk-' + 'proj-', 48, ALNUM + '_-')} ok",
        "key: [REDACTED:openai-key] ok",
    ),
    (
        "slack-token",
        f"{fake('xo' + 'xb-', 12, string.digits)}-{fake('', 24)}",
        "[REDACTED:slack-token]",
    ),
    ("private-key", f"key:\n{PEM}\ndone", "key:\n[REDACTED:private-key]\ndone"),
    (
        "private-key",
        json.dumps({"key": PEM}),
        '{"key": "[REDACTED:private-key]"}',
    ),
    ("private-key", "-----BEGIN " + "PRIVATE KEY-----\nMIIEvQ", "[REDACTED:private-key]"),
    ("jwt", f"cookie={JWT}; Path=/", "cookie=[REDACTED:jwt]; Path=/"),
    (
        "url-password",
        "git clone https://oauth2:" + fake("", 20) + "@gitlab.com/org/repo.git",
        "git clone https://oauth2:[REDACTED:url-password]@gitlab.com/org/repo.git",
    ),
    (
        "url-password",
        "BCCE_BROKER_URL=redis://:" + fake("", 12) + "@redis:6379/0",
        "BCCE_BROKER_URL=redis://:[REDACTED:url-password]@redis:6379/0",
    ),
    (
        "authorization",
        "Authorization: Bearer xyz",
        "Authorization: [REDACTED:authorization]",
    ),
    (
        "authorization",
        "authorization: Basic " + base64.b64encode(b"user:" + b"hunter22").decode(),
        "authorization: [REDACTED:authorization]",
    ),
    (
        "authorization",
        f"{{'Authorization': 'token {GITHUB_PAT}', 'Accept': '*/*'}}",
        "{'Authorization': '[REDACTED:authorization]', 'Accept': '*/*'}",
    ),
    (
        "authorization",
        f"Authorization: AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/20240501/us-east-1/s3/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature="
        + fake("", 64, "0123456789abcdef"),
        "Authorization: [REDACTED:authorization]",
    ),
    (
        "authorization",
        "Proxy-Authorization: " + fake("", 24) + "9",
        "Proxy-Authorization: [REDACTED:authorization]",
    ),
    (
        "bearer",
        f"curl -H 'X-Auth: Bearer {fake('', 32, ALNUM + '._-')}' https://api",
        "curl -H 'X-Auth: Bearer [REDACTED:bearer]' https://api",
    ),
]


@pytest.mark.parametrize(("kind", "text", "expected"), SHAPES)
def test_each_shape_is_masked_keeping_its_context(kind: str, text: str, expected: str) -> None:
    assert f"[REDACTED:{kind}]" in expected
    assert redact(text) == expected
    assert redact(expected) == expected


def test_every_shape_is_tested_and_no_mask_matches_one() -> None:
    kinds = {kind for kind, _, _ in SHAPES}
    assert kinds == {kind for kind, _ in bcce.redact._SHAPES}
    contexts = ["{}", "x{}y", "https://u:{}@h", "Authorization: {}", "Bearer {}", "token={}"]
    for mask in [MASK, *(f"[REDACTED:{kind}]" for kind in kinds)]:
        for context in contexts:
            assert redact(context.format(mask)) == context.format(mask)


ORDINARY = [
    "def task_skip(step: Step) -> None:  # task-skip-when-the-previous-step-has-failed-too",
    "risk-assessment-for-the-new-feature-branch-and-its-rollout-2024",
    "/home/dev/ws/.bcce_runs/2024-05-01T12-00-00-a1b2c3/build/stdout.txt",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)",
    "run 123e4567-e89b-12d3-a456-426614174000 succeeded in 3.2 s",
    "the payload SGVsbG8sIHdvcmxkISBUaGlzIGlzIGp1c3QgYmFzZTY0IHRleHQu decodes to a greeting",
    f"an AWS-secret-sized string alone: {AWS_SECRET}",
    "Bearer tokens are described in RFC 6750; authorization is required.",
    "https://github.com/org/repo.git and git@github.com:org/repo.git, http://localhost:8080/a",
    "redis://redis:6379/0 and https://host/path?next=a:b@c",
    'headers = {"Authorization": f"Bearer {token}"}',
    "authorization = self._get_param('Authorization'); authorization=authorization",
    'curl -H "Authorization: Bearer $TOKEN" https://api.github.com',
    "max_tokens = 4096; password = os.environ['REDIS_PASSWORD']",
    "AKIA is the prefix of an access key id; eyJ starts a JWT; ghp_ a GitHub token.",
    "-----BEGIN PUBLIC KEY----- is not a secret",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact(text) == text


def test_registered_values_are_masked_wherever_they_appear() -> None:
    secret = fake("", 24)
    r = Redactor([secret])
    assert r.text(f"pw={secret}; again{secret}!") == "pw=[REDACTED]; again[REDACTED]!"
    assert r(f"x{secret}") == "x[REDACTED]"
    assert r.bytes(f"{secret}\n".encode() + b"\xff\xfe") == b"[REDACTED]\n\xff\xfe"


def test_longest_value_wins_and_short_or_blank_values_are_ignored() -> None:
    r = Redactor(["abcdefgh", "abcdefgh-ijkl", "short", "   \t\n      ", "  padded-secret \n"])
    assert r.text("abcdefgh-ijkl abcdefgh short") == "[REDACTED] [REDACTED] short"
    assert r.text("a padded-secret b") == "a [REDACTED] b"
    assert r.text("tab\t\t\t\t\t\t\t\t") == "tab\t\t\t\t\t\t\t\t"


def test_each_line_of_a_multiline_value_is_registered() -> None:
    first, second = fake("", 64, B64), fake("x", 64, B64)
    r = Redactor([f"{first}\n{second}\n"])
    assert r.text(f"line: {second}") == "line: [REDACTED]"


def test_with_values_returns_a_new_redactor() -> None:
    a, b = fake("a", 12), fake("b", 12)
    first = Redactor([a])
    both = first.with_values([b])
    assert first.text(b) == b
    assert both.text(f"{a} {b}") == "[REDACTED] [REDACTED]"
    assert a not in repr(both)


def test_a_single_string_is_refused_as_values() -> None:
    with pytest.raises(TypeError):
        Redactor("a-secret-value")
    with pytest.raises(TypeError):
        DEFAULT.with_values("a-secret-value")


def test_json_redacts_keys_values_and_secret_looking_keys() -> None:
    secret = fake("", 16)
    data = {
        "env": {"GITHUB_TOKEN": "anything", "REDIS_PASSWORD": "", "PATH": "/usr/bin"},
        "args": ("--token", secret, 3, None, True),
        f"key-{secret}": [f"echo {secret}", {"apiKey": "k", "client_secret": "s"}],
        "Authorization": ["not", "a", "string"],
        "headers": {"authorization": "Basic abc", "max_tokens": 4096, "tokens": "12"},
        "creds": {"SecretAccessKey": "x" * 40, "SessionToken": "y" * 50, "AccessKeyId": "z"},
        "blob": secret.encode(),
    }
    assert Redactor([secret]).json(data) == {
        "env": {"GITHUB_TOKEN": MASK, "REDIS_PASSWORD": "", "PATH": "/usr/bin"},
        "args": ("--token", MASK, 3, None, True),
        f"key-{MASK}": [f"echo {MASK}", {"apiKey": MASK, "client_secret": MASK}],
        "Authorization": ["not", "a", "string"],
        "headers": {"authorization": MASK, "max_tokens": 4096, "tokens": "12"},
        "creds": {"SecretAccessKey": MASK, "SessionToken": MASK, "AccessKeyId": "z"},
        "blob": MASK.encode(),
    }
    assert data["env"] == {"GITHUB_TOKEN": "anything", "REDIS_PASSWORD": "", "PATH": "/usr/bin"}


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("DB_PASSWORD", True),
        ("GITHUB_TOKEN", True),
        ("accessToken", True),
        ("api_key", True),
        ("x-api-key", True),
        ("ApiKey", True),
        ("private_key", True),
        ("credentials", True),
        ("Authorization", True),
        ("max_tokens", False),
        ("token_count", False),
        ("secrets", False),
        ("password_policy", False),
        ("path", False),
    ],
)
def test_secret_key(key: str, secret: bool) -> None:
    assert secret_key(key) is secret


def test_secret_values_picks_secret_looking_and_named_variables() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/dev",
        "PWD": "/home/dev/ws",
        "MAX_TOKENS": "4096",
        "TOKENIZERS_PARALLELISM": "false",
        "GITHUB_TOKEN": "v-github",
        "AWS_ACCESS_KEY_ID": "v-key-id",
        "AWS_SECRET_ACCESS_KEY": "v-aws-secret",
        "AWS_SESSION_TOKEN": "v-session",
        "CLIENT_SECRET": "v-client",
        "REDIS_PASSWORD": "v-redis",
        "ANTHROPIC_API_KEY": "v-anthropic",
        "DEPLOY_PRIVATE_KEY": "v-deploy",
        "GCP_CREDENTIALS": "v-gcp",
        "github_token": "v-github",
        "EMPTY_TOKEN": "",
        "MY_DSN": "v-dsn",
    }
    assert secret_values(env, names=["MY_DSN", "NOT_SET"]) == [
        "v-github",
        "v-key-id",
        "v-aws-secret",
        "v-session",
        "v-client",
        "v-redis",
        "v-anthropic",
        "v-deploy",
        "v-gcp",
        "v-dsn",
    ]


def test_a_megabyte_of_ordinary_text_is_fast() -> None:
    line = "2024-05-01T12:00:00Z INFO step build: ran `pytest -q` in /ws (exit 0, 3.2 s)\n"
    text = line * (1_000_000 // len(line))
    r = Redactor([fake(str(i), 32) for i in range(20)])
    elapsed = []
    for _ in range(3):
        start = time.perf_counter()
        assert r.text(text) == text
        elapsed.append(time.perf_counter() - start)
    # About 0.02 s; a shape regex that no longer skips to candidate characters takes 0.3 s.
    assert min(elapsed) < 0.15


# Property tests: arbitrary text, registered values and token shapes mixed together.

# A registered secret is not made of mask text: masks are a fixed vocabulary.
MASK_TEXT = " ".join(f"[REDACTED:{kind}]" for kind, _, _ in SHAPES)
secrets_ = st.text(min_size=8, max_size=40).filter(
    lambda s: s.strip() == s and not {"[", "]"} & set(s) and s not in MASK_TEXT
)
TOKENS = [AWS_KEY_ID, AWS_SECRET, GITHUB_PAT, JWT, PEM, fake("sk-" + "proj-", 40), PEM[-30:]]
fragments = st.one_of(
    st.text(max_size=30),
    st.sampled_from([text for _, text, _ in SHAPES] + ORDINARY + TOKENS),
    st.sampled_from(["://", "u:", "@h", "-", "_", "/", " ", "Authorization: ", "Bearer "]),
    st.sampled_from(
        [MASK, "[REDACTED:jwt]", "SecretAccessKey=", "-----BEGIN EC " + "PRIVATE KEY-----"]
    ),
)
texts = st.lists(fragments, max_size=8).map("".join)


@given(texts, st.lists(secrets_, max_size=3))
def test_redaction_is_idempotent(text: str, values: list[str]) -> None:
    r = Redactor(values)
    once = r.text(text)
    assert r.text(once) == once


@given(texts, texts, secrets_)
def test_no_registered_secret_survives(before: str, after: str, secret: str) -> None:
    redacted = Redactor([secret]).text(before + secret + after)
    assert secret not in redacted
