"""The daemon's life through the real binary: readiness, reload, graceful stop, the watchdog,
integrations picked up without a restart, and several daemons sharing one database.

Each test owns the NOTIFY_SOCKET it hands to the daemon (sd_notify messages are read back in
order) and runs against one shop shape only: nothing here depends on the shop's columns.
"""

import re
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402
from kvsd import wait_until  # noqa: E402

LINE = re.compile(r"^<([3-7])>(error|warning|notice|info|debug) ")
RUN_LINE = re.compile(r"^<[3-7]>\w+ \[(?P<integ>[^\]#]+)#(?P<run>\d+)\] ")


class Notes:
    """sd_notify messages in arrival order, each with its arrival time (monotonic), read by a
    thread as they come, like systemd does (an unread socket fills after ~10 datagrams)."""

    def __init__(self):
        self.ns = kvsd.NotifySocket()
        self.path = self.ns.path
        self.got = []  # (t, dict), appended by the reader thread only
        self.cond = threading.Condition()
        self.closed = False
        self.ns.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.closed:
            try:
                data = self.ns.sock.recv(65536).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            m = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            with self.cond:
                self.got.append((t, m))
                self.cond.notify_all()

    def wait(self, pred, after=0, timeout=30):
        """Index of the first message at index >= after that satisfies pred."""
        deadline = time.monotonic() + timeout
        i = after
        with self.cond:
            while True:
                while i < len(self.got):
                    if pred(self.got[i][1]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching sd_notify message after #%d; got %r"
                                       % (after, [m for _, m in self.got[after:]][-10:]))
                self.cond.wait(left)

    def count(self):
        with self.cond:
            return len(self.got)

    def close(self):
        self.closed = True
        self.thread.join()
        self.ns.close()


def has(key, value="1"):
    return lambda m: m.get(key) == value


def run_rows(db, name):
    return db.sql("SELECT l.id, l.status, l.daemon_id, l.started_at, l.completed_at,"
                  " l.error_message FROM public.sync_logs l JOIN public.third_party_integrations i"
                  " ON i.id = l.integration_id WHERE i.name = %s ORDER BY l.id", name)


def statuses(db, name):
    return [r[1] for r in run_rows(db, name)]


