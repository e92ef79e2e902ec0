"""The daemon behind Debian's pgbouncer, in transaction mode (what Supabase's port 6543 is) and in
session mode: syncs stay correct, nothing the daemon sets reaches the pooler's other clients,
and the log and `status` name the mode."""

import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402

PRODUCTS = 250
SETTINGS = ("search_path", "statement_timeout", "application_name", "TimeZone")


@pytest.fixture
def sim():
    with Sim(products=PRODUCTS, seed=5) as s:
        yield s


ctl = kvsd.ctl


def live_products(db):
    return db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL"
                    " AND kiotviet_status <> 'deleted'")


def server_sessions_seen_by_others(dsn, n=8):
    """What n concurrent clients of the pooler find on the server connections they are lent:
    each holds a transaction open, so each gets a different one (the pool has 10)."""
    seen = []
    with ExitStack() as stack:
        for _ in range(n):
            c = stack.enter_context(psycopg.connect(dsn))  # not autocommit: stays in a transaction
            row = c.execute("SELECT pg_backend_pid(), " + ", ".join(
                f"current_setting('{s}')" for s in SETTINGS) +
                ", (SELECT count(*) FROM pg_listening_channels())"
                ", (SELECT count(*) FROM pg_prepared_statements)").fetchone()
            seen.append(row)
    return seen


def defaults(db):
    return tuple(db.value(f"SELECT current_setting('{s}')") if s != "application_name" else ""
                 for s in SETTINGS)


def test_full_and_incremental_through_pgbouncer(db, bouncer, sim, workdir):
    kvsd.setup_integration(db, sim)
    dsn = bouncer.dsn(db.name)
    cfg = kvsd.write_config(workdir / "kvs.conf", dsn, log={"level": "info"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success (full" in res.out, res
    # said once, naming what was found: any pooler is run as a transaction pooler by default
    assert res.err.count("database: through a pooler") == 1, res
    want = len([p for p in sim.catalog()["products"] if not p.get("masterUnitId")])
    assert live_products(db) == want

    changed = sim.mutate(edit=7, add=4, delete=2)
    res2 = kvsd.run_once(cfg)
    assert res2.rc == 0 and "kiotviet: success (incremental" in res2.out, res2
    log = kvsd.last_log(db)
    # (an edited product the mutation also deleted is only marked deleted)
    edited = set(changed["edited"]) - set(changed["deleted"])
    assert log["products_created"] == 4 and log["products_updated"] >= len(edited), log
    assert live_products(db) == len([p for p in sim.catalog()["products"]
                                     if not p.get("masterUnitId")])
    assert "SQLSTATE 26000/42P05" not in res.err + res2.err

    # status names the mode it finds through this URL
    st = ctl("status", "-c", cfg)
    assert st.rc == 0, st
    assert f"pooler: {bouncer.mode} mode" in st.out, st


def test_transaction_pooler_leaks_nothing(db, tx_bouncer, sim, workdir):
    # The daemon (not --once: it would LISTEN) runs a sync behind the transaction pooler; then
    # every server connection the pooler lends shows the server's defaults, no LISTEN and no
    # prepared statement of ours.
    kvsd.setup_integration(db, sim)
    dsn = tx_bouncer.dsn(db.name)
    cfg = kvsd.write_config(workdir / "kvs.conf", dsn, sync={"poll_interval": 1},
                            log={"level": "info"})
    d = kvsd.Daemon(cfg)
    try:
        kvsd.wait_until(lambda: db.value("SELECT count(*) FROM public.sync_logs"
                                         " WHERE status = 'success'") >= 1,
                        timeout=90, what="a successful run")
        # run now, through the table: the daemon picks it up by polling
        assert ctl("sync", "kiotviet", "-c", cfg).rc == 0
        kvsd.wait_until(lambda: db.value("SELECT count(*) FROM public.sync_logs"
                                         " WHERE status = 'success'") >= 2,
                        timeout=90, what="the requested run")
        log = d.log()
        assert log.count("database: through a pooler") == 1, log
        assert "run-now requests are seen at the next poll" in log
        expect = defaults(db)
        for row in server_sessions_seen_by_others(dsn):
            assert tuple(row[1:5]) == expect, (row, expect)
            assert row[5] == 0 and row[6] == 0, row
    finally:
        d.stop()


def test_session_setting_behind_transaction_pooler_recovers(db, tx_bouncer, sim, workdir):
    # [database] pooler = session although it is a transaction pooler whose server connections
    # already hold statements named like ours (another client's leftovers): the first clash
    # (42P05/26000) switches the daemon to transaction mode; the run still succeeds.
    dsn = tx_bouncer.dsn(db.name)
    with ExitStack() as stack:
        conns = [stack.enter_context(psycopg.connect(dsn)) for _ in range(10)]
        for c in conns:   # each holds its transaction open: ten different server connections
            for i in range(1, 41):
                c.execute(f"PREPARE kvs_{i} AS SELECT {i}")
        for c in conns:
            c.commit()
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", dsn, database={"pooler": "session"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success (full" in res.out, res
    assert "SQLSTATE 26000/42P05" in res.err, res
    assert "([database] pooler = session is wrong for it)" in res.err, res
    assert res.err.count("switching to transaction mode") == 1, res   # said once, not per connection
    assert live_products(db) == len([p for p in sim.catalog()["products"]
                                     if not p.get("masterUnitId")])


def test_pooler_key_is_checked(db, workdir):
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    Path(cfg).write_text(Path(cfg).read_text().replace("[database]\n", "[database]\npooler = statement\n"))
    r = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True, text=True)
    assert r.returncode == 78 and "[database] pooler: must be auto, session or transaction" in r.stderr, r
    Path(cfg).write_text(Path(cfg).read_text().replace("pooler = statement", "pooler = transaction"))
    r = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0 and "pooler = transaction" in r.stdout, r
    assert "database pooler: transaction: unnamed statements" in r.stdout, r
    # Supabase's transaction pooler port with pooler = session: said before anything connects.
    text = Path(cfg).read_text().replace("pooler = transaction", "pooler = session")
    Path(cfg).write_text(re.sub(r"(url = postgresql://[^:]+:)\d+", r"\g<1>6543", text))
    r = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r
    assert "WARNING: port 6543 is Supabase's transaction pooler, for which session is wrong" in r.stdout, r
