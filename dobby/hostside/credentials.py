"""The probe of each agent CLI's credentials on a host: which sources exist, never their values.

It spends no tokens: it looks at the variables and files each CLI reads (and asks ``codex login
status``, which reads ``auth.json``), with the login and inventory environment a task gets.
Every fact is a name or a 0/1: no secret ever leaves the host.
"""

from __future__ import annotations

CLAUDE_VARS = (
    "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY",
)  # fmt: skip
CODEX_VARS = ("OPENAI_API_KEY", "CODEX_API_KEY")

_CODEX_ENV_KEY = (
    r"s/^[[:space:]]*env_key[[:space:]]*=[[:space:]]*[\"']\([A-Za-z_][A-Za-z0-9_]*\)[\"'].*/\1/p"
)


def render_credentials() -> str:
    """Return probe lines printing ``cred_*`` facts (run after the env is applied)."""
    names = " ".join(CLAUDE_VARS + CODEX_VARS)
    return "\n".join(
        [
            f'set_vars=""; for n in {names}; do [ -n "${{!n:-}}" ] && set_vars="$set_vars,$n"; '
            'done; printf "cred_vars=%s\\n" "${set_vars#,}"',
            'c="${CLAUDE_CONFIG_DIR:-$HOME/.claude}"',
            'printf "cred_claude_file=%s\\n" '
            '"$([ -s "$c/.credentials.json" ] && echo 1 || echo 0)"',
            'printf "cred_claude_helper=%s\\n" "$(grep -qs \'"apiKeyHelper"\' "$c/settings.json" '
            '&& echo 1 || echo 0)"',
            # macOS keeps claude's login in the Keychain; find-generic-password without -w/-g
            # prints no secret.
            'k=0; [ "$(uname -s)" = Darwin ] && security find-generic-password -s '
            '"Claude Code-credentials" >/dev/null 2>&1 && k=1; '
            'printf "cred_claude_keychain=%s\\n" "$k"',
            'x="${CODEX_HOME:-$HOME/.codex}"',
            'printf "cred_codex_file=%s\\n" "$([ -s "$x/auth.json" ] && echo 1 || echo 0)"',
            # A custom model provider in config.toml names the variable holding its key.
            'keys=""; for n in $(sed -n "' + _CODEX_ENV_KEY + '" "$x/config.toml" 2>/dev/null); '
            'do if [ -n "${!n:-}" ]; then keys="$keys,$n:1"; else keys="$keys,$n:0"; fi; done; '
            'printf "cred_codex_env_keys=%s\\n" "${keys#,}"',
            "if command -v codex >/dev/null 2>&1; then "
            "s=$(timeout 15 codex login status </dev/null 2>&1); r=$?; "
            'case "$s" in *"Logged in using ChatGPT"*) m=chatgpt;; '
            '*"Logged in using an API key"*|*"Logged in using API key"*) m=api_key;; '
            '*"Not logged in"*) m=none;; *) m=unknown;; esac; '
            'printf "cred_codex_login=%s\\ncred_codex_login_rc=%s\\n" "$m" "$r"; fi',
        ]
    )
