"""The agent's controls on a real call (SIPp through Kamailio): answer now, and hang up, through CallControl."""

from __future__ import annotations

import subprocess

import pytest

from contactcenter.telephony.desk import Desk
from tests.helpers.settings import desk_settings
from tests.helpers.sip import extension_phone, sipp_command, sipp_scenario
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip


def test_the_agent_answers_before_the_policys_ring_and_hangs_up(line: dict) -> None:
    settings = desk_settings(
        line["desk_file"],
        line["url"],
        {"CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "3", "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "2"},
    )
    published: list[str] = []
    desk = Desk(settings, line["database"], lambda hook, **arguments: published.append(hook), None, None)
    phone = extension_phone(line["registrar"].port, desk.handle)
    scenario = sipp_scenario("uac_wait_bye.xml", line["tmp"])
    caller = subprocess.Popen(
        sipp_command(scenario, remote=f"127.0.0.1:{line['registrar'].port}", timeout=40),
        cwd=line["tmp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: desk.current_control() is not None and desk.current_control().call.ringing, 10)
        control = desk.current_control()
        assert not control.hang_up()  # nothing to hang up while it rings
        assert control.answer_now() and not control.answer_now()  # a second press does nothing
        assert wait_until(lambda: control.call.answered, 5)  # not after three 2-second rings
        assert not control.mute(True) and not control.hold(True)  # no headset on this desk: nothing to mute
        assert control.hang_up()
        assert desk.wait_until_idle(30)
        output, _ = caller.communicate(timeout=30)
    finally:
        phone.stop()
        if caller.poll() is None:
            caller.kill()
    assert caller.returncode == 0, output[-2000:]  # the caller got our BYE and answered it
    [done] = desk.finished
    record = done.record
    assert record.rings_before_answer == 1 and record.disposition == "completed"
    assert record.hung_up_first == "agent"
    assert published == ["call_ringing", "call_answered", "call_ended"]
