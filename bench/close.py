"""Month-end close of a large shop: time and memory of `close-month` for N agents
with full inputs (every KPI, QA and management scores, both reviews), on SQLite or
any --db (issue 5: 2,000 agents in under 5 s, memory proportional to agents).

    .venv/bin/python bench/close.py                       # 250, 500, 1,000, 2,000 agents, SQLite
    .venv/bin/python bench/close.py --agents 2000 --db postgresql+psycopg://…/bench

The store is filled directly (KPI rows and review rows, as replay leaves them),
so what is measured is the close alone: read the month, score, rank, run the
month-end rules, store the revision and the consequences.  Memory is the peak of
Python allocations during the close (tracemalloc), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlmodel import Session  # noqa: E402

from cspulse.core import KPIS  # noqa: E402
from cspulse.monthend import service  # noqa: E402
from rules.month_end import load_month_end, load_scorecard  # noqa: E402
from store import repo  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-11"


def month_of(agent: int, rnd: random.Random) -> dict:
    """A plausible month of one agent: every KPI of SPEC §3 with a value."""
    inquiries = rnd.randint(600, 1500)
    converted = round(inquiries * rnd.uniform(0.25, 0.6))
    orders = rnd.randint(300, 900)
    paid = round(orders * rnd.uniform(0.7, 0.95))
    out = {k: rnd.uniform(0, 1) if kind == "ratio" else rnd.randint(0, 2000) for k, (kind, _) in KPIS.items()}
    out.update(served_customers=rnd.randint(1500, 2500), inquiries=inquiries, converted_inquiries=converted,
               lost_inquiries=inquiries - converted - rnd.randint(0, 30), orders=orders, paid_orders=paid,
               avg_response_time_s=rnd.uniform(20, 130), order_amount=orders * rnd.uniform(150, 250),
               avg_order_value=rnd.uniform(150, 260), qa_score=rnd.uniform(50, 95),
               report_quality=rnd.uniform(50, 95), csat=rnd.uniform(3, 5))
    return out


def fill(url: str, agents: int) -> None:
    rnd = random.Random(agents)
    engine = repo.connect(url)
    with Session(engine) as s:
        repo.write_kpis({(f"agent-{i:04d}", PERIOD): month_of(i, rnd) for i in range(agents)}, session=s)
        repo.write_reviews([{"period": PERIOD, "agent_id": f"agent-{i:04d}", "kind": kind,
                             "score": round(rnd.uniform(50, 100), 1), "reviewer": "m" if kind == "manager" else None,
                             "note": None, "event_id": f"{kind}-{i}", "ts_us": 0}
                            for i in range(agents) for kind in ("self", "manager")], session=s)
        s.commit()


def close(url: str, trace: bool) -> tuple[float, int, int]:
    """(seconds, peak traced bytes or 0, consequences) of one close; tracing memory slows
    Python down, so time and memory are measured on two closes of equal stores."""
    engine = repo.connect(url)
    card, rules = load_scorecard(), load_month_end()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    closed = service.close_month(engine, PERIOD, zone=ZONE, card=card, rules=rules, now=datetime.now(ZONE))
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    return seconds, peak, len(closed.result["consequences"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, nargs="*", default=[250, 500, 1000, 2000])
    ap.add_argument("--db", default=None, help="an empty database URL, for one --agents value (time only) "
                                               "[default: fresh SQLite files]")
    args = ap.parse_args()
    table = Table(title=f"close-month {PERIOD}, full inputs", header_style="bold")
    for col in ("agents", "close (s)", "per agent (ms)", "peak Python memory", "per agent", "consequences"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.agents:
            runs = []
            for trace in (False, True):
                url = args.db or f"sqlite:///{Path(tmp) / f'close-{n}-{trace}.db'}"
                print(f"filling {n:,} agents …", file=sys.stderr)
                fill(url, n)
                print(f"closing {n:,} agents{' (tracing memory)' if trace else ''} …", file=sys.stderr)
                runs.append(close(url, trace))
                if args.db:
                    break
            (seconds, _, consequences), peak = runs[0], runs[-1][1]
            table.add_row(f"{n:,}", f"{seconds:.2f}", f"{seconds / n * 1000:.2f}",
                          f"{peak / 2**20:.1f} MB" if peak else "–", f"{peak / n / 1024:.1f} KB" if peak else "–",
                          str(consequences))
    Console().print(table)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
