"""A team server in headless Chromium: accounts with roles, $NEGSPACE_ROOT. An annotator sees no adjudication,
promotion, account management or admin pages (and cannot open them by URL); a verdict is recorded under the
signed-in account whatever the URL says; five wrong passwords make the next try wait; workspace and import paths
outside the root, with '..' or through a link that leads out, are refused and nothing is created."""

from __future__ import annotations

import time

import pytest

from core import accounts, labels, roles
from core.workspace import open_workspace
from tests.app_helpers import CHROMIUM, ROOT, copy_workspace, streamlit_server

PASSWORD = "team-pässword-1"
LOGIN_DELAY_S = 0.5  # waits after 3, 4, 5 wrong passwords: 0.5, 1, 2 s

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")]


@pytest.fixture
def team(mined, tmp_path, cheap_hashes):
    """The mined workspace inside a server root, with an annotator, an adjudicator and an admin, a disagreement
    between two people, and a link inside the root that leads out of it."""
    ws, _, _ = mined
    root = tmp_path / "srv"
    copy_workspace(ws.root, root / "ws")
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    store = open_workspace(root / "ws").store()
    for name, role in (("ana", roles.ANNOTATOR), ("lead", roles.ADJUDICATOR), ("boss", roles.ADMIN)):
        accounts.add(store, name, role, PASSWORD)
    labels.record(store, "tiny", "q1", "py-join-dup", "bob", "false_negative")
    labels.record(store, "tiny", "q1", "py-join-dup", "carl", "true_negative")
    env = {"NEGSPACE_WORKSPACE": str(root / "ws"), "NEGSPACE_ROOT": str(root),
           "NEGSPACE_LOGIN_DELAY_S": str(LOGIN_DELAY_S)}
    with streamlit_server(env, tmp_path / "streamlit.log") as url:
        yield url, root, store
    store.close()


def settle(page) -> None:
    """Wait until the script run that a click started has finished (Streamlit marks its state on the page; React
    may draw a short run's start and end as one change, so this waits a while to see it start)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator('[data-test-script-state="running"]').wait_for(timeout=3_000)
    except PlaywrightTimeout:  # the run was over before it could be seen
        pass
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=60_000)


def dismiss_dialog(page) -> str:
    """Close Streamlit's modal (e.g. 'Page not found' for a page this session may not use); returns its text."""
    dialog = page.get_by_role("dialog")
    if dialog.count() == 0:
        return ""
    text = dialog.inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached", timeout=10_000)
    return text


def submit(page, name: str, password: str, wait: bool = True) -> None:
    page.get_by_role("textbox", name="Account").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    if wait:  # callers that need to know the answer arrived watch for it (see the wrong-passwords test)
        settle(page)


def sign_in(browser, url: str, name: str, path: str = ""):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/{path}")
    submit(page, name, PASSWORD)
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=60_000)
    return page


def nav(page) -> set[str]:
    """The titles of the pages in the sidebar's navigation (each link's last line; the first is its icon)."""
    return {text.split("\n")[-1] for text in page.locator("[data-testid=stSidebarNav] a").all_inner_texts()}


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def test_an_annotator_cannot_adjudicate_promote_or_manage_and_judges_only_as_themselves(team, browser):
    url, root, store = team
    page = sign_in(browser, url, "ana", "review?annotator=bob")  # a URL naming someone else changes nothing
    page.locator(".ns-list tr").nth(1).wait_for(timeout=90_000)
    assert wait_for(lambda: nav(page) == {"Overview", "Review", "Map", "Team"}), nav(page)
    assert page.locator("[data-testid=stSidebar]").get_by_label("Annotator").count() == 0
    assert page.locator("[data-testid=stSidebar]").get_by_role("textbox", name="Workspace folder").is_disabled()
    bob_before = len(store.events("tiny", "bob"))
    page.get_by_role("heading", name="Review").click()
    page.keyboard.press("f")
    assert wait_for(lambda: len(store.events("tiny", "ana")) == 1)
    assert len(store.events("tiny", "bob")) == bob_before
    assert "annotator=bob" not in page.url
    page.get_by_text("Judging as ana").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Promote to positive").count() == 0  # a false negative, yet no button

    for path, text in (("accounts", "Add an account"), ("import_data", "Path on this server"),
                       ("export", "Written atomically"), ("mine", "Mine anew")):
        page.goto(f"{url}/{path}")  # a page the role may not use does not exist for it (a new session: sign in)
        page.get_by_role("textbox", name="Account").wait_for(timeout=60_000)
        settle(page)
        dismiss_dialog(page)
        submit(page, "ana", PASSWORD)
        dismiss_dialog(page)
        page.get_by_text("Signed in as ana").wait_for(timeout=60_000)
        settle(page)
        time.sleep(1)
        assert page.get_by_text(text).count() == 0, path
    page.goto(f"{url}/team")
    submit(page, "ana", PASSWORD)
    page.get_by_text("Agreement").first.wait_for(timeout=60_000)
    assert page.get_by_text("Disagreements to adjudicate").count() == 0

    lead = sign_in(browser, url, "lead", "team")  # the adjudicator does see the queue, and records as lead
    lead.get_by_text("Disagreements to adjudicate (1)").wait_for(timeout=60_000)
    assert wait_for(lambda: nav(lead) == {"Overview", "Review", "Map", "Team"}), nav(lead)
    lead.get_by_role("button", name="true negative").first.click()
    assert wait_for(lambda: "adjudication" in set(store.events("tiny", "lead")["kind"]))
    boss = sign_in(browser, url, "boss")  # "Signed in" can be drawn before the navigation is: wait for it
    assert wait_for(lambda: {"Import", "Mine", "Train", "Export", "Accounts"} <= nav(boss)), nav(boss)


