"""Accounts, roles and sign-in: argon2 hashes only, the permission table enforced in core (adjudication,
promotion, verdicts under another name, account management, training), wrong passwords slowed down per account
and per client, sessions that expire."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher

from core import accounts, auth, judging, roles, triage
from core.errors import UserError
from core.roles import NotPermitted
from core.store import Store

PASSWORD = "correct horse battery"


pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "negspace.sqlite")
    yield opened
    opened.close()


@pytest.fixture
def signed_in(monkeypatch):
    """Sign someone in (core.roles' account source), as the app does for a browser session."""
    def sign(account: accounts.Account | None) -> None:
        monkeypatch.setattr(roles, "_source", lambda: account)
    return sign


def test_the_password_is_stored_only_as_an_argon2_hash(store):
    account = accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    assert (account.name, account.role) == ("ana", "annotator")
    stored = store.account_hash("ana")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert "password_hash" not in store.account_rows()[0]
    assert accounts.verify(store, "ana", PASSWORD) == account
    assert accounts.verify(store, "ana", PASSWORD + "!") is None
    assert accounts.verify(store, "nobody", PASSWORD) is None


def test_a_hash_with_old_parameters_is_replaced_at_sign_in_without_ending_sessions(store, monkeypatch):
    accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    before, changed = store.account_hash("ana"), accounts.get(store, "ana").password_changed_at
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher())  # today's defaults: the cheap hash needs a rehash
    assert accounts.verify(store, "ana", PASSWORD) is not None
    assert store.account_hash("ana") != before
    assert accounts.get(store, "ana").password_changed_at == changed


@pytest.mark.parametrize("name, role, password, message", [
    ("llm:gpt", "annotator", PASSWORD, "reserved for LLM judges"),
    (" ana", "annotator", PASSWORD, "spaces"),
    ("ana", "boss", PASSWORD, "unknown role"),
    ("ana", "annotator", "short", "too short"),
    ("ana", "annotator", "x" * 1025, "too long"),
])
def test_bad_accounts_are_refused(store, name, role, password, message):
    with pytest.raises(UserError, match=message):
        accounts.add(store, name, role, password)
    assert accounts.listing(store) == []


def test_passwd_remove_and_duplicates(store):
    accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    with pytest.raises(UserError, match="already exists"):
        accounts.add(store, "ana", roles.ADMIN, PASSWORD)
    accounts.set_password(store, "ana", "another password")
    assert accounts.verify(store, "ana", PASSWORD) is None
    assert accounts.verify(store, "ana", "another password") is not None
    accounts.set_role(store, "ana", roles.ADJUDICATOR)
    assert accounts.get(store, "ana").role == roles.ADJUDICATOR
    for call in (lambda: accounts.set_password(store, "bob", PASSWORD), lambda: accounts.remove(store, "bob")):
        with pytest.raises(UserError, match="no account 'bob'"):
            call()
    accounts.remove(store, "ana")
    assert not store.has_accounts()


def test_the_permission_table():
    assert roles.allowed(roles.ANNOTATOR) == [roles.JUDGE]
    assert roles.allowed(roles.ADJUDICATOR) == [roles.JUDGE, roles.ADJUDICATE, roles.PROMOTE]
    assert roles.allowed(roles.ADMIN) == list(roles.PERMISSIONS)
    assert set(roles.DESCRIPTIONS) == set(roles.PERMISSIONS)
    assert all(roles.may(None, action) for action in roles.PERMISSIONS)  # no accounts: everything, as before
    assert not any(roles.may(roles.NOBODY, action) for action in roles.PERMISSIONS)


def test_core_refuses_what_the_role_may_not_do(store, tmp_path, signed_in):
    """An annotator's session cannot adjudicate, promote, demote, manage accounts, train or change risk, nor
    record or undo a verdict under another name, whatever a page shows."""
    from core.risk import configure_second_model
    from core.train import train
    from core.workspace import open_workspace

    ws = open_workspace(tmp_path / "ws")
    admin = accounts.add(store, "root", roles.ADMIN, PASSWORD)
    ana = accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    signed_in(ana)
    refused = {
        "adjudicate": lambda: judging.judge(store, ws, "tiny", [("q1", "d1")], "ana", "true_negative",
                                            adjudication=True),
        "promote": lambda: triage.promote(store, "tiny", "train", "q1", "d1"),
        "demote": lambda: triage.demote(store, "tiny", "train", "q1", "d1"),
        "add account": lambda: accounts.add(store, "eve", roles.ADMIN, PASSWORD),
        "passwd": lambda: accounts.set_password(store, "root", "taken over!"),
        "remove": lambda: accounts.remove(store, "root"),
        "train": lambda: train(store, "run", tmp_path / "model"),
        "second model": lambda: configure_second_model(ws, None),
    }
    for what, call in refused.items():
        with pytest.raises(NotPermitted, match="ana \\(annotator\\) may not"):
            call()
    for call in (lambda: judging.judge(store, ws, "tiny", [("q1", "d1")], "root", "false_negative"),
                 lambda: judging.undo(store, "tiny", "root"),
                 lambda: triage.accept_suggestion(store, 1, "root")):
        with pytest.raises(NotPermitted, match="signed in as ana"):
            call()
    assert store.events("tiny").empty and accounts.verify(store, "root", PASSWORD) == admin
    signed_in(roles.NOBODY)  # accounts exist, nobody signed in: nothing at all
    with pytest.raises(NotPermitted):
        judging.judge(store, ws, "tiny", [("q1", "d1")], "ana", "false_negative")
    signed_in(admin)
    with pytest.raises(UserError, match="the account you are signed in with"):
        accounts.remove(store, "root")


