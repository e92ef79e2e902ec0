#!/usr/bin/python3
"""make demo: the real kiotviet-syncd against a throwaway PostgreSQL and the KiotViet simulator.

    /usr/bin/python3 scripts/demo.py --bin build/kiotviet-syncd [--keep] [--latency-ms N]
                                     [--products N] [--plain]

1. starts PostgreSQL 15 in a temp dir (tests/integration/pgharness.py; never as root) and applies
   the stand-in shop schema and the migration;
2. starts the simulator with the demo jewellery catalogue and points the `kiotviet` row at it;
3. runs a full `--once` sync: a progress line on a terminal (read from the sync_logs row the run
   keeps current), the daemon's log lines otherwise;
4. summarises what landed (counts, category tree, a few products with their jewellery columns, a
   ring's stock by store and its certificate numbers,
   the sync_logs row);
5. edits the catalogue, starts the daemon, asks it for a run now with `kiotviet-syncd sync
   kiotviet` and shows `kiotviet-syncd status`;
then removes everything. --keep (or DEMO_KEEP=1) leaves PostgreSQL, the simulator and the
daemon running until Enter or Ctrl-C, to look around with psql and the subcommands.
"""

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests"))

RETAILER = "demoshop"
DBNAME = "kiotviet_demo"


# ---- output ---------------------------------------------------------------------------------

class Out:
    """Headings, indented lines and one updatable progress line (terminal only)."""

    def __init__(self, tty):
        self.tty = tty
        self.progress_shown = False

    def _clear(self):
        if self.progress_shown:
            sys.stdout.write("\r\033[K")
            self.progress_shown = False

    def step(self, n, total, text):
        self._clear()
        head = f"[{n}/{total}] {text}"
        print(f"\n\033[1m{head}\033[0m" if self.tty else f"\n{head}", flush=True)

    def line(self, text="", indent=6):
        self._clear()
        print(" " * indent + text if text else "", flush=True)

    def progress(self, text):
        if not self.tty:
            return
        sys.stdout.write("\r\033[K" + " " * 6 + text)
        sys.stdout.flush()
        self.progress_shown = True

    def done_progress(self):
        self._clear()


def width(s):
    """Terminal columns of s (combining marks take none)."""
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


def clip(s, n):
    s = unicodedata.normalize("NFC", s or "")
    if width(s) <= n:
        return s + " " * (n - width(s))
    out = ""
    for c in s:
        if width(out + c) > n - 1:
            break
        out += c
    return out + "…" + " " * (n - 1 - width(out))


def vnd(x):
    return "-" if x is None else f"{int(x):,} ₫".replace(",", ".")


def num(x):
    """A numeric column as stored: 0.35 stays 0.35."""
    if x is None:
        return None
    s = format(x, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def bar(frac, n=24):
    full = int(frac * n)
    return "█" * full + "░" * (n - full)


def fmt_s(s):
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


# ---- the parts ------------------------------------------------------------------------------

def daemon_cmd(binary, cfg, *args):
    cmd = [binary, "-c", cfg, *args]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # the demo runs as whoever ran make
    return cmd


def clean_env():
    e = dict(os.environ)
    e.pop("DATABASE_URL", None)
    e.pop("NOTIFY_SOCKET", None)
    return e


def pump(stream, q):
    for line in iter(stream.readline, ""):
        q.put(line.rstrip("\n"))
    q.put(None)


def log_line(raw):
    """"<5>notice [kiotviet#1] full sync started" -> ("notice ...", 5)."""
    if raw.startswith("<") and raw[2:3] == ">" and raw[1].isdigit():
        return raw[3:], int(raw[1])
    return raw, 6


def first_sync(out, binary, cfg, db, total_products, state):
    """Runs --once --full; returns (exit code, the result line it printed, seconds)."""
    cmd = daemon_cmd(binary, cfg, "--once", "--full")
    out.line("$ kiotviet-syncd -c demo.conf --once --full")
    p = state["once"] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env=clean_env())
    q = queue.Queue()
    threading.Thread(target=pump, args=(p.stderr, q), daemon=True).start()
    t0 = time.monotonic()
    streams_open = True
    while True:
        # Log lines scroll above the progress line; on a terminal only notices and worse.
        while True:
            try:
                raw = q.get_nowait()
            except queue.Empty:
                break
            if raw is None:
                streams_open = False
                continue
            text, level = log_line(raw)
            if not out.tty or level <= 5:
                out.line(clip(text, 150).rstrip() if out.tty else text, indent=8)
        if out.tty:
            rows = db.sql("SELECT products_synced, categories_synced, requests_made,"
                          " extract(epoch from now() - started_at)::float8 FROM public.sync_logs"
                          " ORDER BY id DESC LIMIT 1")
            if rows:
                prods, cats, reqs, secs = rows[0]
                frac = min(1.0, prods / total_products) if total_products else 0
                rate = prods / secs if secs > 0.2 else 0
                eta = (total_products - prods) / rate if rate > 0 else None
                pages = max(0, reqs - 1)  # minus the token request
                out.progress(f"products {bar(frac)} {prods:>5}/{total_products}  categories "
                             f"{cats}  pages {pages:>3}  {rate:,.0f} products/s  ETA "
                             f"{'-' if eta is None else fmt_s(eta)}")
            else:
                out.progress(f"starting ({time.monotonic() - t0:.1f} s)")
        if p.poll() is not None and not streams_open:
            break
        time.sleep(0.08)
    out.done_progress()
    result = p.stdout.read().strip()
    p.wait()
    return p.returncode, result, time.monotonic() - t0


