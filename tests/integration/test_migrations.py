"""The store's schema comes from its Alembic migrations, on SQLite and PostgreSQL:
an empty database goes to head and back down to nothing, the migrations match the
models exactly, and a database made before migrations is taken over."""

from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import Session, SQLModel

from store import migrate, repo
from store.models import KpiValue

TABLES = {"kpi_value", "goal", "rejected_event", "seen_event", "partition_month", "core_state", "replay_run", "alert",
          "review", "month_close", "consequence", "plan_decision", "adjustment", "kpi_source"}


def test_an_empty_database_migrates_to_head_and_back_down(store_url):
    engine = create_engine(store_url)
    assert migrate.current(engine) is None
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head() == "0005"
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    with engine.connect() as c:     # the migrations build exactly what the models say
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata) == []
    migrate.downgrade(engine, "0001")
    assert set(inspect(engine).get_table_names()) == TABLES - {"review", "month_close", "consequence",
                                                               "plan_decision", "adjustment", "kpi_source",
                                                               "partition_month"} | {"partition_book", "alembic_version"}
    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)         # and up again
    assert migrate.current(engine) == "0005"


def test_connect_upgrades_an_older_database_and_keeps_its_data(store_url):
    engine = create_engine(store_url)
    migrate.upgrade(engine, "0001")
    with Session(engine) as s:      # a row as the first schema holds it (today's writes touch later tables too)
        s.execute(KpiValue.__table__.insert(), [{"period": "2026-11", "agent_id": "a1", "kpi": "orders", "value": 3,
                                                 "updated_at": datetime.now(timezone.utc)}])
        s.commit()
    engine = repo.connect(store_url)
    assert migrate.current(engine) == "0005"
    with Session(engine) as s:
        assert repo.read_kpis("2026-11", session=s) == {"a1": {"orders": 3}}
        assert repo.closed_months(session=s) == set()


def test_a_partition_book_is_split_into_its_months_and_joined_again(store_url):
    """0004: a partition's book, one JSON of every period, becomes a row a month (and back)."""
    import json
    from sqlalchemy import text
    engine = create_engine(store_url)
    migrate.upgrade(engine, "0003")
    book = {"a1|2026-10-31": {"orders": 1}, "a1|2026-11-01": {"orders": 2}, "|2026-11": {"paying_customers": 1}}
    with engine.begin() as c:
        c.execute(text("INSERT INTO partition_book (partition, counters, updated_at) VALUES (3, :c, :t)"),
                  {"c": json.dumps(book), "t": datetime.now(timezone.utc)})
    migrate.upgrade(engine)
    with Session(engine) as s:
        months = repo.partition_months({}, session=s)
    assert {key: buckets for key, (_, buckets) in months.items()} == {
        (3, "2026-10"): {("a1", "2026-10-31"): {"orders": 1}},
        (3, "2026-11"): {("a1", "2026-11-01"): {"orders": 2}, (None, "2026-11"): {"paying_customers": 1}}}
    with Session(engine) as s:      # read again knowing them: nothing new
        assert repo.partition_months({key: d for key, (d, _) in months.items()}, session=s) == {}
    migrate.downgrade(engine, "0003")
    with engine.connect() as c:
        assert json.loads(c.execute(text("SELECT counters FROM partition_book WHERE partition = 3")).scalar()) == book
