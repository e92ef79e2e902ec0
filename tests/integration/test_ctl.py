"""`kiotviet-syncd status` and `kiotviet-syncd sync NAME` against a real database and daemon.

status is checked against what the database holds (last run, counts, token expiry, lease) and
against the scheduler's next-run rule; sync NAME is checked end to end through a running daemon
(poll_interval = 1): the request goes through the table, the daemon runs it, the command prints
the run's sync_logs row and exits 0 / 1 / 2. The shop's shape does not matter here: uuid only.
"""

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402
from kvsim.client import Sim  # noqa: E402

pytestmark = pytest.mark.parametrize("shop_shape", ["uuid"])

PRODUCTS = 400


@pytest.fixture
def sim():
    with Sim(products=PRODUCTS, seed=7) as s:
        yield s


ctl = kvsd.ctl


def status_json(cfg):
    r = ctl("status", "-c", cfg, "--json")
    assert r.rc == 0, r
    doc = json.loads(r.out)
    return doc, {i["name"]: i for i in doc["integrations"]}


def iso(s):
    return None if s is None else datetime.fromisoformat(s.replace("Z", "+00:00"))


def daemons_connected(db):
    return db.value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'kiotviet-syncd control'")


def start_daemon(cfg, db):
    d = kvsd.Daemon(cfg)
    try:
        kvsd.wait_until(lambda: daemons_connected(db) == 1, timeout=20, what="daemon connected")
        kvsd.wait_until(lambda: "ready:" in d.log(), timeout=20, what="daemon ready")
    except BaseException:
        d.stop()
        raise
    return d


def integ(db, name="kiotviet"):
    cols = ["last_sync_at", "token_expires_at", "access_token", "client_secret",
            "sync_requested_at", "sync_request_full", "last_full_sync_at"]
    row = db.sql(f"SELECT {', '.join(cols)} FROM public.third_party_integrations WHERE name = %s",
                 name)[0]
    return dict(zip(cols, row))


def log_rows(db, name="kiotviet"):
    return db.sql("SELECT l.id, l.status, l.sync_type, l.products_synced, l.categories_synced,"
                  " l.products_updated, l.requests_made FROM public.sync_logs l"
                  " JOIN public.third_party_integrations i ON i.id = l.integration_id"
                  " WHERE i.name = %s ORDER BY l.id", name)


RESULT_RE = re.compile(
    r"^(?P<name>\S+): (?P<status>\w+) \((?P<type>\w+), run (?P<id>\d+), [\d.]+ s\): categories "
    r"(?P<cats>\d+) synced \(\d+ new, \d+ changed, \d+ failed, \d+ removed\); products "
    r"(?P<prods>\d+) synced \(\d+ new, (?P<changed>\d+) changed, \d+ failed, \d+ removed\); "
    r"(?P<reqs>\d+) requests")


