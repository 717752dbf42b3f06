"""Pure rules of maintenance windows ("mon-fri 22:00-06:00"): parsed, and asked whether a moment is inside.
Standard library only.
"""


from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

# --------------------------------------------------------------------------- maintenance windows

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
_WINDOW = re.compile(r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


@dataclass(frozen=True)
class MaintenanceWindow:
    """When a system may be cut over, in local time (Asia/Seoul); an end before the start runs past midnight."""

    days: tuple[int, ...]  # 0 = Monday, as datetime.weekday(); the day the window starts
    start: time
    end: time

    def __str__(self) -> str:
        days = "daily" if len(self.days) == 7 else ",".join(_DAYS[d].capitalize() for d in self.days)
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def minutes(self) -> int:
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        return (end - start) % (24 * 60)

    def contains(self, moment: datetime) -> bool:
        """Whether a local time falls inside the window (a window past midnight belongs to its start day)."""
        for day_offset in (0, 1):
            start_day = moment - timedelta(days=day_offset)
            if start_day.weekday() not in self.days:
                continue
            opens = datetime.combine(start_day.date(), self.start, tzinfo=moment.tzinfo)
            if opens <= moment < opens + timedelta(minutes=self.minutes):
                return True
        return False

    def next_opening(self, moment: datetime) -> datetime:
        """`moment` itself when it is inside the window, else when the window next opens (same timezone)."""
        if self.contains(moment):
            return moment
        opens = (datetime.combine(moment.date() + timedelta(days=offset), self.start, tzinfo=moment.tzinfo)
                 for offset in range(8))
        return next(o for o in opens if o > moment and o.weekday() in self.days)


def parse_window(text: str) -> MaintenanceWindow:
    """'Sun 02:00-06:00', 'Sat,Sun 22:00-04:00', 'Mon-Fri 23:00-05:00', 'daily 01:00-04:00'; ValueError if not."""
    found = _WINDOW.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a window such as 'Sun 02:00-06:00' or 'Mon-Fri 23:00-05:00'")
    days: set[int] = set()
    for part in found["days"].replace(" ", "").lower().split(","):
        if part == "daily":
            days.update(range(7))
        elif "-" in part:
            first, _, last = part.partition("-")
            if first not in _DAYS or last not in _DAYS:
                raise ValueError(f"{part!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
            i, j = _DAYS.index(first), _DAYS.index(last)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in _DAYS:
            days.add(_DAYS.index(part))
        else:
            raise ValueError(f"{part!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun or daily")
    try:
        start, end = time.fromisoformat(found["start"].zfill(5)), time.fromisoformat(found["end"].zfill(5))
    except ValueError:
        raise ValueError(f"{text!r}: times are HH:MM, 00:00 to 23:59") from None
    if start == end:
        raise ValueError(f"{text!r}: the window must not start and end at the same time")
    return MaintenanceWindow(tuple(sorted(days)), start, end)


