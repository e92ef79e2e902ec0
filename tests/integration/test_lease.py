"""Leases and --once exit codes (issue 15 items 4 and 5).

A lease names the database session that holds it (third_party_integrations.sync_lease_backend_pid,
db/migrations/001_lease_session.sql): a claimant that finds that session gone from
pg_stat_activity takes over at once instead of waiting for the lease to expire. `--once` exits 0
only when every selected integration ran and succeeded, 1 when one failed, 75 when none failed
but another live daemon held some; `--wait` waits for that lease instead.

The leases here last 60 s and every wait is well below that, so a takeover that the tests see
cannot have come from the lease expiring.
"""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402

LEASE = 60
OTHER = "other-host:4242:0123abcd"


@pytest.fixture
def sim(make_sim):
    return make_sim(products=250, seed=5)


def config(db, workdir, **sync):
    return kvsd.write_config(workdir / "kvs.conf", db.dsn,
                             sync={"lease_seconds": LEASE, "poll_interval": 1, "grace_period": 2,
                                   **sync},
                             log={"level": "info"})


def hold_lease(db, pid, owner=OTHER, seconds=LEASE):
    db.sql("UPDATE public.third_party_integrations SET sync_lease_owner = %s,"
           " sync_lease_expires_at = now() + make_interval(secs => %s),"
           " sync_lease_backend_pid = %s WHERE name = 'kiotviet'", owner, seconds, pid)


def lease(db):
    return db.sql("SELECT sync_lease_owner, sync_lease_expires_at, sync_lease_backend_pid"
                  " FROM public.third_party_integrations WHERE name = 'kiotviet'")[0]


def once_bg(cfg, *extra, workdir):
    out = open(workdir / "once.out", "w")
    err = open(workdir / "once.err", "w")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
    p = subprocess.Popen(kvsd.base_args() + ["-c", cfg, "--once", *extra], stdout=out,
                         stderr=err, env=env)
    return p, workdir / "once.out", workdir / "once.err"


def test_once_exits_75_naming_the_live_holder_and_wait_waits_for_it(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir)
    # Another daemon's run holds the lease: its session (this connection) is alive.
    holder = psycopg.connect(db.dsn, autocommit=True)
    try:
        pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
        hold_lease(db, pid)
        res = kvsd.run_once(cfg)
        assert res.rc == 75, res
        line = [ln for ln in res.out.splitlines() if ln.startswith("kiotviet:")]
        assert len(line) == 1, res
        assert "skipped" in line[0] and OTHER in line[0] and " UTC (" in line[0], line
        assert db.value("SELECT count(*) FROM public.sync_logs") == 0
        assert lease(db)[0] == OTHER and lease(db)[2] == pid  # untouched
        # A session that cannot be told (behind a pooler: NULL) is alive until its lease ends.
        hold_lease(db, None)
        res = kvsd.run_once(cfg)
        assert res.rc == 75 and OTHER in res.out, res

        # --wait: waits while the holder lives, runs once its session is gone.
        hold_lease(db, pid)
        p, out, err = once_bg(cfg, "--wait", workdir=workdir)
        try:
            kvsd.wait_until(lambda: "kiotviet: waiting" in out.read_text(), timeout=30,
                            what="the waiting line")
            assert p.poll() is None
            assert db.value("SELECT count(*) FROM public.sync_logs") == 0
            holder.close()  # the holder dies
            rc = p.wait(timeout=LEASE / 2)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        text = out.read_text()
        assert rc == 0, (text, err.read_text()[-3000:])
        assert "kiotviet: success" in text and OTHER in text, text
        assert kvsd.last_log(db)["status"] == "success"
        assert lease(db) == (None, None, None)
    finally:
        holder.close()


def test_once_takes_over_a_lease_whose_session_is_gone(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir)
    gone = psycopg.connect(db.dsn, autocommit=True)
    pid = gone.execute("SELECT pg_backend_pid()").fetchone()[0]
    gone.close()
    kvsd.wait_until(lambda: not db.value("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                         pid), what="the session to end")
    hold_lease(db, pid)
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert lease(db) == (None, None, None)


def kill_9_mid_run(db, sim, cfg):
    """Starts a daemon, kills it (SIGKILL: nothing gets cleaned up) while its run stores
    products; returns the dead run's sync_logs id and when its lease would have expired."""
    sim.config(latency_ms=80)
    d = kvsd.Daemon(cfg)
    try:
        killed = kvsd.wait_until(
            lambda: db.sql("SELECT id FROM public.sync_logs WHERE status = 'running' AND"
                           " products_synced >= 1"), timeout=30, interval=0.05,
            what="a run storing products")[0][0]
        owner, expires, pid = lease(db)
        assert pid and owner and db.value("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                          pid) == 1, "the lease names the run's live session"
    finally:
        d.kill()
    assert db.value("SELECT status FROM public.sync_logs WHERE id = %s", killed) == "running"
    sim.config(latency_ms=0)
    return killed, expires


def test_kill_9_then_the_next_run_takes_over_at_once(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, page_size=20, pages_in_flight=1)
    killed, expires = kill_9_mid_run(db, sim, cfg)
    # The dead run's backend leaves pg_stat_activity as soon as it sees its client gone; --wait
    # covers the moment before that. The lease would last LEASE s more: far beyond this timeout.
    res = kvsd.run_once(cfg, "--wait", timeout=LEASE / 2)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert "closed 1 abandoned sync_logs row(s)" in res.err
    status, msg = db.sql("SELECT status, error_message FROM public.sync_logs WHERE id = %s",
                         killed)[0]
    assert status == "failed" and "abandoned" in msg
    started = db.value("SELECT started_at FROM public.sync_logs WHERE id > %s ORDER BY id"
                       " LIMIT 1", killed)
    assert started < expires, "taken over before the dead run's lease expired"
    assert not db.sql("SELECT 1 FROM public.sync_logs WHERE status = 'running'")


def test_a_daemon_takes_over_from_a_killed_daemon_before_its_lease_expires(db, sim, workdir):
    kvsd.setup_integration(db, sim, interval=1)
    cfg = config(db, workdir, page_size=20, pages_in_flight=1)
    killed, expires = kill_9_mid_run(db, sim, cfg)
    survivor = kvsd.Daemon(cfg)
    try:
        kvsd.wait_until(lambda: db.sql("SELECT 1 FROM public.sync_logs WHERE id > %s AND"
                                       " status = 'success'", killed), timeout=LEASE / 2,
                        what="the survivor's run")
        assert db.value("SELECT status FROM public.sync_logs WHERE id = %s", killed) == "failed"
        started = db.value("SELECT min(started_at) FROM public.sync_logs WHERE id > %s", killed)
        assert started < expires
    finally:
        assert survivor.stop() == 0, survivor.log()[-3000:]
