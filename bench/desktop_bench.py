"""Agent desktop benchmark: from a recognised banned phrase to the alert on the agent's page, and from a
call's INVITE to the caller's name on it (the screen-pop), measured in a real browser.

    .venv/bin/python bench/desktop_bench.py            # 50 alerts 200 ms apart, 3 calls
    .venv/bin/python bench/desktop_bench.py --quick    # 10 alerts, 1 call
    .venv/bin/python bench/desktop_bench.py --alerts 200 --spacing-ms 50 --calls 5

Prints figures; asserts nothing (machines are shared and noisy): it exits non-zero only when something could
not be set up or run, never because of a figure.

What runs, in this process, the way `contactcenter run` builds it: a throwaway desk folder (the repo's
settings.toml and scripts, tests/helpers/settings.make_desk) with a SQLite store holding one customer (张三,
13800138000) and an earlier call of theirs; the desktop (``desktop_runner.prepare(..., speech_on=True)``, a
:class:`Desk` with no headset and no speech model, ``desktop_runner.serve`` on a free loopback port with a
known token) and extension 1001's softphone registered with Kamailio on loopback. Headless Chromium
(tests/helpers/browser.start_chromium) opens the token address; a MutationObserver installed in the page
stamps ``performance.timeOrigin + performance.now()`` (epoch milliseconds) when things appear; that clock's
skew from the wall clock (the page's ``Date.now()``, the clock Python's ``time.time()`` reads) is measured
at the start and the end, printed, and taken off the page's stamps.

The desk has no headset (and so no agent state driven by its calls, and no wrap-up panel): `run` serves the
desktop only with a headset, but the path measured here (hub, server-sent events, page) is the same.

Each call is a real one: SIPp (the demo caller, From 13800138000) rings 1001 through Kamailio. Screen-pop:
the call's ``invited_at`` (the softphone's clock when the INVITE arrived) to the customer's name in the
page's ``#pop``. The bench then clicks 接听 on the page, as the agent would. On the first call, a thread
publishes N ``rule_hit`` findings (violation, ``banned_phrases``, 我不知道) through the desk's publish
(``Desktop.publish_through``: the hub sees each event first, as the speech thread's publish does), with the
CallRecord the desk itself published at the answer. Per alert: ``publish()`` called -> the hub's
``shown_at`` (the alert's own stamp) -> the snapshot received by the page -> the new ``#alerts .alert``
element in the DOM -> the next animation frame. The desk hangs each call up at the end (the caller waits for
its BYE). The page has no per-alert id in the DOM, so the observer reads the snapshot the page just rendered
(the page's ``snap``) to key each new alert by its ``shown_at``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contactcenter.desktop import runner as desktop_runner
from contactcenter.records import CallRecord, RuleHitRecord
from contactcenter.settings import Settings
from contactcenter.speech.rule_book import RuleBook
from contactcenter.speech.rules import load_rules
from contactcenter.storage.database import Database
from contactcenter.telephony.desk import Desk, DeskCall
from contactcenter.telephony.registrar import LocalRegistrar
from tests.helpers.browser import start_chromium
from tests.helpers.factories import KNOWN_CALLER, seed_known_caller
from tests.helpers.ports import free_port, free_tcp_port
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.sip import CALLER_PCAP, DEMO_DIR, SIP_DIR, extension_phone, sipp_command
from tests.helpers.waiting import wait_until

CALLER = KNOWN_CALLER  # the demo caller's From (contactcenter/telephony/demo/uac_call.xml)
CUSTOMER = "张三"
TOKEN = "desktop-bench-token"
BANNED = "我不知道"

PAGE_STAMPS = ("dom", "received", "frame", "call", "name")  # what the probe stamps with the page's clock

# Installed in the page once it has rendered its first snapshot. ``render`` is the page's global function
# (the event source calls it by name), wrapped to stamp when each snapshot arrives; ``snap`` is the page's
# global holding the snapshot last rendered.
PROBE = r"""
const name = arguments[0];
const now = () => performance.timeOrigin + performance.now();
const B = window.__bench = {alerts: [], seen: new Set(), pops: {}, received: null};
const rendered = window.render;
window.render = function (s) { B.received = now(); return rendered(s); };
const afterFrame = (entry) => requestAnimationFrame(() => { entry.frame = now(); });
const alerts = document.getElementById("alerts");
new MutationObserver(() => {
  const t = now();
  const c = snap && snap.current;
  if (!c) return;
  const texts = [...alerts.querySelectorAll(".alert")].map((e) => e.textContent);
  for (const a of c.alerts.slice(-5)) {  // the page shows the last five
    if (B.seen.has(a.shown_at) || !texts.some((x) => x.includes(a.matched_text))) continue;
    B.seen.add(a.shown_at);
    const entry = {shown_at: a.shown_at, sip_call_id: c.sip_call_id, dom: t, received: B.received, frame: null};
    B.alerts.push(entry);
    afterFrame(entry);
  }
}).observe(alerts, {childList: true});
const panel = document.getElementById("call-panel");
new MutationObserver(() => {
  const t = now();
  const c = snap && snap.current;
  if (!c) return;
  const p = B.pops[c.sip_call_id] || (B.pops[c.sip_call_id] = {call: null, name: null, received: null, frame: null});
  if (p.call === null && !document.getElementById("call").hidden
      && document.getElementById("caller").textContent.includes(c.number)) p.call = t;
  if (p.name === null && document.getElementById("pop").textContent.includes(name)) {
    p.name = t; p.received = B.received; p.screen_pop_ms = c.screen_pop_ms; afterFrame(p);
  }
}).observe(panel, {childList: true, subtree: true, attributes: true, characterData: true});
return true;
"""


# ------------------------------------------------------------------------------------------------ set-up


def caller_scenario(folder: Path, name: str, wait_ms: int) -> Path:
    """The demo caller (INVITE from 13800138000, PCMU, plays the demo audio), waiting ``wait_ms`` for the
    desk's BYE instead of hanging up itself: the head of uac_call.xml with the tail of uac_wait_bye.xml."""
    head = (DEMO_DIR / "uac_call.xml").read_text(encoding="utf-8")
    tail = (SIP_DIR / "uac_wait_bye.xml").read_text(encoding="utf-8")
    pause, bye = '<pause milliseconds="@TALK_MS@"/>', '<recv request="BYE"'
    if pause not in head or bye not in tail:
        raise RuntimeError("the SIPp scenarios changed: uac_call.xml / uac_wait_bye.xml no longer fit together")
    text = head[: head.index(pause)] + re.sub(
        r'timeout="\d+"', f'timeout="{wait_ms}"', tail[tail.index(bye) :], count=1
    )
    text = text.replace("@PCAP@", str(CALLER_PCAP)).replace("@RTP_PORT@", "9").replace("@CODECS@", "0")
    text = text.replace("wait @TALK_MS@ ms, then hang up first (BYE) and expect 200", "wait for the desk's BYE")
    unfilled = sorted(set(re.findall(r"@[A-Z][A-Z_]*@", text)))
    if unfilled:
        raise RuntimeError(f"caller scenario: no value for {', '.join(unfilled)}")
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


