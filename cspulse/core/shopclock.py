"""Cutting event time into the shop's days and months, and its service hours.

Every event needs its local day, so the answer is cached per quarter hour of UTC
time (every real time zone changes its offset on a quarter-hour boundary).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from .params import US, Params

_QUARTER = 900 * US


class ShopClock:
    """Local days, months and service hours of one shop, for times in µs since the epoch."""

    def __init__(self, params: Params) -> None:
        self.zone = params.zone
        self.open_s, self.close_s = params.service_window
        self._cache: dict[int, tuple[str, int, int, int]] = {}

    def _quarter(self, ts: int) -> tuple[str, int, int, int]:
        """The local day of `ts`'s quarter hour, its start, its end and the next day's end."""
        q = ts // _QUARTER
        hit = self._cache.get(q)
        if hit is None:
            local = datetime.fromtimestamp(q * 900, self.zone)
            day = local.date()
            hit = (day.isoformat(), self.midnight(day), self.midnight(day + timedelta(days=1)),
                   self.midnight(day + timedelta(days=2)))
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[q] = hit
        return hit

    def day(self, ts: int) -> str:
        """The shop-local day of `ts`, as YYYY-MM-DD."""
        return self._quarter(ts)[0]

    def midnight(self, day: date) -> int:
        """The instant the local day `day` begins."""
        return to_us(datetime.combine(day, time(0), self.zone))

    def day_start(self, ts: int) -> int:
        """The instant the local day of `ts` began."""
        return self._quarter(ts)[1]

    def midnight_after(self, ts: int) -> int:
        """The instant the local day of `ts` ends."""
        return self._quarter(ts)[2]

    def end_of_next_day(self, ts: int) -> int:
        """The instant the local day after the day of `ts` ends (the inquiry window)."""
        return self._quarter(ts)[3]

    def effective_start(self, ts: int) -> int:
        """`ts` if inside service hours, else the next opening of service hours."""
        day, midnight, _, _ = self._quarter(ts)
        # Seconds since local midnight; a DST day is not 86400 s long, so count from the day's own start.
        since = (ts - midnight) // US
        if self.open_s <= since < self.close_s:
            return ts
        if since < self.open_s:
            return self._opening(date.fromisoformat(day))
        return self._opening(date.fromisoformat(day) + timedelta(days=1))

    def after_service(self, ts: int, seconds: float) -> int:
        """The instant `seconds` of service hours have passed since `ts` (time outside
        service hours does not count): when a wait opened at `ts` has lasted that long."""
        left = round(seconds * US)
        at = self.effective_start(ts)
        while True:
            day, midnight, _, _ = self._quarter(at)
            closing = midnight + self.close_s * US
            if at + left <= closing:
                return at + left
            left -= closing - at
            at = self.effective_start(closing)

    def _opening(self, day: date) -> int:
        h, rest = divmod(self.open_s, 3600)
        return to_us(datetime.combine(day, time(h, rest // 60), self.zone))


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """An aware datetime as integer µs since the epoch: exact, in integers (and half the
    time of `round(dt.timestamp() * US)`, which every event paid)."""
    return (dt - EPOCH) // ONE_US


def from_us(ts: int, zone=timezone.utc) -> datetime:
    return EPOCH.astimezone(zone) + timedelta(microseconds=ts)
