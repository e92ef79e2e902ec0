"""The guarantees of SECURITY.md, end to end: secrets never in logs or sync_logs, TLS and URL
policy, response caps, hostile records, root refusal, hardened binary.

Row level security as the Supabase roles see it is tested in test_rls.py; the systemd unit's
hardening in scripts/check-systemd.sh (make check-systemd); the parsers under libFuzzer in
tests/fuzz (make fuzz).
"""

import http.server
import json
import os
import pwd
import resource
import secrets
import gzip
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    s = Sim(products=120, seed=11)
    yield s
    s.close()


def sync_logs_text(db):
    return "\n".join(r[0] for r in db.sql("SELECT row_to_json(l)::text FROM public.sync_logs l"))


def run_log(db):
    return kvsd.last_log(db)


# ---- secrets ------------------------------------------------------------------------------------

class PasswordRole:
    """A login role that must authenticate with a SCRAM password over TCP.

    The harness cluster trusts every local connection, where libpq never even sends a password;
    a role-specific pg_hba.conf line put first (and removed afterwards) makes this role's TCP
    logins really check it. Only this role is affected."""

    def __init__(self, pg, db, password=None):
        self.pg, self.db = pg, db
        self.name = "kvs_sec_" + secrets.token_hex(4)
        self.password = password or "Pw-" + secrets.token_hex(12) + "-Zq9"
        self.hba = Path(pg.datadir) / "pg_hba.conf"
        self.line = f"host all {self.name} 127.0.0.1/32 scram-sha-256  # test_security\n"
        with pg.connect() as c:
            c.execute("SET password_encryption = 'scram-sha-256'")
            # (name and password are [A-Za-z0-9_-]: no quoting issue)
            c.execute(f"CREATE ROLE \"{self.name}\" LOGIN BYPASSRLS PASSWORD '{self.password}'")
        # Least privilege, as with Supabase's service_role: not a superuser, owns nothing, DML
        # on the tables; BYPASSRLS because the secret-bearing tables have RLS without policies.
        db.sql(f'GRANT USAGE ON SCHEMA public TO "{self.name}"')
        db.sql(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{self.name}"')
        db.sql(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{self.name}"')
        text = self.hba.read_text()
        self.hba.write_text(self.line + text)
        with pg.connect() as c:
            c.execute("SELECT pg_reload_conf()")

    def dsn(self, password=None, port=None):
        return (f"postgresql://{self.name}:{password or self.password}@127.0.0.1:"
                f"{port or self.pg.port}/{self.db.name}")

    def close(self):
        text = self.hba.read_text()
        self.hba.write_text(text.replace(self.line, ""))
        with self.pg.connect() as c:
            c.execute("SELECT pg_reload_conf()")
        with self.pg.connect() as c:
            c.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{self.name}'")
        self.db.sql(f'DROP OWNED BY "{self.name}"')  # its grants in the test database
        with self.pg.connect() as c:
            c.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{self.name}'")
            c.execute(f'DROP ROLE IF EXISTS "{self.name}"')


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_secrets_never_in_logs_or_sync_logs(pg, db, workdir):
    """Every log line and sync_logs row of a token-fetching --once run, a daemon run with a
    reload, a run with rejected credentials and runs with unreachable or refused databases is
    searched for the client secret, the access token and the database password."""
    role = PasswordRole(pg, db)
    texts = []
    try:
        # The password is really checked: wrong one refused, right one accepted.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(role.dsn(password="not-it"), connect_timeout=5).close()
        psycopg.connect(role.dsn(), connect_timeout=5).close()

        with Sim(products=40, seed=5) as s:
            client_secret = "kvs-secret-" + secrets.token_hex(16)
            s.config(credentials={"retailer": "demoshop", "client_secret": client_secret})
            kvsd.setup_integration(db, s)
            cfg = kvsd.write_config(workdir / "kvs.conf", role.dsn(), log={"level": "debug"},
                                    sync={"poll_interval": 1})

            # 1. --once, full, with a token request.
            res = kvsd.run_once(cfg, "--full")
            texts += [res.out, res.err]
            assert res.rc == 0 and "kiotviet: success" in res.out, res
            token = db.value("SELECT access_token FROM public.third_party_integrations"
                             " WHERE name = 'kiotviet'")
            assert token and len(token) >= 16
            assert s.stats("demoshop")["token_requests"] >= 1

            # 2. The daemon: a requested run, a reload, a stop.
            d = kvsd.Daemon(cfg)
            try:
                db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now()"
                       " WHERE name = 'kiotviet'")
                kvsd.wait_until(lambda: db.value("SELECT count(*) FROM public.sync_logs"
                                                 " WHERE status = 'success'") >= 2,
                                timeout=30, what="the daemon's run")
                with open(f"/proc/{d.proc.pid}/cmdline", "rb") as f:
                    texts.append(f.read().replace(b"\0", b" ").decode())
                d.signal(signal.SIGHUP)
                kvsd.wait_until(lambda: "reload" in d.log().lower(), timeout=15, what="reload")
            finally:
                assert d.stop() == 0
            texts.append(d.log())

            # 3. Credentials KiotViet rejects (a new token is needed: the old one is dropped).
            wrong_secret = "kvs-wrong-" + secrets.token_hex(16)
            db.sql("UPDATE public.third_party_integrations SET client_secret = %s,"
                   " access_token = NULL, token_expires_at = NULL WHERE name = 'kiotviet'",
                   wrong_secret)
            res = kvsd.run_once(cfg)
            texts += [res.out, res.err]
            log = run_log(db)
            assert log["status"] == "failed", log
            assert "refused the credentials" in log["error_message"], log

        # 4. Unreachable database (nothing listens on the port), wrong password, keyword DSN.
        wrong_pw = "Wrong-" + secrets.token_hex(10)
        for dsn in (role.dsn(port=closed_port()), role.dsn(password=wrong_pw),
                    f"host=127.0.0.1 port={closed_port()} user={role.name} "
                    f"password={role.password} dbname={db.name} connect_timeout=2"):
            bad = kvsd.write_config(workdir / "bad.conf", dsn,
                                    database={"connect_timeout": 2}, log={"level": "debug"})
            res = kvsd.run_once(bad, timeout=60)
            texts += [res.out, res.err]
            assert res.rc != 0, res
            assert "database" in (res.out + res.err).lower(), res

        # 5. --check-config prints the configuration with the URL masked.
        p = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True,
                           text=True)
        assert p.returncode == 0, p
        texts += [p.stdout, p.stderr]
        texts.append(sync_logs_text(db))
    finally:
        role.close()

    everything = "\n".join(texts)
    assert "success" in everything and "failed" in everything  # there was material to search
    for name, secret in (("database password", role.password), ("wrong password", wrong_pw),
                         ("client secret", client_secret), ("rejected client secret", wrong_secret),
                         ("access token", token)):
        assert secret not in everything, f"the {name} appears in a log or sync_logs row"


