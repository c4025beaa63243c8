"""The handbook rules that are not phrases, judged from who talked when and the agent's word timings.

* ``interruption``  "不要打断客户的发言": the agent starts while the customer has been talking for at least
  ``min_customer_ms``, and both go on talking for ``min_overlap_ms``. A short 嗯 over the customer is a
  listening response, not an interruption; starting right after the customer stops is a turn, not one.
* ``speech_rate``   "语速适中": characters per minute of the agent's speaking time, over windows of
  ``rate_window_s`` seconds of speaking, so one quick sentence does not fail a call.
* ``listening``     "适时回应": a customer turn of ``turn_s`` or more needs a listening response from the
  agent: one of the rule's phrases, or a short sound (at most ``backchannel_max_ms``) after which the
  customer goes on.
* ``dead_air``      never leave the caller in silence: both legs silent for ``silence_s`` outside a hold,
  unless a hold line (the rule's phrases, "请稍等") was said within ``excuse_s`` before the silence.
* ``talk_ratio``    reported, never scored: the measures in :class:`ConversationMeasures`.

Everything here is a pure function of the timeline, so a live call (judged as its timeline settles) and
its recording (judged at once) get the same findings at the same times.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from contactcenter.records import ConversationMeasures, Leg, UtteranceRecord
from contactcenter.speech.rules import Rule
from contactcenter.speech.talk_activity import Span

#: A speech-rate window needs at least this share of ``rate_window_s`` of speaking to be judged at all.
MIN_RATE_SHARE = 0.5


@dataclass(frozen=True)
class Talk:
    """The call's timeline as far as it is known: when each leg talked, holds, the agent's words."""

    agent: Sequence[Span]
    customer: Sequence[Span] | None  # None: a one-leg recording
    until_s: float  # settled (live) or the call's end
    holds: Sequence[Span] = ()
    utterances: Sequence[UtteranceRecord] = ()
    complaint: bool = False  # marked as a complaint by the desk


@dataclass(frozen=True)
class Moment:
    """One finding of a conversation rule: the stretch of the call, whose it is, and what it measured."""

    span: Span
    leg: Leg | None
    text: str


# ---------------------------------------------------------------------------------------------- the rules


def interruptions(talk: Talk, rule: Rule) -> list[Moment]:
    """Each time the agent talked over the customer (the overlap so far, if still going)."""
    if talk.customer is None:
        return []
    spec = rule.spec
    starts = [customer.start for customer in talk.customer]  # spans are in order and do not overlap
    found = []
    for agent in talk.agent:
        index = bisect.bisect_right(starts, agent.start) - 1
        if index < 0:
            continue
        customer = talk.customer[index]
        if agent.start >= customer.end or agent.start - customer.start < spec.min_customer_ms / 1000:
            continue
        overlap_end = min(agent.end, customer.end)
        if overlap_end - agent.start >= spec.min_overlap_ms / 1000 and not _in_any(agent.start, talk.holds):
            span = Span(agent.start, round(overlap_end, 3))
            found.append(Moment(span, "agent", _words(talk.utterances, "agent", span) or f"{span.length:.1f} s"))
    return found


def is_complaint(talk: Talk, rule: Rule) -> bool:
    """Marked as a complaint, or the customer said one of the rule's complaint phrases."""
    if talk.complaint:
        return True
    cues = rule.cues
    return cues is not None and any(u.leg == "customer" and cues.find(u.text) for u in talk.utterances)


def interruption_passed(talk: Talk, rule: Rule, found: Sequence[Moment]) -> bool:
    spec = rule.spec
    limit = spec.max_count
    if spec.complaint_max_count is not None and is_complaint(talk, rule):
        limit = min(limit, spec.complaint_max_count)
    if len(found) > limit:
        return False
    minutes = talk.until_s / 60
    return spec.max_per_minute is None or minutes <= 0 or len(found) / minutes <= spec.max_per_minute