def summary(out, db, sim_total):
    n_prod, n_active = db.sql("SELECT count(*), count(*) FILTER (WHERE is_active)"
                              " FROM public.products")[0]
    levels = db.sql(
        "WITH RECURSIVE t AS (SELECT id, name, 1 AS depth, name::text AS path FROM"
        " public.categories WHERE parent_id IS NULL UNION ALL SELECT c.id, c.name, t.depth + 1,"
        " t.path || ' › ' || c.name FROM public.categories c JOIN t ON c.parent_id = t.id)"
        " SELECT depth, count(*), max(path) FROM t GROUP BY depth ORDER BY depth")
    n_cat = sum(r[1] for r in levels)
    out.line(f"products   {n_prod} rows for the {sim_total} in KiotViet: {n_active} active, "
             f"{n_prod - n_active} that KiotViet marks inactive (is_active = false)")
    out.line(f"categories {n_cat} rows in {len(levels)} levels: "
             + ", ".join(f"{r[1]} at level {r[0]}" for r in levels))
    if levels:
        out.line(f"           e.g. {levels[-1][2]}")

    out.line()
    out.line("A few products, with the jewellery columns read from KiotViet's free-text "
             "attributes:")
    rows = db.sql(
        "WITH RECURSIVE t AS (SELECT id, name::text AS path FROM public.categories WHERE"
        " parent_id IS NULL UNION ALL SELECT c.id, t.path || ' › ' || c.name FROM"
        " public.categories c JOIN t ON c.parent_id = t.id)"
        " SELECT p.sku, p.name, p.price, t.path, p.gold_purity, p.product_weight_g,"
        " p.center_stone_size_mm, p.shape, p.carat_weight_ct, p.stone_count, p.serial_number,"
        " p.supplier_id, p.inventory_value, p.stock_quantity FROM public.products p"
        " LEFT JOIN t ON t.id = p.category_id WHERE p.is_active ORDER BY"
        " ((p.gold_purity IS NOT NULL)::int + (p.center_stone_size_mm IS NOT NULL)::int +"
        " (p.shape IS NOT NULL)::int + (p.carat_weight_ct IS NOT NULL)::int +"
        " (p.stone_count IS NOT NULL)::int + (p.serial_number IS NOT NULL)::int) DESC,"
        " p.kiotviet_id LIMIT 5")
    for (sku, name, price, path, gold, weight, stone, shape, ct, stones, serial, supplier,
         inv, stock) in rows:
        out.line(f"{clip(sku, 10)} {clip(name, 58)} {vnd(price):>16}", indent=8)
        facts = [path or "(no category)"]
        if gold:
            facts.append(f"purity {gold}")
        if weight is not None:
            facts.append(f"{num(weight)} g")
        if stone is not None or shape:
            facts.append("centre stone " + " ".join(
                x for x in (f"{num(stone)} mm" if stone is not None else None, shape) if x))
        if ct is not None:
            facts.append(f"{num(ct)} ct")
        if stones is not None:
            facts.append(f"{stones} stone{'s' if stones != 1 else ''}")
        if serial:
            facts.append(f"serial {serial}")
        if supplier:
            facts.append(f"supplier {supplier}")
        facts.append(f"stock {num(stock)}, value {vnd(inv)}")
        out.line(" · ".join(facts), indent=19)


