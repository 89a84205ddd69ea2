"""Accounts of a team server: names, roles (core.roles) and passwords kept only as argon2id hashes.

An account's name is the annotator of its verdicts, so it follows the annotator-name rules (core.labels) and may
not take the ``llm:`` prefix of LLM judges. Passwords are hashed with argon2-cffi's defaults (argon2id, RFC 9106's
low-memory profile); a hash made with older parameters is replaced at the next sign-in. A password is never
stored, logged or echoed; an unknown name costs the same hashing as a wrong password, so timing does not tell
which names exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core import audit, labels, roles
from core.errors import UserError

if TYPE_CHECKING:
    from core.store import Store

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # hashing cost grows with length; nobody types more
HASHER = PasswordHasher()
_UNKNOWN = HASHER.hash("no such account")  # verified against when the name is unknown: same time as a wrong password


@dataclass(frozen=True)
class Account:
    """An account as everyone may see it: no hash. ``password_changed_at`` ends sessions from before a change."""

    name: str
    role: str
    created_at: str
    password_changed_at: str


def check_account_name(name: str) -> str:
    """An annotator name that is not an LLM judge's (``llm:…``)."""
    labels.check_annotator(name)
    if labels.is_llm(name):
        raise UserError(f"account names may not start with {labels.LLM_PREFIX!r} (reserved for LLM judges)")
    return name


def check_new_password(password: str) -> str:
    """A password long enough to resist guessing and short enough to hash quickly; any other character is fine."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"password too short: at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"password too long: at most {MAX_PASSWORD_CHARS} characters")
    if "\x00" in password or any(0xD800 <= ord(ch) <= 0xDFFF for ch in password):
        raise UserError("password must not contain NUL or undecodable bytes")
    return password


def _hash(password: str) -> str:
    return HASHER.hash(check_new_password(password))


def _require_account(store: Store, name: str) -> None:
    if store.account_row(name) is None:
        raise UserError(f"no account {name!r} (see `users list`)")


def add(store: Store, name: str, role: str, password: str) -> Account:
    """Create an account (admins, or the command line)."""
    roles.require(roles.ACCOUNTS)
    store.add_account(check_account_name(name), roles.check_role(role), _hash(password))
    audit.record(store, "account add", name, role=role)
    return Account(**store.account_row(name))


def set_password(store: Store, name: str, password: str) -> None:
    """Replace an account's password; its sessions signed in before end at their next page."""
    roles.require(roles.ACCOUNTS)
    _require_account(store, name)
    store.set_account_hash(name, _hash(password), new_password=True)
    audit.record(store, "account password", name)  # that it changed, never what to


def set_role(store: Store, name: str, role: str) -> None:
    roles.require(roles.ACCOUNTS)
    _require_account(store, name)
    store.set_account_role(name, roles.check_role(role))
    audit.record(store, "account role", name, role=role)


def remove(store: Store, name: str) -> None:
    """Delete an account; its verdicts stay under its name. Nobody removes the account they are signed in with,
    so an admin cannot lock the app out by accident (the command line can)."""
    roles.require(roles.ACCOUNTS)
    actor = roles.current()
    if actor is not None and actor.name == name:
        raise UserError("you cannot remove the account you are signed in with")
    if not store.remove_account(name):
        raise UserError(f"no account {name!r} (see `users list`)")
    audit.record(store, "account remove", name)


def listing(store: Store) -> list[Account]:
    """Every account by name (never the hashes)."""
    return [Account(**row) for row in store.account_rows()]


def get(store: Store, name: str) -> Account | None:
    row = store.account_row(name)
    return Account(**row) if row else None


def verify(store: Store, name: str, password: str) -> Account | None:
    """The account when ``password`` is its password, else None (unknown name, wrong or unusable password)."""
    stored = store.account_hash(name)
    try:
        HASHER.verify(stored or _UNKNOWN, password)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):  # the last: lone surrogates
        return None
    if stored is None:
        return None
    if HASHER.check_needs_rehash(stored):
        store.set_account_hash(name, HASHER.hash(password), new_password=False)
    return get(store, name)