def delay(failures: int) -> float:
    """The server's wait after ``failures`` wrong passwords in a row (core.auth.Throttle)."""
    return 0.0 if failures < 3 else LOGIN_DELAY_S * 2 ** (failures - 3)


def test_five_wrong_passwords_slow_the_next_try(team, browser):
    url, _, _ = team
    page = browser.new_page()
    # each sign-in run sends its message over the websocket even when the page looks the same as before (the same
    # error again): counting those tells the test when the server has answered each try
    answers: list[bytes] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda frame: answers.append(frame if isinstance(frame, bytes) else frame.encode())))

    def answered(text: str) -> int:
        page.wait_for_timeout(50)  # Playwright delivers frames only while the test is inside one of its calls
        return sum(text.encode() in frame for frame in answers)

    page.goto(url)
    page.get_by_role("textbox", name="Account").wait_for(timeout=60_000)
    for failure in range(1, 6):
        submit(page, "ana", f"wrong guess {failure}", wait=False)
        assert wait_for(lambda: answered("Wrong account name or password") == failure), failure
        if failure < 5:
            time.sleep(delay(failure) + 0.2)  # patient enough: each of these tries is checked
    started = time.monotonic()
    submit(page, "ana", PASSWORD, wait=False)  # the right password, right after the fifth wrong one: not checked
    assert time.monotonic() - started < delay(5)
    assert wait_for(lambda: answered("Too many wrong passwords") == 1)
    page.get_by_text("Too many wrong passwords").wait_for(timeout=30_000)
    assert page.get_by_text("Signed in as ana").count() == 0
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "team-sign-in-throttled.png"))
    time.sleep(max(0.0, delay(5) - (time.monotonic() - started)) + 0.3)
    submit(page, "ana", PASSWORD)
    page.get_by_text("Signed in as ana").wait_for(timeout=60_000)


def test_paths_outside_the_root_are_refused_and_nothing_is_created(team, browser):
    url, root, store = team
    outside = root.parent / "outside"
    page = sign_in(browser, url, "boss")
    box = page.locator("[data-testid=stSidebar]").get_by_role("textbox", name="Workspace folder")
    assert box.input_value() == "ws"  # relative to the root: the server's layout is not shown
    for typed, message in (("../evil", "'..' is not allowed"), ("escape/new", "leads outside"),
                           (str(outside / "abs"), "leads outside"), ("ws/../../evil2", "'..' is not allowed")):
        box.fill(typed)
        box.press("Enter")
        page.get_by_text(message).first.wait_for(timeout=30_000)
        assert str(root) not in page.locator("body").inner_text()
    assert sorted(p.name for p in root.parent.iterdir()) == ["outside", "srv", "streamlit.log"]
    assert list(outside.iterdir()) == [] and sorted(p.name for p in root.iterdir()) == ["escape", "ws"]
    box.fill("ws")
    box.press("Enter")
    page.get_by_text("Choose a workspace folder").wait_for(state="detached", timeout=30_000)

    page.goto(f"{url}/import_data")  # a new session: sign in again
    submit(page, "boss", PASSWORD)
    page.get_by_role("textbox", name="Dataset name").fill("stolen")
    page.get_by_role("textbox", name="Dataset name").press("Enter")
    settle(page)
    # react-aria keeps hidden copies of a tab list while it builds it: the first visible tab is the one to click
    page.locator("[data-testid=stTab]:visible").filter(has_text="Path on this server").first.click()
    field = page.get_by_role("textbox", name="Folder or file inside the server's folder (relative to it)")
    for typed, message in (("../outside", "'..' is not allowed"), ("escape", "leads outside"),
                           (str(outside), "leads outside")):
        field.fill(typed)
        field.press("Enter")
        page.get_by_role("button", name="Import path").click()
        page.get_by_text(message).first.wait_for(timeout=30_000)
    assert "stolen" not in {d["name"] for d in store.datasets()}
    assert list(outside.iterdir()) == []
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "team-import-refused.png"))
