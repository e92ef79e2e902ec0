#!/usr/bin/python3
"""Soak test: a 24-hour day in miniature.

The real daemon (daemon mode) syncs a few integrations every few seconds for several minutes
against the KiotViet simulator, which injects random faults (5xx, 429 with and without
Retry-After, resets, stalls, slow answers, revoked tokens, garbled and truncated bodies, broken
records, duplicated and shifting rows) while the catalogue keeps changing; the database side
gets its connections killed now and then. Afterwards:

  - RSS and open descriptors did not grow after the warm-up (sampled from /proc/PID/status and
    /proc/PID/fd);
  - every run is accounted for: each run the daemon started has its sync_logs row, every row is
    finished (success/partial/failed/cancelled), none is left 'running';
  - once the faults stop, one full run per integration brings the shop's tables exactly in line
    with the catalogue;
  - SIGTERM stops it with exit 0 and (for an ASan build) no sanitizer report, i.e. no leaks.

    tests/soak/soak.py [--bin build/kiotviet-syncd] [--duration 300] [--integrations 3]

Exit status 0 when every check passed; the summary goes to stdout.
"""

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import kvsd  # noqa: E402
import pgharness  # noqa: E402
from kvsim.client import Sim  # noqa: E402

RETAILER = "soakshop"


def faults_menu(rng):
    """One random fault rule (applies to the next matching request(s))."""
    path = rng.choice(["/products", "/products", "/products", "/categories", "/connect/token"])
    if path == "/connect/token":
        kind = rng.choice(["s503", "delay", "reset", "truncate"])
    else:
        kind = rng.choice(["s500", "s502", "s503", "429ra", "429", "reset", "stall", "delay",
                           "token_expired", "malformed", "truncate", "bad_record", "missing_id",
                           "duplicate", "total_change", "drift"])
    r = {"match": path, "times": rng.choice([1, 1, 2]), "after": rng.randint(0, 3)}
    if re.fullmatch(r"s\d+", kind):
        r.update(kind="status", status=int(kind[1:]))
    elif kind == "429ra":
        r.update(kind="status", status=429, headers={"Retry-After": "1"})
    elif kind == "429":
        r.update(kind="status", status=429)
    elif kind == "stall":
        r.update(kind="stall", seconds=4)
    elif kind == "delay":
        r.update(kind="delay", ms=rng.choice([300, 800]))
    elif kind == "bad_record":
        r.update(kind="bad_record", index=rng.randint(0, 40), variant="wrong_types")
    elif kind == "missing_id":
        r.update(kind="bad_record", index=rng.randint(0, 40), variant="missing_id")
    elif kind == "total_change":
        r.update(kind="total_change", delta=rng.choice([-30, 25]))
    elif kind == "drift":
        r.update(kind="drift", mutation=rng.choice([{"delete": 2}, {"add": 2}, {"edit": 3}]))
    else:
        r.update(kind=kind)
    return r


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def is_asan(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out


def catalogue_matches(db, sim):
    """The shop's synced products equal the catalogue (deleted ones marked deleted)."""
    cat = {p["id"]: p for p in sim.catalog(RETAILER)["products"] if not p.get("masterUnitId")}
    rows = db.sql("SELECT kiotviet_id, name, sku, kiotviet_status FROM public.products"
                  " WHERE kiotviet_id IS NOT NULL")
    got = {r[0]: r for r in rows}
    problems = []
    if len(rows) != len(got):
        problems.append("duplicate kiotviet_id rows")
    missing = set(cat) - set(got)
    if missing:
        problems.append(f"{len(missing)} products missing, e.g. {sorted(missing)[:5]}")
    for pid, p in cat.items():
        r = got.get(pid)
        if r and (r[1] != p["name"] or r[2] != p.get("code") or
                  r[3] != ("active" if p.get("isActive", True) else "inactive")):
            problems.append(f"product {pid} differs: {r[1:]!r}")
            break
    stale = [k for k, r in got.items() if k not in cat and r[3] != "deleted"]
    if stale:
        problems.append(f"{len(stale)} products KiotViet no longer has are not marked deleted")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("KVS_BIN", str(ROOT / "build" / "kiotviet-syncd")))
    ap.add_argument("--duration", type=float, default=300, help="seconds of faults (default 300)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before memory is measured (default: a quarter, at most 60)")
    ap.add_argument("--integrations", type=int, default=3)
    ap.add_argument("--products", type=int, default=400)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between run requests")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--rss-slack-kb", type=int, default=3072)
    ap.add_argument("--fd-slack", type=int, default=3)
    ap.add_argument("--samples-out", help="write the (seconds, rss_kb, fds) samples here (CSV)")
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else min(60.0, args.duration / 4)
    rng = random.Random(args.seed)
    asan = is_asan(args.bin)
    kvsd.BIN = args.bin
    print(f"soak: {args.bin}{' (ASan: RSS not judged)' if asan else ''}, {args.duration:.0f} s, "
          f"{args.integrations} integrations, seed {args.seed}", flush=True)

    failures = []
    pg = pgharness.PgCluster.start()
    sim = Sim(products=args.products, seed=args.seed % 1000, retailers=(RETAILER,))
    # The integrations share one retailer (the simulator's ids would collide across retailers),
    # and a day in miniature makes an hour's worth of requests in minutes: lift KiotViet's
    # hourly limit here (the daemon's own budget stays on; 429s are injected as faults).
    sim.config(budget=10 ** 7)
    workdir = Path(tempfile.mkdtemp(prefix="kvs-soak-"))
    os.chmod(workdir, 0o755)
    d = None
    try:
        db = pgharness.new_shop_database(pg, "uuid")
        names = ["kiotviet"] + [f"kiotviet-soak{i}" for i in range(2, args.integrations + 1)]
        kvsd.setup_integration(db, sim, retailer=RETAILER, interval=60)
        for n in names[1:]:
            kvsd.setup_integration(db, sim, retailer=RETAILER, name=n, interval=60, insert=True)
        cfg = kvsd.write_config(
            workdir / "kvs.conf", db.dsn,
            sync={"lease_seconds": 10, "poll_interval": 1, "grace_period": 5, "page_size": 50,
                  "pages_in_flight": 2, "max_concurrent_runs": args.integrations,
                  "reconcile_hours": 1, "hourly_get_budget": 5000},
            kiotviet={"max_retries": 3, "request_timeout": 2, "connect_timeout": 2},
            log={"level": "info"})
        d = kvsd.Daemon(cfg)
        pid = d.proc.pid
        t0 = time.monotonic()
        samples = []          # (t, rss_kb, fds)
        injected = 0
        kills = 0
        next_req = next_fault = next_mut = next_kill = t0
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic()
            if d.proc.poll() is not None:
                failures.append(f"the daemon exited early with {d.proc.returncode}")
                break
            if now >= next_req:
                # run-now requests: every integration runs every few seconds; now and then full
                full = rng.random() < 0.1
                db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now(),"
                       " sync_request_full = %s", full)
                next_req = now + args.every
            if now >= next_fault:
                sim.faults([faults_menu(rng) for _ in range(rng.randint(1, 3))])
                injected += 1
                next_fault = now + rng.uniform(0.5, 2.5)
            if now >= next_mut:
                sim.mutate(retailer=RETAILER, edit=rng.randint(0, 5), add=rng.randint(0, 2),
                           delete=rng.randint(0, 1), deactivate=rng.randint(0, 1))
                next_mut = now + rng.uniform(2, 6)
            if now >= next_kill:
                pids = db.sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                              " AND application_name LIKE 'kiotviet-syncd%%'")
                if pids:
                    db.sql("SELECT pg_terminate_backend(%s)", rng.choice(pids)[0])
                    kills += 1
                next_kill = now + rng.uniform(8, 20)
            try:
                rss, fds = proc_sample(pid)
                samples.append((now - t0, rss, fds))
            except (OSError, AttributeError):
                pass
            time.sleep(0.5)

        # Faults stop; one last full run of every integration must bring the tables in line.
        sim.clear_faults()
        time.sleep(1)
        mark = db.value("SELECT coalesce(max(id), 0) FROM public.sync_logs")
        db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now(),"
               " sync_request_full = true")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = db.value("SELECT count(DISTINCT integration_id) FROM public.sync_logs"
                            " WHERE id > %s AND status = 'success' AND sync_type = 'full'", mark)
            if done == len(names):
                break
            time.sleep(0.5)
        else:
            failures.append("the final full runs did not all succeed within 120 s")
        try:
            samples.append((time.monotonic() - t0,) + proc_sample(pid))
        except OSError:
            pass
        failures += catalogue_matches(db, sim)

        rc = d.stop(timeout=60)
        log = d.log()
        if rc != 0:
            failures.append(f"SIGTERM: exit {rc}")
        if "Sanitizer" in log:
            failures.append("sanitizer report:\n" + log[log.index("Sanitizer") - 200:][:3000])

        # Every run accounted for.
        started = {(m.group(1), int(m.group(2))) for m in
                   re.finditer(r"\[([\w-]+)#(\d+)\] (?:full|incremental) sync started", log)}
        rows = db.sql("SELECT i.name, l.id, l.status, l.completed_at IS NOT NULL, l.sync_type"
                      " FROM public.sync_logs l JOIN public.third_party_integrations i"
                      " ON i.id = l.integration_id")
        logged = {(r[0], r[1]) for r in rows}
        if started != logged:
            failures.append(f"runs vs sync_logs differ: only in the log {sorted(started - logged)[:5]},"
                            f" only in sync_logs {sorted(logged - started)[:5]}")
        unfinished = [r for r in rows if r[2] == "running" or not r[3]]
        if unfinished:
            failures.append(f"{len(unfinished)} sync_logs rows not finished: {unfinished[:5]}")
        statuses = {}
        for r in rows:
            statuses[r[2]] = statuses.get(r[2], 0) + 1
        per_integration = {n: sum(1 for r in rows if r[0] == n) for n in names}
        if min(per_integration.values()) < 3:
            failures.append(f"too few runs: {per_integration}")

        # Memory and descriptors after the warm-up.
        if args.samples_out:
            with open(args.samples_out, "w") as f:
                f.write("seconds,rss_kb,fds\n")
                f.writelines(f"{t:.1f},{r},{n}\n" for t, r, n in samples)
        measured = [s for s in samples if s[0] >= warmup]
        summary = {"seed": args.seed, "runs": len(rows), "statuses": statuses,
                   "per_integration": per_integration, "fault_batches": injected,
                   "backend_kills": kills, "samples": len(measured)}
        if len(measured) >= 6:
            third = max(2, len(measured) // 3)
            first, last = measured[:third], measured[-third:]
            rss0, rss1 = statistics.median(s[1] for s in first), statistics.median(s[1] for s in last)
            fd0, fd1 = max(s[2] for s in first), max(s[2] for s in last)
            # least-squares slope, for the record (growth that levels off is the allocator)
            tm = statistics.mean(s[0] for s in measured)
            rm = statistics.mean(s[1] for s in measured)
            var = sum((s[0] - tm) ** 2 for s in measured) or 1.0
            slope = sum((s[0] - tm) * (s[1] - rm) for s in measured) / var * 60
            summary.update(rss_kb_start=rss0, rss_kb_end=rss1, rss_kb_max=max(s[1] for s in measured),
                           rss_kb_per_min=round(slope, 1), fds_max_start=fd0, fds_max_end=fd1)
            if not asan and rss1 - rss0 > args.rss_slack_kb:
                failures.append(f"RSS grew from {rss0:.0f} kB to {rss1:.0f} kB")
            if fd1 > fd0 + args.fd_slack:
                failures.append(f"open descriptors grew from {fd0} to {fd1}")
        else:
            failures.append("too few samples after the warm-up (duration too short?)")
        print(json.dumps(summary, indent=1))
    finally:
        if d is not None and d.proc.poll() is None:
            d.kill()
        sim.close()
        pg.stop()
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        if d is not None:
            print("---- daemon log tail ----\n" + d.log()[-4000:])
        return 1
    print("soak: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