def check_log_lines(text, secrets=()):
    """Every record is one line with a syslog level prefix; run lines name integration and run;
    no secret appears anywhere."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, "empty log"
    for ln in lines:
        assert LINE.match(ln), "line without a level prefix: %r" % ln
    for key in ("sync started", "run success", "run failed", "run cancelled", "cancelling the run",
                "run partial"):
        for ln in lines:
            if key in ln:
                assert RUN_LINE.match(ln), "run line without [integration#run]: %r" % ln
    for s in secrets:
        if s:
            assert s not in text, "a secret appears in the log"
    return lines


def secrets_of(db, sim, retailers):
    out = [sim.credentials(r)[1] for r in retailers]
    out += [r[0] for r in db.sql("SELECT access_token FROM public.third_party_integrations"
                                 " WHERE access_token IS NOT NULL")]
    return out


def test_ready_reload_and_broken_reload(db, workdir):
    with Sim(products=30, seed=11) as sim:
        kvsd.setup_integration(db, sim, interval=60)
        cfg = workdir / "kvs.conf"
        # No polling during this test: only SIGHUP can make the daemon re-read the table.
        kvsd.write_config(cfg, db.dsn, sync={"poll_interval": 3600}, log={"level": "notice"})
        notes = Notes()
        d = kvsd.Daemon(str(cfg), notify=notes)
        try:
            ready = notes.wait(has("READY"), timeout=20)
            # Integrations are loaded when READY=1 arrives: the never-synced one is due at once.
            wait_until(lambda: statuses(db, "kiotviet") == ["success"], 20, what="first run")
            assert "STATUS" in notes.got[notes.wait(lambda m: "STATUS" in m, after=ready)][1]

            # 1. The table changes (every minute, last synced 61 s ago), the file does not:
            # SIGHUP alone applies the new schedule.
            db.sql("UPDATE public.third_party_integrations SET sync_interval_minutes = 1,"
                   " last_sync_at = now() - interval '61 seconds' WHERE name = 'kiotviet'")
            time.sleep(0.5)
            assert statuses(db, "kiotviet") == ["success"], "re-read without SIGHUP?"
            mark = notes.count()
            d.signal(signal.SIGHUP)
            i = notes.wait(has("RELOADING"), after=mark, timeout=10)
            assert int(notes.got[i][1]["MONOTONIC_USEC"]) > 0
            notes.wait(has("READY"), after=i + 1, timeout=10)
            wait_until(lambda: statuses(db, "kiotviet") == ["success", "success"], 15,
                       what="run on the new schedule")
            assert "interval now 1 min" in d.log()

            # A run-now request announced with NOTIFY kiotviet_sync (what `kiotviet-syncd sync`
            # does) runs at once: no SIGHUP, no poll. The request is cleared afterwards.
            db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now()"
                   " WHERE name = 'kiotviet'")
            db.sql("NOTIFY kiotviet_sync, 'kiotviet'")
            wait_until(lambda: statuses(db, "kiotviet") == ["success"] * 3, 10,
                       what="run-now request")
            wait_until(lambda: db.value("SELECT sync_requested_at IS NULL FROM"
                                        " public.third_party_integrations WHERE name = 'kiotviet'"),
                       5, what="request cleared")

            # 2. A changed file: log level and poll interval apply; a start-only key is reported
            # and keeps its value.
            kvsd.write_config(cfg, db.dsn, sync={"poll_interval": 1}, log={"level": "debug"},
                              kiotviet={"request_timeout": 17})
            mark = notes.count()
            d.signal(signal.SIGHUP)
            i = notes.wait(has("RELOADING"), after=mark, timeout=10)
            notes.wait(has("READY"), after=i + 1, timeout=10)
            log = d.log()
            assert "configuration reloaded (log level debug, poll every 1 s" in log
            assert "[kiotviet] request_timeout cannot change while running" in log
            # Debug records now appear: the next run's connection logs one.
            before = d.log().count("<7>debug")
            db.sql("UPDATE public.third_party_integrations SET last_sync_at = now() -"
                   " interval '61 seconds' WHERE name = 'kiotviet'")
            wait_until(lambda: statuses(db, "kiotviet") == ["success"] * 4, 15,
                       what="run picked up by polling")
            assert d.log().count("<7>debug") > before

            # 3. A broken file: the reason is logged, the old configuration stays in force
            # (still polling every second), READY=1 follows RELOADING=1.
            cfg.write_text(cfg.read_text().replace("poll_interval = 1", "poll_interval = soon"))
            mark = notes.count()
            d.signal(signal.SIGHUP)
            i = notes.wait(has("RELOADING"), after=mark, timeout=10)
            notes.wait(has("READY"), after=i + 1, timeout=10)
            log = d.log()
            assert re.search(r"<3>error reload failed, keeping the old configuration: .*kvs\.conf:"
                             r"\d+: \[sync\] poll_interval: not a whole number", log), log
            assert "'soon'" not in log  # configuration errors never quote a value
            db.sql("UPDATE public.third_party_integrations SET last_sync_at = now() -"
                   " interval '61 seconds' WHERE name = 'kiotviet'")
            wait_until(lambda: statuses(db, "kiotviet") == ["success"] * 5, 15,
                       what="run under the old configuration")
            assert d.proc.poll() is None
        finally:
            rc = d.stop()
            notes.close()
            print(d.log())  # shown when the test fails
        assert rc == 0
        check_log_lines(d.log(), secrets_of(db, sim, ["demoshop"]))


def test_sigterm_cancels_a_slow_run_within_the_grace_period(db, workdir):
    with Sim(products=3000, seed=5, extra_args=("--latency-ms", "300")) as sim:
        iid = kvsd.setup_integration(db, sim)
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                sync={"grace_period": 2, "pages_in_flight": 1, "poll_interval": 1})
        notes = Notes()
        d = kvsd.Daemon(cfg, notify=notes)
        try:
            notes.wait(has("READY"), timeout=20)
            # Mid-run: the log row exists and some products are stored.
            wait_until(lambda: db.value("SELECT count(*) FROM public.products"
                                        " WHERE kiotviet_id IS NOT NULL") > 0, 30,
                       what="products being stored")
            assert statuses(db, "kiotviet") == ["running"]
            mark = notes.count()
            d.signal(signal.SIGTERM)
            notes.wait(has("STOPPING"), after=mark, timeout=5)
            rc = d.proc.wait(timeout=15)
        finally:
            d.stop()
            notes.close()
            print(d.log())  # shown when the test fails
        assert rc == 0
        # The run got its 2 s of grace, then was cancelled (events in order, not a time window,
        # which flakes under ASan on two cores).
        log = d.log()
        granted = log.find("stopping: 1 run(s) in flight get 2 s to finish")
        over = log.find("grace period over: cancelling 1 run(s)")
        assert 0 <= granted < over, log
        (log_id, status, _, _, completed, message), = run_rows(db, "kiotviet")
        assert status == "cancelled" and completed is not None, (status, message)
        owner, last_sync, cursor = db.sql(
            "SELECT sync_lease_owner, last_sync_at, products_cursor"
            " FROM public.third_party_integrations WHERE id = %s", iid)[0]
        assert owner is None, "lease not released"
        assert last_sync is None and cursor is None, "a cancelled run must not count as a sync"
        # Whole pages only: what is stored is exactly what the log row counts.
        stored = db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL"
                          " AND sync_status = 'synced'")
        counted = db.value("SELECT products_synced FROM public.sync_logs WHERE id = %s", log_id)
        assert 0 < stored < 3000 and stored == counted, (stored, counted)
        lines = check_log_lines(d.log(), secrets_of(db, sim, ["demoshop"]))
        assert any("cancelling the run" in ln and f"[kiotviet#{log_id}]" in ln for ln in lines)


def test_watchdog_keeps_beating_while_large_pages_are_stored(db, workdir):
    desc = "Nhẫn vàng " * 2500  # 25,000 characters, 32.5 kB of UTF-8: ~3.3 MB per page of 100
    # Latency stretches the run over several beats; pages are parsed and stored in between.
    with Sim(products=500, seed=3, extra_args=("--latency-ms", "400")) as sim:
        products = sim.catalog("demoshop")["products"]
        stored_kinds = [p for p in products if not p.get("masterUnitId")]  # units are skipped
        for pid in [p["id"] for p in products]:
            sim.mutate(set={"id": pid, "fields": {"description": desc}})
        kvsd.setup_integration(db, sim)
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                sync={"poll_interval": 1, "pages_in_flight": 1})
        notes = Notes()
        # A beat every second (half the period): a page's parsing and storing would have to
        # hold the loop for a whole second to be caught. A 1 s period flaked under ASan with
        # three test workers on two cores, where scheduling alone can delay a beat by 0.5 s.
        period = 2.0
        d = kvsd.Daemon(cfg, notify=notes, env={"WATCHDOG_USEC": str(int(period * 1e6))})
        try:
            notes.wait(has("READY"), timeout=20)
            start = notes.count()
            wait_until(lambda: statuses(db, "kiotviet") == ["success"], 60, what="big run")
            time.sleep(0.1)
            beats = [t for t, m in notes.got if m.get("WATCHDOG") == "1"]
        finally:
            rc = d.stop()
            notes.close()
            print(d.log())  # shown when the test fails
        assert rc == 0
        assert f"watchdog: heartbeat every {int(period * 500)} ms" in d.log()
        long_rows = db.value("SELECT count(*) FROM public.products WHERE description = %s", desc)
        assert long_rows == len(stored_kinds), (long_rows, len(stored_kinds))
        # Beats across the whole run; none missing for a watchdog period.
        t_first = notes.got[start][0]
        during = [t for t in beats if t >= t_first]
        gaps = [b - a for a, b in zip(during, during[1:])]
        assert len(during) >= 3, beats
        assert max(gaps) < period, "watchdog gap %.3f s" % max(gaps)
        print("watchdog: %d beats, largest gap %.3f s" % (len(during), max(gaps)))


def test_added_integration_is_synced_without_restart_and_credential_url(db, workdir):
    # Categories only: two retailers' generated product codes would collide in one shop.
    with Sim(products=0, seed=2, retailers=("shop-a", "shop-b")) as sim:
        # The database URL comes from systemd's credential, not from the file.
        creds = Path(tempfile.mkdtemp(prefix="kvs-cred-", dir=workdir))
        (creds / "database-url").write_text(db.dsn + "\n")
        cfg = workdir / "kvs.conf"
        cfg.write_text("[sync]\npoll_interval = 1\n")
        notes = Notes()
        d = kvsd.Daemon(str(cfg), notify=notes, env={"CREDENTIALS_DIRECTORY": str(creds)})
        try:
            notes.wait(has("READY"), timeout=20)
            assert "ready: 0 integration(s) enabled" in d.log()
            kvsd.setup_integration(db, sim, retailer="shop-a", name="kiotviet-shop-a",
                                   interval=5, insert=True)
            # Picked up by a poll (1 s + jitter below 3 s), not by a restart: the wait is
            # generous, the event is what counts.
            wait_until(lambda: statuses(db, "kiotviet-shop-a") == ["success"], 60,
                       what="new integration synced")
            # Disabled: never run again; a second one added meanwhile runs.
            db.sql("UPDATE public.third_party_integrations SET sync_enabled = false,"
                   " last_sync_at = now() - interval '1 hour' WHERE name = 'kiotviet-shop-a'")
            kvsd.setup_integration(db, sim, retailer="shop-b", name="kiotviet-shop-b",
                                   insert=True)
            wait_until(lambda: statuses(db, "kiotviet-shop-b") == ["success"], 15,
                       what="second integration synced")
            # The moment has passed when the daemon says it saw the disable; shop-b's run,
            # started by a poll after it, is done: a due shop-a run would have started with it.
            wait_until(lambda: "disabled: not syncing" in d.log(), 30, what="the disable seen")
            assert statuses(db, "kiotviet-shop-a") == ["success"]
        finally:
            rc = d.stop()
            notes.close()
            print(d.log())  # shown when the test fails
        assert rc == 0
        check_log_lines(d.log(), secrets_of(db, sim, ["shop-a", "shop-b"]) + [db.dsn])


def two_more_polls(daemons):
    """Waits until each daemon has read the integrations twice more (its debug line per
    poll): the positive sign that the moment in which something must not happen has passed."""
    def reads(d):
        return d.log().count("integrations read: ")
    marks = [(d, reads(d)) for d in daemons]
    wait_until(lambda: all(reads(d) >= m + 2 for d, m in marks), 20, what="two more polls")



def test_queued_integration_synced_elsewhere_is_not_run_again(db, workdir):
    """An integration due while every run slot is taken waits in the queue. If another daemon
    syncs it meanwhile (the next poll shows a newer last_sync_at), it leaves the queue: before,
    the claim that took the next free slot compared against that newer last_sync_at, succeeded,
    and synced it a second time (the race behind test_three_daemons' duplicate runs)."""
    with Sim(products=0, seed=3, retailers=("q1", "q2"),
             extra_args=("--latency-ms", "700")) as sim:
        for r in ("q1", "q2"):
            kvsd.setup_integration(db, sim, retailer=r, name="kiotviet-" + r, interval=1,
                                   insert=True)
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                sync={"poll_interval": 1, "max_concurrent_runs": 1},
                                log={"level": "debug"})
        d = kvsd.Daemon(cfg)
        try:
            # Both are due at once; one slot: one runs (slowly), the other waits for the slot.
            waiting = wait_until(lambda: re.search(r"\[(kiotviet-q\d)\] due: waiting for a free"
                                                   r" run slot", d.log()), 30, what="a queued run")
            other = waiting.group(1)
            assert statuses(db, other) == []
            # Another daemon syncs it now (as its run's end does), and this one reads that.
            db.sql("UPDATE public.third_party_integrations SET last_sync_at = now()"
                   " WHERE name = %s", other)
            two_more_polls([d])
            first = "kiotviet-q1" if other == "kiotviet-q2" else "kiotviet-q2"
            wait_until(lambda: statuses(db, first) == ["success"], 30, what="the first run")
            two_more_polls([d])
            assert statuses(db, other) == []
        finally:
            rc = d.stop()
            print(d.log())
        assert rc == 0


