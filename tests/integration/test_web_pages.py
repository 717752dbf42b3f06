"""The server-rendered pages: cookie login, CSRF, permissions, languages and the compliance dashboard."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import date
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controlplane.clock import FixedClock
from controlplane.compliance import service as compliance_service
from controlplane.compliance.domain import Mode, SessionStatus
from controlplane.compliance.schemas import SessionCreate
from controlplane.config import Settings
from controlplane.db import transaction

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


class _Page(HTMLParser):
    """Elements with their attributes, and the text inside elements that carry an id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag not in ("input", "meta", "link", "br", "img", "line", "rect"):
            self._open.append((tag, attributes.get("id")))
            if attributes.get("id"):
                self.text_by_id[attributes["id"]] = ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        for _tag, element_id in self._open:
            if element_id:
                self.text_by_id[element_id] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k.replace("_", "-")) == v
                                                                  for k, v in attrs.items())]

    def with_class(self, tag: str, name: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and name in a.get("class", "").split()]

    def text(self, element_id: str) -> str:
        return " ".join(self.text_by_id[element_id].split())


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f}%"


def form_login(client: TestClient, username: str, password: str = PASSWORD, next_path: str = "") -> str:
    """Log in through the page's form; returns the session cookie (the client keeps it too)."""
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": password, "next": next_path},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    token = response.cookies.get("cp_token")
    assert token
    return token


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf field on the page"
    return match.group(1)


@pytest.fixture
def history(catalogue: dict[str, Any], sessions: sessionmaker[Session], clock: FixedClock) -> None:
    """Sessions of the first half of 2014 (and one scheduled for later), through the service."""
    rows = [
        ("MOIS-LOCAL", date(2014, 1, 15), Mode.VIDEO, SessionStatus.HELD),
        ("MOIS-LOCAL", date(2014, 2, 15), Mode.VIDEO, SessionStatus.HELD),
        ("MOIS-LOCAL", date(2014, 3, 15), Mode.IN_PERSON, SessionStatus.HELD),
        ("MOIS-SAFETY", date(2014, 4, 10), Mode.VIDEO, SessionStatus.HELD),
        ("MOEF-ECON", date(2014, 1, 20), Mode.IN_PERSON, SessionStatus.HELD),
        ("MOEF-ECON", date(2014, 2, 20), Mode.IN_PERSON, SessionStatus.HELD),
        ("MOEF-ECON", date(2014, 3, 20), Mode.VIDEO, SessionStatus.HELD),
        ("MSIT-ICT", date(2014, 5, 2), Mode.HYBRID, SessionStatus.HELD),
        ("MSIT-ICT", date(2014, 9, 2), Mode.VIDEO, SessionStatus.SCHEDULED),
        ("MOEF-ECON", date(2014, 4, 20), Mode.VIDEO, SessionStatus.CANCELLED),
    ]
    with transaction(sessions) as s:
        for meeting, day, mode, status in rows:
            compliance_service.create_session(s, clock=clock, actor="test", data=SessionCreate(
                meeting=meeting, held_on=day, mode=mode, status=status))


# --- authentication ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/dashboard?period=2014", "/ministries/MOIS", "/meetings", "/agencies", "/audit"])
def test_pages_redirect_anonymous_callers_to_login(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]


def test_root_goes_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


