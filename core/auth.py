"""Who may open the app: nobody asked (one person on localhost), the shared password, or accounts; plus the
slowing down of repeated wrong passwords and the expiry of signed-in sessions.

Kept free of Streamlit so the rules are testable on their own; ``app.py`` only draws the prompts. When the
server's workspace has accounts (core.accounts) they decide, and the shared password is not asked.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from core import accounts
from core.errors import UserError

if TYPE_CHECKING:
    from core.store import Store

PASSWORD_ENV = "NEGSPACE_PASSWORD"
PASSWORD_SECRET = "password"
LOGIN_DELAY_ENV = "NEGSPACE_LOGIN_DELAY_S"  # the first wait after FREE_FAILURES wrong passwords, doubling after
SESSION_IDLE_ENV = "NEGSPACE_SESSION_IDLE_H"  # hours without a page run before a session must sign in again
FREE_FAILURES = 3
MAX_DELAY_S = 900.0
DEFAULT_IDLE_H = 12.0
WRONG = "Wrong account name or password."


def configured_password(environ: Mapping[str, str] | None = None,
                        secrets: Mapping[str, object] | None = None) -> str | None:
    """The password the app must ask for: $NEGSPACE_PASSWORD first, then the ``password`` secret; None = open.

    An empty value counts as not set, so exporting an empty variable never locks everyone out with "".
    """
    environ = os.environ if environ is None else environ
    value = environ.get(PASSWORD_ENV) or (secrets or {}).get(PASSWORD_SECRET)
    return str(value) if value else None


def check_password(given: str | None, expected: str) -> bool:
    """Constant-time comparison of UTF-8 bytes, so response time leaks nothing about the password."""
    return hmac.compare_digest((given or "").encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _env_float(name: str, default: float, environ: Mapping[str, str] | None) -> float:
    raw = (os.environ if environ is None else environ).get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"${name} must be a number of {'hours' if name == SESSION_IDLE_ENV else 'seconds'}, "
                        f"not {raw!r}") from None
    if not value > 0:
        raise UserError(f"${name} must be positive, not {raw!r}")
    return value


class TooManyAttempts(UserError):
    """Sign-in refused without checking the password: too many wrong ones lately."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"Too many wrong passwords: try again in {max(1, round(seconds))} s.")


class Throttle:
    """Wrong passwords per key (an account name, a client address): after ``free`` in a row, the next try is
    refused until ``base_s`` has passed, doubling with each further failure (at most MAX_DELAY_S); a success
    clears its keys. Kept in memory: a restarted server forgives, which costs an attacker a restart they cannot
    cause."""

    def __init__(self, base_s: float, free: int = FREE_FAILURES, clock: Callable[[], float] = time.monotonic):
        self.base_s, self.free, self.clock = base_s, free, clock
        self._failures: dict[Hashable, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` wrong passwords in a row."""
        if failures < self.free:
            return 0.0
        return min(MAX_DELAY_S, self.base_s * 2 ** (failures - self.free))

    def wait(self, keys: list[Hashable]) -> float:
        """Seconds before all of ``keys`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [last + self.delay(count) - now for count, last in
                     (self._failures[key] for key in keys if key in self._failures)]
        return max([0.0, *waits])

    def failed(self, keys: list[Hashable]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                count, _ = self._failures.get(key, (0, now))
                self._failures[key] = (count + 1, now)
            if len(self._failures) > 10_000:  # made-up names must not grow memory without bound
                stale = [k for k, (_, last) in self._failures.items() if now - last > 2 * MAX_DELAY_S]
                for key in stale:
                    del self._failures[key]

    def succeeded(self, keys: list[Hashable]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


_THROTTLE: Throttle | None = None


def throttle(environ: Mapping[str, str] | None = None) -> Throttle:
    """The process's throttle (one for every session of the server), its first delay from $NEGSPACE_LOGIN_DELAY_S."""
    global _THROTTLE
    if _THROTTLE is None:
        _THROTTLE = Throttle(_env_float(LOGIN_DELAY_ENV, 1.0, environ))
    return _THROTTLE


def _attempt(keys: list[Hashable], check: Callable[[], bool], limiter: Throttle | None) -> None:
    limiter = limiter or throttle()
    if (wait := limiter.wait(keys)) > 0:
        raise TooManyAttempts(wait)
    if not check():
        limiter.failed(keys)
        raise UserError(WRONG if any(key[0] == "account" for key in keys) else "Wrong password.")
    limiter.succeeded(keys)


def enter_shared_password(given: str | None, expected: str, client: str | None,
                          limiter: Throttle | None = None) -> None:
    """Check the shared password, slowed down per client address; UserError when wrong or too soon."""
    _attempt([("client", client)], lambda: check_password(given, expected), limiter)


def sign_in(store: Store, name: str, password: str, client: str | None,
            limiter: Throttle | None = None) -> accounts.Account:
    """The account whose password this is, slowed down per account name and per client address."""
    found: list[accounts.Account] = []

    def check() -> bool:
        account = accounts.verify(store, name, password)
        found.extend([account] if account else [])
        return account is not None
    _attempt([("account", name), ("client", client)], check, limiter)
    return found[0]


@dataclass(frozen=True)
class Session:
    """A signed-in browser session: whose, since which password, and when it was last used (time.time())."""

    name: str
    password_changed_at: str
    last_seen: float


def idle_limit_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a session may sit unused: $NEGSPACE_SESSION_IDLE_H hours (default 12)."""
    return _env_float(SESSION_IDLE_ENV, DEFAULT_IDLE_H, environ) * 3600


def start_session(account: accounts.Account, now: float | None = None) -> Session:
    return Session(account.name, account.password_changed_at, time.time() if now is None else now)


def resume(store: Store, session: Session, now: float | None = None,
           idle_s: float | None = None) -> tuple[accounts.Account, Session] | None:
    """The session's account (re-read, so a role change applies at once) and the session marked as used now, or
    None when it must sign in again: idle too long, the account removed, or its password changed since."""
    now = time.time() if now is None else now
    if now - session.last_seen > (idle_limit_s() if idle_s is None else idle_s):
        return None
    account = accounts.get(store, session.name)
    if account is None or account.password_changed_at != session.password_changed_at:
        return None
    return account, replace(session, last_seen=now)
