"""Encoding engines, declared once: the CLI's ``--engine`` choices and the app's picker are generated from here.

Every engine only fills the workspace's embedding cache; search, rules, risk and review read vectors from it
whichever engine wrote them.
"""

from __future__ import annotations

from core.errors import UserError

ENGINES: dict[str, str] = {
    "local": "encode in this process (default)",
    "ray": "encode on a Ray cluster (RAY_ADDRESS, or a local one), then mine from the filled cache",
}


def check_engine(engine: str) -> str:
    """``engine`` when it is declared; a one-line user error listing the engines otherwise."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r} (use {' or '.join(ENGINES)})")
    return engine