# (URL, its password's fragments that must appear nowhere, the part the message must name)
UNPARSABLE_URLS = [
    ("postgresql://u:Sup3r%zzSecretPw@127.0.0.1/db", ("Sup3r", "zzSecretPw", "SecretPw"),
     "the password has a '%' that is not a %XX escape"),
    ("postgresql://u:Secr@tPw99@127.0.0.1/db", ("Secr", "tPw99"), "the host holds an '@'"),
    ("postgresql://u:Secr/tPw99@127.0.0.1/db", ("Secr", "tPw99"), "the port is not a number"),
    ("postgresql://u:9/tPw99@127.0.0.1/db", ("tPw99",), "the database name holds an '@'"),
    ("host=127.0.0.1 user=u password=Secr tPw99 dbname=db", ("Secr", "tPw99"),
     "cannot parse it as key=value settings"),
]


def journal_run(args, env, timeout=60):
    """Runs args with stderr on a pipe named by JOURNAL_STREAM, so log.c takes its journald path
    (sd_journal_send), in a private mount namespace where /run/systemd/journal/socket is a
    datagram socket of this test. Returns (exit code, stdout+stderr bytes, journal datagrams)."""
    if os.geteuid() != 0:
        pytest.skip("the journald path needs root (unshare -m to give the daemon a journal socket)")
    d = tempfile.mkdtemp(prefix="kvs-journal-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(d, "socket"))
    r, w = os.pipe()
    st = os.fstat(w)
    e = dict(env, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    wrapper = ["unshare", "-m", "sh", "-c",
               'mount -t tmpfs none /run && mkdir -p /run/systemd/journal && '
               'mount --bind "$0" /run/systemd/journal && exec "$@"', d]
    datagrams, done = [], threading.Event()

    def drain():
        # Read while the daemon runs: a datagram socket queues only net.unix.max_dgram_qlen
        # (10 here) messages, and sd_journal_send blocks once they are not read.
        sock.settimeout(0.1)
        while True:
            try:
                datagrams.append(sock.recv(1 << 20))
            except socket.timeout:
                if done.is_set():
                    return
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p = subprocess.Popen(wrapper + args, stdout=w, stderr=w, env=e)
        os.close(w)
        out = b""
        while chunk := os.read(r, 65536):
            out += chunk
        rc = p.wait(timeout)
        done.set()
        reader.join(timeout)
        return rc, out, datagrams
    finally:
        os.close(r)
        sock.close()
        os.unlink(os.path.join(d, "socket"))
        os.rmdir(d)


@pytest.mark.parametrize("url,fragments,part", UNPARSABLE_URLS,
                         ids=["percent", "at", "slash", "slash-digit", "keywords"])
def test_unparsable_database_url_is_a_config_error_that_never_quotes_it(db, workdir, url,
                                                                        fragments, part):
    """Issue 18 High / issue 15 item 3: a URL libpq cannot parse (or parses into a host holding
    '@' or a port that is not a number: an unencoded '@', '/' or '%' in the password) is a
    configuration error (exit 78) for the daemon, --check-config, --explain-product and status,
    named by its part without quoting it; no fragment of the password reaches stderr or the
    journal (log.c's sd_journal_send path)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
    cfg = kvsd.write_config(workdir / "kvs.conf", url)
    runs = {
        "daemon": kvsd.base_args() + ["-c", cfg],
        "once": kvsd.base_args() + ["-c", cfg, "--once"],
        "check-config": kvsd.base_args() + ["-c", cfg, "--check-config"],
        "explain": kvsd.base_args() + ["-c", cfg, "--explain-product", "SP000001"],
        "status": [kvsd.BIN, "status", "-c", cfg],
    }
    texts = []
    for what, args in runs.items():
        p = subprocess.run(args, capture_output=True, timeout=60, env=env)
        out = p.stdout + p.stderr
        texts.append(out)
        assert p.returncode == 78, (what, p)
        assert part.encode() in out and b"[database] url" in out, (what, out)
    # The same URL from DATABASE_URL, and the daemon logging to the journal.
    (workdir / "nourl.conf").write_text("[log]\nlevel = debug\n")
    rc, out, journal = journal_run(kvsd.base_args() + ["-c", str(workdir / "nourl.conf")],
                                   dict(env, DATABASE_URL=url))
    assert rc == 78, out
    msgs = [m for m in journal if b"MESSAGE=" in m]
    assert any(part.encode() in m and b"(from DATABASE_URL)" in m for m in msgs), journal
    texts += [out] + journal
    everything = b"\n".join(texts)
    for f in fragments:
        assert f.encode() not in everything, f"password fragment {f!r} shown"


def test_special_character_password_never_in_stderr_or_journal(pg, db, sim, workdir):
    """A password holding '@', '/', ':', '%', a quote and a tab, percent-encoded as it must be:
    the daemon connects with it, and neither stderr nor the journal (log.c's sd_journal_send
    path) of a debug-level run, a run with it wrong, and --check-config hold it, raw or encoded."""
    from urllib.parse import quote
    pw = "Sp@c/al:P%w'\tX9-" + secrets.token_hex(4)
    role = PasswordRole(pg, db, password=pw.replace("'", "''"))  # (SQL-quoted in CREATE ROLE)
    try:
        kvsd.setup_integration(db, sim)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
        texts = []
        for password, ok in ((pw, True), (pw + "x", False)):
            dsn = (f"postgresql://{role.name}:{quote(password, safe='')}@127.0.0.1:{pg.port}/"
                   f"{db.name}?connect_timeout=5")
            cfg = kvsd.write_config(workdir / "kvs.conf", dsn, log={"level": "debug"},
                                    database={"connect_timeout": 2})
            for args in (["--once"], ["--check-config"]):
                rc, out, journal = journal_run(kvsd.base_args() + ["-c", cfg, *args], env)
                assert (rc == 0) == (ok or args == ["--check-config"]), (args, rc, out, journal)
                texts += [out] + journal
        everything = b"\n".join(texts)
        assert b"MESSAGE=" in everything and b"success" in everything
        for form in (pw, pw + "x", quote(pw, safe=""), "Sp@c/al:P%w"):
            assert form.encode() not in everything, form
    finally:
        role.close()


def test_warns_when_config_with_password_is_readable_by_others(pg, db, workdir):
    """The warning is exact: libpq's parser decides whether the database URL in the file holds a
    password, and the mode whether others can read it (group read counts when the group is not
    the daemon's own: the unit's setup is root:kiotviet-sync 0640). Never the password itself."""
    pw = "not-checked-by-trust-" + secrets.token_hex(6)
    with_pw = db.dsn.replace("postgres@", f"postgres:{pw}@")
    assert with_pw != db.dsn
    keyword_pw = (f"host=127.0.0.1 port={pg.port} user=postgres password={pw} dbname={db.name}")
    warning = "readable by other users"
    cases = [
        # (url in the file, mode, file's group or None, warns)
        (with_pw, 0o644, None, True),
        (keyword_pw, 0o604, None, True),
        (with_pw, 0o600, None, False),
        (with_pw, 0o640, None, False),   # group = ours (the daemon reads through it)
        (db.dsn, 0o644, None, False),    # no password (user@host:port/db)
        (db.dsn + "?application_name=password", 0o644, None, False),
        (db.dsn + "?passfile=/nonexistent/kvs-pgpass", 0o644, None, False),
    ]
    if os.geteuid() == 0:  # a group that is not ours can read it
        cases.append((with_pw, 0o640, pwd.getpwnam("nobody").pw_gid, True))
    for i, (url, mode, gid, warns) in enumerate(cases):
        cfg = kvsd.write_config(workdir / f"kvs{i}.conf", url)
        if gid is not None:
            os.chown(cfg, -1, gid)
        os.chmod(cfg, mode)
        res = kvsd.run_once(cfg)
        what = f"case {i}: mode {mode:o}, url {url.replace(pw, '***')}"
        assert res.rc == 0, (what, res)
        assert pw not in res.err + res.out, what
        if warns:
            assert warning in res.err, (what, res)
            line = next(ln for ln in res.err.splitlines() if warning in ln)
            assert f"{cfg} holds the database password" in line, line
            assert f"(mode 0{mode:o})" in line and "root:kiotviet-sync mode 0640" in line, line
            assert "passfile" in line and "LoadCredential" in line, line
        else:
            assert warning not in res.err, (what, res)
    # The URL from the environment: the file holds no password, nothing to warn about.
    plain = kvsd.write_config(workdir / "env.conf", "postgresql://unused@127.0.0.1:1/x")
    os.chmod(plain, 0o644)
    res = kvsd.run_once(plain, env={"DATABASE_URL": with_pw})
    assert res.rc == 0 and warning not in res.err, res
    assert pw not in res.err + res.out


def test_userinfo_in_urls_refused_and_never_echoed(db, sim, workdir):
    """api_url/token_url come from a database row. A password pasted into their userinfo
    (user:password@) is refused before any request, and appears in no log line, no sync_logs
    row and no --explain-product output; a refused URL is named by scheme, host and port
    only, never its path, query or fragment."""
    pw = "Ui-" + secrets.token_hex(12) + "-Pw"
    hostport = sim.url.split("://", 1)[1].rstrip("/")
    userinfo = "must not contain a user name or password"
    cases = [
        # (column, url, expected message part: the URL named by scheme://host[:port] only)
        ("token_url", f"http://kvuser:{pw}@{hostport}/connect/token",
         f"token_url (http://{hostport}) {userinfo}"),
        ("api_url", f"http://kvuser:{pw}@{hostport}", f"api_url (http://{hostport}) {userinfo}"),
        ("api_url", f"https://{pw}@192.0.2.1/", f"api_url (https://192.0.2.1) {userinfo}"),
        ("api_url", f"http://kvuser:{pw}@192.0.2.1:8080/x",
         f"api_url (http://192.0.2.1:8080) {userinfo}"),
        ("api_url", f"http://192.0.2.1:8080/p/{pw}?key={pw}#{pw}",
         "must use https (plain http is only allowed to loopback hosts): http://192.0.2.1:8080"),
    ]
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, log={"level": "debug"})
    texts = []
    for col, url, want in cases:
        kvsd.setup_integration(db, sim)
        db.sql(f"UPDATE public.third_party_integrations SET {col} = %s WHERE name = 'kiotviet'",
               url)
        before = sim.stats("demoshop")
        res = kvsd.run_once(cfg, "--full")
        texts += [res.out, res.err]
        log = run_log(db)
        assert log["status"] == "failed", (url, log, res)
        assert want in log["error_message"], (url, log)
        assert want in res.err, (url, res)
        after = sim.stats("demoshop")
        assert after["token_requests"] == before["token_requests"], url
        assert after["requests"] == before["requests"], url
        # The read-only --explain-product path checks the row's URLs the same way.
        p = subprocess.run(kvsd.base_args() + ["-c", cfg, "--explain-product", "SP000001"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and want in p.stderr, (url, p)
        texts += [p.stdout, p.stderr]
    texts.append(sync_logs_text(db))
    everything = "\n".join(texts)
    assert pw not in everything, "a password from a URL's userinfo appears in a log or sync_logs"
    assert everything.count(userinfo) >= 8


class RawTokenServer:
    """A loopback token endpoint answering every POST with one fixed status and body (bytes)."""

    def __init__(self, status, body):
        posts = self.posts = [0]

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts[0] += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.parametrize("body", [b'{"error":"invalid_client","error_description":"bad \xff\xfe"}',
                                  b'\xff\xfe<html>not json \xc3</html>'], ids=["json", "raw"])
def test_invalid_utf8_from_kiotviet_does_not_lose_the_run(db, sim, workdir, body):
    """Issue 18: a token 400 whose body holds \\xff\\xfe made recording the end of the run fail
    (invalid byte sequence for encoding "UTF8"): the row stayed running, the lease held, the
    next run called it abandoned, backoff never applied. The run is now recorded as failed,
    with the bytes replaced, and the failure counts."""
    srv = RawTokenServer(400, body)
    try:
        kvsd.setup_integration(db, sim)
        db.sql("UPDATE public.third_party_integrations SET token_url = %s, access_token = NULL,"
               " token_expires_at = NULL", srv.url + "/connect/token")
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn), timeout=60)
    finally:
        srv.close()
    log = run_log(db)
    assert log["status"] == "failed" and log["completed"], (log, res)
    assert "refused the credentials" in log["error_message"], log
    assert "??" in log["error_message"] or "?<html>" in log["error_message"], log
    row = db.sql("SELECT consecutive_failures, sync_lease_owner FROM"
                 " public.third_party_integrations WHERE name = 'kiotviet'")[0]
    assert row == (1, None), row
    assert "could not record" not in res.err, res


def test_harness_reads_daemon_output_as_bytes():
    """Invalid UTF-8 from the daemon fails an assertion that shows the bytes (the harness read
    text and crashed with UnicodeDecodeError inside subprocess)."""
    with pytest.raises(AssertionError, match=r"not UTF-8.*\\xff"):
        kvsd.text_of(b"<3>error bad \xff\xfe bytes")
    assert kvsd.text_of("Nhẫn ok".encode()) == "Nhẫn ok"


def test_a_password_like_a_json_word_leaves_error_details_intact(pg, db, sim, workdir):
    """Issue 18: redaction ran on the serialised error_details, so a database password such as
    "full" (or "null", "1234", "true") replaced JSON words and numbers with ***. Texts are
    redacted before they are quoted; the JSON is left alone."""
    role = PasswordRole(pg, db, password="full")
    try:
        kvsd.setup_integration(db, sim)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", role.dsn()), "--full")
        assert res.rc == 0, res
        details = db.value("SELECT error_details FROM public.sync_logs ORDER BY id DESC LIMIT 1")
        assert details["sync_type"] == "full", details
    finally:
        role.close()


class FakeKiotViet:
    """A loopback KiotViet that issues a token and answers every GET with one fixed page."""

    def __init__(self, page, gzipped=False, tls=None):
        """gzipped: pages go out with Content-Encoding: gzip (page may then be bytes, sent
        compressed as they are); tls: (certificate, key) files to serve https with."""
        body = page if isinstance(page, bytes) else json.dumps(page).encode()
        if gzipped:
            body = gzip.compress(body, 9)
        token = json.dumps({"access_token": "fake-" + secrets.token_hex(16), "expires_in": 3600,
                            "token_type": "Bearer"}).encode()
        gets = self.gets = [0]
        posts = self.posts = [0]

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, data):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if gzipped and data is body:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts[0] += 1
                self.reply(token)

            def do_GET(self):
                gets[0] += 1
                self.reply(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.srv.server_address[1]}"
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def point_at(db, url):
    db.sql("UPDATE public.third_party_integrations SET api_url = %s, token_url = %s,"
           " client_id = 'cid', client_secret = 'fake-secret-123', retailer = 'demoshop',"
           " sync_enabled = true WHERE name = 'kiotviet'", url, url + "/connect/token")


def cap_page(nested):
    """10,001 category records, flat or as the children of one root (10,000 + the root)."""
    recs = [{"categoryId": 1000 + i, "categoryName": f"c{i}"} for i in range(10001 - nested)]
    if nested:
        recs = [{"categoryId": 1, "categoryName": "root", "children": recs}]
    return {"total": 10001, "pageSize": 100, "data": recs}


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_page_record_cap(db, workdir, nested):
    """A page with more than 10,000 records (KiotViet's pages hold at most 100) is refused
    before mapping, once (not retried), and the run fails saying why."""
    fake = FakeKiotViet(cap_page(nested))
    try:
        point_at(db, fake.url)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn), "--full", timeout=60)
        log = run_log(db)
        assert log["status"] == "failed", (log, res)
        assert "KiotViet page refused: more than 10000 records" in log["error_message"], log
        assert fake.gets[0] == 1, fake.gets  # the same page would come again: no retry
        assert db.value("SELECT count(*) FROM public.categories WHERE kiotviet_id IS NOT NULL") == 0
    finally:
        fake.close()


# (each bound counts the run's one GET /branches first, issue 16)
@pytest.mark.parametrize("page,status,gets_max", [
    ({"total": 1000000000000, "pageSize": 100, "data": []}, "failed", 1 + 1),
    ({"total": 1000000, "pageSize": 100, "data": []}, "success", 1 + 2),
    ({"total": 3000, "pageSize": 100, "data": [{"categoryId": 7, "categoryName": "c"}]},
     "partial", 1 + 2 * (2 * 3000 // 97 + 1 + 12 + 8)),  # (products: a category record fails)
], ids=["absurd-total", "empty-pages", "same-page-again"])
def test_a_lying_total_cannot_drive_endless_gets(db, workdir, page, status, gets_max):
    """Issue 18: {"total": 1e12, "data": []} drove 1,086 GETs in 12 s until cancelled. A total
    above what any catalogue holds is not trusted, an empty page ends paging whatever the total
    says, and the pages of one entity are bounded by its first total: one broken answer
    never spends the hourly GET budget."""
    fake = FakeKiotViet(page)
    try:
        point_at(db, fake.url)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn), "--full", timeout=60)
        log = run_log(db)
        assert log["status"] == status, (log, res)
        if status == "failed":
            assert "more than any catalogue holds" in log["error_message"], log
        assert 1 <= fake.gets[0] <= gets_max, fake.gets
    finally:
        fake.close()


def test_status_escapes_terminal_controls_from_the_database(db, workdir):
    """Issue 18 Low: integration names (and errors, lease owners) are text anyone who can write
    the table chooses; `status` printed them raw, so ESC sequences could retitle or rewrite the
    operator's terminal. Control characters and C1 controls are shown as escapes."""
    evil = "kiotviet-\x1b]0;owned\x07\x1b[2J\u009b31m"
    db.sql("INSERT INTO public.third_party_integrations (name, display_name, retailer)"
           " VALUES (%s, 'x', %s)", evil, "shop\x1b[8m")
    log_id = db.value("INSERT INTO public.sync_logs (integration_id, sync_type, status,"
                      " error_message, completed_at) SELECT id, 'full', 'failed',"
                      " %s, now() FROM public.third_party_integrations WHERE name = %s"
                      " RETURNING id", "boom\x1b[1A\rforged line", evil)
    assert log_id
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    p = subprocess.run([kvsd.BIN, "status", "-c", cfg], capture_output=True, timeout=60)
    assert p.returncode == 0, p
    out = p.stdout
    assert b"kiotviet-\\x1b]0;owned\\x07\\x1b[2J\\u009b31m" in out, out
    assert b"shop\\x1b[8m" in out and b"boom\\x1b[1A\\x0dforged line" in out, out
    assert b"\x1b" not in out and b"\x07" not in out and b"\xc2\x9b" not in out, out


# ---- process --------------------------------------------------------------------------------------

def test_refuses_root_without_allow_root(db, workdir):
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
    p = subprocess.run([kvsd.BIN, "-c", cfg, "--once"], capture_output=True, text=True, env=env,
                       timeout=60)
    if os.geteuid() == 0:
        assert p.returncode == 1 and "refusing to run as root" in p.stderr, p
        p = subprocess.run([kvsd.BIN, "--allow-root", "-c", cfg, "--once"], capture_output=True,
                           text=True, env=env, timeout=60)
        assert p.returncode == 0, p
    else:
        assert p.returncode == 0 and "refusing" not in p.stderr, p


def test_no_core_dumps_and_not_dumpable(db, sim):
    """The daemon holds secrets in memory: started with core files allowed, it sets its core
    limit to 0 (soft and hard) and makes itself non-dumpable, so /proc/PID/mem, environ and fd
    belong to root and no other process of its user can read them.
    As root the daemon is started as nobody: a root process's /proc entries are root's anyway."""
    kvsd.setup_integration(db, sim, interval=1)
    runner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    tmp = tempfile.mkdtemp(prefix="kvs-dump-")
    os.chmod(tmp, 0o755)
    cfg = kvsd.write_config(Path(tmp) / "kvs.conf", db.dsn, sync={"poll_interval": 1})
    if runner:
        os.chown(cfg, runner.pw_uid, runner.pw_gid)
    logpath = Path(tmp) / "daemon.log"

    def allow_cores():
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
    with open(logpath, "w") as logf:
        kw = {"user": runner.pw_uid, "group": runner.pw_gid, "extra_groups": []} if runner else {}
        proc = subprocess.Popen([kvsd.BIN, "-c", cfg], stdout=logf, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp, preexec_fn=allow_cores, **kw)
    try:
        kvsd.wait_until(lambda: db.value("SELECT count(*) FROM public.sync_logs"
                                         " WHERE status = 'success'") >= 1 or proc.poll() is not None,
                        timeout=30, what="the daemon's first run")
        assert proc.poll() is None, logpath.read_text()
        with open(f"/proc/{proc.pid}/status") as f:
            ruid = int(next(ln for ln in f if ln.startswith("Uid:")).split()[1])
        assert ruid == (runner.pw_uid if runner else os.geteuid()) and ruid != 0
        with open(f"/proc/{proc.pid}/limits") as f:
            core = next(ln for ln in f if ln.startswith("Max core file size")).split()
        assert core[4:6] == ["0", "0"], core  # soft and hard
        # Non-dumpable: the kernel gives the entries under /proc/PID (not the directory itself)
        # to root; a dumpable process of nobody's has them owned by nobody.
        owners = {os.stat(f"/proc/{proc.pid}/{sub}").st_uid for sub in ("mem", "environ", "fd")}
        assert owners == {0}, (owners, ruid)
    finally:
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0, logpath.read_text()


def readelf(*args):
    return subprocess.run(["readelf", "--wide", *args, kvsd.BIN], capture_output=True, text=True,
                          check=True).stdout


def test_binary_is_hardened():
    """PIE, full RELRO (BIND_NOW), and in the regular build the stack protector and
    _FORTIFY_SOURCE checks (make check-asan builds without those two: the sanitizers replace
    them, see the Makefile)."""
    assert "Type:                              DYN" in readelf("-h")
    flags = [line for line in readelf("-d").splitlines() if "(FLAGS" in line]
    assert any("BIND_NOW" in f or ("FLAGS_1" in f and " NOW" in f) for f in flags), flags
    assert any("PIE" in f for f in flags), flags
    assert "GNU_RELRO" in readelf("-l")
    syms = readelf("--dyn-syms")
    if "__asan_init" in syms:
        return
    assert "__stack_chk_fail" in syms
    fortified = {s for s in ("__snprintf_chk", "__memcpy_chk", "__vsnprintf_chk", "__memmove_chk",
                             "__strcpy_chk", "__fprintf_chk", "__printf_chk", "__sprintf_chk")
                 if s in syms}
    assert fortified, "no _FORTIFY_SOURCE checked functions in the binary"


# ---- network --------------------------------------------------------------------------------------

class CountingServer:
    """A plain HTTP server that counts connections and requests (the target of a redirect, or
    a listener that must never be reached)."""

    def __init__(self, host="127.0.0.1"):
        count = self.count = [0]
        conns = self.connections = [0]

        class H(http.server.BaseHTTPRequestHandler):
            def setup(self):
                conns[0] += 1
                super().setup()

            def do_GET(self):
                count[0] += 1
                body = b'{"total":0,"pageSize":100,"data":[]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer((host, 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def local_ipv4():
    """A non-loopback address of this machine, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.254", 9))  # no packet is sent for a UDP connect
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_plain_http_to_non_loopback_host_refused(db, sim, workdir):
    """api_url/token_url come from a database row: http:// to anything but loopback is refused
    before a connection is made (a listener on this machine's own non-loopback address sees
    none). The refusal message alone is checked by test_userinfo_in_urls_refused_and_never_echoed
    and the unit tests; without such an address this test's point cannot be made: it skips."""
    ip = local_ipv4()
    if not ip:
        pytest.skip("no non-loopback IPv4 address on this machine: cannot show that no "
                    "connection reaches a listener there")
    listener = CountingServer(ip)
    try:
        kvsd.setup_integration(db, sim)
        target = f"http://{ip}:{listener.port}"
        db.sql("UPDATE public.third_party_integrations SET api_url = %s, token_url = %s",
               target, target + "/connect/token")
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn))
        log = run_log(db)
        assert log["status"] == "failed", (log, res)
        assert "must use https (plain http is only allowed to loopback hosts)" in \
            log["error_message"], log
        assert "must use https" in res.err
        assert listener.connections[0] == 0
    finally:
        listener.close()


@pytest.mark.parametrize("host", ["127.0.0.-4294967295", "127.0.0.4294967297"])
def test_plain_http_loopback_decided_by_the_address_curl_uses(db, sim, workdir, host):
    """Issue 18: these pass a "%u.%u.%u.%u" scan as 127.0.0.x but are no address to curl, which
    would ask DNS for them and send client_secret in clear text wherever DNS answers. Refused
    before any request, as plain http to a non-loopback host."""
    port = sim.url.rsplit(":", 1)[1].rstrip("/")
    kvsd.setup_integration(db, sim)
    before = sim.stats("demoshop")
    db.sql("UPDATE public.third_party_integrations SET token_url = %s",
           f"http://{host}:{port}/connect/token")
    res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn))
    log = run_log(db)
    assert log["status"] == "failed", (log, res)
    assert f"token_url must use https (plain http is only allowed to loopback hosts): " \
        f"http://{host}:{port}" in log["error_message"], log
    assert sim.stats("demoshop")["token_requests"] == before["token_requests"]


