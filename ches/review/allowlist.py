"""The team allowlist for sign-in: who may use the app and with which role, read from <workspace>/team.toml.

Only used when the app signs people in (an `[auth]` section in `.streamlit/secrets.toml`, see docs/team-admin.md,
"Sign-in for a team"); without sign-in everyone may do everything and types a name. The file:

    [[member]]
    email = "ada@example.org"      # the identity provider's `email` claim, or
    subject = "248289761001"       # its `sub` claim (either one, or both: both must then match)
    name = "Ada"                   # optional: the name recorded with decisions (default: the email / subject)
    role = "admin"                 # admin | annotator

Roles (`can`): an annotator decides; an admin also scores, deletes runs, exports and adjudicates.
Nobody outside the list gets in: a missing file is an empty team.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ADMIN, ANNOTATOR = "admin", "annotator"
ROLES = (ADMIN, ANNOTATOR)
PERMISSIONS: dict[str, frozenset[str]] = {           # action -> the roles allowed to do it
    "decide": frozenset({ADMIN, ANNOTATOR}),
    "score": frozenset({ADMIN}),
    "delete_run": frozenset({ADMIN}),
    "export": frozenset({ADMIN}),
    "adjudicate": frozenset({ADMIN}),
}
TEAM_FILE = "team.toml"
_KEYS = {"email", "subject", "name", "role"}


class TeamError(ValueError):
    """team.toml cannot be read or one of its entries is wrong (the message names the entry)."""


@dataclass(frozen=True)
class Member:
    email: str | None
    subject: str | None
    name: str            # recorded with this member's decisions
    role: str            # one of ROLES

    def matches(self, email: str | None, subject: str | None) -> bool:
        """Every identifier this entry gives equals the signed-in user's (emails compared case-blind)."""
        if self.email is not None and (email or "").strip().lower() != self.email:
            return False
        return self.subject is None or (subject or "") == self.subject


@dataclass(frozen=True)
class Team:
    members: tuple[Member, ...] = ()

    def find(self, *, email: str | None, subject: str | None) -> Member | None:
        """The entry for a signed-in user (by email and / or subject), or None: not on the team."""
        return next((m for m in self.members if m.matches(email, subject)), None)


def _text(entry: dict, key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TeamError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value.strip()


def parse_team(text: str, source: str = TEAM_FILE) -> Team:
    """A Team from team.toml's text; TeamError names the first wrong entry (1-based)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TeamError(f"{source}: not valid TOML ({e})") from None
    unknown = set(data) - {"member"}
    if unknown:
        raise TeamError(f"{source}: unknown section(s) {sorted(unknown)}; expected [[member]] entries")
    entries = data.get("member", [])
    if not isinstance(entries, list):
        raise TeamError(f"{source}: 'member' must be a list of [[member]] tables")
    members = []
    for i, entry in enumerate(entries, 1):
        where = f"{source}, member {i}"
        if not isinstance(entry, dict):
            raise TeamError(f"{where}: expected a table")
        if extra := set(entry) - _KEYS:
            raise TeamError(f"{where}: unknown key(s) {sorted(extra)}; expected {sorted(_KEYS)}")
        email, subject = _text(entry, "email", where), _text(entry, "subject", where)
        if email is None and subject is None:
            raise TeamError(f"{where}: give an 'email' or a 'subject'")
        role = entry.get("role")
        if role not in ROLES:
            raise TeamError(f"{where}: 'role' must be one of {ROLES}, got {role!r}")
        email = email.lower() if email else None
        name = _text(entry, "name", where) or email or subject
        if any(m.name == name[:100] for m in members):          # a name is who decided: it must be one person
            raise TeamError(f"{where}: the name {name[:100]!r} is already another member's; give each a name of "
                            "their own")
        members.append(Member(email=email, subject=subject, name=name[:100], role=role))
    return Team(tuple(members))


def load_team(path: str | Path) -> Team:
    """The team in `path` (team.toml); a missing file is an empty team (nobody is let in)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Team()
    except (OSError, UnicodeDecodeError) as e:
        raise TeamError(f"{path.name}: cannot be read ({e})") from None
    return parse_team(text, path.name)


def can(member: Member | None, action: str) -> bool:
    """Whether `member` may do `action` (a key of PERMISSIONS); nobody (None) may do anything."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {sorted(PERMISSIONS)}")
    return member is not None and member.role in PERMISSIONS[action]
