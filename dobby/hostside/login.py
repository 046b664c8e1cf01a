"""The host user's login environment, read afresh by every launch and every host probe.

A tmux server keeps the environment it started with and gives it to every new session: a key
exported in ``~/.profile`` or ``~/.bashrc`` after the server started would never reach a task.
So run.sh (and the probes, so that they see the PATH tasks see) first runs the user's login
shell — ``bash -lic``, interactive so that Debian's ``~/.bashrc`` goes on past its
``case $- in *i*`` guard — from an empty environment, and adopts what it exports: values the
profile files set win over whatever the tmux server remembered, and the inventory ``env``
(sourced after) wins over both.

The login shell runs with no terminal (``setsid``, all of stdin/stdout/stderr away from the
tty; without ``setsid`` it is a plain login shell, which an interactive one without a terminal
would stop itself in), under ``timeout``; its exports come back on descriptor 3, so whatever
the rc files print is dropped. When it fails, the task keeps the environment it has and
err.log says why.
"""

from __future__ import annotations

LOGIN_TIMEOUT_S = 20
# Not the user's: the terminal's and tmux's own, the shell's bookkeeping, and the hub's secrets
# (a hub key exported in the hub user's ~/.bashrc must not reach a local task).
DROPPED = (
    "PWD", "OLDPWD", "SHLVL", "_", "TERM", "TMUX", "TMUX_PANE", "PS1", "PS2", "PROMPT_COMMAND",
    "SSH_TTY", "DOBBY_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET",
)  # fmt: skip
_KEPT = ("HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def render_capture() -> str:
    """Return a command printing ``export -p`` of the user's login shell (nothing on failure)."""
    inner = f"unset -v {' '.join(DROPPED)} 2>/dev/null; export -p >&3"
    return (
        "(cd ~ 2>/dev/null; exec 3>&1 </dev/null >/dev/null 2>&1; "
        f"keep=(); for n in {' '.join(_KEPT)}; do "
        '[ -n "${!n+x}" ] && keep+=("$n=${!n}"); done; '
        "if command -v setsid >/dev/null 2>&1; then login=(setsid bash -lic); "
        "else login=(bash -lc); fi; "
        f'exec env -i "${{keep[@]}}" TERM=dumb timeout -k 2 {LOGIN_TIMEOUT_S} '
        f"\"${{login[@]}}\" '{inner}')"
    )


def render_adopt(*, err_file: str | None = None) -> str:
    """Return the lines that adopt the login environment in the current shell.

    ``err_file`` (already shell-quoted) gets one line when the login shell fails.
    """
    note = (
        f'echo "dobby: the login environment of $(id -un) could not be read (bash exited '
        f"$dobby_rc); the task runs with the tmux server's\" >>{err_file}"
        if err_file
        else ":"
    )
    return (
        f"dobby_login=$( {render_capture()} ); dobby_rc=$?\n"
        'if [ "$dobby_rc" = 0 ] && [ -n "$dobby_login" ]; then '
        'eval "$dobby_login" 2>/dev/null; '
        f"else {note}; fi\n"
        "unset dobby_login dobby_rc\n"
    )