def test_status_human_and_json(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn, sync={"poll_interval": 1})
    kvsd.setup_integration(shop_db, sim)
    # A second integration, disabled and without a secret yet.
    shop_db.sql("INSERT INTO public.third_party_integrations (name, api_url, token_url, client_id,"
                " client_secret, retailer, sync_enabled) VALUES ('kiotviet-hanoi', %s, %s, 'x',"
                " '', 'hanoi', false)", sim.url, sim.url + "/connect/token")
    r = kvsd.run_once(cfg)
    assert r.rc == 0, r
    last = kvsd.last_log(shop_db)
    log_id = shop_db.value("SELECT max(id) FROM public.sync_logs")
    row = integ(shop_db)
    assert row["access_token"] and row["token_expires_at"]

    d = start_daemon(cfg, shop_db)
    try:
        h = ctl("status", "-c", cfg)
        doc, by = status_json(cfg)
    finally:
        d.stop()
    assert h.rc == 0, h

    # Human: every integration, its state, the last run and its counts, next run, token, lease.
    assert "1 kiotviet-syncd daemon connected" in h.out
    block = h.out.split("\nkiotviet-hanoi")[0].split("\nkiotviet  ")[1]
    assert "state      idle" in block
    assert f"last run   success, full, run {log_id}," in block
    assert (f"categories {last['categories_synced']} synced ({last['categories_created']} new"
            in block)
    assert f"products {PRODUCTS} synced ({PRODUCTS} new, 0 changed, 0 failed, 0 removed)" in block
    assert "every 60 min" in block and "(in 59 min)" in block
    assert "token      valid until" in block and "lease      free" in block
    hanoi = h.out.split("\nkiotviet-hanoi")[1]
    assert "disabled (sync_enabled = false)" in hanoi
    assert "credentials incomplete" in hanoi and "next run   none (disabled)" in hanoi

    # JSON: the same facts, exactly as the database has them.
    assert doc["daemons_connected"] == 1 and doc["schema"] == "public"
    k = by["kiotviet"]
    assert k["state"] == "idle" and k["sync_enabled"] and k["credentials_complete"]
    assert k["consecutive_failures"] == 0 and k["running"] is None and k["lease"] is None
    assert iso(k["last_sync_at"]) == row["last_sync_at"]
    assert iso(k["next_run"]["at"]) == row["last_sync_at"] + timedelta(minutes=60)
    assert k["next_run"]["reason"] == "scheduled"
    assert k["token"] == {"present": True, "expired": False,
                          "expires_at": k["token"]["expires_at"]}
    assert iso(k["token"]["expires_at"]) == row["token_expires_at"]
    lr = k["last_run"]
    assert lr["id"] == log_id and lr["status"] == "success" and lr["sync_type"] == "full"
    assert lr["products"] == {"synced": PRODUCTS, "created": PRODUCTS, "updated": 0,
                              "failed": 0, "deactivated": 0}
    assert lr["categories"]["synced"] == last["categories_synced"] > 0
    assert lr["requests"] == last["requests_made"] > 0
    assert lr["completed_at"] is not None and lr["error_message"] is None
    hn = by["kiotviet-hanoi"]
    assert hn["state"] == "disabled" and not hn["credentials_complete"]
    assert hn["next_run"] == {"at": None, "reason": "disabled"}
    assert hn["last_run"] is None and hn["token"]["present"] is False
    # Never a secret.
    for text in (h.out, h.err, json.dumps(doc)):
        assert row["access_token"] not in text and row["client_secret"] not in text


def test_status_next_run_follows_the_backoff_rule(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn,
                            sync={"max_backoff_minutes": 100})
    kvsd.setup_integration(shop_db, sim, interval=30)
    assert kvsd.run_once(cfg).rc == 0
    last_sync = integ(shop_db)["last_sync_at"]
    # interval 30 min doubled per consecutive failure, capped at max_backoff_minutes (100).
    for failures, minutes in ((0, 30), (1, 60), (2, 100), (5, 100)):
        shop_db.sql("UPDATE public.third_party_integrations SET consecutive_failures = %s"
                    " WHERE name = 'kiotviet'", failures)
        _, by = status_json(cfg)
        k = by["kiotviet"]
        assert k["state"] == ("backing_off" if failures else "idle")
        assert k["effective_interval_minutes"] == minutes
        assert iso(k["next_run"]["at"]) == last_sync + timedelta(minutes=minutes)
        assert k["next_run"]["reason"] == ("backoff" if failures else "scheduled")
    h = ctl("status", "-c", cfg)
    assert "backing off after 5 failed runs in a row (interval 30 min stretched to 100 min)" in h.out
    # Overdue, a pending run-now request, a never-synced row.
    shop_db.sql("UPDATE public.third_party_integrations SET consecutive_failures = 0,"
                " last_sync_at = now() - interval '2 hours' WHERE name = 'kiotviet'")
    _, by = status_json(cfg)
    assert by["kiotviet"]["next_run"]["reason"] == "due"
    shop_db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now(),"
                " sync_request_full = true WHERE name = 'kiotviet'")
    doc, by = status_json(cfg)
    assert by["kiotviet"]["next_run"] == {"at": doc["now"], "reason": "requested"}
    assert by["kiotviet"]["request"]["full"] is True
    shop_db.sql("UPDATE public.third_party_integrations SET sync_requested_at = NULL,"
                " last_sync_at = NULL WHERE name = 'kiotviet'")
    _, by = status_json(cfg)
    assert by["kiotviet"]["next_run"]["reason"] == "first_run"