def test_allowed_hosts_refuse_a_row_pointing_elsewhere_alone(db, sim, workdir):
    """Issue 18: any https host received the client secret, so a typo-squatted token_url got the
    credentials. [kiotviet] allowed_hosts (default: KiotViet's token and API hosts, plus
    loopback) decides; a row naming another host fails alone, saying which host and which key
    allows it, while the other integrations run."""
    kvsd.setup_integration(db, sim)
    kvsd.setup_integration(db, sim, name="kiotviet-typo", insert=True)
    secret = db.value("SELECT client_secret FROM public.third_party_integrations"
                      " WHERE name = 'kiotviet-typo'")
    db.sql("UPDATE public.third_party_integrations SET token_url ="
           " 'https://id.kiotviet.vn.evil.example/connect/token' WHERE name = 'kiotviet-typo'")
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, log={"level": "debug"})
    res = kvsd.run_once(cfg)
    assert res.rc == 1, res
    assert kvsd.last_log(db)["status"] == "success"
    log = kvsd.last_log(db, "kiotviet-typo")
    assert log["status"] == "failed", log
    want = ("token_url host id.kiotviet.vn.evil.example is not in [kiotviet] allowed_hosts")
    assert want in log["error_message"] and want in res.err, (log, res)
    assert secret not in res.out + res.err
    # A list without loopback refuses the simulator too; one naming it lets the row run.
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn,
                            kiotviet={"allowed_hosts": "id.kiotviet.vn, public.kiotapi.com"})
    res = kvsd.run_once(cfg, "--only", "kiotviet")
    log = kvsd.last_log(db)
    assert log["status"] == "failed" and "host 127.0.0.1 is not in [kiotviet] allowed_hosts" \
        in log["error_message"], log
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, kiotviet={"allowed_hosts": "127.0.0.1"})
    res = kvsd.run_once(cfg, "--only", "kiotviet")
    assert res.rc == 0 and kvsd.last_log(db)["status"] == "success", res


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"])
def test_only_http_and_https(db, sim, workdir, url):
    kvsd.setup_integration(db, sim)
    db.sql("UPDATE public.third_party_integrations SET api_url = %s", url)
    res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn))
    log = run_log(db)
    assert log["status"] == "failed", (log, res)
    assert "must use https" in log["error_message"] or \
        "api_url is not a valid URL" in log["error_message"], log  # file:// has no host
    assert "root:" not in res.err + res.out + json.dumps(log, default=str)