def ring_by_store(out, db):
    """Issue 16: which store has a ring, and the certificate numbers of its pieces."""
    rows = db.sql(
        "SELECT p.kiotviet_id, p.sku, p.name FROM public.products p WHERE p.is_active AND"
        " EXISTS (SELECT 1 FROM public.kiotviet_product_serials s WHERE"
        " s.product_kiotviet_id = p.kiotviet_id) ORDER BY (p.name ILIKE 'nhẫn%%') DESC,"
        " (SELECT count(*) FROM public.kiotviet_product_serials s WHERE"
        " s.product_kiotviet_id = p.kiotviet_id) DESC, p.kiotviet_id LIMIT 1")
    n_branches, n_stock, n_serials = db.sql(
        "SELECT (SELECT count(*) FROM public.kiotviet_branches), (SELECT count(*) FROM"
        " public.kiotviet_product_stock), (SELECT count(*) FROM public.kiotviet_product_serials)")[0]
    out.line(f"Stores and pieces: {n_branches} branches, {n_stock} stock rows (product x branch), "
             f"{n_serials} serial numbers")
    if not rows:
        return
    kid, sku, name = rows[0]
    out.line(f"{sku} {clip(name, 58).rstrip()}: available by store", indent=8)
    for bname, on_hand, reserved in db.sql(
            "SELECT b.name, s.on_hand, s.reserved FROM public.kiotviet_product_stock s JOIN"
            " public.kiotviet_branches b ON b.kiotviet_id = s.branch_kiotviet_id WHERE"
            " s.product_kiotviet_id = %s AND b.is_active ORDER BY b.kiotviet_id", kid):
        out.line(f"{clip(bname, 30)} {num(on_hand):>4} on hand, {num(reserved)} reserved", indent=19)
    for serial, in_stock, bname in db.sql(
            "SELECT s.serial_number, s.in_stock, b.name FROM public.kiotviet_product_serials s"
            " LEFT JOIN public.kiotviet_branches b ON b.kiotviet_id = s.branch_kiotviet_id"
            " WHERE s.product_kiotviet_id = %s ORDER BY s.in_stock DESC, s.serial_number", kid):
        state = f"in stock at {bname}" if in_stock else "sold"
        out.line(f"certificate {serial}: {state}", indent=19)


def show_log_row(out, db):
    (lid, status, typ, started, secs, p, pc, pu, pf, pd, c, cc, cu, cf, cd, reqs, msg,
     details) = db.sql(
        "SELECT id, status, sync_type, started_at, extract(epoch from completed_at -"
        " started_at)::float8, products_synced, products_created, products_updated,"
        " products_failed, products_deactivated, categories_synced, categories_created,"
        " categories_updated, categories_failed, categories_deactivated, requests_made,"
        " error_message, error_details FROM public.sync_logs ORDER BY id DESC LIMIT 1")[0]
    out.line(f"sync_logs id {lid}: status {status}, {typ}, {fmt_s(secs or 0)}, {reqs} requests")
    out.line(f"products   {p} synced ({pc} new, {pu} changed, {pf} failed, {pd} removed)",
             indent=8)
    out.line(f"categories {c} synced ({cc} new, {cu} changed, {cf} failed, {cd} removed)",
             indent=8)
    if msg:
        out.line(f"error_message: {msg}", indent=8)
    details = details or {}
    notes = details.get("attribute_notes") or []
    n_notes = details.get("attribute_notes_total", len(notes))
    out.line(f"error_details: {details.get('failures_total', 0)} failed records; {n_notes} "
             "attribute values not understood (stored as NULL, never guessed), e.g.", indent=8)
    for n in notes[:3]:
        out.line(f"{n.get('code')}: {n.get('attribute')} = \"{n.get('value')}\" -> "
                 f"{n.get('column')}: {n.get('problem')}", indent=10)