def dead_air(talk: Talk, rule: Rule) -> list[Moment]:
    """Silences on both legs of ``silence_s`` or more outside holds, not announced by a hold line (live:
    a silence still going at ``until_s`` counts once it is long enough, from the same start)."""
    if talk.customer is None:
        return []
    spec = rule.spec
    found = []
    for silence in _silences(talk):
        for piece in _minus(silence, talk.holds):
            if piece.length < spec.silence_s:
                continue
            if _announced(talk, rule, piece.start):
                continue
            found.append(Moment(piece, None, f"{piece.length:.1f} s"))
    return found


def long_turns_unanswered(talk: Talk, rule: Rule) -> list[Moment]:
    """Customer turns of ``turn_s`` or more in which the agent gave no listening response."""
    if talk.customer is None:
        return []
    spec = rule.spec
    found = []
    for turn in customer_turns(talk, rule):
        if turn.length < spec.turn_s or _in_any(turn.start, talk.holds):
            continue
        if not _responded(talk, rule, turn):
            found.append(Moment(turn, "customer", f"{turn.length:.1f} s"))
    return found


def customer_turns(talk: Talk, rule: Rule) -> list[Span]:
    """The customer's stretches of talk joined across pauses of up to ``turn_gap_ms`` in which the agent
    did not take the turn (said more than a listening response)."""
    if not talk.customer:
        return []
    gap = rule.spec.turn_gap_ms / 1000
    longest_response = rule.spec.backchannel_max_ms / 1000
    turns: list[Span] = []
    for span in talk.customer:
        if turns and span.start - turns[-1].end <= gap:
            took_turn = any(
                a.length > longest_response and a.start < span.start and a.end > turns[-1].end for a in talk.agent
            )
            if not took_turn:
                turns[-1] = Span(turns[-1].start, span.end)
                continue
        turns.append(span)
    return turns


@dataclass(frozen=True)
class RateWindow:
    span: Span
    chars: int
    speaking_s: float

    @property
    def cpm(self) -> float:
        return 60.0 * self.chars / self.speaking_s


def rate_windows(utterances: Sequence[UtteranceRecord], window_s: float) -> list[RateWindow]:
    """The agent's utterances grouped in order into windows of at least ``window_s`` of speaking; a short
    tail joins the last window, and a call with under ``MIN_RATE_SHARE`` of a window of speech has none."""
    spoken = [u for u in sorted(utterances, key=lambda u: u.start_s) if u.leg == "agent" and u.end_s > u.start_s]
    groups: list[list[UtteranceRecord]] = []
    speaking = 0.0
    for utterance in spoken:
        if not groups or speaking >= window_s:
            groups.append([])
            speaking = 0.0
        groups[-1].append(utterance)
        speaking += utterance.end_s - utterance.start_s
    if len(groups) > 1 and speaking < window_s:
        tail = groups.pop()
        groups[-1] += tail
    windows = [
        RateWindow(
            Span(group[0].start_s, group[-1].end_s),
            sum(_characters(u.text) for u in group),
            round(sum(u.end_s - u.start_s for u in group), 3),
        )
        for group in groups
    ]
    return [w for w in windows if w.speaking_s >= MIN_RATE_SHARE * window_s]


def rate_outside(utterances: Sequence[UtteranceRecord], rule: Rule) -> tuple[list[RateWindow], list[Moment]]:
    """The speech-rate windows, and those outside the rule's band as findings."""
    windows = rate_windows(utterances, rule.spec.rate_window_s)
    outside = [
        Moment(w.span, "agent", f"{w.cpm:.0f}/min")
        for w in windows
        if not rule.spec.min_cpm <= w.cpm <= rule.spec.max_cpm
    ]
    return windows, outside


# ------------------------------------------------------------------------------------------- the measures