def test_wrong_password_shows_the_form_again_with_401(client: TestClient, make_user: Callable[..., str]) -> None:
    make_user("kim", "operator")
    response = client.post("/login", data={"username": "kim", "password": "wrong-password-1", "next": "/meetings"},
                           follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    page = _Page(response.text)
    assert page.find("form", method="post", action="/login")
    assert page.find("input", name="next", value="/meetings")
    assert page.find("input", name="username", value="kim")
    assert "아이디 또는 비밀번호가 올바르지 않습니다" in response.text
    assert "cp_token" not in response.headers.get("set-cookie", "")


def test_too_many_failed_logins_show_the_lock_message_with_429(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user("lee", "operator")
    for _ in range(5):
        client.post("/login", data={"username": "lee", "password": "wrong-password-1"}, follow_redirects=False)
    response = client.post("/login", data={"username": "lee", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"  # locked from this address only (test_login_throttling.py)
    assert "로그인 실패가 너무 많습니다" in response.text
    assert "cp_token" not in response.headers.get("set-cookie", "")


def test_login_page_renders(client: TestClient) -> None:
    response = client.get("/login?next=/meetings")
    assert response.status_code == 200
    page = _Page(response.text)
    assert page.find("input", name="next", value="/meetings")
    assert page.find("input", name="password", type="password")
    assert response.headers["x-frame-options"] == "DENY"


def test_login_sets_a_safe_cookie_and_goes_where_the_user_was_going(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user("lee", "secretariat")
    response = client.post("/login", data={"username": "lee", "password": PASSWORD, "next": "/meetings?q=LOCAL"},
                           follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/meetings?q=LOCAL"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("cp_token=cpt_")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # CP_COOKIE_SECURE is off in tests (plain http)


def test_cookie_is_secure_when_configured(settings: Settings, clock: FixedClock, sessions: Any,
                                          make_user: Callable[..., str]) -> None:
    from controlplane.app import create_app

    make_user("park", "operator")
    secure = settings.model_copy(update={"cookie_secure": True})
    with TestClient(create_app(secure, clock=clock), base_url="https://testserver") as client:
        response = client.post("/login", data={"username": "park", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 303
    assert "secure" in {part.strip().lower() for part in response.headers["set-cookie"].split(";")}


@pytest.mark.parametrize("next_path", [
    "https://evil.example", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "http:/evil.example",
    "/login", "",
])
def test_login_refuses_open_redirects(client: TestClient, make_user: Callable[..., str], next_path: str) -> None:
    make_user("choi", "operator")
    response = client.post("/login", data={"username": "choi", "password": PASSWORD, "next": next_path},
                           follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


def test_logout_revokes_the_session(client: TestClient, catalogue: dict[str, Any],
                                    make_user: Callable[..., str]) -> None:
    make_user("jung", "operator")
    token = form_login(client, "jung")
    page = client.get("/dashboard")
    assert page.status_code == 200
    response = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert 'cp_token=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    # The old cookie no longer opens a page: it was revoked, not just forgotten by the browser.
    client.cookies.clear()
    client.cookies.set("cp_token", token)
    again = client.get("/dashboard", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")


def test_an_expired_session_on_a_form_post_returns_to_the_form_page(client: TestClient, history: None) -> None:
    client.cookies.set("cp_token", "cpt_not-a-real-token")
    response = client.post("/ministries/MOIS/sessions", data={"meeting": "MOIS-LOCAL"}, follow_redirects=False)
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["location"]).query)["next"] == ["/ministries/MOIS"]
    assert "cp_token=" in response.headers["set-cookie"]  # the stale cookie is cleared


def test_the_api_does_not_accept_the_cookie(client: TestClient, catalogue: dict[str, Any],
                                            make_user: Callable[..., str]) -> None:
    make_user("han", "admin")
    token = form_login(client, "han")
    assert client.get("/dashboard").status_code == 200
    assert client.get("/api/v1/auth/me").status_code == 401
    assert client.get("/api/v1/compliance/shares?period=2014").status_code == 401
    assert client.post("/api/v1/auth/logout").status_code == 401
    # ... while the same token in the Authorization header is a valid API credential.
    client.cookies.clear()
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# --- dashboard -----------------------------------------------------------------------------------

def test_dashboard_matches_the_share_api(
    client: TestClient, history: None, make_user: Callable[..., str], login: Callable[..., dict[str, str]]
) -> None:
    api = client.get("/api/v1/compliance/shares?period=2014", headers=login("api-reader", "auditor")).json()
    make_user("yoon", "ministry", "MOIS")
    form_login(client, "yoon")

    response = client.get("/dashboard?period=2014")
    assert response.status_code == 200
    page = _Page(response.text)
    government = api["government"]
    assert government["held"] > 0 and government["share"] is not None
    assert page.text("government-share") == percent(government["share"])
    assert page.text("government-target") == percent(government["target"]) == "50.0%"
    assert page.text("government-held") == str(government["held"])
    assert page.text("government-video") == str(government["video"])
    assert page.text("government-forecast") == (
        "달성 불가" if government["forecast"] == "unreachable" else str(government["forecast"]))

    # The chart: one bar per ministry of the report, coloured by status, and the target line.
    assert page.find("svg", id="share-chart")
    assert len(page.with_class("line", "target-line")) == 1
    bars = page.with_class("rect", "bar")
    assert [b["data-agency"] for b in bars] == [row["key"] for row in api["rows"]]
    for bar, row in zip(bars, api["rows"], strict=True):
        assert f"status-{row['status']}" in bar["class"].split()
        assert bar["data-share"] == ("" if row["share"] is None else str(row["share"]))
    # The table: the same numbers per ministry, each linking to the ministry's page.
    for row in api["rows"]:
        match = re.search(rf'<tr data-agency="{row["key"]}">(.*?)</tr>', response.text, re.S)
        assert match, row["key"]
        cells = dict(re.findall(r'data-col="(\w+)">\s*(.*?)\s*</td>', match.group(1), re.S))
        assert cells["held"] == str(row["held"])
        assert cells["video"] == str(row["video"])
        assert cells["share"] == percent(row["share"])
        assert cells["target"] == percent(row["target"])
        assert f'href="/ministries/{row["key"]}?period=2014"' in match.group(1)
    assert "<title>" in response.text and "Traceback" not in response.text


def test_dashboard_defaults_to_this_year_and_refuses_bad_periods(
    client: TestClient, history: None, make_user: Callable[..., str]
) -> None:
    make_user("seo", "operator")
    form_login(client, "seo")
    page = _Page(client.get("/dashboard").text)
    assert page.find("input", name="period", value="2014")
    assert page.find("svg", id="share-chart")
    quarter = client.get("/dashboard?period=2014-Q2")
    assert quarter.status_code == 200 and "2014-Q2" in quarter.text
    bad = client.get("/dashboard?period=2014-13")
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("text/html")
    assert "YYYY, YYYY-Qn or YYYY-MM" in bad.text
    assert 'id="share-chart"' not in bad.text
    # A period no policy covers is explained, not a server error.
    for path in ("/dashboard?period=1995", "/ministries?period=1995", "/ministries/MOIS?period=1995"):
        uncovered = client.get(path)
        assert uncovered.status_code == 200, path
        assert "1995 기간에는 적용되는 영상회의 기준" in _Page(uncovered.text).text("period-notice")


def test_language_switch(client: TestClient, catalogue: dict[str, Any], make_user: Callable[..., str]) -> None:
    make_user("ahn", "operator")
    form_login(client, "ahn")
    korean = client.get("/dashboard")
    assert '<html lang="ko">' in korean.text and "영상회의 실적 대시보드" in korean.text
    english = client.get("/dashboard?lang=en")
    assert '<html lang="en">' in english.text and "Video-meeting dashboard" in english.text
    assert "cp_lang=en" in english.headers["set-cookie"]
    # The choice sticks through the cookie...
    assert '<html lang="en">' in client.get("/meetings").text
    # ... until switched back.
    assert '<html lang="ko">' in client.get("/agencies?lang=ko").text
    assert '<html lang="ko">' in client.get("/dashboard").text
    # An unknown language is ignored.
    assert '<html lang="ko">' in client.get("/dashboard?lang=fr").text


# --- recording a session through the ministry page -----------------------------------------------

def test_ministry_user_records_a_session_through_the_form(
    client: TestClient, history: None, make_user: Callable[..., str], login: Callable[..., dict[str, str]]
) -> None:
    make_user("oh-min", "ministry", "MOIS")
    form_login(client, "oh-min")
    page = client.get("/ministries/MOIS?period=2014")
    assert page.status_code == 200
    parsed = _Page(page.text)
    assert parsed.find("form", method="post", action="/ministries/MOIS/sessions")
    assert {o["value"] for o in parsed.find("option") if o.get("value", "").startswith("MOIS-")} == {
        "MOIS-LOCAL", "MOIS-SAFETY"}
    csrf = csrf_of(page.text)

    response = client.post("/ministries/MOIS/sessions", data={
        "meeting": "MOIS-SAFETY", "held_on": "2014-06-20", "mode": "video", "status": "held",
        "note": "세종-서울 연결", "period": "2014", "csrf": csrf,
    }, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/ministries/MOIS?period=2014&recorded=1")

    after = client.get(response.headers["location"])
    assert after.status_code == 200
    assert "회차를 기록했습니다" in after.text
    assert "2014-06-20" in after.text and "세종-서울 연결" in after.text

    admin = login("auditor-1", "auditor")
    stored = client.get("/api/v1/compliance/sessions?meeting=MOIS-SAFETY", headers=admin).json()
    assert [(s["held_on"], s["mode"], s["evidence"]) for s in stored] == [
        ("2014-06-20", "video", "manual"), ("2014-04-10", "video", "manual")]
    audit = client.get("/api/v1/audit?entity_type=session&actor=oh-min", headers=admin).json()
    assert [e["action"] for e in audit if e["action"] != "login"] == ["create"]

    # The page's figures follow the write.
    shares = client.get("/api/v1/compliance/shares?period=2014&ministry=MOIS", headers=admin).json()
    assert _Page(after.text).text("ministry-share") == percent(shares["ministry"]["share"])


def test_session_form_errors_are_shown_on_the_page(
    client: TestClient, history: None, make_user: Callable[..., str]
) -> None:
    make_user("kang", "ministry", "MOIS")
    form_login(client, "kang")
    csrf = csrf_of(client.get("/ministries/MOIS").text)
    base = {"meeting": "MOIS-LOCAL", "mode": "video", "status": "held", "period": "2014", "csrf": csrf}

    duplicate = client.post("/ministries/MOIS/sessions", data={**base, "held_on": "2014-01-15"})
    assert duplicate.status_code == 409
    assert "already has a session on 2014-01-15" in duplicate.text
    assert _Page(duplicate.text).find("select", name="meeting", aria_invalid="true") == []
    assert _Page(duplicate.text).find("input", name="held_on", value="2014-01-15", aria_invalid="true")

    future = client.post("/ministries/MOIS/sessions", data={**base, "held_on": "2014-08-01"})
    assert future.status_code == 422 and "cannot be in the future" in future.text

    bad_day = client.post("/ministries/MOIS/sessions", data={**base, "held_on": "yesterday"})
    assert bad_day.status_code == 422 and "expected YYYY-MM-DD" in bad_day.text

    bad_mode = client.post("/ministries/MOIS/sessions",
                           data={**base, "held_on": "2014-06-02", "mode": "fax", "note": "<script>x()</script>"})
    assert bad_mode.status_code == 422
    assert "<script>x()" not in bad_mode.text and "&lt;script&gt;x()" in bad_mode.text
    # The language links of a re-rendered form lead back to the page, not to the form's target.
    assert 'href="/ministries/MOIS?period=2014&amp;lang=en"' in bad_mode.text

    # A meeting hosted by another ministry cannot be filed under this one.
    elsewhere = client.post("/ministries/MOIS/sessions",
                            data={**base, "meeting": "MOEF-ECON", "held_on": "2014-06-02"})
    assert elsewhere.status_code in (403, 422)
    assert "MOEF" in elsewhere.text

    # Nothing of that was stored.
    rows = client.get("/ministries/MOIS?period=2014")
    assert "2014-06-02" not in rows.text and "2014-08-01" not in rows.text


def test_ministry_user_cannot_record_for_another_ministry(
    client: TestClient, history: None, make_user: Callable[..., str], login: Callable[..., dict[str, str]]
) -> None:
    make_user("lim", "ministry", "MOIS")
    form_login(client, "lim")
    other = client.get("/ministries/MOEF?period=2014")
    assert other.status_code == 200  # the aggregates are public; the form is not offered
    assert 'action="/ministries/MOEF/sessions"' not in other.text
    csrf = csrf_of(other.text)  # the logout form's token: a valid token for this user
    response = client.post("/ministries/MOEF/sessions", data={
        "meeting": "MOEF-ECON", "held_on": "2014-06-03", "mode": "video", "status": "held", "csrf": csrf,
    }, follow_redirects=False)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    stored = client.get("/api/v1/compliance/sessions?meeting=MOEF-ECON&from=2014-06-03&to=2014-06-03",
                        headers=login("auditor-2", "auditor")).json()
    assert stored == []


def test_secretariat_records_for_any_ministry(client: TestClient, history: None,
                                              make_user: Callable[..., str]) -> None:
    make_user("bae", "secretariat")
    form_login(client, "bae")
    page = client.get("/ministries/MSIT")
    assert 'action="/ministries/MSIT/sessions"' in page.text
    response = client.post("/ministries/MSIT/sessions", data={
        "meeting": "MSIT-ICT", "held_on": "2014-06-05", "mode": "in_person", "status": "held",
        "csrf": csrf_of(page.text),
    }, follow_redirects=False)
    assert response.status_code == 303


def test_operator_and_auditor_see_no_session_form(client: TestClient, history: None,
                                                  make_user: Callable[..., str]) -> None:
    make_user("nam", "operator")
    token = form_login(client, "nam")
    page = client.get("/ministries/MOIS")
    assert page.status_code == 200 and "/ministries/MOIS/sessions" not in page.text
    response = client.post("/ministries/MOIS/sessions", data={
        "meeting": "MOIS-LOCAL", "held_on": "2014-06-05", "mode": "video", "status": "held",
        "csrf": csrf_of(page.text),
    })
    assert response.status_code == 403
    assert token


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "not-hex-at-all-다"])
def test_forms_need_a_valid_csrf_token(client: TestClient, history: None, make_user: Callable[..., str],
                                       csrf: str | None) -> None:
    make_user("song", "ministry", "MOIS")
    form_login(client, "song")
    data = {"meeting": "MOIS-LOCAL", "held_on": "2014-06-10", "mode": "video", "status": "held"}
    if csrf is not None:
        data["csrf"] = csrf
    response = client.post("/ministries/MOIS/sessions", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    logout = client.post("/logout", data={} if csrf is None else {"csrf": csrf}, follow_redirects=False)
    assert logout.status_code == 403
    # Neither was carried out: no session stored, still logged in.
    page = client.get("/ministries/MOIS?period=2014")
    assert page.status_code == 200 and "2014-06-10" not in page.text


def test_csrf_token_is_the_hmac_of_the_token_digest(client: TestClient, catalogue: dict[str, Any],
                                                    settings: Settings, make_user: Callable[..., str]) -> None:
    make_user("ryu", "operator")
    token = form_login(client, "ryu")
    expected = hmac.new(settings.secret_key.encode(), hashlib.sha256(token.encode()).hexdigest().encode(),
                        hashlib.sha256).hexdigest()
    assert csrf_of(client.get("/agencies").text) == expected


# --- other pages and permissions -----------------------------------------------------------------

def test_audit_page_is_for_auditors_and_admins(client: TestClient, history: None,
                                               make_user: Callable[..., str]) -> None:
    make_user("moon", "auditor")
    form_login(client, "moon")
    response = client.get("/audit")
    assert response.status_code == 200
    assert 'href="/audit"' in response.text
    assert "login" in response.text and "moon" in response.text
    assert "KST" in response.text  # times in Asia/Seoul
    assert "<form" not in response.text.split('id="audit-list"', 1)[1]  # read-only

    make_user("hong", "secretariat")
    form_login(client, "hong")
    denied = client.get("/audit")
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("text/html")
    assert "권한이 없습니다" in denied.text and "Traceback" not in denied.text
    assert 'href="/audit"' not in client.get("/dashboard").text


def test_meetings_agencies_and_ministries_pages(client: TestClient, history: None,
                                                make_user: Callable[..., str]) -> None:
    make_user("kwon", "secretariat")
    form_login(client, "kwon")
    everything = _Page(client.get("/meetings").text)
    assert {m["data-meeting"] for m in everything.find("tr") if "data-meeting" in m} == {
        "MOIS-LOCAL", "MOIS-SAFETY", "MOEF-ECON", "MSIT-ICT"}
    mois = _Page(client.get("/meetings?ministry=MOIS").text)
    assert {m["data-meeting"] for m in mois.find("tr") if "data-meeting" in m} == {"MOIS-LOCAL", "MOIS-SAFETY"}
    found = _Page(client.get("/meetings?q=ict").text)
    assert {m["data-meeting"] for m in found.find("tr") if "data-meeting" in m} == {"MSIT-ICT"}

    agencies = client.get("/agencies")
    assert agencies.status_code == 200 and "과학기술정보통신부" in agencies.text

    index = client.get("/ministries?period=2014")
    assert index.status_code == 200
    for code in ("MOIS", "MOEF", "MSIT"):
        assert f'href="/ministries/{code}?period=2014"' in index.text

    unknown = client.get("/ministries/NOPE")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")


def test_every_navigation_link_is_a_real_page(client: TestClient, history: None,
                                              make_user: Callable[..., str]) -> None:
    for username, role, agency in [("admin-1", "admin", None), ("min-1", "ministry", "MOIS")]:
        make_user(username, role, agency)
        form_login(client, username)
        nav = client.get("/dashboard").text.split('class="main-nav"', 1)[1].split("</nav>", 1)[0]
        links = re.findall(r'href="([^"]+)"', nav)
        assert "/dashboard" in links and "/meetings" in links
        for link in links:
            assert client.get(link).status_code == 200, link


# --- layout: the phone menu and badges ---------------------------------------------------------------

def _css_rules(css: str) -> list[tuple[str, str, str]]:
    """(media condition or "", selectors, declarations) of every rule of a flat stylesheet (one level of @media)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    rules: list[tuple[str, str, str]] = []
    for media, block in re.findall(r"@media\s*([^{]+)\{((?:[^{}]*\{[^{}]*\})*)\s*\}", css):
        rules += [(media.strip(), sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", block)]
    flat = re.sub(r"@media\s*[^{]+\{(?:[^{}]*\{[^{}]*\})*\s*\}", "", css)
    rules += [("", sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", flat)]
    return rules


def test_badges_never_wrap(client: TestClient) -> None:
    css = client.get("/static/app.css")
    assert css.status_code == 200
    badge = [body for media, selectors, body in _css_rules(css.text)
             if not media and ".badge" in [s.strip() for s in selectors.split(",")]]
    assert badge and "white-space: nowrap" in badge[0], badge


def test_on_a_phone_the_menu_folds_behind_a_toggle(client: TestClient, catalogue: dict[str, Any],
                                                  make_user: Callable[..., str]) -> None:
    make_user("phone", "admin")
    form_login(client, "phone")
    html = client.get("/dashboard").text
    page = _Page(html)
    # A checkbox and its label before the menu: no script (the page's policy allows none).
    assert page.find("input", type="checkbox", id="nav-toggle", aria_controls="main-menu")
    assert page.find("label", **{"for": "nav-toggle"}) and page.text("main-menu")
    assert html.index('id="nav-toggle"') < html.index('for="nav-toggle"') < html.index('class="main-nav"')
    assert "<script" not in html and "script-src 'none'" in client.get("/dashboard").headers["content-security-policy"]
    assert "메뉴" in html.split('for="nav-toggle"', 1)[1].split("</label>", 1)[0]
    assert "Menu" in client.get("/dashboard?lang=en").text.split('for="nav-toggle"', 1)[1].split("</label>", 1)[0]
    # The stylesheet: on a wide screen no toggle; on a narrow one the menu hides until the toggle is checked.
    rules = _css_rules(client.get("/static/app.css").text)
    wide = {sel: body for media, sel, body in rules if not media}
    narrow = {sel: body for media, sel, body in rules if "48rem" in media}
    assert "display: none" in wide[".nav-toggle-box, .nav-toggle"]
    assert "display: none" in narrow[".main-nav"]
    assert "display: flex" in narrow[".nav-toggle-box:checked ~ .main-nav"]
    assert "display: flex" in narrow[".nav-toggle"]
    # The login page has no menu, so no toggle either.
    client.cookies.clear()
    assert 'id="nav-toggle"' not in client.get("/login").text
