"""The worker's store write recomputes only the KPIs whose counters changed
(`repo.write_book_kpis`), on SQLite and PostgreSQL, and leaves exactly the KPIs of the
latest book, whoever wrote before it."""

from sqlmodel import Session

from cspulse.core import KpiBook
from store import repo


def _book(*facts):
    book = KpiBook()
    book.add_all(facts)
    return book


def _write(engine, book):
    with Session(engine) as s:
        n = repo.write_book_kpis(book, session=s)
        s.commit()
    return n


def _read(engine, period):
    with Session(engine) as s:
        return repo.read_kpis(period, session=s)


def test_only_changed_counters_are_rewritten_and_gone_ones_deleted(store_url):
    engine = repo.connect(store_url)
    # two agents on two days of one month: buckets a1|11-02, a2|11-02, a1|11-03
    book = _book(("a1", "2026-11-02", "orders", 2), ("a2", "2026-11-02", "orders", 1),
                 ("a1", "2026-11-03", "orders", 4))
    # keys: a1, a2 and the shop on 11-02 (3); a1 and the shop on 11-03 (2); a1, a2, shop for 2026-11 (3)
    assert _write(engine, book) == 8
    assert _write(engine, book) == 0                         # nothing changed: nothing written
    assert _read(engine, "2026-11")[None]["orders"] == 2 + 1 + 4

    book.add_all([("a2", "2026-11-02", "orders", 5)])
    # a2 and the shop on 11-02, a2 and the shop in 2026-11; a1's and 11-03's stand
    assert _write(engine, book) == 4
    month = _read(engine, "2026-11")
    assert (month["a1"]["orders"], month["a2"]["orders"], month[None]["orders"]) == (2 + 4, 1 + 5, 2 + 6 + 4)

    book.take_back([("a1", "2026-11-03", "orders", 4)])     # a1's 11-03 taken back to nothing
    # gone: a1 and the shop on 11-03 (deleted); changed: a1 and the shop in 2026-11
    assert _write(engine, book) == 4
    assert _read(engine, "2026-11-03") == {}
    month = _read(engine, "2026-11")
    assert (month["a1"]["orders"], month[None]["orders"]) == (2, 2 + 6)


def test_kpis_written_without_digests_are_rewritten_from_the_book(store_url):
    """A replay (or an older worker) wrote KPIs the digests do not describe: the next store
    write puts the book's back, and a worker writing after another ends with its own."""
    engine = repo.connect(store_url)
    book = _book(("a1", "2026-11-02", "orders", 2))
    assert _write(engine, book) == 4        # a1 and the shop on 11-02 and in 2026-11
    with Session(engine) as s:
        repo.write_kpis({("a1", "2026-11-02"): {"orders": 99}}, session=s)
        s.commit()
    assert _read(engine, "2026-11-02")["a1"]["orders"] == 99
    assert _write(engine, book) == 1        # that one key, its digest dropped by the plain write
    assert _read(engine, "2026-11-02")["a1"]["orders"] == 2

    other = _book(("a1", "2026-11-02", "orders", 3))        # another worker's later book
    assert _write(engine, other) == 4       # a1, shop on 11-02; a1, shop in 2026-11
    assert _write(engine, book) == 4        # and back: each writer compares with what the store holds
    assert _read(engine, "2026-11")["a1"]["orders"] == 2
