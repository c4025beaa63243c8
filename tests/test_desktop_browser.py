"""The agent's desktop end to end, as an agent works it: `contactcenter run` (headset on a PulseAudio null sink,
the real Korean Vosk model, the tickets and CRM plugins) serves the page it prints; headless Chromium opens it;
a SIPp caller rings through the desk's own Kamailio.

Before the answer the page shows who is calling (the customer record, the last call, the open ticket and the
callback owed); the agent answers at ring 1 from the page; speaks a stand-in banned phrase into the microphone
and sees the alert, with its severity and the script's suggested wording; every code on the page is named as
scripts_zh/vocabulary.toml names it, and the page runs under its Content-Security-Policy without one
violation; holds and resumes; the caller hangs up; the wrap-up refuses bad input and saves nothing,
then saves what was typed into the call, the customer, the ticket, the callback and the CRM; a break (小休)
makes the next caller get 486; every state stretch is stored. The page's screenshot is written to
``tests/artefacts/agent_desktop.png``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import tomllib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import soundfile
from sqlalchemy import func, select

from contactcenter.storage.agent_states import state_durations
from contactcenter.storage.models import AgentStateSpan, Call, Callback, Customer, CustomerChange, Ticket
from tests.helpers.browser import wait_for
from tests.helpers.factories import KNOWN_CALLER, seed_known_caller
from tests.helpers.korean import COMMON_WORDS, stand_in_rules, words_recognised
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_tcp_port
from tests.helpers.sip import run_sipp, sipp_scenario
from tests.helpers.sound import EARS, MIC, SoundServer
from tests.helpers.waiting import wait_until
from tests.helpers.web import desk_for_processes, start_command, stop_command

pytestmark = pytest.mark.sip
ARTEFACTS = Path(__file__).parent / "artefacts"
RING_PERIOD = 3.0  # long enough that a loaded machine still shows the screen-pop and takes the click in ring 1
CALLER = KNOWN_CALLER
# Records every Content-Security-Policy violation from the first moment of every document (added through the
# DevTools protocol, so it runs whatever the page's policy says).
CSP_LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "") + " " + (e.sample || ""));
});
"""


def seed_open_business(database, customer_id: int) -> None:
    """An open ticket and a complaint callback owed to the known caller: the screen-pop lists both."""
    with database.session() as session:
        session.add(
            Ticket(customer_id=customer_id, caller_phone=CALLER, category="投诉", purpose="空调噪音大", status="open")
        )
        session.add(
            Callback(
                customer_id=customer_id,
                phone=CALLER,
                kind="complaint",
                state="pending",
                reason="噪音投诉跟进",
                owner_extension="1001",
                due_at=datetime.now(UTC) + timedelta(hours=20),
            )
        )


def codes_shown(browser, vocabulary: dict[str, dict[str, str]], rule_ids: set[str]) -> set[str]:
    """The stored codes (every table's, and the rules' ids) among the words the page shows."""
    codes = {code for table in vocabulary.values() for code in table} | rule_ids
    shown = browser.execute_script("return document.body.innerText")
    return codes & set(re.findall(r"[A-Za-z][A-Za-z_]*", shown))


