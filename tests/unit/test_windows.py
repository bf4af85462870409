"""The live windows behind /metrics: today and month to date, per agent and for the shop."""

from cspulse.core import KpiBook


def book_of(*facts):
    book = KpiBook()
    book.add_all(facts)
    return book


FACTS = [
    ("a1", "2026-11-02", "orders", 3), ("a1", "2026-11-02", "paid_orders", 1),
    ("a1", "2026-11-03", "orders", 1), ("a1", "2026-11-03", "paid_orders", 1),
    ("a2", "2026-10-31", "orders", 5),                       # last month: not in November's windows
]


def test_today_and_month_to_date_per_agent_and_shop():
    w = book_of(*FACTS).windows("2026-11-03")
    assert set(w) == {("a1", "today"), ("a1", "month"), (None, "today"), (None, "month")}
    assert w[("a1", "today")]["orders"] == 1
    assert w[("a1", "today")]["payment_ratio"] == 1 / 1
    assert w[("a1", "month")]["orders"] == 3 + 1
    assert w[("a1", "month")]["payment_ratio"] == (1 + 1) / (3 + 1)
    assert w[(None, "month")]["orders"] == 4                 # a2's October orders stay out


def test_an_agent_with_nothing_today_shows_zero_counts_and_no_ratio():
    w = book_of(*FACTS).windows("2026-11-04")
    assert w[("a1", "today")]["orders"] == 0
    assert w[("a1", "today")]["payment_ratio"] is None
    assert w[("a1", "month")]["orders"] == 4


def test_books_of_partitions_add_up_to_the_whole():
    whole = book_of(*FACTS)
    merged = KpiBook()
    merged.add_buckets(book_of(*FACTS[:2]).stated)
    merged.add_buckets(book_of(*FACTS[2:]).copy("2026-11").stated)
    assert merged.windows("2026-11-03") == whole.windows("2026-11-03")