def test_sync_run_now_and_full_through_the_daemon(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn, sync={"poll_interval": 1})
    kvsd.setup_integration(shop_db, sim)
    assert kvsd.run_once(cfg).rc == 0
    full_before = integ(shop_db)["last_full_sync_at"]
    ids = [p["id"] for p in sim.catalog()["products"]][:3]
    sim.mutate(edit=ids)
    d = start_daemon(cfg, shop_db)
    try:
        r = ctl("sync", "kiotviet", "-c", cfg, "--timeout", "30")
        after_inc = integ(shop_db)
        logs_inc = log_rows(shop_db)
        f = ctl("sync", "kiotviet", "--full", "-c", cfg, "--timeout", "30")
        after_full = integ(shop_db)
        logs_full = log_rows(shop_db)
    finally:
        d.stop()

    # Run now: an incremental run that wrote exactly the three edits, printed from its row.
    assert r.rc == 0, r
    m = RESULT_RE.match(r.out)
    assert m, r.out
    lid, status, typ, prods, cats, upd, reqs = logs_inc[-1]
    assert len(logs_inc) == 2
    assert (m["name"], m["status"], m["type"], int(m["id"])) == ("kiotviet", "success",
                                                                 "incremental", lid)
    assert (status, typ) == ("success", "incremental")
    assert (int(m["prods"]), int(m["cats"]), int(m["changed"]), int(m["reqs"])) == \
        (prods, cats, upd, reqs)
    assert upd == 3
    assert "incremental sync requested" in r.err
    assert after_inc["sync_requested_at"] is None and after_inc["sync_request_full"] is False

    # --full: a full run of the whole catalogue, recorded as such.
    assert f.rc == 0, f
    m = RESULT_RE.match(f.out)
    assert m, f.out
    assert len(logs_full) == 3
    lid, status, typ, prods, cats, upd, reqs = logs_full[-1]
    assert (m["type"], int(m["id"]), int(m["prods"])) == ("full", lid, PRODUCTS)
    assert (status, typ, prods, upd) == ("success", "full", PRODUCTS, 0)
    assert after_full["last_full_sync_at"] > full_before
    assert after_full["sync_requested_at"] is None and after_full["sync_request_full"] is False


