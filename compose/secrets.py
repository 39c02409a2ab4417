"""Make the Docker stack's secrets, once (chapter 14):

    python -m compose.secrets          # from the repository's root

writes one file per secret into .secrets/compose/ (git-ignored), which
docker-compose.yml hands to the services that use them as /run/secrets/NAME:

    django_secret_key    Django's SECRET_KEY                       web, worker, beat
    postgres_password    the database user "course"                db, web, worker, beat
    redis_password       the Redis user "celery" (ACL)             redis, web, worker, beat, Flower
    flower_basic_auth    course:<password>, Flower's login         Flower

A file that exists is never overwritten (the database and the browsers keep
the old password); delete it to get a new one. The values are never printed:
`cat .secrets/compose/flower_basic_auth` shows Flower's login.

Modes: the files are 0644 and the directories .secrets/ and .secrets/compose/
0700. Compose without Swarm bind-mounts a secret file as it is (its owner and
mode; the uid/gid/mode options are ignored), and the services read theirs as
other users (10001 in our image, redis, postgres): so the files must be
readable by all, and the directories keep every other user of the host out.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: .secrets/ at the repository's root (shared with `make lab`'s local passwords).
DEFAULT_DIR = ROOT / ".secrets"
SUBDIR = "compose"
FLOWER_USER = "course"

#: name -> how to make its value. token_urlsafe: letters, digits, "-" and "_"
#: only, so the values go into URLs (redis://celery:PASSWORD@...) unescaped.
SECRETS = {
    # 50 bytes -> 67 characters: what `manage.py check --deploy` asks of a key.
    "django_secret_key": lambda: secrets.token_urlsafe(50),
    "postgres_password": lambda: secrets.token_urlsafe(32),
    "redis_password": lambda: secrets.token_urlsafe(32),
    "flower_basic_auth": lambda: f"{FLOWER_USER}:{secrets.token_urlsafe(24)}",
}

FILE_MODE = 0o644
DIR_MODE = 0o700


class SecretsError(RuntimeError):
    """A secret cannot be made or used: the message says what to do."""


def private_dir(path: Path) -> None:
    """``path`` as a directory of mode 0700 (made if missing, closed if looser)."""
    if path.exists() and not path.is_dir():
        raise SecretsError(f"{path} is not a directory: move it away and run this again.")
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        try:
            path.chmod(DIR_MODE)
        except PermissionError:
            raise SecretsError(f"{path} is not yours and not mode 0700: fix it (chmod 700 {path}).") from None


def make_secret(path: Path, make) -> str:
    """Create ``path`` with ``make()`` unless it exists; return what happened."""
    if path.is_dir():
        # `docker compose up` before this generator: the bind mount of a
        # missing file makes an empty directory in its place (owned by root).
        raise SecretsError(f"{path} is a directory, not a file (Docker makes one when a secret file is "
                           f"missing at `docker compose up`): remove it (sudo rmdir {path}) and run this again.")
    if path.exists():
        if not path.read_text(encoding="utf-8").strip():
            raise SecretsError(f"{path} is empty: delete it and run this again to make a new one.")
        if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            path.chmod(FILE_MODE)  # the containers' users must be able to read it
            return "kept (mode set to 0644)"
        return "kept"
    # Written under a temporary name, then linked to its own: another run at
    # the same time, or a crash half-way, never leaves a half-written secret.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return "kept"
    finally:
        tmp.unlink(missing_ok=True)
    return "created"


def ensure(root: Path = DEFAULT_DIR) -> dict[str, str]:
    """Make the missing secrets in ``root``/compose; {name: "created" | "kept"...}."""
    private_dir(root)
    folder = root / SUBDIR
    private_dir(folder)
    return {name: make_secret(folder / name, make) for name, make in SECRETS.items()}


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compose.secrets",
                                     description="Make the Docker stack's secret files (never overwrites one).")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help="the secrets folder; the files go into its compose/ (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        done = ensure(args.dir)
    except (SecretsError, OSError) as exc:
        print(f"compose.secrets: {exc}", file=sys.stderr)
        return 1
    folder = args.dir / SUBDIR
    for name, what in done.items():
        print(f"{shown(folder / name):45} {what}")
    print(f"Flower's login (user {FLOWER_USER}): cat {shown(folder / 'flower_basic_auth')}")
    return 0


if __name__ == "__main__":
    if not __package__:
        # `python compose/secrets.py`: then this file, not the standard
        # library's, is what `import secrets` finds.
        sys.exit("Run it as a module, from the repository's root: python -m compose.secrets")
    sys.exit(main())
