"""Accounts (admins only, once accounts exist): who may sign in, with which role; set a password, remove an
account. The same as `python -m core users …`, through core.accounts, which refuses other roles anyway."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import accounts, roles
from core.errors import UserError
from pages import common

MESSAGE = "ns_accounts_message"


def _done(text: str) -> None:
    st.session_state[MESSAGE] = text
    st.rerun()


common.through_app(__file__)
st.header("Accounts", anchor=False)
store = common.server_store()
if done := st.session_state.pop(MESSAGE, None):
    st.success(done)
listed = accounts.listing(store)
st.dataframe(pd.DataFrame({"account": [a.name for a in listed], "role": [a.role for a in listed],
                           "may": ["; ".join(roles.DESCRIPTIONS[x] for x in roles.allowed(a.role)) for a in listed],
                           "created": [a.created_at[:16].replace("T", " ") for a in listed]}), hide_index=True)
st.caption("Accounts live in the server's workspace. Passwords are stored only as argon2 hashes; a changed password "
           "ends that account's open sessions.")

left, right = st.columns(2)
with left, st.form("ns_account_add", clear_on_submit=True):
    st.subheader("Add an account", anchor=False)
    name = st.text_input("Name", max_chars=100, help="Also the annotator name of the account's verdicts.")
    role = st.selectbox("Role", roles.ROLES)
    password = st.text_input("Password", type="password")
    again = st.text_input("Repeat the password", type="password")
    if st.form_submit_button("Add"):
        try:
            if password != again:
                raise UserError("the two passwords differ")
            accounts.add(store, name, role, password)
        except UserError as exc:
            common.user_error(exc)
        else:
            _done(f"Added {role} {name}.")

with right, st.form("ns_account_change"):
    st.subheader("Change an account", anchor=False)
    chosen = st.selectbox("Account", [a.name for a in listed])
    new_role = st.selectbox("Role", [None, *roles.ROLES], format_func=lambda r: r or "(unchanged)")
    password = st.text_input("New password (empty: unchanged)", type="password")
    again = st.text_input("Repeat the new password", type="password")
    change, remove = st.columns(2)
    changed, removed = change.form_submit_button("Change"), remove.form_submit_button("Remove account")
    try:
        if changed:
            if password != again:
                raise UserError("the two passwords differ")
            if new_role:
                accounts.set_role(store, chosen, new_role)
            if password:
                accounts.set_password(store, chosen, password)
            _done(f"Changed {chosen}.")
        if removed:
            accounts.remove(store, chosen)
            _done(f"Removed {chosen}; their verdicts stay under their name.")
    except UserError as exc:
        common.user_error(exc)