def test_https_with_and_without_the_ca(db, workdir):
    with Sim(products=30, seed=4, https=True, cert_dir=str(workdir / "certs")) as s:
        assert s.url.startswith("https://")
        kvsd.setup_integration(db, s)
        # Without the simulator's CA the system store does not trust it.
        res = kvsd.run_once(kvsd.write_config(workdir / "nocert.conf", db.dsn,
                                              kiotviet={"max_retries": 0}))
        log = run_log(db)
        assert log["status"] == "failed", (log, res)
        assert "SSL certificate problem" in log["error_message"], log
        assert s.stats()["requests"] == 0  # the handshake failed: no request was answered
        # With it, the same run succeeds.
        res = kvsd.run_once(kvsd.write_config(workdir / "cert.conf", db.dsn,
                                              kiotviet={"ca_file": s.ca}))
        assert res.rc == 0 and "kiotviet: success" in res.out, res
        assert run_log(db)["status"] == "success"


def make_certs(d):
    """A CA, and two server certificates it signs: one for the name wrong.example only (not
    127.0.0.1), one for 127.0.0.1 that expired in 2020. `openssl ca` sets past dates."""
    d.mkdir(exist_ok=True)

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=kvs test CA")
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\n"
                              "new_certs_dir = .\nserial = serial\ndefault_md = sha256\n"
                              "policy = p\ncopy_extensions = copy\nunique_subject = no\n"
                              "[p]\ncommonName = supplied\n")
    out = {}
    for name, san, dates in (("wrong-host", "DNS:wrong.example", ["-days", "30"]),
                             ("expired", "IP:127.0.0.1", ["-startdate", "20200101000000Z",
                                                          "-enddate", "20200201000000Z"])):
        run("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}")
        run("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
            "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext", *dates)
        out[name] = (str(d / f"{name}.pem"), str(d / f"{name}.key"))
    return str(d / "ca.pem"), out


