"""Team line under load: N agent desks and an overflow desk behind the embedded Kamailio, Poisson customers
calling the team number, the service level measured beside the Erlang prediction for the same load.

    .venv/bin/python bench/team_load.py                          # 6 agents, 70 % offered load, 200 calls
    .venv/bin/python bench/team_load.py --load 1.1 --calls 150   # 110 %: the overflow desk keeps the promise
    .venv/bin/python bench/team_load.py --not-ready-share 0.1    # agents on a break 10 % of the time
    .venv/bin/python bench/team_load.py --strategy longest_idle --quick

Prints figures; asserts nothing (machines are shared and noisy): it exits non-zero only when something could
not be set up or run, never because of a figure.

What runs: `contactcenter run` processes as on agents' PCs, speech off (no model is configured here), all on
one SQLite store (tests/helpers/team.py): ``--desks`` agents (1001…) and one overflow desk, behind Kamailio
with the team routing. Ring period ``--ring-s`` (0.5 s: three rings are 1.5 s); agents' desks answer at ring
2; the registrar gives the agents 2.5 rings, then the overflow desk answers at once. Each agent is simulated:
its desk answers by itself, talk lasts as long as the customer stays (exponential, mean ``--talk-s``), then
``--wrap-up-s`` of 话后处理; with ``--not-ready-share`` > 0 each agent also takes breaks (小休, exponential
lengths, mean ``--break-s``) through its agent page, so those desks have a headset (a PulseAudio null sink,
tests/helpers/sound.py).

Customers: SIPp, one process per call (uac_team.xml), arriving as a Poisson process whose rate gives the
offered load: load × agents = arrival rate × (answer delay + mean talk + wrap-up). Each presses 1# at once
(overflow callers ask for a callback; agents' desks ignore the keys).

The figures are read from the store afterwards (team_calls, agent_states), as the wallboard reads them:
- calls, and % answered by an agent within three rings (the service level), overflow %, abandoned %;
- % of callers answered within three rings by anyone (agent or overflow desk): the promise;
- calls per agent (max/min): how fairly the strategy shares the work;
- agents' measured occupancy ((talk + wrap-up) / (ready + ringing + talk + wrap-up), from their states);
- the Erlang B and Erlang C predictions of the service level for the same load. This team line does not
  queue: a caller no agent can take goes to the overflow desk, so the agents form a loss system and Erlang B
  is the model that fits (P(answered by an agent) = 1 − B(N, A)); Erlang C (callers wait in a queue) is
  printed beside it because it is the figure contact-centre planners know, and it is lower.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select

from contactcenter.storage.agent_states import state_durations
from contactcenter.storage.models import TeamCall
from contactcenter.storage.team_calls import service_level
from tests.helpers.sip import dtmf_pcap
from tests.helpers.team import DeskPage, TeamLine, team_line

ANSWER_AFTER_RINGS = 2


def erlang_b(servers: int, erlangs: float) -> float:
    """Probability that all ``servers`` are busy when a call comes (loss system), by the usual recursion."""
    blocked = 1.0
    for n in range(1, servers + 1):
        blocked = erlangs * blocked / (n + erlangs * blocked)
    return blocked


def erlang_c(servers: int, erlangs: float) -> float:
    """Probability that a call has to wait (queueing system); 1 when the load is at or above capacity."""
    if erlangs >= servers:
        return 1.0
    blocked = erlang_b(servers, erlangs)
    return servers * blocked / (servers - erlangs * (1 - blocked))


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    —"


def simulate_breaks(
    page: DeskPage, share: float, mean_break_s: float, stop: threading.Event, rng: random.Random
) -> None:
    """An agent who works, then takes a break, again and again, so breaks are ``share`` of the time."""
    mean_work_s = mean_break_s * (1 - share) / share
    while not stop.wait(rng.expovariate(1 / mean_work_s)):
        page.not_ready()  # during a call it starts after the call's wrap-up, as the desk does for a person
        if stop.wait(rng.expovariate(1 / mean_break_s)):
            break
        page.ready()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desks", type=int, default=6, help="agent desks (default 6)")
    parser.add_argument("--load", type=float, default=0.7, help="offered load per agent, in Erlangs (default 0.7)")
    parser.add_argument("--calls", type=int, default=200, help="customers to send (default 200)")
    parser.add_argument("--talk-s", type=float, default=4.0, help="mean talk time, exponential (default 4 s)")
    parser.add_argument("--wrap-up-s", type=float, default=1.0, help="话后处理 after each call (default 1 s)")
    parser.add_argument("--not-ready-share", type=float, default=0.0, help="share of time on breaks (default 0)")
    parser.add_argument("--break-s", type=float, default=10.0, help="mean break length (default 10 s)")
    parser.add_argument("--ring-s", type=float, default=0.5, help="ring period (default 0.5 s)")
    parser.add_argument("--strategy", choices=("ring_all", "longest_idle"), default="ring_all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="40 calls")
    args = parser.parse_args()
    if args.quick:
        args.calls = 40
    if not 0 <= args.not_ready_share < 1:
        parser.error("--not-ready-share must be at least 0 and below 1")
    rng = random.Random(args.seed)
    answer_delay = ANSWER_AFTER_RINGS * args.ring_s
    holding = answer_delay + args.talk_s + args.wrap_up_s
    erlangs = args.load * args.desks
    rate = erlangs / holding
    three_rings = 3 * args.ring_s
    team_ring_ms = round((ANSWER_AFTER_RINGS + 0.5) * args.ring_s * 1000)
    print(
        f"{args.desks} agents ({args.strategy}), offered {erlangs:.2f} Erlangs ({args.load:.0%} per agent): "
        f"{rate:.3f} calls/s, holding {holding:.1f} s (answer {answer_delay:g} + talk {args.talk_s:g} + "
        f"wrap-up {args.wrap_up_s:g}); ring {args.ring_s:g} s, three rings {three_rings:g} s; {args.calls} calls"
    )
    with tempfile.TemporaryDirectory(prefix="team-load-") as folder:
        with team_line(
            Path(folder),
            ring_s=args.ring_s,
            team_ring_ms=team_ring_ms,
            longest_idle=args.strategy == "longest_idle",
        ) as line:
            return run(line, args, rng, rate, erlangs, three_rings)


def run(
    line: TeamLine, args: argparse.Namespace, rng: random.Random, rate: float, erlangs: float, three_rings: float
) -> int:
    sound = None
    headset = args.not_ready_share > 0
    if headset:
        from tests.helpers.sound import EARS, MIC, SoundServer

        sound = SoundServer()
        sound.start()
        sound.use_defaults(EARS, f"{MIC}.monitor")
    settings = {
        "AGENT__WRAP_UP_SECONDS": str(round(args.wrap_up_s)),
        "RING__ANSWER_AFTER_RINGS": str(ANSWER_AFTER_RINGS),
        "TEAM__STRATEGY": args.strategy,
        "GENERAL__RECORD_CALLS": "false",
    }
    if args.wrap_up_s and round(args.wrap_up_s) != args.wrap_up_s:
        print(f"note: wrap-up is set in whole seconds; {round(args.wrap_up_s)} s is used")
    environ = dict(sound.environ) if sound is not None else {}
    agents = [str(1001 + n) for n in range(args.desks)]
    started = time.monotonic()
    try:
        for agent in agents:
            line.start(agent, headset=headset, extra_environment=environ, **settings)
        line.start("1099", TEAM__ROLE="overflow", **settings)
        print(f"desks up in {time.monotonic() - started:.1f} s")
        stop = threading.Event()
        pages = [DeskPage(line.desks[a].printed) for a in agents] if headset else []  # type: ignore[attr-defined]
        breakers = [
            threading.Thread(
                target=simulate_breaks,
                args=(page, args.not_ready_share, args.break_s, stop, random.Random(rng.random())),
                daemon=True,
            )
            for page in pages
        ]
        for thread in breakers:
            thread.start()
        pcap = dtmf_pcap(line.tmp, "1#")
        failures: list[str] = []  # the callers whose SIPp reported a failed call
        customers: list[threading.Thread] = []
        first = datetime.now(UTC)
        next_at = time.monotonic()
        for n in range(args.calls):
            next_at += rng.expovariate(rate)
            time.sleep(max(0.0, next_at - time.monotonic()))
            talk_ms = max(200, round(1000 * rng.expovariate(1 / args.talk_s)))
            caller = f"139{n:08d}"

            def customer(caller: str = caller, talk_ms: int = talk_ms) -> None:
                result = line.call(caller, pcap=pcap, talk_ms=talk_ms, trace=False)
                if result.returncode != 0:
                    failures.append(caller)

            thread = threading.Thread(target=customer, daemon=True)
            thread.start()
            customers.append(thread)
        last = datetime.now(UTC)
        for thread in customers:
            thread.join(timeout=120)
        stop.set()
        time.sleep(0)  # let the break threads see it; they end on their own
        elapsed = (last - first).total_seconds()
        report(line, args, agents, first, last, elapsed, erlangs, three_rings, failures)
    finally:
        for page in locals().get("pages", []):
            page.close()
        line.stop_all()
        if sound is not None:
            sound.stop()
    return 0


def failure_reasons(line: TeamLine, callers: list[str]) -> Counter[str]:
    """Why SIPp failed each call, from its error log: the message it did not expect, or what it says."""
    reasons: Counter[str] = Counter()
    for caller in callers:
        logs = list(line.tmp.glob(f"uac_team_{caller}_*_errors.log"))
        text = logs[0].read_text(errors="replace") if logs else ""
        unexpected = re.search(r"received '([^\r\n']+)", text)
        if "unexpected BYE" in text or (unexpected and unexpected.group(1).startswith("BYE")):
            reasons["the desk hung up before the customer (SIPp expects to hang up first)"] += 1
        elif unexpected:
            reasons[f"unexpected {unexpected.group(1)[:60]}"] += 1
        else:
            last = [row for row in text.splitlines() if row.strip()][-1:] or ["no error log"]
            reasons[last[0].split(": ", 1)[-1][:80]] += 1
    return reasons


def report(
    line: TeamLine,
    args: argparse.Namespace,
    agents: list[str],
    first: datetime,
    last: datetime,
    elapsed: float,
    erlangs: float,
    three_rings: float,
    failures: list[str],
) -> None:
    since, until = first - timedelta(seconds=1), datetime.now(UTC) + timedelta(seconds=1)
    settle = datetime.now(UTC) + timedelta(seconds=30)  # read outcomes as they will stand (overflow grace passed)
    with line.database.session() as session:
        level = service_level(session, since, until, three_rings, now=settle)
        rows = session.scalars(select(TeamCall).where(TeamCall.arrived_at >= since)).all()
        times = state_durations(session, start=since, end=last, extensions=agents)
    kept = sum(
        1 for r in rows if r.answered_at is not None and (r.answered_at - r.arrived_at).total_seconds() <= three_rings
    )
    per_agent = Counter(r.answered_by for r in rows if r.outcome == "answered")
    counts = [per_agent.get(agent, 0) for agent in agents]
    occupancy = [t.occupancy for t in times.values() if t.occupancy is not None]
    n_eff = args.desks * (1 - args.not_ready_share)
    print(f"\ncustomers sent {args.calls} over {elapsed:.0f} s; SIPp reported {len(failures)} failed calls")
    for why, count in failure_reasons(line, failures).most_common():
        print(f"  {count} × {why}")
    unseen = args.calls - len(rows)
    if unseen:
        print(f"  {unseen} customers' calls reached no desk (no team call row): not in the figures below")
    print(
        f"team calls stored {level.calls} (ended {level.ended}, still ringing {level.ringing}, unknown {level.unknown})"
    )
    print(f"answered by an agent within three rings (service level): {percent(level.answered_in_time, level.ended)}")
    print(f"answered by an agent at all:                             {percent(level.answered, level.ended)}")
    print(
        f"overflow:  {percent(level.overflow, level.ended)}  (callback {level.overflow_callback}, none {level.overflow_no_callback})"
    )
    print(f"abandoned: {percent(level.abandoned, level.ended)}")
    print(  # over every customer sent: one whose call reached no desk was not answered either
        f"three-ring promise kept (agent or overflow desk):        {percent(kept, args.calls)}  ({kept} of {args.calls} sent)"
    )
    if counts:
        print(
            f"calls per agent: max {max(counts)}, min {min(counts)}, mean {statistics.fmean(counts):.1f}  {dict(zip(agents, counts, strict=True))}"
        )
    if occupancy:
        print(f"agents' measured occupancy: mean {statistics.fmean(occupancy):.1%} (from their stored states)")
    print(f"\nprediction for {erlangs:.2f} Erlangs on {n_eff:g} agents available:")
    servers = max(1, round(n_eff))
    print(f"  Erlang B (no queue: overflow instead), answered by an agent: {1 - erlang_b(servers, erlangs):6.1%}")
    print(f"  Erlang C (callers queue), answered without waiting:          {1 - erlang_c(servers, erlangs):6.1%}")
    if level.ended:
        measured = level.answered_in_time / level.ended
        print(f"  measured minus Erlang B: {100 * (measured - (1 - erlang_b(servers, erlangs))):+.1f} points")


if __name__ == "__main__":
    sys.exit(main())
