"""The VC network's pages: rooms with their state and counts (filters, the live script's wiring), one room with its
probe figures and history, taking it out of service and back (operators only, CSRF, audited, 409/422 shown on the
page), retired rooms, sites by region, smart-work centres and bridges; Korean by default, English on request; what
the catalogue says is text, never markup."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from engine import engine_settings
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_web_pages import _Page, csrf_of, form_login

from controlplane.app import create_app
from controlplane.auth import service as auth_service
from controlplane.auth.models import AuditEntry
from controlplane.clock import FixedClock
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.rooms import service
from controlplane.rooms.domain import probe_outcome
from controlplane.rooms.models import Bridge
from controlplane.secrets import secret_box

SEED = Path(__file__).resolve().parents[2] / "rooms"
TEMPLATES = Path(__file__).resolve().parents[2] / "controlplane" / "web" / "templates"
HOSTILE = """<b id="x">회의실</b> & "A" 'x' <script>alert(1)</script>"""
BRIDGE_SECRET = "sealed-admin-secret-never-shown"


def _room(code: str, site: str, agency: str, host: int, name: str | None = None) -> str:
    return f"""- code: {code}
  name: {name or "room " + code}
  site: {site}
  agency: {agency}
  building: "본관"
  floor: 3
  capacity: 12
  equipment: [codec, camera, display]
  endpoint: {{uri: "sip:{code}@vc.test", address: 127.1.0.{host}, port: 5060}}
  owner: 영상회의 담당
"""


def _write_catalogue(directory: Path, *, with_gone: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    quoted = HOSTILE.replace("'", "''")
    rooms = [_room("room-a", "test-complex", "MOIS", 1, f"'{quoted}'"), _room("room-b", "test-complex", "MOIS", 2),
             _room("room-c", "lg-jeju", "JEJU", 3), _room("swc-test-vc", "swc-test", "MOIS", 4)]
    if with_gone:
        rooms.append(_room("room-gone", "test-complex", "MOIS", 5))
    (directory / "catalogue.yml").write_text(f"""version: 1
sites:
- {{code: test-complex, name: 시험 청사, kind: complex, region: sejong, address: 세종 어딘가}}
- {{code: lg-jeju, name: 제주 시험청, kind: local_government, region: jeju, address: 제주 어딘가}}
centres:
- code: swc-test
  name: 시험 스마트워크센터
  region: seoul
  address: 서울 어딘가
  seats: 24
  hours: "07:00-22:00"
  days: [mon, tue, wed, thu, fri]