class Recorder:
    """The plugins' publish, stood in by a list (the hub sees each event before it, as in `run`)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, hook: str, **arguments: Any) -> None:
        with self._lock:
            self.events.append((hook, arguments))

    def answered_record(self, sip_call_id: str) -> CallRecord | None:
        with self._lock:
            for hook, arguments in self.events:
                call = arguments.get("call")
                if hook == "call_answered" and isinstance(call, CallRecord) and call.sip_call_id == sip_call_id:
                    return call
        return None


class Rig:
    """Kamailio, the store, the desk with its desktop and softphone, and the browser on the page."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.registrar: LocalRegistrar | None = None
        self.database: Database | None = None
        self.desktop: desktop_runner.Desktop | None = None
        self.desk: Desk | None = None
        self.phone: Any = None
        self.driver: Any = None
        self.callers: list[subprocess.Popen[str]] = []
        self.ringing_seen: dict[str, float] = {}  # sip_call_id -> time.time() the desk reported it ringing
        self.recorder = Recorder()
        self.publish: desktop_runner.Publish = self.recorder

    def start(self) -> None:
        desk_file = make_desk(self.folder / "desk")
        prompts = REPO / "scripts_zh" / "prompts"  # the greeting the unattended desk plays, if set-up spoke it
        for key in ("greeting", "late_apology"):
            if (prompts / f"{key}.wav").exists():
                shutil.copy(prompts / f"{key}.wav", desk_file.parent / "scripts_zh" / "prompts")
        url = f"sqlite:///{self.folder / 'store.db'}"
        settings: Settings = desk_settings(
            desk_file,
            url,
            {"CONTACTCENTER_AGENT__PORT": str(free_tcp_port()), "CONTACTCENTER_GENERAL__LOG_LEVEL": "WARNING"},
        )
        self.database = Database(url)
        self.database.upgrade()
        seed_known_caller(self.database)
        self.registrar = LocalRegistrar("127.0.0.1", free_port())
        self.registrar.start()

        rule_book = RuleBook(
            load_rules(settings.scripts.rules, settings.company.names_said), self.database, settings.company.names_said
        )
        desktop = self.desktop = desktop_runner.prepare(settings, rule_book.current, speech_on=True)
        self.publish = desktop.publish_through(self.recorder)

        def on_change(what: str, desk_call: DeskCall) -> None:
            if what == "ringing":
                self.ringing_seen.setdefault(desk_call.call.sip_call_id, time.time())
            desktop.hub.desk_changed(what, desk_call)

        desk = self.desk = Desk(
            settings, self.database, self.publish, None, rule_book, on_change=on_change, headset=None, agent=None
        )
        self.phone = extension_phone(self.registrar.port, desk.handle)
        desk.phone = self.phone
        desktop_runner.serve(desktop, settings, self.database, desk, self.recorder, token=TOKEN)
        downloads = self.folder / "downloads"
        downloads.mkdir()
        self.driver = start_chromium(downloads)

    def open_page(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        assert self.desktop is not None
        driver = self.driver
        driver.get(self.desktop.url)
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "agent-state").text.startswith("就绪"))
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return typeof snap === 'object' && snap !== null"))
        driver.execute_script(PROBE, CUSTOMER)

    def page(self, expression: str, *arguments: Any) -> Any:
        return self.driver.execute_script(f"return {expression}", *arguments)

    def call(self, index: int, wait_ms: int) -> subprocess.Popen[str]:
        assert self.registrar is not None
        scenario = caller_scenario(self.folder, f"caller_{index}.xml", wait_ms)
        caller = subprocess.Popen(
            sipp_command(scenario, remote=f"127.0.0.1:{self.registrar.port}", timeout=wait_ms // 1000 + 60),
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.callers.append(caller)
        return caller

    def stop(self) -> None:
        """Everything down, whatever failed: answered calls hung up, ringing ones refused by the softphone."""
        desk = self.desk
        for step in (
            lambda: self.driver.quit() if self.driver is not None else None,
            lambda: [c.control.hang_up() for c in desk.active_calls()] if desk is not None else None,
            lambda: self.desktop.stop() if self.desktop is not None else None,
            lambda: self.phone.stop() if self.phone is not None else None,
            lambda: desk.wait_until_idle(15) if desk is not None else None,
            lambda: self.registrar.stop() if self.registrar is not None else None,
            lambda: self.database.dispose() if self.database is not None else None,
        ):
            try:
                step()
            except Exception as exc:  # tear down the rest regardless
                print(f"  (clean-up: {exc})", file=sys.stderr)
        for caller in self.callers:
            if caller.poll() is None:
                caller.kill()
                caller.communicate()


# ------------------------------------------------------------------------------------------------ figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def row(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:52} {0:4}      n/a"
    return (
        f"  {label:52} {len(values):4} {statistics.median(values):9.2f} {percentile(values, 0.95):9.2f}"
        f" {max(values):9.2f}"
    )


def header() -> str:
    return f"  {'':52} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}"


def clock_offsets(rig: Rig) -> tuple[float, float, float]:
    """How far the page's clock (timeOrigin + now()) is from the wall clock, in ms: from Python's time.time()
    across a WebDriver round trip (offset, ± half the shortest round trip), and from the page's own Date.now()
    (whole milliseconds: many readings over 30 ms)."""
    best: tuple[float, float] | None = None
    for _ in range(9):
        before = time.time()
        page = rig.page("performance.timeOrigin + performance.now()")
        after = time.time()
        offset, spread = page - (before + after) * 500, (after - before) * 500
        if best is None or spread < best[1]:
            best = (offset, spread)
    assert best is not None
    # perf - Date.now() is spread evenly over [skew, skew + 1) as Date.now() counts whole milliseconds; a
    # reading preempted between the two clocks is far off, so the median (less half a millisecond), not the least
    in_page = rig.page(
        "(() => { const d = [], t0 = performance.now(); while (performance.now() - t0 < 30) {"
        " d.push(performance.timeOrigin + performance.now() - Date.now()); }"
        " d.sort((a, b) => a - b); return d[d.length >> 1] - 0.5; })()"
    )
    return best[0], best[1], in_page


def on_wall_clock(entries: list[dict[str, Any]], skew: float) -> list[dict[str, Any]]:
    """The page's stamps (epoch ms) with the page clock's measured skew from the wall clock taken off."""
    return [
        {key: value - skew if key in PAGE_STAMPS and value is not None else value for key, value in entry.items()}
        for entry in entries
    ]


def alert_figures(
    hub_alerts: list[Any], stamps: list[tuple[float, float]], page_alerts: list[dict[str, Any]]
) -> tuple[dict[str, list[float]], int, int]:
    """Each stage of each alert in ms; how many never showed; which one (1-based) took longest to show."""
    stages: dict[str, list[float]] = {
        "publish() called -> hub's shown_at": [],
        "publish() call itself (hub, then a stand-in list)": [(r - c) * 1000 for c, r in stamps],
        "shown_at -> snapshot received by the page": [],
        "snapshot received -> alert in the DOM": [],
        "alert in the DOM -> next animation frame": [],
        "shown_at -> alert in the DOM  (the figure)": [],
        "shown_at -> next animation frame": [],
        "publish() called -> alert in the DOM": [],
    }
    on_page = {round(entry["shown_at"], 6): entry for entry in page_alerts}
    missing, worst, worst_ms = 0, 0, -1.0
    for i, alert in enumerate(hub_alerts):
        called = stamps[i][0] * 1000 if i < len(stamps) else None
        shown = alert.shown_at * 1000
        if called is not None:
            stages["publish() called -> hub's shown_at"].append(shown - called)
        entry = on_page.get(round(alert.shown_at, 6))
        if entry is None:
            missing += 1
            continue
        dom, received, frame = entry["dom"], entry.get("received"), entry.get("frame")
        stages["shown_at -> alert in the DOM  (the figure)"].append(dom - shown)
        if dom - shown > worst_ms:
            worst, worst_ms = i + 1, dom - shown
        if called is not None:
            stages["publish() called -> alert in the DOM"].append(dom - called)
        if received is not None:
            stages["shown_at -> snapshot received by the page"].append(received - shown)
            stages["snapshot received -> alert in the DOM"].append(dom - received)
        if frame is not None:
            stages["alert in the DOM -> next animation frame"].append(frame - dom)
            stages["shown_at -> next animation frame"].append(frame - shown)
    return stages, missing, worst


def pop_figures(pops: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each stage of each call's screen-pop in ms, from the INVITE (the call's invited_at)."""

    def since_invite(key: str, *, page: bool = True) -> list[float]:
        values = []
        for p in pops:
            if p.get(key) is None or (key == "received" and p.get("name") is None):
                continue
            values.append(p[key] - p["invited_at"] * 1000 if page else (p[key] - p["invited_at"]) * 1000)
        return values

    return {
        "INVITE -> desk reports it ringing (hub)": since_invite("ringing_seen", page=False),
        "INVITE -> the call (number) on the page": since_invite("call"),
        "screen-pop lookup in the hub (screen_pop_ms)": [p["screen_pop_ms"] for p in pops if p.get("screen_pop_ms")],
        "INVITE -> snapshot with the pop received": since_invite("received"),
        "INVITE -> customer's name in the DOM  (the figure)": since_invite("name"),
        "INVITE -> next animation frame after it": since_invite("frame"),
    }


# ------------------------------------------------------------------------------------------------ the run


def ring_and_answer(rig: Rig, index: int, wait_ms: int) -> tuple[DeskCall, subprocess.Popen[str], dict[str, Any]]:
    """Ring the desk, wait for the caller's name on the page, click 接听; the call and its screen-pop figures."""
    from selenium.webdriver.common.by import By

    assert rig.desk is not None
    desk = rig.desk
    caller = rig.call(index, wait_ms)
    if not wait_until(lambda: desk.active_calls() or caller.poll() is not None, 15):
        raise RuntimeError("the call did not reach the desk within 15 s")
    if not desk.active_calls():
        raise RuntimeError(f"the caller gave up before the desk saw the call:\n{caller.communicate()[0][-2000:]}")
    desk_call = desk.active_calls()[0]
    sip_call_id = desk_call.call.sip_call_id
    entry = "(window.__bench.pops[arguments[0]] || {})"
    shown = wait_until(lambda: rig.page(f"{entry}.name || null", sip_call_id), 15, step=0.05)
    if shown:
        wait_until(lambda: rig.page(f"{entry}.frame || null", sip_call_id), 1, step=0.02)
    pop = rig.page(entry, sip_call_id)
    pop["sip_call_id"] = sip_call_id
    pop["invited_at"] = desk_call.call.invited_at.timestamp()
    pop["ringing_seen"] = rig.ringing_seen.get(sip_call_id)
    pop["answered_before_name"] = not shown and not desk_call.call.ringing
    if desk_call.call.ringing:
        rig.driver.find_element(By.ID, "btn-answer").click()
    if not wait_until(lambda: desk_call.call.answered or desk_call.call.ended.is_set(), 15):
        raise RuntimeError("the call was not answered within 15 s of the click")
    if desk_call.call.ended.is_set():
        raise RuntimeError("the caller hung up before the answer")
    return desk_call, caller, pop


def publish_alerts(rig: Rig, record: CallRecord, count: int, spacing: float) -> list[tuple[float, float]]:
    """``count`` findings through the desk's publish from a thread, ``spacing`` s apart: (called, returned)."""
    stamps: list[tuple[float, float]] = []

    def speech() -> None:
        start = time.monotonic() + 0.2
        for i in range(count):
            delay = start + i * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            hit = RuleHitRecord(
                rule_id="banned_phrases",
                kind="violation",
                severity="critical",
                leg="agent",
                at_s=round(5 + i * spacing, 2),
                matched_text=BANNED,
                live=True,
            )
            called = time.time()
            rig.publish("rule_hit", call=record, hit=hit)
            stamps.append((called, time.time()))

    thread = threading.Thread(target=speech, name="live-speech", daemon=True)
    thread.start()
    thread.join(timeout=count * spacing + 60)
    if thread.is_alive():
        raise RuntimeError("publishing the findings did not finish")
    return stamps


def hang_up(rig: Rig, desk_call: DeskCall, caller: subprocess.Popen[str]) -> str:
    """The desk hangs up; the caller's verdict ('' when it ended cleanly)."""
    assert rig.desk is not None
    desk_call.control.hang_up()
    try:
        output, _ = caller.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        caller.kill()
        output, _ = caller.communicate()
    if not rig.desk.wait_until_idle(30):
        raise RuntimeError("the desk did not finish the call within 30 s of the hang-up")
    return "" if caller.returncode == 0 else f"SIPp exited {caller.returncode}: {output.strip()[-300:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50, help="findings published on the first call")
    parser.add_argument("--spacing-ms", type=float, default=200.0, help="between findings")
    parser.add_argument("--calls", type=int, default=3, help="calls rung, each timed for the screen-pop")
    parser.add_argument("--quick", action="store_true", help="10 findings, 1 call")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (desk, store, SIPp logs)")
    args = parser.parse_args()
    if args.quick:
        args.alerts, args.calls = min(args.alerts, 10), 1
    if args.alerts < 1 or args.calls < 1 or args.spacing_ms < 0:
        parser.error("--alerts and --calls must be at least 1, --spacing-ms not negative")
    logging.basicConfig(level=logging.WARNING, format="  (log) %(levelname)s %(name)s: %(message)s")
    spacing = args.spacing_ms / 1000
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="desktop-bench-"))
    rig = Rig(folder)
    try:
        started = time.monotonic()
        rig.start()
        rig.open_page()
        print(
            f"machine: {cores} cores, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
            f"(1/5/15 min) at the start; Chromium {rig.driver.capabilities.get('browserVersion', '?')} headless"
        )
        print(f"set-up (Kamailio, store, desk, desktop, browser on the page): {time.monotonic() - started:.1f} s")
        offset, spread, skew_before = clock_offsets(rig)

        wait_ms = int((args.alerts * spacing + 90) * 1000)
        pops: list[dict[str, Any]] = []
        stamps: list[tuple[float, float]] = []
        alert_call = ""
        problems: list[str] = []
        for index in range(args.calls):
            desk_call, caller, pop = ring_and_answer(rig, index, wait_ms)
            pops.append(pop)
            if index == 0:
                alert_call = desk_call.call.sip_call_id
                record = rig.recorder.answered_record(alert_call)
                if record is None:
                    raise RuntimeError("the desk published no call_answered for the call")
                stamps = publish_alerts(rig, record, args.alerts, spacing)
                wait_until(lambda: rig.page("window.__bench.alerts.length") >= args.alerts, 10, step=0.1)
                time.sleep(0.1)  # the last animation frame
            verdict = hang_up(rig, desk_call, caller)
            if verdict:
                problems.append(f"call {index + 1}: {verdict}")
        load_after = os.getloadavg()
        skew_after = clock_offsets(rig)[2]
        skew = (skew_before + skew_after) / 2
        print(
            f"page clock (timeOrigin + now()) - wall clock (the page's Date.now(), CLOCK_REALTIME like Python's "
            f"time.time()): {skew_before:+.2f} ms at the start, {skew_after:+.2f} ms at the end; page times below are "
            f"corrected by {-skew:+.2f} ms (check against time.time() across a WebDriver round trip: "
            f"{offset:+.2f} ± {spread:.2f} ms)"
        )

        assert rig.desktop is not None
        view = rig.desktop.hub.view(alert_call)
        hub_alerts = view.alerts if view is not None else []
        page_alerts = on_wall_clock(rig.page("window.__bench.alerts"), skew)
        pops = on_wall_clock(pops, skew)
        stages, missing, worst = alert_figures(hub_alerts, stamps, page_alerts)
        print()
        print(
            f"banned phrase -> alert on the page: {len(stamps)} rule_hit findings published {args.spacing_ms:g} ms "
            f"apart on a real call ({len(hub_alerts)} alerts in the hub, {len(page_alerts)} seen on the page"
            + (f", {missing} never shown" if missing else "")
            + ")"
        )
        print(header())
        for label, values in stages.items():
            print(row(label, values))
        shown = stages["shown_at -> alert in the DOM  (the figure)"]
        if shown:
            print(
                f"  => recognised banned phrase to alert on the page: p50 {statistics.median(shown):.1f} ms, "
                f"p95 {percentile(shown, 0.95):.1f} ms, max {max(shown):.1f} ms (alert {worst}) over {len(shown)} alerts"
            )

        print()
        print(f"screen-pop while it rings: {len(pops)} real calls (SIPp -> Kamailio -> softphone), seeded customer")
        print(header())
        for label, values in pop_figures(pops).items():
            print(row(label, values))
        for n, p in enumerate(pops, 1):
            name = f"{p['name'] - p['invited_at'] * 1000:.1f} ms" if p.get("name") else "never shown"
            if p.get("answered_before_name"):
                name += " (answered by the ring policy first)"
            print(f"  call {n}{' (cold)' if n == 1 else ''}: INVITE -> {CUSTOMER} on the page {name}")
        print()
        print(
            f"load average {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} at the end "
            f"({cores} cores); the whole run took {time.monotonic() - started:.1f} s"
        )
        for problem in problems:
            print(f"note: {problem}")
        if not shown or not any(p.get("name") for p in pops):
            print("error: nothing reached the page to be timed", file=sys.stderr)
            return 1
        return 0
    finally:
        rig.stop()
        if args.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
