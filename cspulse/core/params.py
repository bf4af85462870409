"""The tunable parameters of SPEC §3, as the pure core receives them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

US = 1_000_000  # the core keeps time as integer microseconds since the epoch


@dataclass(frozen=True)
class Params:
    timezone: str = "Asia/Shanghai"
    service_hours: str = "08:00-24:00"
    attribution_hours: float = 24
    after_sales_days: float = 21
    slow_response_s: float = 100
    unanswered_after_s: float = 3600
    allowed_lateness_s: float = 600
    # How long event ids are remembered in memory; older duplicates are found
    # through the `seen_before` port (the store), so memory does not grow with events.
    dedup_horizon_s: float = 2 * 86400
    # An order stays in memory until this long after its month ends, so late payments
    # and refunds still count for the month it was created in until that month is
    # closed (at 00:30 on the 2nd by default; `Settings.params` makes it the close day,
    # at least 2); a paid one also for the after-sales window.
    order_grace_days: float = 2
    # Service-hours seconds after which an open wait is reported (`Note` "wait"), as the
    # rule files ask (customer_waiting: 180); no checks, no timers.
    wait_checks_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone '{self.timezone}'") from None
        self.service_window  # validates
        for name in ("attribution_hours", "after_sales_days", "slow_response_s", "unanswered_after_s",
                     "allowed_lateness_s", "dedup_horizon_s", "order_grace_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if any(s <= 0 for s in self.wait_checks_s):
            raise ValueError("wait_checks_s: must be > 0")
        if any(s >= self.unanswered_after_s for s in self.wait_checks_s):
            raise ValueError(f"a wait rule's 'after' ({max(self.wait_checks_s):g} s) must be shorter than "
                             f"unanswered_after_s ({self.unanswered_after_s:g} s): a wait that long is counted "
                             "unanswered and no longer watched")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def service_window(self) -> tuple[int, int]:
        """Opening and closing as seconds after local midnight (closing may be 86400)."""
        m = re.fullmatch(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})", self.service_hours)
        if not m:
            raise ValueError(f"service_hours: must be HH:MM-HH:MM, not '{self.service_hours}'")
        h1, m1, h2, m2 = map(int, m.groups())
        start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if not (h1 < 24 and m1 < 60 and m2 < 60 and start < end <= 86400):
            raise ValueError(f"service_hours: must be an opening before a closing within one day, not '{self.service_hours}'")
        return start, end
