"""The host user's login environment, adopted by every launch and read afresh by every probe.

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

A login shell costs what the user's rc files cost: a ``pyenv init``/``nvm``/``conda`` profile
spends 100+ ms of CPU forking helpers, more than everything else a launch does. So launches
keep what it exported in a cache file (0600, in the host's work dir) and reuse it for
:data:`CACHE_TTL_S` seconds, unless one of the :data:`WATCHED` files changed since: an edit to
``~/.profile`` or ``~/.bashrc`` reaches the next task at once; a change only in a file those
source reaches tasks within the TTL. The check is builtins only (``-nt``, ``printf %(%s)T``):
no fork while the cache holds.
"""

from __future__ import annotations

LOGIN_TIMEOUT_S = 20
# Not the user's: the terminal's and tmux's own, the shell's bookkeeping, and the hub's secrets
# (a hub key exported in the hub user's ~/.bashrc must not reach a local task).
DROPPED = (
    "PWD", "OLDPWD", "SHLVL", "_", "TERM", "TMUX", "TMUX_PANE", "PS1", "PS2", "PROMPT_COMMAND",
    "SSH_TTY", "DOBBY_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET",
)  # fmt: skip
CACHE_TTL_S = 60
WATCHED = (
    "/etc/profile", "/etc/bash.bashrc", "/etc/profile.d", "$HOME/.bash_profile",
    "$HOME/.bash_login", "$HOME/.profile", "$HOME/.bashrc",
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


def render_adopt(
    *, err_file: str | None = None, cache: str | None = None, ttl: int = CACHE_TTL_S
) -> str:
    """Return the lines that adopt the login environment in the current shell.

    ``err_file`` (already shell-quoted) gets one line when the login shell fails. ``cache``
    (already shell-quoted): the file that keeps the exports between launches (see the module),
    used while younger than ``ttl`` seconds.
    """
    note = (
        f'echo "dobby: the login environment of $(id -un) could not be read (bash exited '
        f"$dobby_rc); the task runs with the tmux server's\" >>{err_file}"
        if err_file
        else ":"
    )
    save = ""
    if cache is not None:
        # Written beside and renamed: a launch reading it meanwhile never sees half of it.
        save = (
            f'  (umask 077; printf \'#%s\\n%s\\n\' "$dobby_now" "$dobby_login" >{cache}.$$ &&'
            f" mv -f {cache}.$$ {cache}) 2>/dev/null\n"
        )
    fresh = (
        f"dobby_login=$( {render_capture()} ); dobby_rc=$?\n"
        'if [ "$dobby_rc" = 0 ] && [ -n "$dobby_login" ]; then eval "$dobby_login" 2>/dev/null\n'
        f"{save}else {note}; fi\n"
    )
    if cache is None:
        return fresh + "unset dobby_login dobby_rc\n"
    changed = " || ".join(f'[ "{path}" -nt {cache} ]' for path in WATCHED)
    return (
        # The first line of the cache is "#<epoch seconds it was written>".
        "dobby_login=\n"
        f"if [ -s {cache} ] && printf -v dobby_now '%(%s)T' -1 2>/dev/null; then\n"
        f"  IFS= read -r dobby_at <{cache}; dobby_at=${{dobby_at#\\#}}\n"
        "  case $dobby_at in ''|*[!0-9]*) dobby_at=0;; esac\n"
        "  dobby_at=$((dobby_now - dobby_at))\n"  # its age in seconds
        f"  if [ $dobby_at -ge 0 ] && [ $dobby_at -lt {int(ttl)} ] && ! {{ {changed}; }}; then\n"
        f"    IFS= read -r -d '' dobby_login <{cache}\n"
        "  fi\n"
        "fi\n"
        'if [ -n "$dobby_login" ]; then eval "$dobby_login" 2>/dev/null\n'
        "else\n"
        "printf -v dobby_now '%(%s)T' -1 2>/dev/null || dobby_now=0\n"
        f"{fresh}"
        "fi\n"
        "unset dobby_login dobby_rc dobby_now dobby_at\n"
    )