@pytest.mark.parametrize("which,want", [
    ("wrong-host", "SSL: no alternative certificate subject name matches target host name"),
    ("expired", "certificate has expired"),
])
def test_tls_refuses_a_trusted_ca_with_the_wrong_name_or_an_expired_certificate(db, workdir,
                                                                                which, want):
    """The TLS test with the CA trusted (ca_file): host name and validity are still verified,
    before any request (the token POST with the client secret) is sent."""
    ca, certs = make_certs(workdir / "certs")
    fake = FakeKiotViet({"total": 0, "pageSize": 100, "data": []}, tls=certs[which])
    try:
        point_at(db, fake.url)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                              kiotviet={"ca_file": ca, "max_retries": 0}))
        log = run_log(db)
        assert log["status"] == "failed" and want in log["error_message"], (log, res)
        assert fake.gets[0] == 0 and fake.posts[0] == 0
    finally:
        fake.close()


def test_ca_file_anyone_can_write_is_refused(db, workdir):
    """Issue 18 Low: whoever can change ca_file chooses which servers are KiotViet (it replaces
    the system store). A bundle every user may write is a configuration error; one another
    user owns is warned about."""
    ca = workdir / "ca.pem"
    ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text()
                  if Path("/etc/ssl/certs/ca-certificates.crt").exists() else "")
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, kiotviet={"ca_file": str(ca)})
    os.chmod(ca, 0o666)
    p = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 78 and f"{ca}: writable by every user" in p.stderr, p
    os.chmod(ca, 0o644)
    if os.geteuid() == 0:
        os.chown(ca, 65534, 65534)  # nobody
    else:
        pytest.skip("giving the file to another user needs root (the refusal was checked)")
    p = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and f"{ca} can be changed by another user" in p.stdout + p.stderr, p