def test_sync_reports_the_run_it_asked_for_not_a_webhook_run(shop_db, sim, tmp_path):
    """An inbox run (sync_type 'webhook') that started after the requested run is not the run
    `sync` asked for: it reports the poll's row. The daemon's part is played by SQL here, so
    the order of the two rows is certain."""
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn)
    integ_id = kvsd.setup_integration(shop_db, sim)
    p = subprocess.Popen([kvsd.BIN, "sync", "kiotviet", "-c", cfg, "--timeout", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kvsd.wait_until(lambda: integ(shop_db)["sync_requested_at"] is not None,
                        what="the request")
        row = shop_db.value(
            "INSERT INTO public.sync_logs (integration_id, sync_type, status, products_synced,"
            " completed_at) VALUES (%s, 'incremental', 'success', 3, now()) RETURNING id", integ_id)
        shop_db.sql("INSERT INTO public.sync_logs (integration_id, sync_type, status,"
                    " products_synced, completed_at) VALUES (%s, 'webhook', 'success', 1, now())",
                    integ_id)
        shop_db.sql("UPDATE public.third_party_integrations SET sync_requested_at = NULL"
                    " WHERE id = %s", integ_id)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, (out, err)
    m = RESULT_RE.match(out)
    assert m, out
    assert (m["type"], int(m["id"]), int(m["prods"])) == ("incremental", row, 3)


def test_status_shows_a_running_sync_with_progress(shop_db, sim, tmp_path):
    # One page at a time, each 700 ms: the run lasts long enough to be seen running by two
    # status commands in a row (each a process of its own: slow to start under ASan).
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn,
                            sync={"poll_interval": 1, "pages_in_flight": 1})
    kvsd.setup_integration(shop_db, sim)
    assert kvsd.run_once(cfg).rc == 0
    sim.config(latency_ms=700)
    d = start_daemon(cfg, shop_db)
    try:
        p = subprocess.Popen([kvsd.BIN, "sync", "kiotviet", "--full", "-c", cfg, "--timeout", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def running():
            _, by = status_json(cfg)
            k = by["kiotviet"]
            if not (k["state"] == "running" and k["running"] and
                    k["running"]["products"]["synced"]):
                return None
            h = ctl("status", "-c", cfg)  # right after: still the same run
            return (k, h) if "state      running full sync" in h.out else None
        k, h = kvsd.wait_until(running, timeout=30, interval=0.05,
                               what="a running sync with progress")
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        d.stop()
    run = k["running"]
    log_id = shop_db.value("SELECT max(id) FROM public.sync_logs")
    assert run["id"] == log_id and run["sync_type"] == "full" and run["completed_at"] is None
    assert 0 < run["products"]["synced"] < PRODUCTS
    assert run["products_expected"] == PRODUCTS  # the last full run's count
    assert k["lease"]["live"] and k["lease"]["owner"] == run["daemon_id"]
    assert k["next_run"] == {"at": None, "reason": "after_current_run"}
    assert "running full sync, run %d since" % log_id in h.out
    assert re.search(r"products \d+ of ~%d \(\d+%%\), categories \d+, \d+ requests" % PRODUCTS,
                     h.out), h.out
    assert "held by %s until" % run["daemon_id"] in h.out
    assert p.returncode == 0, (out, err)
    assert out.startswith("kiotviet: success (full, run %d," % log_id)


def test_sync_failed_run_exits_1(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn, sync={"poll_interval": 1},
                            kiotviet={"max_retries": 0})
    kvsd.setup_integration(shop_db, sim)
    shop_db.sql("UPDATE public.third_party_integrations SET client_secret = 'wrong-secret-123456'"
                " WHERE name = 'kiotviet'")
    d = start_daemon(cfg, shop_db)
    try:
        r = ctl("sync", "kiotviet", "-c", cfg, "--timeout", "30")
    finally:
        d.stop()
    assert r.rc == 1, r
    assert r.out.startswith("kiotviet: failed (")
    lid, status, *_ = log_rows(shop_db)[-1]
    assert status == "failed" and f"run {lid}," in r.out
    msg = shop_db.value("SELECT error_message FROM public.sync_logs WHERE id = %s", lid)
    assert msg and r.out.rstrip().endswith(msg)
    assert "wrong-secret-123456" not in r.out + r.err


def test_sync_unknown_disabled_and_bad_usage(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn)
    kvsd.setup_integration(shop_db, sim, enabled=False)
    r = ctl("sync", "kiotviet-nope", "-c", cfg)
    assert r.rc == 1 and r.out == ""
    assert "no integration named 'kiotviet-nope'" in r.err
    assert "(KiotViet integrations: kiotviet)" in r.err
    r = ctl("sync", "shopify", "-c", cfg)
    assert r.rc == 1 and "'shopify' is not a KiotViet integration" in r.err
    r = ctl("sync", "kiotviet", "-c", cfg)
    assert r.rc == 1 and "kiotviet is not enabled (sync_enabled = false)" in r.err
    # The advice must work: --once refuses a disabled integration too, so it is not offered.
    assert "--once" not in r.err.replace("neither does --once", "")
    assert "SET is_active = true, sync_enabled = true WHERE name = 'kiotviet'" in r.err
    assert integ(shop_db)["sync_requested_at"] is None  # nothing was requested
    assert ctl("sync", "-c", cfg).rc == 64
    assert ctl("sync", "a", "b", "-c", cfg).rc == 64
    assert ctl("sync", "kiotviet", "--timeout", "x", "-c", cfg).rc == 64
    assert ctl("status", "--bogus").rc == 64
    assert ctl("status", "-c", str(tmp_path / "missing.conf")).rc == 78


def test_sync_times_out_without_a_daemon_and_keeps_the_request(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn)
    kvsd.setup_integration(shop_db, sim)
    r = ctl("sync", "kiotviet", "--full", "-c", cfg, "--timeout", "1")
    assert r.rc == 2, r  # (it gave up by itself: ctl's own 60 s limit was not reached)
    assert r.out == ""
    assert "no kiotviet-syncd daemon is connected" in r.err and "no result within 1 s" in r.err
    row = integ(shop_db)
    assert row["sync_requested_at"] is not None and row["sync_request_full"] is True
    _, by = status_json(cfg)
    assert by["kiotviet"]["next_run"]["reason"] == "requested"
    # A daemon started later serves the queued request (a full run) and clears it.
    cfg2 = kvsd.write_config(tmp_path / "d.conf", shop_db.dsn, sync={"poll_interval": 1})
    d = kvsd.Daemon(cfg2)
    try:
        kvsd.wait_until(lambda: integ(shop_db)["sync_requested_at"] is None, timeout=30,
                        what="the queued request served")
    finally:
        d.stop()
    assert log_rows(shop_db)[-1][1:3] == ("success", "full")


def test_row_level_security_is_named_not_mistaken_for_a_missing_migration(shop_db, sim, tmp_path):
    # The migration's RLS (no policies) hides the integrations from roles that neither own the
    # table nor bypass RLS: they see an empty table. status and sync say so.
    role = f"ctl_app_{os.getpid()}"
    shop_db.sql(f"CREATE ROLE {role} LOGIN")
    try:
        shop_db.sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        shop_db.sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        kvsd.setup_integration(shop_db, sim)
        cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn.replace("postgres@", role + "@"))
        h = ctl("status", "-c", cfg)
        assert h.rc == 0, h
        assert f"row level security hides third_party_integrations from role {role}" in h.out
        doc, by = status_json(cfg)
        assert by == {} and doc["hidden_by_row_level_security_from"] == role
        r = ctl("sync", "kiotviet", "-c", cfg)
        assert r.rc == 1 and "no integration named 'kiotviet'" in r.err
        assert f"row level security hides third_party_integrations from role {role}" in r.err
        # The owner sees it, and then the field says nothing is hidden.
        doc, by = status_json(kvsd.write_config(tmp_path / "o.conf", shop_db.dsn))
        assert list(by) == ["kiotviet"] and doc["hidden_by_row_level_security_from"] is None
    finally:
        shop_db.sql(f"DROP OWNED BY {role}")
        shop_db.sql(f"DROP ROLE {role}")


def test_global_options_before_the_subcommand_and_misplaced_options(shop_db, sim, tmp_path):
    """Issue 15 item 8: `kiotviet-syncd -c FILE status` (global options first, as git and
    systemctl accept) works; issue 17: a misplaced option's usage error says where it goes."""
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn)
    kvsd.setup_integration(shop_db, sim)
    for args in (("-c", str(cfg), "status", "--json"), (f"--config={cfg}", "status", "--json"),
                 ("--config", str(cfg), "status", "--json"), (f"-c{cfg}", "status", "--json")):
        r = ctl(*args)
        assert r.rc == 0, (args, r)
        assert [i["name"] for i in json.loads(r.out)["integrations"]] == ["kiotviet"]
    r = ctl("-c", str(cfg), "sync", "kiotviet-nope")
    assert r.rc == 1 and "no integration named 'kiotviet-nope'" in r.err, r
    # Misplaced options: exit 64 and the form that works.
    cases = [
        (("status", "--once", "-c", str(cfg)), "it goes: kiotviet-syncd [-c FILE] --once"),
        (("-c", str(cfg), "--json"), "it goes: kiotviet-syncd [-c FILE] status --json"),
        (("--once", "status"), "status [--json] (the subcommand comes first, after -c)"),
        (("sync", "kiotviet", "--only", "x"), "it goes: kiotviet-syncd [-c FILE] --once --only NAME"),
        (("--timeout", "5"), "it goes: kiotviet-syncd [-c FILE] sync NAME --timeout S"),
        (("-c", str(cfg), "--full"), "kiotviet-syncd sync NAME [--full]"),
    ]
    for args, where in cases:
        r = ctl(*args)
        assert r.rc == 64, (args, r)
        assert where in r.err, (args, r.err)
