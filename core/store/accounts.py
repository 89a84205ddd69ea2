"""Accounts of a team server: name, role and argon2 hash of the password (core.accounts does the hashing)."""

from __future__ import annotations

import sqlite3
from typing import Any

from core.errors import UserError
from core.store.connection import Connection, now

_PUBLIC = "name, role, created_at, password_changed_at"  # every column but the hash


class AccountTables(Connection):
    """Queries on accounts. Listings never read the hash; only ``account_hash`` does, for signing in."""

    def has_accounts(self) -> bool:
        return self.scalar("SELECT EXISTS (SELECT 1 FROM accounts)") == 1

    def account_rows(self) -> list[dict[str, Any]]:
        return self.rows(f"SELECT {_PUBLIC} FROM accounts ORDER BY name")

    def account_row(self, name: str) -> dict[str, Any] | None:
        rows = self.rows(f"SELECT {_PUBLIC} FROM accounts WHERE name = ?", (name,))
        return rows[0] if rows else None

    def account_hash(self, name: str) -> str | None:
        return self.scalar("SELECT password_hash FROM accounts WHERE name = ?", (name,))

    def add_account(self, name: str, role: str, password_hash: str) -> None:
        """Insert a new account; an existing name is refused inside the same transaction."""
        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise UserError(f"account {name!r} already exists (change its password with `users passwd`)")
            stamp = now()
            conn.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?)", (name, role, password_hash, stamp, stamp))
        self.write(run)

    def set_account_hash(self, name: str, password_hash: str, new_password: bool) -> bool:
        """Replace the hash; ``new_password`` (not a rehash with new parameters) also ends the account's sessions
        by moving ``password_changed_at``. False when there is no such account."""
        sql = ("UPDATE accounts SET password_hash = ?, password_changed_at = ? WHERE name = ?" if new_password
               else "UPDATE accounts SET password_hash = ? WHERE name = ?")
        params = (password_hash, now(), name) if new_password else (password_hash, name)
        return self.write(lambda conn: conn.execute(sql, params).rowcount) == 1

    def set_account_role(self, name: str, role: str) -> bool:
        return self.write(lambda conn: conn.execute("UPDATE accounts SET role = ? WHERE name = ?",
                                                    (role, name)).rowcount) == 1

    def remove_account(self, name: str) -> bool:
        """Delete the account (its verdicts stay, under its name). False when there is no such account."""
        return self.write(lambda conn: conn.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount) == 1
