"""Working days and hours: when a callback may be placed.

Mainland China's working days are not "Monday to Friday": statutory holidays move, and the State Council
adds make-up working days (调休) on weekends around them. Those come from the maintained ``chinesecalendar``
package (updated each year when the schedule is published); the company adds its own days off and working
days in ``[callbacks]``. For a year the package does not know yet, Monday to Friday is assumed and logged,
so a desk running on an old package keeps working and says why a holiday was missed.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from contactcenter.settings import CallbackSettings

log = logging.getLogger(__name__)
SEARCH_DAYS = 60  # no calendar has two months without a working day


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


class WorkCalendar:
    """The company's working days and hours in its time zone."""

    def __init__(self, settings: CallbackSettings, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.start = _clock(settings.working_hours_start)
        self.end = _clock(settings.working_hours_end)
        self.next_day_time = _clock(settings.next_day_time)
        self.days_off = {date.fromisoformat(d) for d in settings.extra_days_off}
        self.extra_working_days = {date.fromisoformat(d) for d in settings.extra_working_days}
        self._unknown_years_logged: set[int] = set()

    def is_working_day(self, day: date) -> bool:
        if day in self.days_off:
            return False
        if day in self.extra_working_days:
            return True
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in self._unknown_years_logged:
                self._unknown_years_logged.add(day.year)
                log.warning(
                    "the chinesecalendar package has no holiday schedule for %d yet (upgrade it); "
                    "assuming Monday to Friday, plus [callbacks] extra_days_off",
                    day.year,
                )
            return day.weekday() < 5

    def holiday_name(self, day: date) -> str | None:
        """The statutory holiday ``day`` falls in, if the calendar knows one (for messages)."""
        try:
            on_holiday, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError:
            return None
        return name if on_holiday and name else None

    def next_working_day(self, after: date) -> date:
        day = after + timedelta(days=1)
        for _ in range(SEARCH_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError(f"no working day in the {SEARCH_DAYS} days after {after}: check [callbacks] extra_days_off")

    def next_day_callback(self, ended: datetime) -> datetime:
        """次日回访: the next working day after ``ended`` (local date), at ``next_day_time``."""
        local = ended.astimezone(self.zone)
        return datetime.combine(self.next_working_day(local.date()), self.next_day_time, self.zone)

    def is_working_time(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        return self.is_working_day(local.date()) and self.start <= local.time() < self.end

    def next_working_moment(self, moment: datetime) -> datetime:
        """``moment`` itself if it is within working hours on a working day, else the next opening."""
        local = moment.astimezone(self.zone)
        if self.is_working_time(local):
            return local
        if self.is_working_day(local.date()) and local.time() < self.start:
            return datetime.combine(local.date(), self.start, self.zone)
        return datetime.combine(self.next_working_day(local.date()), self.start, self.zone)

    def complaint_callback(self, ended: datetime, within_hours: float) -> tuple[datetime, datetime]:
        """(due, deadline) for a complaint: as soon as the desk is open after the call, and the promise of
        an answer within ``within_hours``. When the deadline falls outside working hours (a Friday-night
        complaint), the due time is still the next opening: the deadline is reported as missed, not hidden."""
        deadline = ended + timedelta(hours=within_hours)
        return self.next_working_moment(ended + timedelta(minutes=30)), deadline