class CrmReceiver:
    """A CRM endpoint on loopback that accepts every message and keeps it."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.documents.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_tcp_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if d.get("event") == name]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def counts(database) -> dict[str, int]:
    with database.session() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (Ticket, Callback, Customer, CustomerChange)
        }


@pytest.fixture
def crm():
    receiver = CrmReceiver()
    yield receiver
    receiver.stop()


def test_an_agent_works_a_call_from_the_desktop(
    tmp_path: Path, sound_server: SoundServer, korean_model, korean_model_path: Path, browser, crm: CrmReceiver
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    speech16k, _ = soundfile.read(str(speech_clip("real16k/r03.wav")), dtype="int16")
    words = words_recognised(korean_model, soundfile.read(str(speech_clip("real8k/r03.wav")), dtype="int16")[0])
    assert words, "the Korean model recognises nothing in the clip"
    rules = stand_in_rules(tmp_path / "rules.toml", [*words, *COMMON_WORDS], required=True)
    agent_port = free_tcp_port()
    desk_file, database, env = desk_for_processes(
        tmp_path,
        {},
        ring__ring_period_seconds=str(RING_PERIOD),
        ring__answer_after_rings="3",
        agent__port=str(agent_port),
        agent__wrap_up_seconds="600",
        speech__model_path=str(korean_model_path),
        scripts__rules=str(rules),
        plugins__enabled='["tickets", "crm_webhook"]',
        plugins__crm_webhook__url=crm.url,
        plugins__crm_webhook__events='["call.ended", "call.wrapped_up"]',
    )
    env["CONTACTCENTER_CRM_SECRET"] = "desk-test-secret"
    seed_open_business(database, seed_known_caller(database))
    vocabulary = tomllib.loads((desk_file.parent / "scripts_zh" / "vocabulary.toml").read_text(encoding="utf-8"))
    rule_ids = set(re.findall(r'^id = "(\w+)"', rules.read_text(encoding="utf-8"), re.MULTILINE))
    assert {"banned_phrases", "greeting"} <= rule_ids
    desk, url, output = start_desk(env, desk_file.parent)
    registrar = f"127.0.0.1:{env['CONTACTCENTER_LOCAL_REGISTRAR__PORT']}"
    caller_result: list = []
    try:
        # ------------------------------------------------------------------ the token opens the page
        assert httpx.get(url.split("?")[0]).status_code == 401  # without the token: no page
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
        browser.get(url)
        wait_for(browser, lambda d: d.find_element(By.ID, "agent-state").text.startswith("就绪"))
        assert "token" not in browser.current_url  # the token is exchanged for a cookie and leaves the address

        # -------------------------------------------------------- screen-pop while it rings; answer at ring 1
        scenario = sipp_scenario("uac_call.xml", tmp_path, TALK_MS=22000, RTP_PORT=9, CODECS="0")
        caller = threading.Thread(
            target=lambda: caller_result.append(run_sipp(scenario, remote=registrar, timeout=60, rtt=True))
        )
        caller.start()
        wait_for(browser, lambda d: "张三" in d.find_element(By.ID, "pop").text, 10)
        pop = browser.find_element(By.ID, "pop").text
        assert "称呼:张先生" in pop and "示例公司" in pop and "报修" in pop and "92.5" in pop, pop
        # the earlier call, the open ticket and the callback owed, each code named by the vocabulary
        wait_for(browser, lambda d: "空调噪音大" in d.find_element(By.ID, "pop").text, 10)
        pop = browser.find_element(By.ID, "pop").text
        names = {
            vocabulary["direction"]["inbound"],
            vocabulary["disposition"]["completed"],
            vocabulary["ticket_status"]["open"],
            vocabulary["callback_kind"]["complaint"],
            vocabulary["callback_state"]["pending"],
        }
        assert all(name in pop for name in names), (names, pop)
        assert browser.find_element(By.ID, "call-state").text == "振铃"  # all of it before the answer
        assert "自动接听" in browser.find_element(By.ID, "auto-answer").text
        browser.find_element(By.ID, "btn-answer").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "call-state").text == "通话中", 10)
        assert browser.find_element(By.ID, "agent-state").text == "通话中"

        # ------------------------------------------- the agent says the stand-in banned phrase: alert, checklist
        microphone = sound_server.play(MIC, speech16k, rate=16000)
        alert = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#alerts .alert").text, 40)
        assert "服务禁语" in alert and "建议" in alert, alert
        # the severity as the one vocabulary names it (banned_phrases is critical in the stand-in rules)
        severity = browser.find_element(By.CSS_SELECTOR, '#alerts .alert[data-rule="banned_phrases"] .severity')
        assert severity.text == "⚠ " + vocabulary["severity"]["critical"], severity.text
        assert not codes_shown(browser, vocabulary, rule_ids), browser.execute_script("return document.body.innerText")
        wait_for(
            browser, lambda d: "[已说]" in d.find_element(By.CSS_SELECTOR, '#checklist li[data-rule="greeting"]').text
        )
        microphone.wait(timeout=30)
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#transcript .line.agent"))

        # ------------------------------------------------------------------------------ hold and resume
        browser.find_element(By.ID, "btn-hold").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "btn-hold").text.startswith("恢复通话"))
        browser.find_element(By.TAG_NAME, "body").send_keys("h")  # the keyboard shortcut resumes
        wait_for(browser, lambda d: d.find_element(By.ID, "btn-hold").text.startswith("保持"))

        # ----------------------------------------------------- the caller hangs up: wrap-up, typed during it
        Select(browser.find_element(By.ID, "f-category")).select_by_visible_text("报修")
        wait_for(browser, lambda d: d.find_element(By.ID, "agent-state").text.startswith("话后处理"), 40)
        caller.join(timeout=60)
        assert caller_result and caller_result[0].returncode == 0, caller_result and caller_result[0].stdout[-2000:]
        [rtt] = list(tmp_path.glob("uac_call_*_rtt.csv"))
        rows = [r.split(";") for r in rtt.read_text().splitlines() if r and not r.startswith("Date")]
        answered_after = float(rows[-1][-2]) / 1000
        assert answered_after < RING_PERIOD, answered_after  # the agent's click, not the policy's third ring
        wait_for(browser, lambda d: d.find_element(By.ID, "btn-save").is_enabled(), 60)  # stored, speech done
        with database.session() as session:
            call_id = session.scalar(select(Call.id).where(Call.sip_call_id != "earlier-call"))
        assert wait_until(lambda: _ticket(database, call_id) is not None, 20)  # the machine's ticket, not wrapped up
        assert not _ticket(database, call_id).wrapped_up
        before = counts(database)

        def field(name: str):
            return browser.find_element(By.ID, f"f-{name}")

        # bad input: a clear message on the form, nothing saved
        field("caller_name").clear()
        field("purpose").clear()
        field("notes").send_keys("很长" * 5000)
        browser.find_element(By.ID, "btn-save").click()
        wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, '.err[data-for="caller_name"]').text)
        errors = {
            name: browser.find_element(By.CSS_SELECTOR, f'.err[data-for="{name}"]').text
            for name in ("caller_name", "purpose", "notes")
        }
        assert all(errors.values()), errors
        assert counts(database) == before
        with database.session() as session:
            assert session.get(Call, call_id).wrapped_up_at is None

        field("notes").clear()
        field("caller_name").send_keys("张三")
        field("company").clear()
        field("company").send_keys("示例公司北京分公司")
        field("purpose").send_keys("空调不制冷,要求上门维修")
        field("notes").send_keys("型号 KFR-35,已过保")
        field("resolution").send_keys("已派工程师")
        next_day = field("next_day_callback")
        assert next_day.is_selected()  # 报修: 次日回访 prefilled
        due_text = field("next_day_at").get_attribute("value")
        assert due_text, "the next working day is prefilled"

        # a phone that is no number: refused under the field by the numbering-plan check, the rest kept as typed
        typed = {name: field(name).get_attribute("value") for name in ("caller_name", "company", "purpose", "notes")}
        number = field("phone").get_attribute("value")
        assert number == CALLER
        for bad, says in (
            ("abc", "电话含有不允许的字符“a”"),
            ("1" * 31, "电话过长"),
            ("=1+1", "电话含有不允许的字符“=”"),
        ):
            field("phone").clear()
            field("phone").send_keys(bad)
            browser.find_element(By.ID, "btn-save").click()
            shown_error = wait_for(
                browser,
                lambda d, says=says: (
                    (e := d.find_element(By.CSS_SELECTOR, '.err[data-for="phone"]').text).startswith(says) and e
                ),
            )
            assert "\n" not in shown_error, shown_error  # one line
            assert field("phone").get_attribute("value") == bad
            assert {name: field(name).get_attribute("value") for name in typed} == typed
            assert field("next_day_callback").is_selected() and field("next_day_at").get_attribute("value") == due_text
        assert counts(database) == before
        with database.session() as session:
            assert session.get(Call, call_id).wrapped_up_at is None
        field("phone").clear()
        field("phone").send_keys(number)
        field("resolution").send_keys(Keys.CONTROL, Keys.ENTER)  # the keyboard saves it
        wait_for(browser, lambda d: d.find_element(By.ID, "wrap-result").text not in ("", "保存中…"), 15)
        shown = browser.execute_script(
            "return [...document.querySelectorAll('.err')].filter(e => e.textContent).map(e => e.dataset.for + ': ' + e.textContent)"
        )
        assert browser.find_element(By.ID, "wrap-result").text.startswith("已保存"), shown
        wait_for(browser, lambda d: d.find_element(By.ID, "agent-state").text.startswith("就绪"))
        ARTEFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTEFACTS / "agent_desktop.png"))

        # ------------------------------------------------------------------ what was typed, everywhere
        with database.session() as session:
            call = session.scalars(select(Call).where(Call.sip_call_id != "earlier-call")).one()
            assert (call.purpose, call.category, call.notes, call.resolution) == (
                "空调不制冷,要求上门维修",
                "报修",
                "型号 KFR-35,已过保",
                "已派工程师",
            )
            assert call.wrapped_up_at is not None and call.wrapped_up_by == "1001" and call.rings_before_answer == 1
            customer = session.get(Customer, call.customer_id)
            assert (customer.name, customer.company, customer.salutation) == ("张三", "示例公司北京分公司", "先生")
            [change] = session.scalars(select(CustomerChange).where(CustomerChange.customer_id == customer.id)).all()
            assert change.change["company"] == ["示例公司", "示例公司北京分公司"] and change.changed_by == "agent:1001"
            [callback] = session.scalars(select(Callback).where(Callback.call_id == call.id)).all()
            assert callback.kind == "next_day" and callback.phone.endswith("8000")
            zone = ZoneInfo("Asia/Shanghai")  # [general] timezone: the form's times are the desk's wall clock
            assert callback.due_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M") == due_text
            judged = {hit.rule_id for hit in call.rule_hits}
            assert {"banned_phrases", "greeting", "hold_request"} <= judged  # the hold was marked and timed
        assert wait_until(lambda: _ticket(database, call.id) is not None and _ticket(database, call.id).wrapped_up, 20)
        ticket = _ticket(database, call.id)
        assert (ticket.caller_name, ticket.category, ticket.purpose, ticket.resolution) == (
            "张三",
            "报修",
            "空调不制冷,要求上门维修",
            "已派工程师",
        )
        assert wait_until(lambda: crm.events("call.wrapped_up"), 20)
        document = json.dumps(crm.events("call.wrapped_up")[-1], ensure_ascii=False)
        assert "空调不制冷" in document and "张三" in document

        # ------------------------------------------------- the customer record: its history, edited from the page
        wait_for(browser, lambda d: "示例公司 → 示例公司北京分公司" in d.find_element(By.ID, "customer-history").text)
        assert vocabulary["role"]["agent"] + " 1001" in browser.find_element(By.ID, "customer-history").text
        assert not codes_shown(browser, vocabulary, rule_ids), browser.execute_script("return document.body.innerText")
        assert browser.execute_script("return window.__csp") == []  # the whole call, under the page's policy
        browser.find_element(By.ID, "c-vip").click()
        browser.find_element(By.ID, "c-notes").send_keys("老客户,报修请优先")
        browser.find_element(By.ID, "btn-save-customer").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "customer-result").text == "已保存")
        with database.session() as session:
            edited = session.get(Customer, customer.id)
            assert edited.vip and edited.notes == "老客户,报修请优先"
            last = session.scalars(select(CustomerChange).order_by(CustomerChange.id.desc()).limit(1)).one()
            assert last.change == {"vip": [False, True], "notes": ["", "老客户,报修请优先"]}

        # --------------------------------------------------------------------- a break: the next caller gets 486
        Select(browser.find_element(By.ID, "reason")).select_by_visible_text("会议")
        browser.find_element(By.ID, "btn-break").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "agent-state").text == "小休 · 会议")
        busy = run_sipp(sipp_scenario("uac_expect_busy.xml", tmp_path), remote=registrar, timeout=20)
        assert busy.returncode == 0, busy.stdout[-2000:]
        assert wait_until(lambda: any("refused" in line for line in output), 5)
    finally:
        if desk.poll() is None:
            stop_command(desk)
    # ------------------------------------------------------------------------- every state stretch stored
    with database.session() as session:
        states = [s.state for s in session.scalars(select(AgentStateSpan).order_by(AgentStateSpan.id))]
        assert states[:6] == ["ready", "ringing", "on_call", "wrap_up", "ready", "not_ready"], states
        assert states[-1] == "offline"
        now = datetime.now(UTC)
        times = state_durations(session, start=now - timedelta(hours=1), end=now)["1001"]
        assert times.talk_s > 10 and times.wrap_up_s > 0 and times.ready_s > 0 and times.not_ready_s["会议"] > 0
    database.dispose()


def _ticket(database, call_id: int) -> Ticket | None:
    with database.session() as session:
        return session.scalars(select(Ticket).where(Ticket.call_id == call_id)).first()


def start_desk(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`contactcenter run`, once ready; the agent desktop's address it printed; what it prints (kept read)."""
    desk = start_command(["run"], env, cwd, "ready")
    output: list[str] = list(desk.printed)
    found = [re.search(r"agent desktop \(坐席工作台\): (http://\S+)", line) for line in output]
    urls = [match.group(1) for match in found if match]
    assert urls, "".join(output)
    threading.Thread(target=lambda: output.extend(desk.stdout), daemon=True).start()
    return desk, urls[0], output