def measures(talk: Talk, dead_air_s: float) -> ConversationMeasures:
    """Talk time, overlap, silence, interruptions and speech rate, with the defaults where a rule is not
    set (``dead_air_s``: the silence that counts as dead air)."""
    agent_talk = sum(s.length for s in talk.agent)
    hold = sum(s.length for s in talk.holds)
    chars = sum(_characters(u.text) for u in talk.utterances if u.leg == "agent")
    speaking = sum(u.end_s - u.start_s for u in talk.utterances if u.leg == "agent")
    rate = round(60.0 * chars / speaking, 1) if speaking >= 5.0 else None
    one_leg = ConversationMeasures(
        both_legs=False,
        agent_talk_s=round(agent_talk, 2),
        hold_s=round(hold, 2),
        agent_chars=chars,
        agent_speaking_s=round(speaking, 2),
        speech_rate_cpm=rate,
    )
    if talk.customer is None:
        return one_leg
    overlap = sum(_overlap(a, c) for a in talk.agent for c in talk.customer)
    silences = [piece for s in _silences(talk) for piece in _minus(s, talk.holds)]
    return one_leg.model_copy(
        update={
            "both_legs": True,
            "customer_talk_s": round(sum(s.length for s in talk.customer), 2),
            "overlap_s": round(overlap, 2),
            "non_talk_s": round(sum(s.length for s in silences), 2),
            "dead_air_s": round(sum(s.length for s in silences if s.length >= dead_air_s), 2),
        }
    )  # interruptions: filled in by the caller, from the interruption rule or its defaults


# ------------------------------------------------------------------------------------------- internals


def _characters(text: str) -> int:
    """Characters said: everything but spaces (Vosk puts spaces between Chinese words)."""
    return sum(1 for ch in text if not ch.isspace())


def _in_any(at_s: float, spans: Sequence[Span]) -> bool:
    return any(s.start <= at_s < s.end for s in spans)


def _overlap(first: Span, second: Span) -> float:
    return max(0.0, min(first.end, second.end) - max(first.start, second.start))


def _silences(talk: Talk) -> list[Span]:
    """Where neither leg talked, from the answer to ``until_s``."""
    talking = sorted([*talk.agent, *(talk.customer or ())], key=lambda s: s.start)
    silences = []
    cursor = 0.0
    for span in talking:
        if span.start > cursor:
            silences.append(Span(round(cursor, 3), round(span.start, 3)))
        cursor = max(cursor, span.end)
    if talk.until_s > cursor:
        silences.append(Span(round(cursor, 3), round(talk.until_s, 3)))
    return silences


def _minus(span: Span, holds: Sequence[Span]) -> list[Span]:
    """``span`` with the holds cut out."""
    pieces = [span]
    for hold in holds:
        cut = []
        for piece in pieces:
            if hold.end <= piece.start or hold.start >= piece.end:
                cut.append(piece)
                continue
            if hold.start > piece.start:
                cut.append(Span(piece.start, hold.start))
            if hold.end < piece.end:
                cut.append(Span(hold.end, piece.end))
        pieces = cut
    return pieces


def _announced(talk: Talk, rule: Rule, silence_start: float) -> bool:
    """A hold line ("请稍等") ended within ``excuse_s`` before the silence began."""
    cues = rule.cues
    if cues is None:
        return False
    window_start = silence_start - rule.spec.excuse_s
    return any(
        u.leg == "agent" and window_start <= u.end_s <= silence_start + 0.5 and cues.find(u.text)
        for u in talk.utterances
    )


def _responded(talk: Talk, rule: Rule, turn: Span) -> bool:
    """Did the agent give a listening response during ``turn``?"""
    cues = rule.cues
    if cues is not None and any(
        u.leg == "agent" and turn.start <= u.start_s <= turn.end and cues.find(u.text) for u in talk.utterances
    ):
        return True
    longest = rule.spec.backchannel_max_ms / 1000
    customer = talk.customer or ()
    return any(
        a.length <= longest
        and turn.start <= a.start < turn.end
        and any(c.end > a.end and c.start < turn.end for c in customer)
        for a in talk.agent
    )


def _words(utterances: Sequence[UtteranceRecord], leg: Leg, span: Span) -> str:
    """What ``leg`` said during ``span`` (words whose start falls in it)."""
    words = [
        w.word for u in utterances if u.leg == leg for w in u.words if span.start - 0.2 <= w.start_s <= span.end + 0.2
    ]
    return "".join(words)
