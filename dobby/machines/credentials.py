"""Does each agent CLI on a host have credentials? Read from the probe's facts (pure).

The facts come from :func:`dobby.hostside.credentials.render_credentials`: names of set
variables and 0/1 flags for credential files, never a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

README_SECTION = 'README "Giving hosts your agents\' credentials"'


def _vars(facts: Mapping[str, Any]) -> set[str]:
    return {name for name in str(facts.get("cred_vars") or "").split(",") if name}


def claude_credentials(facts: Mapping[str, Any]) -> tuple[bool, str]:
    """Return (found, what) for claude: the sources found, or what is missing and how to fix."""
    found = sorted(_vars(facts) & {
        "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY",
    })  # fmt: skip
    if facts.get("cred_claude_file") == "1":
        found.append("~/.claude/.credentials.json")
    if facts.get("cred_claude_helper") == "1":
        found.append("apiKeyHelper in ~/.claude/settings.json")
    if facts.get("cred_claude_keychain") == "1":
        found.append("the macOS Keychain")
    if found:
        return True, "credentials: " + ", ".join(found)
    return False, (
        "no credentials: none of ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN is set in the "
        "user's login environment or the inventory env, and there is no "
        "~/.claude/.credentials.json or apiKeyHelper: run `claude setup-token` somewhere and "
        f"set CLAUDE_CODE_OAUTH_TOKEN, or set ANTHROPIC_API_KEY (see {README_SECTION})"
    )


def codex_credentials(facts: Mapping[str, Any]) -> tuple[bool, str]:
    """Return (found, what) for codex: the sources found, or what is missing and how to fix."""
    found = sorted(_vars(facts) & {"OPENAI_API_KEY", "CODEX_API_KEY"})
    login = facts.get("cred_codex_login")
    if login == "chatgpt":
        found.append("codex login (ChatGPT)")
    elif login == "api_key":
        found.append("codex login (API key)")
    elif facts.get("cred_codex_file") == "1":
        found.append("~/.codex/auth.json")
    keys = [k for k in str(facts.get("cred_codex_env_keys") or "").split(",") if k]
    unset = [k.partition(":")[0] for k in keys if k.endswith(":0")]
    found += [f"{k.partition(':')[0]} (config.toml env_key)" for k in keys if k.endswith(":1")]
    if unset and not found:
        return False, (
            f"config.toml's model provider reads its key from {', '.join(unset)}, which is "
            f"not set in the user's login environment or the inventory env (see {README_SECTION})"
        )
    if found:
        return True, "credentials: " + ", ".join(dict.fromkeys(found))
    return False, (
        "no credentials: `codex login status` says not logged in, OPENAI_API_KEY is not set "
        "in the user's login environment or the inventory env: run `codex login` "
        "(`codex login --device-auth` on a machine without a browser) or set OPENAI_API_KEY "
        f"(see {README_SECTION})"
    )


CHECKS = {"claude": claude_credentials, "codex": codex_credentials}
