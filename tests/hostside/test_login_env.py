"""The login environment a launch adopts: run for real with bash, on a Debian-shaped home."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from dobby.hostside.login import CACHE_TTL_S, render_adopt

SKEL = Path("/etc/skel")
GUARD = "# If not running interactively, don't do anything\n"


def debian_home(home: Path, *, above: str = "", below: str = "", profile: str = "") -> Path:
    """Write Debian's .bashrc/.profile into home, with lines above/below the bashrc's guard."""
    home.mkdir(parents=True, exist_ok=True)
    bashrc = (SKEL / ".bashrc").read_text()
    assert GUARD in bashrc  # the shape the test is about: `case $- in *i*) ;; *) return;; esac`
    bashrc = bashrc.replace(GUARD, above + GUARD, 1) + below
    (home / ".bashrc").write_text(bashrc)
    (home / ".profile").write_text((SKEL / ".profile").read_text() + profile)
    return home


def run_adopting(
    home: Path, script: str, *, cache: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    err = home / "err.log"
    body = render_adopt(err_file=str(err), cache=str(cache) if cache else None) + script
    base = {"HOME": str(home), "PATH": "/usr/bin:/bin", "USER": "root", **env}
    return subprocess.run(
        ["bash", "-c", body], capture_output=True, text=True, env=base, timeout=60, check=False
    )


def test_profile_and_both_halves_of_bashrc_arrive_and_win_over_stale_values(
    tmp_path: Path,
) -> None:
    home = debian_home(
        tmp_path / "home",
        above="export CRED_ABOVE='above guard'\necho noise-on-stdout\n",
        below='export CRED_BELOW="below $CRED_ABOVE"\nexport STALE=fresh\n',
        profile="export CRED_PROFILE='with \"quotes\" and $dollar'\n",
    )
    done = run_adopting(
        home,
        'printf "%s|%s|%s|%s|%s|%s\\n" "$CRED_ABOVE" "$CRED_BELOW" "$CRED_PROFILE" "$STALE" '
        '"$KEPT" "${DOBBY_API_KEY-unset}"',
        STALE="old", KEPT="from tmux", DOBBY_API_KEY="hub-secret",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        'above guard|below above guard|with "quotes" and $dollar|fresh|from tmux|hub-secret\n'
    )
    assert not (home / "err.log").exists()


def test_a_hub_secret_in_the_users_rc_is_not_adopted(tmp_path: Path) -> None:
    home = debian_home(tmp_path / "home", below="export DOBBY_API_KEY=leaked\n")
    done = run_adopting(home, 'printf "%s\\n" "${DOBBY_API_KEY-unset}"')
    assert done.stdout == "unset\n"


def test_a_failing_login_shell_leaves_the_env_and_says_why(tmp_path: Path) -> None:
    home = debian_home(tmp_path / "home", profile="exit 3\n")
    done = run_adopting(home, 'printf "%s\\n" "$KEPT"', KEPT="as before")
    assert done.returncode == 0 and done.stdout == "as before\n"
    note = (home / "err.log").read_text()
    assert "the login environment of" in note and "(bash exited 3)" in note


# -- the cache launches keep between them ---------------------------------------------------
COUNTED = 'echo run >>"$HOME/logins"\n'  # the profile notes each time a login shell reads it


def logins(home: Path) -> int:
    path = home / "logins"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_cache_spares_the_login_shell_and_gives_the_same_env(tmp_path: Path) -> None:
    home = debian_home(tmp_path / "home", profile=COUNTED + "export CRED='a \"b\" $c'\n")
    cache = tmp_path / "login.env"
    first = run_adopting(home, 'printf "%s\\n" "$CRED"', cache=cache)
    again = run_adopting(home, 'printf "%s\\n" "$CRED"', cache=cache)
    assert first.stdout == again.stdout == 'a "b" $c\n', (first.stderr, again.stderr)
    assert logins(home) == 1
    assert cache.stat().st_mode & 0o777 == 0o600  # it holds the user's exported secrets


def test_an_edited_profile_reaches_the_next_launch_at_once(tmp_path: Path) -> None:
    home = debian_home(tmp_path / "home", profile=COUNTED + "export CRED=old\n")
    cache = tmp_path / "login.env"
    run_adopting(home, "true", cache=cache)
    profile = home / ".profile"
    profile.write_text(profile.read_text() + "export CRED=new\n")
    later = cache.stat().st_mtime + 1  # newer than the cache, whatever the clock's grain
    os.utime(profile, (later, later))
    done = run_adopting(home, 'printf "%s\\n" "$CRED"', cache=cache)
    assert done.stdout == "new\n" and logins(home) == 2


def test_a_cache_older_than_its_ttl_is_read_again(tmp_path: Path) -> None:
    home = debian_home(tmp_path / "home", profile=COUNTED)
    cache = tmp_path / "login.env"
    run_adopting(home, "true", cache=cache)
    header, rest = cache.read_text().split("\n", 1)
    old = int(time.time()) - CACHE_TTL_S - 5
    cache.write_text(f"#{old}\n{rest}")
    os.utime(cache, (old, old))  # the rc files stay older than it
    for rc in (home / ".profile", home / ".bashrc"):
        os.utime(rc, (old - 10, old - 10))
    run_adopting(home, "true", cache=cache)
    assert logins(home) == 2 and header.startswith("#")


def test_a_failing_login_shell_writes_no_cache(tmp_path: Path) -> None:
    home = debian_home(tmp_path / "home", profile="exit 3\n")
    cache = tmp_path / "login.env"
    done = run_adopting(home, 'printf "%s\\n" "$KEPT"', cache=cache, KEPT="as before")
    assert done.stdout == "as before\n" and not cache.exists()
    assert "(bash exited 3)" in (home / "err.log").read_text()