def run_now(out, binary, cfg, sim, db, state):
    changes = sim.mutate(RETAILER, edit=5, add=3, deactivate=1, delete=2)
    counts = {k: len(v) if isinstance(v, list) else v for k, v in changes.items()}
    out.line(f"In KiotViet, staff edit {counts.get('edited', 5)} products, add "
             f"{counts.get('added', 3)}, stop selling {counts.get('deactivated', 1)} and delete "
             f"{counts.get('deleted', 2)}.")
    log = open(state["dir"] / "daemon.log", "w")
    state["daemon_log"] = log
    state["daemon"] = subprocess.Popen(daemon_cmd(binary, cfg), stdout=log,
                                       stderr=subprocess.STDOUT, env=clean_env())
    deadline = time.monotonic() + 20
    while "ready:" not in (state["dir"] / "daemon.log").read_text():
        if state["daemon"].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the daemon did not start:\n"
                               + (state["dir"] / "daemon.log").read_text())
        time.sleep(0.05)
    out.line("The daemon runs in the background (poll_interval = 1 s; its log: "
             f"{state['dir'] / 'daemon.log'}).")
    out.line("An operator asks it for a run now, through the database:")
    out.line()
    out.line("$ kiotviet-syncd sync kiotviet", indent=8)
    r = subprocess.run([binary, "sync", "kiotviet", "-c", cfg, "--timeout", "60"],
                       capture_output=True, text=True, env=clean_env())
    for ln in (r.stderr.strip().splitlines() + r.stdout.strip().splitlines()):
        out.line(ln, indent=8)
    out.line(f"(exit {r.returncode}: incremental, so only what changed was read and written)",
             indent=8)
    out.line()
    out.line("$ kiotviet-syncd status", indent=8)
    r = subprocess.run([binary, "status", "-c", cfg], capture_output=True, text=True,
                       env=clean_env())
    for ln in r.stdout.rstrip().splitlines():
        out.line(ln, indent=8)
    if r.returncode:
        out.line(r.stderr, indent=8)