def test_the_page_needs_the_token_and_each_change_its_csrf_value_and_refuses_bad_input(
    tmp_path: Path, sound_server: SoundServer
) -> None:
    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    desk_file, database, env = desk_for_processes(tmp_path, {}, agent__port=str(free_tcp_port()))
    database.dispose()
    desk, url, output = start_desk(env, desk_file.parent)
    base = url.split("/?")[0]
    try:
        page = httpx.get(base + "/")
        assert page.status_code == 401 and "请用 contactcenter run 打印的链接打开坐席工作台" in page.text
        assert httpx.get(base + "/?token=wrong").status_code == 401
        assert httpx.get(base + "/api/snapshot").json() == {"detail": "请用 contactcenter run 打印的链接打开坐席工作台"}
        with httpx.Client(base_url=base) as client:
            signed = client.get(url.replace(base, ""))
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            assert "httponly" in signed.headers["set-cookie"].lower()
            assert "samesite=strict" in signed.headers["set-cookie"].lower()
            shown = client.get("/")
            csrf = re.search(r"const CSRF = \"([^\"]+)\"", shown.text).group(1)
            # `run`'s own desktop sends the security headers (tests/test_desktop_security.py has the rest)
            for answer in (page, signed, shown, client.get("/api/snapshot")):
                assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
                assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            # a change without the page's own value (another site's form): refused, nothing changed
            assert client.post("/api/agent/not-ready", json={"reason": "会议"}).status_code == 403
            assert client.get("/api/snapshot").json()["agent"]["state"] == "ready"
            headers = {"X-Desk-Token": csrf}
            refused = client.post("/api/agent/not-ready", json={"reason": "打游戏"}, headers=headers)
            assert refused.status_code == 422 and refused.json()["detail"].startswith("小休原因须为")
            hostile = {
                ("post", "/api/agent/not-ready", json.dumps({"reason": "会" * 10000})): 422,
                ("post", "/api/callbacks/99999999999999999999/dial", ""): 404,
                ("post", "/api/call/transfer", json.dumps({"target": "1002>;evil"})): 422,
                ("post", "/api/call/dtmf", json.dumps({"digits": "12<script>"})): 422,
                ("post", "/api/call/hangup", ""): 404,
                ("get", "/api/wrap-up/no-such-call", ""): 404,
                ("put", "/api/customer", json.dumps({"phone": "13800138000", "values": {"notes": "x" * 30000}})): 422,
                ("put", "/api/customer", json.dumps({"phone": "abc", "values": {}})): 422,
                ("put", "/api/customer", json.dumps({"phone": "1" * 31, "values": {}})): 422,
                ("put", "/api/customer", json.dumps({"phone": "=1+1", "values": {"name": "张三"}})): 422,
                ("post", "/api/agent/not-ready", "{not json"): 422,
            }
            for (method, path, body), status in hostile.items():
                answer = client.request(
                    method, path, content=body, headers={**headers, "Content-Type": "application/json"}
                )
                assert answer.status_code == status, (path, answer.status_code, answer.text)
                detail = answer.json()["detail"]
                assert isinstance(detail, str) and re.search(r"[\u4e00-\u9fff]", detail), (path, detail)
                if path == "/api/customer" and '"phone": "13800138000"' not in body:  # the numbering-plan check
                    assert answer.json()["errors"]["phone"].startswith("电话"), answer.json()
            assert client.get("/api/snapshot").json()["agent"]["state"] == "ready"
            # full-width digits (a Chinese input method) pass the check and are stored as ASCII, as everywhere
            wide = client.put(
                "/api/customer", json={"phone": "１３９ ００１３ ９０００", "values": {}}, headers=headers
            )
            assert wide.status_code == 200 and wide.json()["customer"]["phone"] == "139 0013 9000", wide.text
            assert client.post("/api/agent/not-ready", json={"reason": "会议"}, headers=headers).status_code == 200
            assert client.get("/api/snapshot").json()["agent"]["label"] == "小休"
    finally:
        printed = stop_command(desk)
    assert "Traceback" not in "".join(output) + printed