def test_redirects_not_followed(db, sim, workdir):
    other = CountingServer()
    try:
        kvsd.setup_integration(db, sim)
        sim.faults([{"match": "/categories", "kind": "status", "status": 302, "times": -1,
                     "headers": {"Location": f"http://127.0.0.1:{other.port}/categories"}}])
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                              kiotviet={"max_retries": 0}))
        log = run_log(db)
        assert log["status"] == "failed", (log, res)
        assert "KiotViet answered HTTP 302" in log["error_message"], log
        assert other.connections[0] == 0
    finally:
        sim.clear_faults()
        other.close()


@pytest.mark.parametrize("bomb", [False, True], ids=["gzip-page", "gzip-bomb"])
def test_response_size_cap_counts_decompressed_bytes(db, workdir, bomb):
    """Pages may come gzip-compressed (curl asks for it): a compressed page is read whole, and
    the cap applies to what it inflates to, so 64 KB that inflate to 64 MB (a decompression
    bomb) are refused without being held in memory."""
    cap = 1 << 20
    if bomb:
        page = b'{"total":1,"pageSize":100,"data":[' + b" " * (64 << 20) + b"]}"
    else:
        page = json.dumps({"total": 1, "pageSize": 100,
                           "data": [{"categoryId": 5, "categoryName": "gz " * 50}]}).encode()
    fake = FakeKiotViet(page, gzipped=True)
    try:
        point_at(db, fake.url)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                              kiotviet={"max_page_bytes": cap, "max_retries": 0}),
                            "--full", timeout=60)
        log = run_log(db)
        if bomb:
            assert len(gzip.compress(page, 9)) < cap // 4  # the wire size is far below the cap
            assert log["status"] == "failed", (log, res)
            assert f"larger than {cap} bytes" in log["error_message"], log
        else:
            assert log["categories_synced"] == 1, (log, res)
    finally:
        fake.close()