def cleanup(state, out):
    for key in ("once", "daemon"):  # processes this script started
        d = state.get(key)
        if d and d.poll() is None:
            d.send_signal(signal.SIGTERM)
            try:
                d.wait(30)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
    if state.get("daemon_log"):
        state["daemon_log"].close()
    if state.get("db"):
        state["db"].close()
    if state.get("sim"):
        state["sim"].close()
    if state.get("pg"):
        state["pg"].stop()
    if state.get("dir"):
        shutil.rmtree(state["dir"], ignore_errors=True)
    if state.get("announced"):
        out.line()
        out.line("Cleaned up: daemon, simulator and PostgreSQL stopped, temp files removed.",
                 indent=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="path of the built kiotviet-syncd")
    ap.add_argument("--keep", action="store_true", default=os.environ.get("DEMO_KEEP") == "1",
                    help="keep everything running until Enter (also DEMO_KEEP=1)")
    ap.add_argument("--latency-ms", type=float, default=120,
                    help="simulated KiotViet round trip per request (default 120)")
    ap.add_argument("--products", type=int, default=None,
                    help="catalogue size (default: the demo catalogue, 3000)")
    ap.add_argument("--plain", action="store_true", help="no progress line, plain log lines")
    a = ap.parse_args()
    binary = str(Path(a.bin).resolve())
    out = Out(sys.stdout.isatty() and not a.plain)
    if not os.access(binary, os.X_OK):
        sys.exit(f"demo: {binary} is not built: run `make` (or `make demo`, which builds it)")
    try:
        import psycopg  # noqa: F401
        import pgharness
        from kvsim.client import Sim
        import kvsd
    except ImportError as e:
        sys.exit(f"demo: {e}: run `make deps` (it installs python3-psycopg and PostgreSQL 15)")

    # SIGTERM (and SIGHUP) clean up like Ctrl-C does.
    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    state = {}
    steps = 5
    rc = 1
    try:
        import tempfile
        state["dir"] = Path(tempfile.mkdtemp(prefix="kvs-demo-"))
        title = "kiotviet-sync demo: the real daemon, a throwaway PostgreSQL, a simulated KiotViet"
        print(f"\033[1m{title}\033[0m" if out.tty else title)
        state["announced"] = True

        out.step(1, steps, "PostgreSQL")
        t = time.monotonic()
        pg = state["pg"] = pgharness.PgCluster.start()
        dsn = pg.create_database(DBNAME)
        pgharness.apply_file(dsn, pgharness.SHOP_BASE)
        pgharness.apply_migrations(dsn)
        db = state["db"] = pgharness.Database(pg, DBNAME)
        out.line(f"PostgreSQL {db.value('SHOW server_version').split()[0]} in {pg.tmpdir}, port "
                 f"{pg.port} ({time.monotonic() - t:.1f} s)")
        out.line("applied db/schema/shop_base.sql (a stand-in shop: products, categories)")
        out.line("    and the migrations in db/migrations/ (what a real shop applies)")

        out.step(2, steps, "KiotViet simulator")
        extra = ["--latency-ms", str(a.latency_ms)]
        if a.products:
            extra += ["--products", str(a.products)]
        sim = state["sim"] = Sim(demo=True, retailers=(RETAILER,), extra_args=extra)
        cat = sim.catalog(RETAILER)
        total = len(cat["products"])
        depth = {}
        parents = {c["categoryId"]: c.get("parentId") for c in cat["categories"]}
        for cid in parents:
            d, p = 1, parents[cid]
            while p:
                d, p = d + 1, parents.get(p)
            depth[d] = depth.get(d, 0) + 1
        out.line(f"{sim.url}: retailer \"{RETAILER}\", {total} jewellery products, "
                 f"{len(cat['categories'])} categories in {len(depth)} levels, "
                 f"{a.latency_ms:.0f} ms per request")
        kvsd.setup_integration(db, sim, retailer=RETAILER)
        cfg = kvsd.write_config(state["dir"] / "demo.conf", dsn, sync={"poll_interval": 1},
                                log={"level": "info"})
        out.line("third_party_integrations row 'kiotviet' now holds the simulator's URL, client id,")
        out.line("    secret and retailer, with sync_enabled = true (step 4 of the README)")

        out.step(3, steps, "First sync: everything, page by page")
        code, result, secs = first_sync(out, binary, cfg, db, total, state)
        out.line(result or "(no result line)")
        if code != 0:
            out.line(f"the sync failed (exit {code}); the daemon's log is above")
            return 1

        out.step(4, steps, "What landed in the shop's tables")
        summary(out, db, total)
        out.line()
        ring_by_store(out, db)
        out.line()
        show_log_row(out, db)

        out.step(5, steps, "Later: KiotViet changes, an operator asks for a run now")
        run_now(out, binary, cfg, sim, db, state)

        out.line()
        head = "Look further" + ("" if a.keep else
                                 " (all of this is removed when the demo ends: `make demo "
                                 "DEMO_KEEP=1` or --keep keeps it until you press Enter)")
        print(f"\033[1m{head}\033[0m" if out.tty else head)
        out.line(f"psql {dsn}", indent=2)
        out.line("  SELECT sku, name, gold_purity, center_stone_size_mm, shape, product_weight_g "
                 "FROM products LIMIT 10;", indent=2)
        out.line("  SELECT * FROM sync_logs ORDER BY id DESC;", indent=2)
        rel = os.path.relpath(binary)
        rel = binary if rel.startswith("..") else rel
        out.line(f"{rel} status -c {cfg} [--json]", indent=2)
        out.line(f"{rel} sync kiotviet --full -c {cfg}", indent=2)
        out.line("README.md: set it up against your own Supabase database; kiotviet-syncd(8): "
                 "every option", indent=2)
        rc = 0
        if a.keep:
            out.line()
            out.line("Everything keeps running. Press Enter (or Ctrl-C) to clean up.", indent=0)
            try:
                input()
            except EOFError:
                pass
    except KeyboardInterrupt:
        out.done_progress()
        print("\ninterrupted", file=sys.stderr)
        rc = 130
    except Exception as e:  # noqa: BLE001 - the demo explains and cleans up whatever happened
        out.done_progress()
        print(f"\ndemo failed: {e}", file=sys.stderr)
        rc = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        cleanup(state, out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
