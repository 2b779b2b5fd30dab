"""`ches app [streamlit options]`: start the Streamlit app (`ches app --server.port 8600`: every argument goes
to `streamlit run`; a leading `--` is dropped, since after it Streamlit would hand the options to the app)."""
from __future__ import annotations

import argparse
import subprocess
import sys


def add_parsers(sub) -> None:
    # Every argument, options included, goes to streamlit run (`ches app --help` is its help): with the usual
    # prefix "-", argparse's REMAINDER refuses a leading option (`ches app --server.port 8600`); NUL is never in argv.
    a = sub.add_parser("app", help="start the Streamlit app (extra arguments go to streamlit run)",
                       prefix_chars="\0", add_help=False)
    a.add_argument("streamlit_args", nargs=argparse.REMAINDER)
    a.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from ches.workspace import bundled, streamlit_flags

    app = bundled("app.py")          # the checkout's, else the one `pip install .` shipped
    if not app.is_file():
        sys.exit(f"error: {app} is missing: reinstall with `pip install .`, or run `streamlit run app.py` in a checkout")
    settings = streamlit_flags(bundled(".streamlit/config.toml"))   # before the user's: the last flag given wins
    given = list(args.streamlit_args)
    if given[:1] == ["--"]:          # `ches app -- --server.port 8600`: streamlit would pass them to app.py unread
        given = given[1:]
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(app), *settings, *given])
