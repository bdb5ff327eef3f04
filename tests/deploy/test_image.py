"""docker/Dockerfile builds a small, non-root bcce image (read here: no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def args() -> dict[str, str]:
    return dict(rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG")


def test_image_is_multi_stage_on_python_3_11_slim() -> None:
    stages = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) >= 2
    base = final_stage()[0][1].split()[0]
    assert base.replace("${PYTHON_IMAGE}", args().get("PYTHON_IMAGE", "")) == "python:3.11-slim"


def test_entrypoint_is_bcce_under_an_init_and_help_by_default() -> None:
    steps = dict(final_stage())
    entrypoint = json.loads(steps["ENTRYPOINT"])
    assert entrypoint[-1] == "bcce"
    assert entrypoint[0].endswith("tini") and entrypoint[1] == "--"
    assert json.loads(steps["CMD"]) == ["--help"]


def test_image_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(rest for keyword, rest in final_stage() if keyword == "RUN")
    assert re.search(rf"useradd\b.*--uid {re.escape(user)}\b", created) or user.isalpha()


def test_image_installs_bcce_with_the_agent_extra_and_has_git_and_tini() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    # The agent extra brings the Claude Agent SDK, which bundles the Claude Code CLI.
    assert re.search(r"""pip install (?:\S+ )*["']?\.\[agent\]["']?(?:\s|$)""", runs), runs
    assert "[dev]" not in runs
    final_runs = " ".join(rest for keyword, rest in final_stage() if keyword == "RUN")
    assert re.search(r"apt-get install .*\bgit\b", final_runs)
    assert re.search(r"apt-get install .*\btini\b", final_runs)


def test_dockerignore_keeps_out_local_state_but_not_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".venv", ".git", ".bcce_runs", "tests", ".mypy_cache", ".pytest_cache"):
        assert needed in patterns, needed
    copied = [
        source
        for keyword, rest in instructions()
        if keyword == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    ]
    assert {"pyproject.toml", "README.md", "bcce", "workers"} <= set(copied)
    for source in copied:
        assert not any(fnmatch.fnmatch(source, p) for p in patterns), source