- {{code: swc-empty, name: 빈 스마트워크센터, region: seoul, address: 서울 저기, seats: 8}}
rooms:
{"".join(rooms)}bridges:
- {{code: bridge-test, site: test-complex, server: vc-bridge-1, capacity: {{rooms: 10, participants: 40}}}}
""", encoding="utf-8")


def _sync(sessions: sessionmaker[Session], clock: FixedClock, settings: Settings, directory: Path) -> None:
    with transaction(sessions) as s:
        catalogue, digest = service.read_files(s, settings=settings, directory=directory)
        service.apply_sync(s, clock=clock, actor="test", catalogue=catalogue, digest=digest)


@pytest.fixture
def agencies(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    with transaction(sessions) as s:
        auth_service.seed_agencies(s, clock=clock, actor="test")


@pytest.fixture
def network(agencies: None, sessions: sessionmaker[Session], clock: FixedClock, settings: Settings,
            tmp_path: Path) -> None:
    """A small network: room-a up (12.3 ms), room-c down, room-b and the centre's room unknown, room-gone retired;
    the bridge up with some load and a sealed secret."""
    directory = tmp_path / "vc-catalogue"
    _write_catalogue(directory, with_gone=True)
    _sync(sessions, clock, settings, directory)
    _write_catalogue(directory, with_gone=False)
    _sync(sessions, clock, settings, directory)
    with transaction(sessions) as s:
        service.record_probes(s, clock=clock, outcomes={
            "room-a": probe_outcome(True, 200, 0.0123, None), "room-c": probe_outcome(False, None, None, "timeout")})
        bridge = s.scalars(select(Bridge).where(Bridge.code == "bridge-test")).one()
        bridge.state, bridge.address, bridge.rooms_in_use, bridge.participants = "up", "127.2.0.5", 3, 12
        bridge.admin_secret_sealed = BRIDGE_SECRET


@pytest.fixture
def users(agencies: None, make_user: Callable[..., str]) -> None:
    make_user("op1", "operator")
    make_user("sec1", "secretariat")
    make_user("min1", "ministry", "MOIS")


def _counts(html: str) -> dict[str, int]:
    block = html.split('id="room-counts"', 1)[1].split("</dl>", 1)[0]
    return {state: int(n) for state, n in re.findall(r'data-count="([a-z_]+)"[^>]*>(\d+)<', block)}


def _row_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-room="([a-z0-9-]+)" data-state="([a-z_]+)"', html))


def test_pages_send_anonymous_callers_to_login(client: TestClient) -> None:
    for path in ("/vc/rooms", "/vc/rooms/room-a", "/vc/sites?kind=complex", "/vc/centres", "/vc/bridges",
                 "/vc/rooms/changes/stream?after=0"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        location = urlsplit(response.headers["location"])
        assert location.path == "/login" and parse_qs(location.query)["next"] == [path]
    for action in ("out-of-service", "in-service"):
        posted = client.post(f"/vc/rooms/room-a/{action}", data={"reason": "x", "csrf": "0" * 64},
                             follow_redirects=False)
        assert posted.status_code == 303 and posted.headers["location"] == "/login?next=%2Fvc%2Frooms%2Froom-a"


def test_the_rooms_page_shows_each_state_and_the_counts_in_korean_and_english(
        client: TestClient, network: None, users: None, sessions: sessionmaker[Session]) -> None:
    form_login(client, "sec1")
    response = client.get("/vc/rooms")
    assert response.status_code == 200
    html = response.text
    assert '<html lang="ko">' in html and "영상회의실 현황" in html and "장애" in html
    assert _row_states(html) == {"room-a": "up", "room-b": "unknown", "room-c": "down", "swc-test-vc": "unknown"}
    assert _counts(html) == {"total": 4, "up": 1, "down": 1, "unknown": 2, "out_of_service": 0}
    assert '<a href="/vc/rooms/room-c">' in html and "room-gone" not in html
    # The live script: allowed by its nonce alone, reading the changes after the last event the page saw.
    nonce = re.search(r'<script nonce="([^"]+)">', html)
    assert nonce and f"script-src 'nonce-{nonce.group(1)}'" in response.headers["content-security-policy"]
    with transaction(sessions) as s:
        last = service.last_event_id(s)
    assert f'data-stream="/vc/rooms/changes/stream" data-after="{last}"' in html
    assert 'addEventListener("room-change"' in html
    # The menu links the VC pages for every reader.
    nav = html.split('class="main-nav"', 1)[1].split("</nav>", 1)[0]
    assert 'href="/vc/rooms" aria-current="page"' in nav and 'href="/vc/bridges"' in nav

    english = client.get("/vc/rooms?lang=en").text
    assert '<html lang="en">' in english and "VC rooms" in english and ">down<" in english
    assert "영상회의실 현황" not in english and "Rooms by state" in english


def test_the_rooms_page_filters_by_site_agency_region_and_state(client: TestClient, network: None,
                                                                users: None) -> None:
    form_login(client, "min1")
    assert set(_row_states(client.get("/vc/rooms?site=lg-jeju").text)) == {"room-c"}
    assert set(_row_states(client.get("/vc/rooms?agency=MOIS").text)) == {"room-a", "room-b", "swc-test-vc"}
    assert set(_row_states(client.get("/vc/rooms?region=seoul").text)) == {"swc-test-vc"}
    down = client.get("/vc/rooms?state=down&region=&site=&agency=").text
    assert set(_row_states(down)) == {"room-c"} and _counts(down)["down"] == 1 and _counts(down)["total"] == 1
    assert 'id="no-rooms"' in client.get("/vc/rooms?state=out_of_service").text
    assert 'option value="lg-jeju" selected' in client.get("/vc/rooms?site=lg-jeju").text
    for bad in ("state=broken", "region=mars", "site=nowhere", "agency=NOPE"):
        refused = client.get(f"/vc/rooms?{bad}")
        assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html"), bad
        assert f"항목: {bad.split('=')[0]}" in refused.text


def test_a_room_page_shows_where_it_is_its_probe_and_its_history(client: TestClient, network: None,
                                                                 users: None) -> None:
    form_login(client, "sec1")
    html = client.get("/vc/rooms/room-a").text
    page = _Page(html)
    assert page.find("span", id="room-state", data_state="up")
    assert "시험 청사" in page.text("room-facts") and "세종특별자치시" in page.text("room-facts")
    assert "본관 3층" in page.text("room-facts") and "코덱, 카메라, 디스플레이" in page.text("room-facts")
    assert "sip:room-a@vc.test" in page.text("room-facts") and "127.1.0.1:5060" in page.text("room-facts")
    assert "12.3 ms" in page.text("room-facts") and "200 in 12.3 ms" in page.text("room-facts")
    assert "2014-07-01 12:00 KST" in page.text("room-facts")
    events = page.text("room-events")
    assert "미확인 → 정상" in events and "prober" in events and "카탈로그" in events
    assert not page.find("form", id="out-of-service-form")  # a secretariat reads only
    english = _Page(client.get("/vc/rooms/room-c?lang=en").text)
    assert "down" in english.text("room-state") and "unknown → down" in english.text("room-events")
    assert "timeout" in english.text("room-facts")
    missing = client.get("/vc/rooms/no-such-room")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


def test_an_operator_takes_a_room_out_of_service_and_back_audited(
        client: TestClient, network: None, users: None, sessions: sessionmaker[Session]) -> None:
    form_login(client, "op1")
    page = client.get("/vc/rooms/room-c")
    assert 'id="out-of-service-form"' in page.text
    csrf = csrf_of(page.text)
    forged = client.post("/vc/rooms/room-c/out-of-service", data={"reason": "공사", "csrf": "0" * 64},
                         follow_redirects=False)
    assert forged.status_code == 403 and "양식이 만료되었거나" in forged.text
    missing = client.post("/vc/rooms/room-c/out-of-service", data={"reason": "공사"}, follow_redirects=False)
    assert missing.status_code == 403

    blank = client.post("/vc/rooms/room-c/out-of-service", data={"reason": "   ", "csrf": csrf})
    assert blank.status_code == 422 and 'id="form-error"' in blank.text and 'aria-invalid="true"' in blank.text
    reason = "코덱 교체 <공사> & 점검"
    done = client.post("/vc/rooms/room-c/out-of-service", data={"reason": reason, "csrf": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/vc/rooms/room-c?saved=out"
    shown = client.get(done.headers["location"])
    view = _Page(shown.text)
    assert "회의실을 운영 중지했습니다." in view.text("saved") and view.text("out-reason") == reason
    assert "코덱 교체 &lt;공사&gt; &amp; 점검" in shown.text and "op1" in view.text("out-by")
    assert view.find("span", id="room-state", data_state="out_of_service")
    assert "점검 결과 상태: 장애" in view.text("room-facts")
    assert 'id="in-service-form"' in shown.text and 'id="out-of-service-form"' not in shown.text
    with transaction(sessions) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "out_of_service")).one()
        assert (entry.entity_type, entry.entity_id, entry.after) == ("room", "room-c", {"out_of_service": reason})
        assert entry.actor == "op1"
    listing = client.get("/vc/rooms").text
    assert _row_states(listing)["room-c"] == "out_of_service"
    assert _counts(listing) == {"total": 4, "up": 1, "down": 0, "unknown": 2, "out_of_service": 1}

    # Twice is a conflict, shown on the page with what was typed (the write rolled back), not a 500.
    again = client.post("/vc/rooms/room-c/out-of-service", data={"reason": "again", "csrf": csrf})
    assert again.status_code == 409 and "already out of service" in _Page(again.text).text("form-error")
    assert "운영 상태를 바꾸지 못했습니다" in again.text

    back = client.post("/vc/rooms/room-c/in-service", data={"csrf": csrf}, follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/vc/rooms/room-c?saved=in"
    english = client.get("/vc/rooms/room-c?saved=in&lang=en").text
    assert "The room is back in service." in english and 'id="out-of-service-form"' in english
    with transaction(sessions) as s:
        assert s.scalars(select(AuditEntry.action).where(AuditEntry.entity_id == "room-c")).all() == [
            "out_of_service", "in_service"]
        assert service.room_state(service.get_room(s, code="room-c")) == "down"
    history = _Page(client.get("/vc/rooms/room-c?lang=ko").text).text("room-events")
    assert "운영 중지 → 운영" in history and "운영 → 운영 중지" in history


@pytest.mark.parametrize("username", ["sec1", "min1"])
def test_secretariats_and_ministries_see_no_form_and_a_forged_post_is_refused(
        client: TestClient, network: None, users: None, sessions: sessionmaker[Session], username: str) -> None:
    form_login(client, username)
    page = client.get("/vc/rooms/room-a")
    assert page.status_code == 200
    assert "/out-of-service" not in page.text and "/in-service" not in page.text
    csrf = csrf_of(page.text)  # their own valid token (the logout form has it)
    for path in ("/vc/rooms/room-a/out-of-service", "/vc/rooms/room-a/in-service"):
        refused = client.post(path, data={"reason": "mine", "csrf": csrf}, follow_redirects=False)
        assert refused.status_code == 403 and "권한이 없습니다" in refused.text
    with transaction(sessions) as s:
        assert service.get_room(s, code="room-a").out_of_service is None
        assert s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "room")).all() == []


def test_a_retired_room_shows_as_retired_and_cannot_change(client: TestClient, network: None,
                                                          users: None) -> None:
    form_login(client, "op1")
    html = client.get("/vc/rooms/room-gone").text
    view = _Page(html)
    assert view.find("span", id="room-state", data_state="retired") and "폐지" in view.text("room-state")
    assert "카탈로그에서 빠져 폐지되었습니다" in view.text("retired")
    assert 'id="out-of-service-form"' not in html
    refused = client.post("/vc/rooms/room-gone/out-of-service", data={"reason": "x", "csrf": csrf_of(html)})
    assert refused.status_code == 409 and "retired" in _Page(refused.text).text("form-error")
    listing = client.get("/vc/rooms?retired=true")
    assert listing.status_code == 200 and _row_states(listing.text) == {"room-gone": "retired"}
    assert "<script" not in listing.text and "폐지된 영상회의실" in listing.text
    assert "Retired VC rooms" in client.get("/vc/rooms?retired=true&lang=en").text


def test_names_from_the_catalogue_and_reasons_are_text_never_markup(client: TestClient, network: None,
                                                                    users: None) -> None:
    form_login(client, "op1")
    escaped = ("&lt;b id=&#34;x&#34;&gt;회의실&lt;/b&gt; &amp; &#34;A&#34; &#39;x&#39; "
               "&lt;script&gt;alert(1)&lt;/script&gt;")
    for path in ("/vc/rooms", "/vc/rooms/room-a", "/vc/rooms?site=test-complex"):
        html = client.get(path).text
        assert '<b id="x">' not in html and "<script>alert(1)" not in html, path
        assert escaped in html, path
    page = client.get("/vc/rooms/room-a").text
    csrf = csrf_of(page)
    client.post("/vc/rooms/room-a/out-of-service", data={"reason": '"><img src=x onerror=alert(1)>', "csrf": csrf})
    html = client.get("/vc/rooms/room-a").text
    assert "<img src=x" not in html and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_sites_are_grouped_by_region_with_their_counts_and_kind(client: TestClient, network: None,
                                                               users: None) -> None:
    form_login(client, "sec1")
    html = client.get("/vc/sites").text
    page = _Page(html)
    regions = [a["data-region"] for a in page.find("section") if "data-region" in a]
    assert regions == ["seoul", "sejong", "jeju"]  # the regions' usual order
    sejong = html.split('id="region-sejong"', 1)[1].split("</section>", 1)[0]
    assert "세종특별자치시" in sejong and "시험 청사" in sejong and "정부청사" in sejong
    assert re.search(r'data-count="up">1<', sejong) and re.search(r'data-count="unknown">1<', sejong)
    jeju = html.split('id="region-jeju"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'data-count="down">1<', jeju) and "지방자치단체" in jeju
    assert 'href="/vc/rooms?site=lg-jeju"' in jeju and 'href="/vc/rooms?region=jeju"' in jeju
    centres = _Page(client.get("/vc/sites?kind=smart_work_centre").text)
    assert [a["data-region"] for a in centres.find("section") if "data-region" in a] == ["seoul"]
    assert client.get("/vc/sites?kind=castle").status_code == 422
    english = client.get("/vc/sites?lang=en").text
    assert "Sites by region" in english and "government complex" in english and "North Chungcheong" not in english


def test_the_centres_page_shows_seats_hours_and_vc_rooms(client: TestClient, network: None, users: None) -> None:
    form_login(client, "min1")
    html = client.get("/vc/centres").text
    row = html.split('data-centre="swc-test"', 1)[1].split("</tr>", 1)[0]
    assert ">24<" in row and "07:00-22:00" in row and "월, 화, 수, 목, 금" in row
    assert 'href="/vc/rooms/swc-test-vc"' in row and 'data-state="unknown"' in row
    empty = html.split('data-centre="swc-empty"', 1)[1].split("</tr>", 1)[0]
    assert "08:00-18:00" in empty and "영상회의실 없음" in empty
    english = client.get("/vc/centres?lang=en").text
    assert "Mon, Tue, Wed, Thu, Fri" in english and "no VC room" in english and "Opening hours" in english


def test_the_bridges_page_shows_state_and_load_never_a_secret(client: TestClient, network: None,
                                                             users: None) -> None:
    form_login(client, "sec1")
    html = client.get("/vc/bridges").text
    row = html.split('data-bridge="bridge-test"', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="up"' in row and "시험 청사" in row and "vc-bridge-1" in row and "127.2.0.5" in row
    assert '<meter min="0" max="10" value="3" high="8">' in row and "3 / 10" in row
    assert '<meter min="0" max="40" value="12" high="32">' in row and "12 / 40" in row
    assert BRIDGE_SECRET not in html and "secret" not in html.lower()
    assert 'id="no-reconciles"' in html and 'id="reconcile-form"' not in html  # a secretariat reads only
    english = client.get("/vc/bridges?lang=en").text
    assert "Video bridges" in english and "3 of 10" in english and "Participants / capacity" in english


def test_an_operator_reconciles_the_bridges_from_their_page(network: None, users: None, settings: Settings,
                                                           clock: FixedClock, tmp_path: Path,
                                                           sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:  # a secret the reconcile can open (the fixture's is a stand-in)
        s.scalars(select(Bridge)).one().admin_secret_sealed = secret_box(settings).seal("a-janus-admin-secret")
    with engine_settings(settings, tmp_path) as with_engine, TestClient(create_app(with_engine, clock=clock)) as client:
        form_login(client, "min1")
        page = client.get("/vc/bridges").text
        assert 'id="reconcile-form"' not in page
        assert client.post("/vc/bridges/reconcile", data={"csrf": csrf_of(client.get("/vc/rooms").text)},
                           follow_redirects=False).status_code == 403
        client.cookies.clear()
        form_login(client, "op1")
        page = client.get("/vc/bridges").text
        assert 'id="reconcile-form"' in page  # (the engine's own first cycle may have reconciled already)
        assert client.post("/vc/bridges/reconcile", data={}, follow_redirects=False).status_code == 403  # no CSRF
        done = client.post("/vc/bridges/reconcile", data={"csrf": csrf_of(page)}, follow_redirects=False)
        assert done.status_code == 303, done.text[-300:]
        assert done.headers["location"].startswith("/vc/bridges?queued=vc-reconcile-op-")
        reconcile_id = parse_qs(urlsplit(done.headers["location"]).query)["queued"][0]
        assert reconcile_id in _Page(client.get(done.headers["location"]).text).text("queued")
        deadline = time.monotonic() + 30
        while f'data-reconcile="{reconcile_id}" data-state="succeeded"' not in (page := client.get("/vc/bridges").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.2)
    # bridge-test (127.2.0.5) does not answer: the bridge is down, and the reconcile was the operator's, audited.
    assert 'data-bridge="bridge-test" data-state="down"' in page
    with transaction(sessions) as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "bridges")).all()
        assert [(a.action, a.actor, a.entity_id) for a in audit] == [("reconcile", "op1", reconcile_id)]


def test_the_seed_catalogue_renders_on_every_page(client: TestClient, users: None, sessions: sessionmaker[Session],
                                                  clock: FixedClock, settings: Settings, tmp_path: Path) -> None:
    _sync(sessions, clock, settings, Path(shutil.copytree(SEED, tmp_path / "seed")))
    form_login(client, "op1")
    rooms = client.get("/vc/rooms").text
    assert _counts(rooms) == {"total": 273, "up": 0, "down": 0, "unknown": 273, "out_of_service": 0}
    sites = _Page(client.get("/vc/sites").text)
    assert len([a for a in sites.find("section") if "data-region" in a]) == 17
    centres = client.get("/vc/centres").text
    assert centres.count("<tr data-centre=") == 18 and centres.count('href="/vc/rooms/swc-') == 14
    assert client.get("/vc/bridges").text.count("<tr data-bridge=") == 2
    assert client.get("/vc/rooms/seoul-1-100").status_code == 200


def test_every_string_of_the_vc_pages_is_in_korean_and_english() -> None:
    from controlplane.rooms.domain import EQUIPMENT, REGIONS, SITE_KINDS, WEEKDAYS
    from controlplane.web.i18n import STRINGS

    names = [p.name for p in TEMPLATES.glob("vc_*.html")]
    assert {"vc_rooms.html", "vc_room.html", "vc_sites.html", "vc_centres.html", "vc_bridges.html"} <= set(names)
    keys = {key for name in names
            for key in re.findall(r"t\('([a-z_.0-9]+)'\s*[,)]", (TEMPLATES / name).read_text(encoding="utf-8"))}
    keys |= {f"rstate.{s}" for s in (*service.ROOM_STATES, "retired")} | {f"region.{r}" for r in REGIONS}
    keys |= {f"skind.{k}" for k in SITE_KINDS} | {f"equip.{e}" for e in EQUIPMENT}
    keys |= {f"weekday.{d}" for d in WEEKDAYS} | {f"revent.{k}" for k in ("state", "service", "catalogue",
                                                                         "bridge_room")}
    keys |= {f"rcatalogue.{a}" for a in ("add", "change", "retire", "restore")}
    keys |= {"rservice.in", "rservice.out", "vc.saved_in", "vc.saved_out", "nav.vc", "nav.vc_rooms", "nav.vc_sites",
             "nav.vc_centres", "nav.vc_bridges"}
    assert sorted(k for k in keys if set(STRINGS.get(k, {})) != {"ko", "en"}) == []
