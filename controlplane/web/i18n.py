"""UI strings of the web pages, Korean by default with English; plus display formatting.

A plain dict, no gettext: `translator(lang)` returns a function `t(key, **values)` for the templates.
A key missing in a language falls back to Korean, then to the key itself, so a page never breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

LANGUAGES = ("ko", "en")
DEFAULT_LANG = "ko"

STRINGS: dict[str, dict[str, str]] = {
    # layout
    "app.title": {"ko": "정부 통합 클라우드·영상회의 관제",
                  "en": "Government cloud and video-conference control plane"},
    "app.short": {"ko": "통합 관제", "en": "Control plane"},
    "skip": {"ko": "본문 바로가기", "en": "Skip to content"},
    "nav.label": {"ko": "주 메뉴", "en": "Main menu"},
    "nav.infra": {"ko": "인프라 운영", "en": "Infrastructure operations"},
    "nav.meetings": {"ko": "회의 운영", "en": "Meeting secretariats"},
    "nav.ministries": {"ko": "부처", "en": "Ministries"},
    "nav.agencies": {"ko": "기관 목록", "en": "Agencies"},
    "nav.audit": {"ko": "감사 로그", "en": "Audit log"},
    "nav.meeting_list": {"ko": "지정 회의 목록", "en": "Designated meetings"},
    "nav.dashboard": {"ko": "영상회의 실적 대시보드", "en": "Video-meeting dashboard"},
    "nav.ministry_status": {"ko": "부처별 현황", "en": "Status by ministry"},
    "nav.my_ministry": {"ko": "우리 부처 현황", "en": "My ministry"},
    "lang.label": {"ko": "언어", "en": "Language"},
    "user.signed_in": {"ko": "{user} ({role})", "en": "{user} ({role})"},
    "logout": {"ko": "로그아웃", "en": "Log out"},
    "footer": {"ko": "시각은 모두 한국 표준시(Asia/Seoul)로 표시합니다.",
               "en": "All times are shown in Korea Standard Time (Asia/Seoul)."},
    # roles
    "role.admin": {"ko": "관리자", "en": "administrator"},
    "role.operator": {"ko": "인프라 운영자", "en": "operator"},
    "role.secretariat": {"ko": "회의 운영 사무국", "en": "secretariat"},
    "role.ministry": {"ko": "부처 담당자", "en": "ministry"},
    "role.auditor": {"ko": "감사자", "en": "auditor"},
    # login
    "login.title": {"ko": "로그인", "en": "Log in"},
    "login.username": {"ko": "아이디", "en": "Username"},
    "login.password": {"ko": "비밀번호", "en": "Password"},
    "login.submit": {"ko": "로그인", "en": "Log in"},
    "login.failed": {"ko": "아이디 또는 비밀번호가 올바르지 않습니다.", "en": "Wrong username or password."},
    "login.locked": {"ko": "로그인 실패가 너무 많습니다. 15분 후에 다시 시도하세요.",
                     "en": "Too many failed logins. Try again in 15 minutes."},
    "login.intro": {"ko": "업무 계정으로 로그인하세요.", "en": "Log in with your work account."},
    # errors
    "error.title": {"ko": "요청을 처리할 수 없습니다", "en": "The request could not be handled"},
    "error.401": {"ko": "로그인이 필요합니다", "en": "Login required"},
    "error.403": {"ko": "권한이 없습니다", "en": "Access denied"},
    "error.404": {"ko": "찾을 수 없습니다", "en": "Not found"},
    "error.409": {"ko": "이미 있는 항목과 충돌합니다", "en": "Conflict with an existing entry"},
    "error.422": {"ko": "입력값을 확인하세요", "en": "Please check the input"},
    "error.csrf": {"ko": "양식이 만료되었거나 올바르지 않습니다. 페이지를 새로 고친 뒤 다시 시도하세요.",
                   "en": "The form has expired or is not valid. Reload the page and try again."},
    "error.permission": {"ko": "이 페이지를 볼 권한이 없습니다 ({role}).",
                         "en": "Your role ({role}) may not see this page."},
    "error.field": {"ko": "항목: {field}", "en": "Field: {field}"},
    "error.back": {"ko": "대시보드로 돌아가기", "en": "Back to the dashboard"},
    "notice.no_policy": {"ko": "{period} 기간에는 적용되는 영상회의 기준(정책)이 없어 비교할 목표와 실적이 없습니다.",
                        "en": "No video-meeting policy is in force in {period}: there is no target or share to show."},
    "error.invalid_request": {"ko": "요청 값이 올바르지 않습니다.", "en": "The request is not valid."},
    # period
    "period.label": {"ko": "기간", "en": "Period"},
    "period.hint": {"ko": "연도(2014), 분기(2014-Q2) 또는 월(2014-03)",
                    "en": "Year (2014), quarter (2014-Q2) or month (2014-03)"},
    "period.show": {"ko": "조회", "en": "Show"},
    "period.range": {"ko": "{start} ~ {end}", "en": "{start} to {end}"},
    # dashboard
    "dash.title": {"ko": "영상회의 실적 대시보드", "en": "Video-meeting dashboard"},
    "dash.intro": {
        "ko": "지정 회의의 영상회의 개최 비율을 목표와 비교합니다. 실적은 개최된 회차 기준입니다.",
        "en": "The share of designated meetings' sessions held by video, against the target. "
              "Counts are of sessions held.",
    },
    "dash.government": {"ko": "정부 전체", "en": "Government-wide"},
    "dash.share": {"ko": "영상회의 비율", "en": "Video share"},
    "dash.target": {"ko": "목표", "en": "Target"},
    "dash.held": {"ko": "개최 회차", "en": "Sessions held"},
    "dash.video": {"ko": "영상회의 회차", "en": "By video"},
    "dash.forecast": {"ko": "더 필요한 영상회의", "en": "Video sessions still needed"},
    "dash.scheduled": {"ko": "예정 회차 {n}회 기준", "en": "out of {n} scheduled"},
    "dash.chart": {"ko": "부처별 영상회의 비율", "en": "Video share by ministry"},
    "dash.chart_desc": {
        "ko": "부처별 영상회의 비율 가로 막대그래프. 세로 점선은 목표 {target}입니다.",
        "en": "Horizontal bar chart of the video share per ministry. The dashed vertical line is the target, {target}.",
    },
    "dash.target_line": {"ko": "목표 {target}", "en": "Target {target}"},
    "dash.table": {"ko": "부처별 실적", "en": "Figures by ministry"},
    "dash.no_rows": {"ko": "이 기간에 지정된 회의가 없습니다.", "en": "No meetings are designated in this period."},
    "dash.legend": {"ko": "범례", "en": "Legend"},
    "dash.bar_title": {"ko": "{name} ({code}): 영상회의 비율 {share}, 목표 {target}, {status}",
                       "en": "{name} ({code}): video share {share}, target {target}, {status}"},
    # columns
    "col.code": {"ko": "코드", "en": "Code"},
    "col.name": {"ko": "이름", "en": "Name"},
    "col.ministry": {"ko": "부처", "en": "Ministry"},
    "col.meeting": {"ko": "회의", "en": "Meeting"},
    "col.held": {"ko": "개최", "en": "Held"},
    "col.video": {"ko": "영상", "en": "Video"},
    "col.share": {"ko": "비율", "en": "Share"},
    "col.target": {"ko": "목표", "en": "Target"},
    "col.forecast": {"ko": "필요 영상회의", "en": "Video needed"},
    "col.status": {"ko": "상태", "en": "Status"},
    "col.host": {"ko": "주관 기관", "en": "Host"},
    "col.cadence": {"ko": "주기", "en": "Cadence"},
    "col.window": {"ko": "지정 기간", "en": "Designated"},
    "col.active": {"ko": "운영", "en": "Active"},
    "col.kind": {"ko": "구분", "en": "Kind"},
    "col.parent": {"ko": "상위 기관", "en": "Parent"},
    "col.name_ko": {"ko": "기관명", "en": "Name (Korean)"},
    "col.name_en": {"ko": "영문명", "en": "Name (English)"},
    "col.date": {"ko": "개최일", "en": "Date"},
    "col.mode": {"ko": "방식", "en": "Mode"},
    "col.evidence": {"ko": "근거", "en": "Evidence"},
    "col.note": {"ko": "비고", "en": "Note"},
    "col.recorded": {"ko": "등록 시각", "en": "Recorded"},
    "col.time": {"ko": "시각", "en": "Time"},
    "col.actor": {"ko": "수행자", "en": "Actor"},
    "col.action": {"ko": "작업", "en": "Action"},
    "col.entity": {"ko": "대상", "en": "Entity"},
    "col.changes": {"ko": "변경 내용", "en": "Changes"},
    # statuses and values
    "status.on_track": {"ko": "목표 달성", "en": "on track"},
    "status.at_risk": {"ko": "주의", "en": "at risk"},
    "status.below": {"ko": "미달", "en": "below target"},
    "status.no_data": {"ko": "실적 없음", "en": "no data"},
    "forecast.unreachable": {"ko": "달성 불가", "en": "unreachable"},
    "mode.video": {"ko": "영상회의", "en": "video"},
    "mode.in_person": {"ko": "대면", "en": "in person"},
    "mode.hybrid": {"ko": "영상 병행", "en": "hybrid"},
    "session.held": {"ko": "개최", "en": "held"},
    "session.scheduled": {"ko": "예정", "en": "scheduled"},
    "session.cancelled": {"ko": "취소", "en": "cancelled"},
    "evidence.manual": {"ko": "수기 입력", "en": "typed in"},
    "evidence.bridge": {"ko": "브리지 기록", "en": "bridge record"},
    "cadence.weekly": {"ko": "매주", "en": "weekly"},
    "cadence.biweekly": {"ko": "격주", "en": "every two weeks"},
    "cadence.monthly": {"ko": "매월", "en": "monthly"},
    "cadence.quarterly": {"ko": "분기", "en": "quarterly"},
    "cadence.semiannual": {"ko": "반기", "en": "half-yearly"},
    "cadence.annual": {"ko": "매년", "en": "yearly"},
    "cadence.ad_hoc": {"ko": "수시", "en": "ad hoc"},
    "kind.ministry": {"ko": "부", "en": "ministry"},
    "kind.office": {"ko": "처·위원회", "en": "office"},
    "kind.agency": {"ko": "청", "en": "agency"},
    "kind.local_government": {"ko": "지방자치단체", "en": "local government"},
    "yes": {"ko": "예", "en": "yes"},
    "no": {"ko": "아니요", "en": "no"},
    "open_ended": {"ko": "계속", "en": "open-ended"},
    "none": {"ko": "–", "en": "–"},
    # ministries
    "min.index_title": {"ko": "부처별 현황", "en": "Status by ministry"},
    "min.index_intro": {"ko": "지정 회의를 주관하는 부처입니다. 부처를 골라 회의별 실적과 회차를 보세요.",
                        "en": "Ministries hosting designated meetings. Pick one to see its meetings and sessions."},
    "min.title": {"ko": "{name} 영상회의 현황", "en": "{name}: video meetings"},
    "min.total": {"ko": "부처 합계", "en": "Ministry total"},
    "min.meetings": {"ko": "회의별 실적", "en": "By meeting"},
    "min.no_meetings": {"ko": "이 기간에 이 부처가 주관하는 지정 회의가 없습니다.",
                        "en": "This ministry hosts no designated meeting in this period."},
    "min.sessions": {"ko": "최근 회차", "en": "Recent sessions"},
    "min.sessions_scope": {"ko": "기간 안의 최근 {n}건까지 표시합니다.",
                           "en": "Up to the {n} most recent in the period."},
    "min.no_sessions": {"ko": "표시할 회차가 없습니다.", "en": "No sessions to show."},
    "min.record": {"ko": "회차 기록", "en": "Record a session"},
    "min.record_intro": {"ko": "이 부처가 주관한 지정 회의의 회차를 기록합니다.",
                         "en": "Record a session of a designated meeting this ministry hosts."},
    "min.recorded": {"ko": "회차를 기록했습니다.", "en": "The session was recorded."},
    "min.save": {"ko": "기록", "en": "Record"},
    "min.form_error": {"ko": "회차를 기록하지 못했습니다", "en": "The session was not recorded"},
    "form.meeting": {"ko": "회의", "en": "Meeting"},
    "form.held_on": {"ko": "개최일", "en": "Date"},
    "form.mode": {"ko": "방식", "en": "Mode"},
    "form.status": {"ko": "상태", "en": "Status"},
    "form.note": {"ko": "비고 (선택)", "en": "Note (optional)"},
    "form.inactive": {"ko": "운영 중지", "en": "inactive"},
    # meetings
    "meet.title": {"ko": "지정 회의 목록", "en": "Designated meetings"},
    "meet.intro": {"ko": "영상회의 실적을 관리하는 부처 간 지정 회의입니다.",
                   "en": "The designated inter-agency meetings whose video share is tracked."},
    "meet.filter": {"ko": "검색 조건", "en": "Filter"},
    "meet.ministry": {"ko": "주관 부처", "en": "Host ministry"},
    "meet.all": {"ko": "전체", "en": "All"},
    "meet.q": {"ko": "검색어 (이름 또는 코드)", "en": "Search (name or code)"},
    "meet.search": {"ko": "검색", "en": "Search"},
    "meet.count": {"ko": "{n}건", "en": "{n} meetings"},
    "meet.none": {"ko": "조건에 맞는 회의가 없습니다.", "en": "No meeting matches."},
    # agencies
    "ag.title": {"ko": "기관 목록", "en": "Agencies"},
    "ag.intro": {"ko": "통합 클라우드와 영상회의망을 쓰는 중앙행정기관과 지방자치단체입니다.",
                 "en": "Central government bodies and local governments on the integrated cloud and video network."},
    "ag.count": {"ko": "{n}개 기관", "en": "{n} agencies"},
    # audit
    "audit.title": {"ko": "감사 로그", "en": "Audit log"},
    "audit.intro": {"ko": "최근 {n}건의 변경 기록입니다 (읽기 전용).",
                    "en": "The last {n} recorded changes (read-only)."},
    "audit.none": {"ko": "기록이 없습니다.", "en": "Nothing recorded."},
    # cloud
    "nav.cloud": {"ko": "클라우드 현황", "en": "Agencies on the cloud"},
    "cloud.title": {"ko": "기관별 클라우드 현황", "en": "Agencies on the cloud"},
    "cloud.intro": {"ko": "{cloud} 클라우드에 입주한 기관의 프로젝트, 할당량 사용량과 적용 상태입니다.",
                    "en": "Agencies' projects on the cloud {cloud}: quota use and onboarding status."},
    "cloud.count": {"ko": "{n}개 기관", "en": "{n} agencies"},
    "cloud.none": {"ko": "아직 입주 명세가 등록된 기관이 없습니다.", "en": "No agency has an onboarding spec yet."},
    "cloud.quota_as_of": {"ko": "할당량 사용량은 {at} 기준입니다.", "en": "Quota use as of {at}."},
    "cloud.quota_unknown": {"ko": "아직 읽지 못함", "en": "not read yet"},
    "cloud.stale": {"ko": "마지막 갱신에서 클라우드에 연결하지 못했습니다({reason}). 표시된 수치는 이전 값입니다.",
                    "en": "The last refresh did not reach the cloud ({reason}): the figures shown are older."},
    "cloud.unreachable": {"ko": "클라우드({cloud})에서 현재 상태를 읽지 못했습니다: {message}",
                          "en": "The current state could not be read from the cloud ({cloud}): {message}"},
    "cloud.capacity": {"ko": "하이퍼바이저 용량", "en": "Hypervisor capacity"},
    "cloud.no_capacity": {"ko": "아직 읽은 하이퍼바이저가 없습니다.", "en": "No hypervisor read yet."},
    "cstatus.not_applied": {"ko": "미적용", "en": "not applied"},
    "cstatus.queued": {"ko": "대기 중", "en": "queued"},
    "cstatus.running": {"ko": "적용 중", "en": "applying"},
    "cstatus.applied": {"ko": "적용됨", "en": "applied"},
    "cstatus.pending_changes": {"ko": "변경 대기", "en": "changes pending"},
    "cstatus.failed": {"ko": "실패", "en": "failed"},
    "cstatus.succeeded": {"ko": "성공", "en": "succeeded"},
    "quota.instances": {"ko": "서버", "en": "Servers"},
    "quota.cores": {"ko": "vCPU", "en": "vCPUs"},
    "quota.ram_mb": {"ko": "메모리(MiB)", "en": "Memory (MiB)"},
    "quota.volumes": {"ko": "볼륨", "en": "Volumes"},
    "quota.use": {"ko": "{used} / {limit}", "en": "{used} of {limit}"},
    "quota.unlimited": {"ko": "{used} / 무제한", "en": "{used} (unlimited)"},
    "action.create": {"ko": "생성", "en": "create"},
    "action.update": {"ko": "변경", "en": "update"},
    "action.delete": {"ko": "삭제", "en": "delete"},
    "col.project": {"ko": "프로젝트", "en": "Project"},
    "col.cidr": {"ko": "네트워크 대역", "en": "Network (CIDR)"},
    "col.quota": {"ko": "할당량 사용량", "en": "Quota use"},
    "col.last_applied": {"ko": "마지막 적용", "en": "Last applied"},
    "col.last_plan": {"ko": "마지막 계획", "en": "Last plan"},
    "col.server": {"ko": "서버", "en": "Server"},
    "col.addresses": {"ko": "주소", "en": "Addresses"},
    "col.flavor": {"ko": "사양", "en": "Flavor"},
    "col.owner": {"ko": "소유 작업", "en": "Owner"},
    "col.id": {"ko": "ID", "en": "ID"},
    "col.network": {"ko": "네트워크", "en": "Network"},
    "col.subnet": {"ko": "서브넷", "en": "Subnet"},
    "col.router": {"ko": "라우터", "en": "Router"},
    "col.resource": {"ko": "자원", "en": "Resource"},
    "col.use": {"ko": "사용 / 한도", "en": "In use / limit"},
    "col.hypervisor": {"ko": "하이퍼바이저", "en": "Hypervisor"},
    "col.vcpus": {"ko": "vCPU", "en": "vCPUs"},
    "col.memory": {"ko": "메모리(MiB)", "en": "Memory (MiB)"},
    "col.servers": {"ko": "서버 수", "en": "Servers"},
    "col.protocol": {"ko": "프로토콜", "en": "Protocol"},
    "col.ports": {"ko": "포트", "en": "Ports"},
    "col.remote": {"ko": "허용 대역", "en": "From"},
    "col.requested_by": {"ko": "요청자", "en": "Requested by"},
    "col.started": {"ko": "시작", "en": "Started"},
    "col.finished": {"ko": "종료", "en": "Finished"},
    "col.result": {"ko": "결과", "en": "Outcome"},
    "ca.title": {"ko": "{name} 클라우드 현황", "en": "{name} on the cloud"},
    "ca.back": {"ko": "기관별 클라우드 현황으로", "en": "All agencies on the cloud"},
    "ca.summary": {"ko": "프로젝트 {project} · 네트워크 대역 {cidr}", "en": "Project {project} · network {cidr}"},
    "ca.quota": {"ko": "할당량 사용량", "en": "Quota use"},
    "ca.no_quota": {"ko": "프로젝트가 아직 없어 사용량이 없습니다.", "en": "No project yet, so no quota use."},
    "ca.servers": {"ko": "서버", "en": "Servers"},
    "ca.no_servers": {"ko": "서버가 없습니다.", "en": "No servers."},
    "ca.networks": {"ko": "네트워크", "en": "Networks"},
    "ca.no_networks": {"ko": "아직 네트워크가 없습니다(적용 전).", "en": "No network yet (not applied)."},
    "ca.spec": {"ko": "입주 명세", "en": "Onboarding spec"},
    "ca.ingress": {"ko": "허용 인바운드 규칙", "en": "Ingress rules"},
    "ca.no_ingress": {"ko": "허용 규칙이 없습니다.", "en": "No ingress rules."},
    "ca.public_key": {"ko": "공개 키", "en": "Public key"},
    "ca.no_key": {"ko": "등록한 공개 키가 없습니다.", "en": "No public key."},
    "ca.plan": {"ko": "마지막 계획", "en": "Last plan"},
    "ca.plan_fresh": {"ko": "방금 클라우드와 비교한 계획입니다.", "en": "Planned just now against the cloud."},
    "ca.planned_at": {"ko": "{at}에 만든 계획입니다.", "en": "Planned at {at}."},
    "ca.no_plan": {"ko": "아직 계획이 없습니다.", "en": "No plan yet."},
    "ca.noop": {"ko": "클라우드와 명세가 같아 바꿀 것이 없습니다.",
                "en": "The cloud matches the spec: nothing to change."},
    "ca.plan_button": {"ko": "계획 보기 (클라우드와 비교)", "en": "Plan (compare with the cloud)"},
    "ca.apply": {"ko": "적용", "en": "Apply"},
    "ca.apply_intro": {"ko": "명세를 클라우드에 적용합니다. 작업은 백그라운드에서 실행되며 결과는 이 페이지에 "
                             "나타납니다.",
                       "en": "Applies the spec to the cloud. It runs in the background; its outcome shows on "
                             "this page."},
    "ca.apply_button": {"ko": "지금 적용", "en": "Apply now"},
    "ca.queued": {"ko": "작업 {id}을(를) 접수했습니다. 페이지를 새로 고치면 진행 상황이 보입니다.",
                  "en": "Operation {id} was queued. Reload the page to follow it."},
    "ca.reload": {"ko": "새로 고침", "en": "Reload"},
    "ca.operations": {"ko": "최근 작업", "en": "Recent operations"},
    "ca.no_operations": {"ko": "아직 작업이 없습니다.", "en": "No operations yet."},
}


Translator = Callable[..., str]


def normalise_lang(value: str | None) -> str | None:
    """'ko' or 'en' when `value` names a supported language, else None."""
    value = (value or "").strip().lower()
    return value if value in LANGUAGES else None


def translator(lang: str) -> Translator:
    def t(key: str, **values: Any) -> str:
        entry = STRINGS.get(key)
        text = key if entry is None else entry.get(lang) or entry.get(DEFAULT_LANG) or key
        return text.format(**values) if values else text

    return t


def format_percent(value: float | None) -> str:
    """0.4348 -> '43.5%'; None -> '–'. The dashboard and its tests use this one format."""
    return "–" if value is None else f"{value * 100:.1f}%"


def format_forecast(forecast: int | str, t: Translator) -> str:
    """Video sessions still needed (a count), or 'unreachable' in the page's language."""
    return t("forecast.unreachable") if forecast == "unreachable" else str(forecast)


def format_local(value: datetime | None, timezone: str) -> str:
    """A stored UTC time as local wall time, e.g. '2014-07-01 12:00 KST'."""
    if value is None:
        return "–"
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def format_day(value: date | None) -> str:
    return "–" if value is None else value.isoformat()
