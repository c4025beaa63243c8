"""The calls list a QA lead works from: the total, numbered pages both ways, sorting by time, score and
talk time, the review state, agents by name, the rule filter by description, a category from the ticket."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from contactcenter.storage.models import Agent, Call, Review, Ticket, WebUser
from tests.helpers.web import client_as


def _seed_extras(console: dict) -> dict[str, int]:
    database, ids = console["database"], console["ids"]
    with database.session() as session:
        session.execute(update(Agent).where(Agent.extension == "1001").values(name="李娜"))
        for n, call_id in enumerate(ids[:6]):  # talk times 10, 20, … 60 s on the first six calls
            answered = session.get(Call, call_id).answered_at
            session.execute(
                update(Call).where(Call.id == call_id).values(ended_at=answered + timedelta(seconds=10 * (n + 1)))
            )
        session.add(Ticket(call_id=ids[1], category="投诉", purpose="态度差"))  # call 1 is 咨询 on the call itself
        reviewer = session.scalar(select(WebUser.id).where(WebUser.username == "lin"))
        for call_id in ids[:2]:
            session.add(Review(call_id=call_id, reviewer_id=reviewer, verdicts={}, comment="已听"))
    return {"reviewed": 2}


def test_the_list_counts_pages_both_ways_and_names_things_in_chinese(console: dict) -> None:
    _seed_extras(console)
    client = client_as(console, "lin")  # page size 10 in the console fixture
    first = client.get("/calls").text
    assert "共 30 通,第 1–10 通(第 1/3 页)" in first and 'id="previous-page"' not in first
    second = client.get("/calls", params={"page": 2}).text
    assert "第 11–20 通(第 2/3 页)" in second and 'id="previous-page"' in second and 'id="next-page"' in second
    last = client.get("/calls", params={"page": 3}).text
    assert 'id="next-page"' not in last
    assert "李娜(1001)" in first and "已接通" in first and "completed" not in first
    assert "服务禁语 (R4)" in first and ">banned_phrases<" not in first  # failed rules by description
    assert client.get("/calls", params={"page": 0}).status_code == 422


def test_sorting_by_score_and_talk_time_and_the_api_total(console: dict) -> None:
    _seed_extras(console)
    client = client_as(console, "lin")
    by_score = client.get("/api/calls", params={"sort": "score_asc", "limit": 30}).json()
    scores = [c["score"] for c in by_score["calls"]]
    assert scores == sorted(scores) and by_score["total"] == 30 and by_score["next_cursor"] is None
    by_time = client.get("/api/calls", params={"sort": "duration", "limit": 6}).json()["calls"]
    assert [c["duration_s"] for c in by_time] == [175] * 6  # the untouched calls talk longest (3 min − 5 s)
    shortest = client.get("/api/calls", params={"sort": "duration_asc", "limit": 6}).json()["calls"]
    assert [c["duration_s"] for c in shortest] == [10, 20, 30, 40, 50, 60]
    assert [c["id"] for c in shortest] == console["ids"][:6]
    page_two = client.get("/api/calls", params={"sort": "score", "limit": 10, "page": 2}).json()["calls"]
    everything = client.get("/api/calls", params={"sort": "score", "limit": 30}).json()["calls"]
    assert [c["id"] for c in page_two] == [c["id"] for c in everything[10:20]]
    assert client.get("/api/calls", params={"sort": "loudness"}).status_code == 422


def test_filters_by_review_state_agent_name_rule_and_the_ticket_category(console: dict) -> None:
    _seed_extras(console)
    client = client_as(console, "lin")

    def ids(**params: str) -> list[int]:
        return sorted(c["id"] for c in client.get("/api/calls", params={**params, "limit": 100}).json()["calls"])

    assert ids(reviewed="1") == sorted(console["ids"][:2])
    assert len(ids(reviewed="0")) == 28
    calls = client.get("/api/calls", params={"reviewed": "1"}).json()["calls"]
    assert {c["review_state"] for c in calls} == {"reviewed"}
    assert ids(agent="李娜") == ids(agent="1001") and len(ids(agent="李")) == 15  # by any part of the name
    assert len(ids(rule_failed="banned_phrases")) == 10
    assert console["ids"][1] in ids(category="投诉")  # the ticket's category counts
    row = next(
        c for c in client.get("/api/calls", params={"limit": 100}).json()["calls"] if c["id"] == console["ids"][1]
    )
    assert row["category"] == "咨询"  # the call's own category, when it has one, is what the list shows
    page = client.get("/calls", params={"rule_failed": "banned_phrases"}).text
    assert '<option value="banned_phrases" selected>服务禁语 (R4)</option>' in page


def test_the_scorecard_takes_the_machine_or_the_reviewed_score_and_says_which(console: dict) -> None:
    lin = client_as(console, "lin")
    banned = console["ids"][0]  # every third seeded call said 我不知道: 40 points; the others 95
    assert (
        lin.post(f"/api/calls/{banned}/reviews", json={"verdicts": {"banned_phrases": "disagree"}}).status_code == 201
    )
    period = {"since": "2026-11-02", "until": "2026-11-10"}
    with console["database"].session() as session:
        scores = dict(session.execute(select(Call.id, Call.compliance_score)).tuples().all())
        reviewed = dict(session.execute(select(Call.id, Call.reviewed_score)).tuples().all())
    pass_score = console["settings"].web.pass_score

    def expected(values: list[float]) -> tuple[float, float]:
        return round(sum(values) / len(values), 1), round(100 * sum(v >= pass_score for v in values) / len(values), 1)

    machine = [scores[c] for c in console["ids"]]
    after_review = [reviewed[c] if reviewed[c] is not None else scores[c] for c in console["ids"]]
    assert after_review != machine
    for basis, values in (("machine", machine), ("reviewed", after_review)):
        totals = lin.get("/api/scorecards", params={**period, "basis": basis}).json()["totals"]
        assert (totals["average_score"], totals["pass_rate"]) == expected(values), basis
    page = lin.get("/scorecards", params={**period, "basis": "reviewed"}).text
    assert "复核后评分" in page and f"合格线 {pass_score:g} 分" in page and 'class="reference"' in page
    assert lin.get("/api/scorecards", params={**period, "basis": "guessed"}).status_code == 422
