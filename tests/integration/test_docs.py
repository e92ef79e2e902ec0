"""Documentation that cannot drift (issue 17).

1. Every configuration key, default and range that `kiotviet-syncd --print-keys` prints (the
   daemon's own key table) appears, the same, in config/kiotviet-sync.conf, in the man page and
   in the README's Configuration section (and the [mapping] defaults in its alias table); none of
   them documents a key the daemon does not have.
2. Every `kiotviet-syncd` command line shown in the README's operator sections (set-up, several
   databases, upgrading, rotating credentials, mapping fixes, troubleshooting) goes through the
   real binary against the test database without a usage error (exit 64).
3. The README's SQL for operators runs: the sample queries on sync_logs after a real sync, and the
   uninstall SQL, which must leave no column or table the migrations added.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402
import pgharness  # noqa: E402
from kvsim.client import Sim  # noqa: E402

ROOT = kvsd.ROOT
README = (ROOT / "README.md").read_text()
MAN = (ROOT / "doc" / "kiotviet-syncd.8").read_text()
EXAMPLE = (ROOT / "config" / "kiotviet-sync.conf").read_text()


def key_table():
    """{(section, key): (default, range)} from the binary."""
    p = subprocess.run([kvsd.BIN, "--print-keys"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    table = {}
    for line in p.stdout.splitlines():
        if line.startswith("#"):
            continue
        sec, key, default, rng, reload, _ = line.split("\t")
        assert reload in ("reload", "restart"), line
        table[(sec, key)] = (default, rng)
    assert len(table) >= 30
    return table


def readme_section(title):
    """The text of README section `## title` (up to the next `## `)."""
    m = re.search(r"(?ms)^## " + re.escape(title) + r"\n(.*?)(?=^## )", README)
    assert m, f"README has no section '## {title}'"
    return m.group(1)


def test_example_config_documents_every_key():
    table = key_table()
    found, section = {}, None
    for line in EXAMPLE.splitlines():
        m = re.match(r"^\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        # "; key = default   ; range, meaning"  (alias lists: "; key = A, B, C")
        m = re.match(r"^;\s*(\w+)\s*=\s*(.*)$", line)
        if not m or (section, m.group(1)) not in table:
            continue
        key, rest = m.group(1), m.group(2)
        value, _, comment = rest.partition(" ;")
        found[(section, key)] = (value.strip(), comment.strip())
    missing = sorted(set(table) - set(found))
    assert not missing, f"config/kiotviet-sync.conf does not show {missing}"
    for (sec, key), (default, rng) in table.items():
        value, comment = found[(sec, key)]
        if default != "unset":
            assert value == default, f"[{sec}] {key}: example shows {value!r}, default {default!r}"
        if re.fullmatch(r"-?\d+\.\.-?\d+", rng):
            assert rng in comment, f"[{sec}] {key}: example comment lacks range {rng}"
    # Nothing the daemon would refuse is shown as a key: every "; name = ..." under a section
    # is a real key (prose lines do not have that shape).
    section = None
    for line in EXAMPLE.splitlines():
        m = re.match(r"^\[(\w+)\]", line)
        section = m.group(1) if m else section
        m = re.match(r"^;\s*([a-z_]+)\s*\+?=\s", line)
        if m and section:
            assert (section, m.group(1)) in table, f"example shows unknown key [{section}] {line}"


def test_man_page_documents_every_key_with_default_and_range():
    table = key_table()
    found, section = {}, None
    for line in MAN.split(".SH CONFIGURATION", 1)[1].split("\n.SH ", 1)[0].splitlines():
        m = re.match(r"^\.SS \[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r'^\.BR? (\w+) " \(default (.*), range (.*?)(, restart)?\)"$', line)
        if m:
            found[(section, m.group(1))] = (m.group(2), m.group(3))
        elif line.startswith(".BR ") and section and re.match(r"^\.BR \w+ ", line):
            name = line.split()[1]
            if (section, name) in table:
                found.setdefault((section, name), ("(no default and range given)", ""))
    assert found == table, {k: (found.get(k), table.get(k)) for k in set(found) | set(table)
                            if found.get(k) != table.get(k)}


def test_readme_documents_every_key_with_default_and_range():
    table = key_table()
    conf = readme_section("Configuration")
    found, section = {}, None
    for line in conf.splitlines():
        m = re.match(r"^### `\[(\w+)\]`", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^\| `(\w+)` \| (.*?) \| (.*?) \|", line)
        if m and section:
            found[(section, m.group(1))] = (m.group(2), m.group(3))
    # The alias lists of [mapping] are in the Jewellery columns table.
    jewel = README.split("### Jewellery columns", 1)[1]
    for line in jewel.splitlines():
        m = re.match(r"^\| `(\w+)` \| ([^|]*) \|$", line)
        if m and ("mapping", m.group(1)) in table and table[("mapping", m.group(1))][1] == "alias list":
            found[("mapping", m.group(1))] = (m.group(2), "alias list")
    assert found == table, {k: (found.get(k), table.get(k)) for k in set(found) | set(table)
                            if found.get(k) != table.get(k)}
    # Prose that quotes a default, "`key` (N)", quotes the right one.
    defaults = {}
    for (sec, key), (default, _) in table.items():
        defaults.setdefault(key, set()).add(default)
    for key, value in re.findall(r"`(\w+)` \((\d+)\)", README):
        if key in defaults:
            assert value in defaults[key], f"README says `{key}` ({value}); default {defaults[key]}"


# ---- command lines ------------------------------------------------------------------------------

OPERATOR_SECTIONS = ["Setting it up against your database", "Command line", "Status and run now",
                     "Running as a service",
                     "Several shop databases on one server", "Upgrading", "Rotating credentials",
                     "Mapping", "Troubleshooting"]


def readme_commands():
    """Every kiotviet-syncd invocation in the operator sections: code blocks and `inline` code."""
    cmds = set()
    for title in OPERATOR_SECTIONS:
        text = readme_section(title)
        fences = re.findall(r"(?ms)^[ \t]*```([a-z]*)\n(.*?)^[ \t]*```", text)
        blocks = [body for lang, body in fences if lang in ("", "sh")]
        inline = re.findall(r"`([^`\n]*kiotviet-syncd [^`\n]*)`", text)
        for chunk in blocks + inline:
            for line in chunk.replace("\\\n", " ").splitlines():
                line = re.sub(r"^\$ ", "", line.split(" # ")[0].strip())
                m = re.match(r"^((?:sudo )?(?:\w+=\S+ )*kiotviet-syncd(?: .*)?)$", line)
                if m and "[" not in line and "|" not in line:
                    cmds.add(m.group(1))
    return sorted(cmds)


def test_readme_lists_commands():
    cmds = readme_commands()
    for expected in ("sudo kiotviet-syncd --check-config --as-service",
                     "sudo kiotviet-syncd --once --as-service", "sudo kiotviet-syncd status",
                     "sudo kiotviet-syncd -c /etc/kiotviet-sync/shop2.conf status"):
        assert expected in cmds, cmds


@pytest.mark.parametrize("shop_shape", ["uuid"])
def test_readme_command_lines_parse(shop_db, tmp_path):
    """Each command runs against the test database (DATABASE_URL; the simulator as KiotViet)
    with a short timeout: whatever else happens, none is a usage error."""
    with Sim(products=50, seed=5) as sim:
        kvsd.setup_integration(shop_db, sim)
        env = dict(os.environ, DATABASE_URL=shop_db.dsn)
        env.pop("NOTIFY_SOCKET", None)
        for cmd in readme_commands():
            argv = shlex.split(cmd)
            if argv[0] == "sudo":
                argv = argv[1:]
            while "=" in argv[0]:
                k, v = argv.pop(0).split("=", 1)
                env[k] = v
            assert argv[0] == "kiotviet-syncd", cmd
            argv = [kvsd.BIN] + [a for a in argv[1:] if a != "..."]
            if os.geteuid() == 0 and "--as-service" not in argv and "--once" in argv:
                argv.append("--allow-root")
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=3, env=env)
                rc, err = p.returncode, p.stderr
            except subprocess.TimeoutExpired as e:  # waiting for a daemon: parsed fine
                rc, err = None, (e.stderr or b"").decode(errors="replace")
            assert rc != 64, (cmd, err)
            for usage in ("not an option here", "unexpected argument", "needs a value",
                          "Usage:"):
                assert usage not in err, (cmd, err)


# ---- SQL -----------------------------------------------------------------------------------------

def sql_blocks(title):
    return re.findall(r"(?ms)^```sql\n(.*?)^```", readme_section(title))


@pytest.mark.parametrize("shop_shape", ["uuid"])
def test_readme_sample_queries_run(shop_db, tmp_path):
    with Sim(products=60, seed=9) as sim:
        kvsd.setup_integration(shop_db, sim)
        cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn)
        assert kvsd.run_once(cfg).rc == 0
    blocks = sql_blocks("What the daemon writes")
    queries = [q.strip() for b in blocks for q in b.split(";") if q.strip()]
    assert len(queries) >= 4, queries
    for q in queries:
        shop_db.sql(q)  # raises on an error
    rows = shop_db.sql(queries[0])
    assert rows and rows[0][0] == "kiotviet" and rows[0][2] == "success", rows


@pytest.mark.parametrize("shop_shape", ["uuid"])
def test_readme_uninstall_sql_removes_what_the_migrations_added(shop_db, pg):
    [block] = sql_blocks("Uninstalling")
    r = subprocess.run([pgharness._psql(), "-X", "-v", "ON_ERROR_STOP=1", "-d", shop_db.dsn, "-c", block],
                       capture_output=True, text=True, env=pgharness.client_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    left = shop_db.sql("SELECT table_name, column_name FROM information_schema.columns"
                       " WHERE table_schema = 'public' AND (column_name LIKE 'kiotviet%%' OR"
                       " table_name IN ('sync_logs', 'third_party_integrations'))")
    assert left == [], left
    assert shop_db.value("SELECT count(*) FROM pg_proc WHERE proname LIKE 'kvs%%'") == 0



# ---- figures -------------------------------------------------------------------------------------

def test_readme_demo_transcript_comes_from_make_demo():
    """The README's `make demo` transcript (counts, rows, notes, requests) is what the demo
    prints; only times and rates may differ."""
    block = re.search(r"(?ms)^Trimmed, from one run of `make demo`.*?\n```\n(.*?)^```",
                      README).group(1)
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--bin", kvsd.BIN,
                        "--plain"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    def norm(t):
        return re.sub(r"\d+(\.\d+)? s\b", "T s", t)

    out = norm(p.stdout)
    checked = 0
    for line in block.splitlines():
        if "██" in line:  # the progress line: rates of the moment
            continue
        for piece in line.strip().split("..."):
            piece = piece.strip(" ,();")
            if len(piece) > 3:
                assert norm(piece) in out, (piece, p.stdout[-4000:])
                checked += 1
    assert checked >= 15
