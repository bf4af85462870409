"""One settings object, read once from the environment (prefix CSPULSE_) and passed down.

Defaults are local and match docker-compose.yml, so `cspulse` works with no
configuration at all.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cspulse.core import Params


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CSPULSE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///cspulse.db"
    kafka: str = "127.0.0.1:9092"
    partitions: int = Field(8, ge=1)       # of each input topic; chat, orders and feedback share it
    topic_prefix: str = ""                 # e.g. "shop1." -> shop1.cs.chat
    web_port: int = Field(6066, ge=1, le=65535)   # the worker's /metrics
    store_interval_s: float = Field(10, gt=0)     # how often the worker writes KPIs to the store
    metrics_interval_s: float = Field(1, gt=0)    # how often the live KPIs on /metrics are recomputed
    rules_file: str = ""                   # alert rules (YAML); "" is the packaged rules/default.yaml
    webhooks: str = ""                     # where the worker posts alerts: "json=URL alertmanager=URL …"
    shop_id: str = "default"               # the shop label on alerts sent to webhooks and Alertmanager
    rules_process: bool = True             # the worker judges its alert rules in a process of its own
    scorecard_file: str = ""               # month-end scorecard (YAML); "" is rules/scorecard.yaml
    month_end_file: str = ""               # month-end consequence rules; "" is rules/month_end.yaml
    # when the worker closes the previous month: day of the month and local time (SPEC §5: 2nd, 00:30)
    close_day: int = Field(2, ge=1, le=28)
    close_time: str = Field("00:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

    # SPEC §3 parameters
    timezone: str = "Asia/Shanghai"
    service_hours: str = "08:00-24:00"
    attribution_hours: float = Field(24, ge=0)
    after_sales_days: float = Field(21, ge=0)
    slow_response_s: float = Field(100, ge=0)
    unanswered_after_s: float = Field(3600, ge=0)
    allowed_lateness_s: float = Field(600, ge=0)

    @cached_property
    def rules(self):
        """The alert rules (raises rules.load.RuleFileError, one line, if the file is wrong)."""
        from rules.load import DEFAULT_RULES, load_rules
        return load_rules(self.rules_file or DEFAULT_RULES)

    @cached_property
    def scorecard(self):
        from rules.month_end import DEFAULT_SCORECARD, load_scorecard
        return load_scorecard(self.scorecard_file or DEFAULT_SCORECARD)

    @cached_property
    def month_end(self):
        from rules.month_end import DEFAULT_MONTH_END, load_month_end
        return load_month_end(self.month_end_file or DEFAULT_MONTH_END)

    def params(self) -> Params:
        """The core's parameters (raises ValueError naming the bad setting)."""
        return Params(
            wait_checks_s=self.rules.wait_checks_s,
            timezone=self.timezone, service_hours=self.service_hours, attribution_hours=self.attribution_hours,
            after_sales_days=self.after_sales_days, slow_response_s=self.slow_response_s,
            unanswered_after_s=self.unanswered_after_s, allowed_lateness_s=self.allowed_lateness_s,
            # an order's later events count for its month until the month is closed (SPEC §3.2):
            # it stays in memory past the close day (a close on the 5th forgot them on the 3rd)
            order_grace_days=max(2, self.close_day),
        )