def test_response_size_cap(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn,
                                          kiotviet={"max_page_bytes": 65536, "max_retries": 0}))
    log = run_log(db)
    assert log["status"] == "failed", (log, res)
    assert "larger than 65536 bytes" in log["error_message"], log
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL") == 0


# ---- hostile input --------------------------------------------------------------------------------

BIG_ID = 9007199254740993          # 2^53 + 1: a double cannot hold it
BIG_MASTER = 9223372036854775807   # 2^63 - 1
NASTY_NAME = "Nhẫn \u0000 💍 𠜎 \ud7ff"
LONG_DESC = ("Mô tả 💎 rất dài. " * 600)[:10000]
REJECTED_NAME = "Sản phẩm bị cửa hàng từ chối"


def reject_name(db):
    """A shop constraint that refuses one product: its page's statement fails (SQLSTATE 23514)
    and the daemon stores that page row by row."""
    db.sql("ALTER TABLE public.products ADD CONSTRAINT test_security_reject"
           f" CHECK (name <> '{REJECTED_NAME}')")


def hostile_catalog(s, big_ids=True, extreme=True, rejected_row=False):
    """Product 7 gets (optionally) ids beyond 2^53, a NUL and 4-byte characters in its name, a
    10,000-character description, 1,000 attributes and weight -0; every products page gets
    (optionally) the simulator's "extreme" record (basePrice 1e308) as its first row. Product 9
    is optionally renamed to REJECTED_NAME (see reject_name)."""
    cat = s.catalog()["products"]
    attrs = [{"productId": cat[7]["id"], "attributeName": "THUỘC TÍNH %d" % i,
              "attributeValue": "giá trị %d 🌸" % i} for i in range(1000)]
    fields = {"name": NASTY_NAME, "fullName": NASTY_NAME, "description": LONG_DESC,
              "attributes": attrs, "weight": -0.0}
    if big_ids:
        fields.update({"id": BIG_ID, "masterProductId": BIG_MASTER})
    s.mutate(set={"id": cat[7]["id"], "fields": fields})
    if rejected_row:
        s.mutate(set={"id": cat[9]["id"], "fields": {"name": REJECTED_NAME}})
    if extreme:
        s.faults([{"match": "/products", "kind": "bad_record", "variant": "extreme", "index": 0,
                   "times": -1}])
    return cat