def test_an_adjudicator_adjudicates_under_their_own_name(ws_root, signed_in):
    from core.workspace import open_workspace

    ws = open_workspace(ws_root)
    store = ws.store()
    lead = accounts.add(store, "lead", roles.ADJUDICATOR, PASSWORD)
    signed_in(lead)
    done = judging.judge(store, ws, "tiny", [("q1", "py-join-dup")], "lead", "false_negative", adjudication=True)
    assert store.events("tiny").set_index("id").loc[done.events[0], ["annotator", "kind"]].tolist() == \
        ["lead", "adjudication"]
    with pytest.raises(NotPermitted):
        accounts.add(store, "eve", roles.ADMIN, PASSWORD)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_wrong_passwords_make_the_next_try_wait(store):
    accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    clock = Clock()
    limiter = auth.Throttle(base_s=1.0, clock=clock)
    for failure in range(1, 6):
        with pytest.raises(UserError, match="Wrong account name or password") as caught:
            auth.sign_in(store, "ana", "guess", "10.0.0.1", limiter)
        assert not isinstance(caught.value, auth.TooManyAttempts)
        clock.now += limiter.delay(failure)  # each try waits just long enough
    clock.now -= limiter.delay(5)
    assert limiter.delay(5) == 4.0 and [limiter.delay(n) for n in range(3)] == [0.0] * 3
    with pytest.raises(auth.TooManyAttempts, match="try again in 4 s"):  # even the right password is not checked
        auth.sign_in(store, "ana", PASSWORD, "10.0.0.1", limiter)
    with pytest.raises(auth.TooManyAttempts):  # the same account from another client
        auth.sign_in(store, "ana", PASSWORD, "10.0.0.2", limiter)
    with pytest.raises(auth.TooManyAttempts):  # another account from the same client
        auth.sign_in(store, "bob", PASSWORD, "10.0.0.1", limiter)
    clock.now += 4.0
    assert auth.sign_in(store, "ana", PASSWORD, "10.0.0.1", limiter).name == "ana"
    assert limiter.wait([("account", "ana"), ("client", "10.0.0.1")]) == 0.0  # a success forgives


def test_the_shared_password_is_slowed_down_per_client():
    clock = Clock()
    limiter = auth.Throttle(base_s=2.0, clock=clock)
    for _ in range(3):
        with pytest.raises(UserError, match="Wrong password"):
            auth.enter_shared_password("guess", "secret", "10.0.0.1", limiter)
    with pytest.raises(auth.TooManyAttempts):
        auth.enter_shared_password("secret", "secret", "10.0.0.1", limiter)
    auth.enter_shared_password("secret", "secret", "10.0.0.2", limiter)  # another client is not held up
    clock.now += 2.0
    auth.enter_shared_password("secret", "secret", "10.0.0.1", limiter)


def test_sessions_expire_when_idle_removed_or_the_password_changes(store, monkeypatch):
    account = accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    session = auth.start_session(account, now=0.0)
    resumed, later = auth.resume(store, session, now=3600.0, idle_s=7200.0)
    assert resumed == account and later.last_seen == 3600.0
    assert auth.resume(store, later, now=3600.0 + 7201, idle_s=7200.0) is None
    monkeypatch.setenv(auth.SESSION_IDLE_ENV, "0.5")
    assert auth.idle_limit_s() == 1800.0
    assert auth.resume(store, later, now=3600.0 + 1801) is None
    monkeypatch.setenv(auth.SESSION_IDLE_ENV, "soon")
    with pytest.raises(UserError, match="NEGSPACE_SESSION_IDLE_H must be a number"):
        auth.idle_limit_s()
    time.sleep(0.002)  # password_changed_at has millisecond resolution
    accounts.set_password(store, "ana", "a new password")
    assert auth.resume(store, later, now=3601.0, idle_s=7200.0) is None
    fresh = auth.start_session(accounts.get(store, "ana"), now=0.0)
    accounts.remove(store, "ana")
    assert auth.resume(store, fresh, now=1.0, idle_s=7200.0) is None


def test_acting_answers_for_the_account_source_without_asking_it(store, monkeypatch):
    """The Review page applies key events under ``roles.acting`` with the account it read beforehand: inside, the
    account source (which reads Streamlit's session state) is never called, and the refusals still apply."""
    ana = accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    asked: list[int] = []
    monkeypatch.setattr(roles, "_source", lambda: asked.append(1) or None)
    with roles.acting(ana):
        assert roles.current() is ana
        with pytest.raises(NotPermitted, match="signed in as ana"):
            roles.require_self("root")
        with roles.acting(None):  # no accounts: nobody to tell apart
            roles.require(roles.ADJUDICATE)
        assert roles.current() is ana
    assert asked == []
    assert roles.current() is None and asked == [1]  # outside, the source answers again
