"""Sign-in for a team: with an `[auth]` section in `.streamlit/secrets.toml`, `st.login` (OpenID Connect)
names the annotator and <workspace>/team.toml (ches.review.allowlist) gives the role. Without it, nothing here
applies: people type a name and may do everything (`can` is always True).

`gate()` runs first on every page (ui.frame): not signed in, it shows the sign-in button; signed in but not on
the team, it says so; either way the page stops before the sidebar draws the page links.
`can(action)` disables what the role does not allow (Score, Delete a run, Export, adjudicate) and
`refuse(action)` says why.
"""
from __future__ import annotations

import streamlit as st

from ches.review import allowlist
from ches.workspace import workspace
from ui.render import escape_md


def enabled() -> bool:
    """True when the app signs people in: secrets.toml has an [auth] section."""
    try:
        return "auth" in st.secrets
    except Exception:                       # no secrets file at all (Streamlit raises its own error type)
        return False


def _user_ids() -> tuple[str | None, str | None]:
    user = st.user
    return (str(user.get("email")) if user.get("email") else None,
            str(user.get("sub")) if user.get("sub") else None)


def member() -> allowlist.Member | None:
    """The signed-in user's team entry; None when signed out, not on the team, or sign-in is off."""
    if not enabled() or not st.user.is_logged_in:
        return None
    email, subject = _user_ids()
    return allowlist.load_team(workspace().root / allowlist.TEAM_FILE).find(email=email, subject=subject)


def identity() -> str:
    """The signed-in member's name (recorded with decisions), "" when sign-in is off or nobody is in."""
    found = member()
    return found.name if found is not None else ""


def can(action: str) -> bool:
    """Whether this session may do `action` (ches.review.allowlist.PERMISSIONS); always True without sign-in."""
    return True if not enabled() else allowlist.can(member(), action)


def refuse(action: str) -> str | None:
    """Why this session may not do `action` (a tooltip / message), or None when it may."""
    if can(action):
        return None
    found = member()
    who = f"{found.name} is {found.role}" if found is not None else "nobody is signed in"
    return f"Only an admin may do this ({who}; roles are set in {allowlist.TEAM_FILE})."


def gate() -> None:
    """Before every page: with sign-in on, stop here unless a team member is signed in."""
    if not enabled():
        return
    if not st.user.is_logged_in:
        st.title("CHES Studio")
        st.info("This workspace is shared by a team: sign in to review pairs.", icon=":material/lock:")
        st.button("Sign in", key="auth_login", type="primary", icon=":material/login:", on_click=st.login)
        st.stop()
    try:
        found = member()
    except allowlist.TeamError as e:
        st.error(f"The team list cannot be read: {e}", icon=":material/error:")
        st.stop()
    if found is None:
        email, subject = _user_ids()
        st.title("CHES Studio")
        st.warning(f"You are signed in as {escape_md(email or subject or '?')}, who is not on this workspace's team "
                   f"({allowlist.TEAM_FILE}). Ask an admin to add you.", icon=":material/person_off:")
        st.button("Sign out", key="auth_logout", on_click=st.logout, icon=":material/logout:")
        st.stop()


def sidebar() -> None:
    """Who is signed in, their role, and Sign out (in the sidebar; only with sign-in on)."""
    found = member()
    if found is None:
        return
    st.markdown(f":material/person: **{escape_md(found.name)}** · {found.role}")
    st.button("Sign out", key="auth_sidebar_logout", on_click=st.logout, icon=":material/logout:")