def test_extreme_records_stored_exactly_or_failed_with_a_reason(shop_db, workdir):
    """Each hostile record is stored exactly or fails alone with a reason in error_details;
    the run goes on."""
    db = shop_db
    with Sim(products=60, seed=3) as s:
        cat = hostile_catalog(s, big_ids=False)
        kvsd.setup_integration(db, s)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn), "--full")
        assert res.rc == 0, res
    log = run_log(db)
    assert log["status"] in ("success", "partial"), log
    assert log["products_synced"] + log["products_failed"] == 60, log

    extreme = db.sql("SELECT name, price::text FROM public.products WHERE name LIKE %s",
                     "Nhẫn 💍%")
    if db.shape == "uuid":
        # numeric(18,2) cannot hold 1e308: that record alone fails, with the database's reason.
        assert log["status"] == "partial" and log["products_failed"] == 1, log
        fails = log["error_details"]["failures"]
        assert len(fails) == 1 and "numeric field overflow" in fails[0]["error"], log
        assert extreme == []
    else:
        # numeric without a typmod holds it exactly; NUL became U+FFFD.
        assert log["status"] == "success", log
        assert len(extreme) == 1, extreme
        assert extreme[0][0] == "Nhẫn 💍\ufffd 𠜎 cực dài"
        assert Decimal(extreme[0][1]) == Decimal("1e308")

    cols = "name, product_weight_g::text" + (", description, full_name"
                                             if db.shape == "uuid" else "")
    got = db.sql(f"SELECT {cols} FROM public.products WHERE kiotviet_id = %s", cat[7]["id"])
    assert len(got) == 1, got
    assert got[0][0] == NASTY_NAME.replace("\u0000", "\ufffd")
    assert got[0][1] in (None, "0"), got  # weight -0: never "-0"
    if db.shape == "uuid":
        assert got[0][2] == LONG_DESC and len(got[0][2]) == 10000
        assert got[0][3] == NASTY_NAME.replace("\u0000", "\ufffd")


def test_ids_beyond_2_53_exact(shop_db, workdir):
    db = shop_db
    with Sim(products=60, seed=3) as s:
        hostile_catalog(s, extreme=False)
        kvsd.setup_integration(db, s)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn), "--full")
        assert res.rc == 0 and "kiotviet: success" in res.out, res
    got = db.sql("SELECT kiotviet_id, kiotviet_master_id, name FROM public.products"
                 " WHERE kiotviet_id > 9007199254740000")
    assert got == [(BIG_ID, BIG_MASTER, NASTY_NAME.replace("\u0000", "\ufffd"))], got


def test_ids_beyond_2_53_exact_when_a_page_is_stored_row_by_row(shop_db, workdir):
    db = shop_db
    with Sim(products=60, seed=3) as s:
        cat = hostile_catalog(s, extreme=False, rejected_row=True)
        reject_name(db)
        kvsd.setup_integration(db, s)
        res = kvsd.run_once(kvsd.write_config(workdir / "kvs.conf", db.dsn), "--full")
        assert res.rc == 0, res
    assert "storing its rows one by one" in res.err, res
    log = run_log(db)
    fails = log["error_details"]["failures"]
    assert [f["id"] for f in fails] == [cat[9]["id"]], log
    assert "test_security_reject" in fails[0]["error"], log
    got = db.sql("SELECT kiotviet_id, kiotviet_master_id FROM public.products"
                 " WHERE kiotviet_id > 9007199254740000")
    assert got == [(BIG_ID, BIG_MASTER)], got