def test_three_daemons_share_a_dozen_integrations(db, workdir):
    retailers = tuple("r%d" % i for i in range(1, 13))
    names = ["kiotviet-" + r for r in retailers]
    # Categories only: the retailers' generated product codes would collide in one shop.
    # Some latency so that runs overlap and no daemon can do everything alone.
    with Sim(products=0, seed=9, retailers=retailers,
             extra_args=("--latency-ms", "300")) as sim:
        for r, n in zip(retailers, names):
            kvsd.setup_integration(db, sim, retailer=r, name=n, interval=1, insert=True)
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                sync={"poll_interval": 1, "lease_seconds": 6,
                                      "max_concurrent_runs": 4, "grace_period": 1},
                                log={"level": "debug"})
        notes = [Notes() for _ in range(3)]
        daemons = [kvsd.Daemon(cfg, notify=n) for n in notes]

        def count(status=None):
            q = ("SELECT i.name, count(l.id) FROM public.third_party_integrations i LEFT JOIN"
                 " public.sync_logs l ON l.integration_id = i.id"
                 + (" AND l.status = %s" if status else "") +
                 " WHERE i.name LIKE 'kiotviet-r%%' GROUP BY i.name")
            return dict(db.sql(q, status) if status else db.sql(q))

        def make_due():
            db.sql("UPDATE public.third_party_integrations SET last_sync_at = now() -"
                   " interval '2 minutes' WHERE name LIKE 'kiotviet-r%'")

        t0 = time.monotonic()

        def phase(what):
            print("%6.2f s  %s" % (time.monotonic() - t0, what))

        try:
            for n in notes:
                n.wait(has("READY"), timeout=20)
            phase("3 daemons ready")
            # Round 1: all never synced, all due now on all three daemons.
            wait_until(lambda: all(v == 1 for v in count("success").values()), 30,
                       what="round 1")
            phase("round 1 done")
            two_more_polls(daemons)  # a duplicate would have started by now
            assert count() == {n: 1 for n in names}
            owners = {r[0] for r in db.sql("SELECT daemon_id FROM public.sync_logs")}
            assert len(owners) >= 2, owners  # the work is shared

            # Round 2: due again (as if a minute had passed), slow runs, and one daemon dies
            # (kill -9) in the middle of its runs.
            sim.config(latency_ms=900)
            make_due()
            pid_of = {d.proc.pid: d for d in daemons}

            def victim():
                rows = db.sql("SELECT l.daemon_id, i.name FROM public.sync_logs l JOIN"
                              " public.third_party_integrations i ON i.id = l.integration_id"
                              " WHERE l.status = 'running'")
                return rows or None

            rows = wait_until(victim, 20, interval=0.05, what="runs in flight")
            dead_id = rows[0][0]
            dead = pid_of[int(dead_id.split(":")[-2])]
            dead.kill()
            phase("killed daemon %s" % dead_id)
            t_kill = db.value("SELECT now()")
            orphaned = db.sql(
                "SELECT i.name, i.sync_lease_expires_at FROM public.third_party_integrations i"
                " JOIN public.sync_logs l ON l.integration_id = i.id"
                " WHERE l.status = 'running' AND l.daemon_id = %s", dead_id)
            assert orphaned
            survivors = [d for d in daemons if d is not dead]

            def taken_over():
                for name, expires in orphaned:
                    rows = db.sql(
                        "SELECT l.daemon_id, l.started_at FROM public.sync_logs l JOIN"
                        " public.third_party_integrations i ON i.id = l.integration_id"
                        " WHERE i.name = %s AND l.status = 'success' AND l.started_at > %s",
                        name, t_kill)
                    if not rows:
                        return False
                    (owner, started), = rows
                    # By a live daemon (as soon as the dead one's session is gone:
                    # test_lease.py shows that this comes before its lease ends).
                    assert owner != dead_id, (name, owner, started, expires)
                return True

            wait_until(taken_over, 30, what="takeover of the dead daemon's leases")
            phase("taken over")
            wait_until(lambda: all(v == 2 for v in count("success").values()), 30,
                       what="round 2")
            phase("round 2 done")
            # The dead daemon's rows are closed as failed (abandoned) by a survivor.
            wait_until(lambda: db.value("SELECT count(*) FROM public.sync_logs"
                                        " WHERE status = 'running'") == 0, 20,
                       what="abandoned rows closed")
            phase("abandoned rows closed")
            two_more_polls(survivors)
            # (A batch the dead daemon sent just before the kill may still be carried out by
            # its backend, which notices the dead client only when it answers, e.g. after
            # waiting for a survivor's claim: its rows are counted once everything settled.)
            wait_until(lambda: db.value("SELECT count(*) FROM public.sync_logs"
                                        " WHERE status = 'running'") == 0, 20,
                       what="late abandoned rows closed")
            abandoned = db.sql("SELECT l.status, l.error_message, i.name FROM public.sync_logs l"
                               " JOIN public.third_party_integrations i ON i.id = l.integration_id"
                               " WHERE l.daemon_id = %s AND l.status <> 'success'", dead_id)
            assert len(abandoned) >= len(orphaned)
            assert all(s == "failed" and "abandoned" in m for s, m, _ in abandoned), abandoned
            # Each due run happened once: 2 successes everywhere, plus one abandoned row for
            # each integration the dead daemon was running.
            dead_names = {n for _, _, n in abandoned}
            assert len(dead_names) == len(abandoned)
            assert count("success") == {n: 2 for n in names}
            assert count() == {n: 2 + (n in dead_names) for n in names}
        finally:
            rcs = [d.stop() for d in daemons]
            for n in notes:
                n.close()
            for i, d in enumerate(daemons):
                print("---- daemon %d (pid %d)\n%s" % (i, d.proc.pid, d.log()))
        assert [rc for d, rc in zip(daemons, rcs) if d is not dead] == [0, 0]
        secrets = secrets_of(db, sim, retailers)
        lost = re.compile(r"\[(kiotviet-r\d+)\] (leased by another daemon|claimed by another"
                          r" daemon just now)")
        for d in daemons:
            text = d.log()
            if d is not dead:
                check_log_lines(text, secrets)
            # A daemon that loses a claim waits for the other's lease (or its next poll) instead
            # of retrying at once: one or two lost claims per integration and round here.
            per_integ = {}
            for m in lost.finditer(text):
                per_integ[m.group(1)] = per_integ.get(m.group(1), 0) + 1
            print("lost claims per integration:", per_integ)
            assert max(per_integ.values(), default=0) <= 6, per_integ
