"""A throwaway PostgreSQL 15 cluster for the tests, the demo and the benchmarks.

Usable without pytest:

    from pgharness import PgCluster, apply_file, apply_migrations, SHOP_SCHEMAS
    pg = PgCluster.start()                 # initdb + pg_ctl start on a free 127.0.0.1 port
    try:
        dsn = pg.create_database("demo")   # -> "postgresql://postgres@127.0.0.1:PORT/demo"
        apply_file(dsn, SHOP_SCHEMAS["uuid"])
        apply_migrations(dsn)
    finally:
        pg.stop()                          # also registered with atexit

The server never runs as root: when we are root (CI is), initdb and pg_ctl run through
`runuser -u postgres --` (or `nobody`) and the temp dir is chowned to that user. Authentication is
trust, on 127.0.0.1 and on a unix socket inside the temp dir only.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "db" / "migrations"
MIGRATION = MIGRATIONS_DIR / "add_kiotviet_integration.sql"
SHOP_BASE = REPO_ROOT / "db" / "schema" / "shop_base.sql"
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
SHOP_SCHEMAS = {
    "uuid": SCHEMAS_DIR / "shop_uuid.sql",
    "bigint": SCHEMAS_DIR / "shop_bigint.sql",
}
SUPERUSER = "postgres"


class HarnessError(RuntimeError):
    pass


def find_pg_bindir() -> Path:
    """PostgreSQL 15 server binaries: $KVS_PG_BINDIR, else Debian's path, else pg_config."""
    cands = [os.environ.get("KVS_PG_BINDIR"), "/usr/lib/postgresql/15/bin"]
    for c in cands:
        if c and (Path(c) / "initdb").is_file():
            return Path(c)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").is_file():
            return Path(out)
    raise HarnessError("PostgreSQL server binaries not found (install postgresql-15)")


def client_env() -> dict:
    """Our environment without PG* variables, so a stray PGHOST/PGSERVICE cannot redirect psql."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> Optional[pwd.struct_passwd]:
    """The unprivileged OS user to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise HarnessError("running as root and neither 'postgres' nor 'nobody' exists")


def _psql() -> str:
    p = shutil.which("psql")
    if p:
        return p
    p = find_pg_bindir() / "psql"
    if p.is_file():
        return str(p)
    raise HarnessError("psql not found")


def apply_file(dsn: str, path, *, quiet: bool = True) -> str:
    """Runs an SQL file with `psql -X -v ON_ERROR_STOP=1 -f`; returns psql's combined output.
    Raises HarnessError with that output if psql fails."""
    cmd = [_psql(), "-X", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)]
    if quiet:
        cmd.insert(2, "-q")
    r = subprocess.run(cmd, capture_output=True, text=True, env=client_env(), timeout=120)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        raise HarnessError(f"psql -f {path} failed (exit {r.returncode}):\n{out}")
    return out


def migration_files() -> list:
    """The migration, then db/migrations/NNN_*.sql in numeric order."""
    later = []
    for p in MIGRATIONS_DIR.glob("*.sql"):
        m = re.match(r"^(\d+)_", p.name)
        if m:
            later.append((int(m.group(1)), p.name, p))
    return [MIGRATION] + [p for _, _, p in sorted(later)]


def apply_migrations(dsn: str) -> None:
    for p in migration_files():
        apply_file(dsn, p)


def apply_shop_schema(dsn: str, shape: str) -> None:
    apply_file(dsn, SHOP_SCHEMAS[shape])


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class PgCluster:
    """One PostgreSQL server in a temp dir. Create with PgCluster.start()."""

    def __init__(self, superuser: str = SUPERUSER) -> None:
        self.superuser = superuser
        self.bindir = find_pg_bindir()
        self.tmpdir: Optional[Path] = None
        self.datadir: Optional[Path] = None
        self.sockdir: Optional[Path] = None
        self.logfile: Optional[Path] = None
        self.host = "127.0.0.1"
        self.port: Optional[int] = None
        self._owns_tmpdir = False
        self._user = _server_user()
        self._running = False

    # -- public ----------------------------------------------------------------------------------

    @classmethod
    def start(cls, tmpdir=None, superuser: str = SUPERUSER) -> "PgCluster":
        """initdb + start. tmpdir: an existing directory to use (the server user must be able to
        reach it); by default a new one under the system temp dir, removed by stop().
        superuser: the bootstrap superuser's name (Supabase's is supabase_admin)."""
        c = cls(superuser)
        try:
            c._setup_dirs(tmpdir)
            c._initdb()
            c._start_server()
        except BaseException:
            c.print_log_tail()
            c.stop()
            raise
        atexit.register(c.stop)
        return c

    def stop(self) -> None:
        """Stops the server (fast, then immediate) and removes the temp dir. Safe to call twice."""
        if self._running:
            r = self._run_ctl(["stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "20"],
                              check=False)
            if r.returncode != 0:
                self._run_ctl(["stop", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "20"],
                              check=False)
            self._running = False
        if self._owns_tmpdir and self.tmpdir is not None and self.tmpdir.exists():
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URI over TCP, usable by psql, psycopg and the C daemon."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    @property
    def superuser_dsn(self) -> str:
        return self.dsn("postgres")

    def socket_dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.sockdir} port={self.port} user={self.superuser} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kw):
        """psycopg connection, autocommit unless told otherwise."""
        import psycopg
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.dsn(dbname), **kw)

    def create_database(self, name: str, owner: Optional[str] = None,
                        template: Optional[str] = None) -> str:
        """CREATE DATABASE name (from template1, or a copy of template); returns its DSN."""
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if owner:
            sql += f" OWNER {_quote_ident(owner)}"
        if template:
            sql += f" TEMPLATE {_quote_ident(template)}"
        with self.connect() as conn:
            conn.execute(sql)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Terminates the database's sessions (the daemon's too), then drops it."""
        with self.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def require_password(self, role: str, password: str) -> None:
        """Makes `role` log in over TCP with a password (scram) instead of trust: a pg_hba line in
        front of the harness's trust lines, then a configuration reload."""
        hba = self.datadir / "pg_hba.conf"
        text = hba.read_text()
        line = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
        if line not in text:
            hba.write_text(line + text)
        with self.connect() as c:
            c.execute(f"ALTER ROLE {_quote_ident(role)} PASSWORD {_quote_literal(password)}")
            c.execute("SELECT pg_reload_conf()")

    def log_tail(self, nbytes: int = 6000) -> str:
        if self.logfile is None or not self.logfile.exists():
            return ""
        with open(self.logfile, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - nbytes))
            return f.read().decode("utf-8", "replace")

    def print_log_tail(self) -> None:
        tail = self.log_tail()
        if tail:
            print(f"---- PostgreSQL log tail ({self.logfile}) ----\n{tail}\n----", file=sys.stderr)

    # -- internals -------------------------------------------------------------------------------

    def _setup_dirs(self, tmpdir) -> None:
        if tmpdir is None:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="kvs-pg-"))
            self._owns_tmpdir = True
        else:
            self.tmpdir = Path(tmpdir)
            self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.datadir = self.tmpdir / "data"
        self.sockdir = self.tmpdir / "sock"
        self.logfile = self.tmpdir / "postgresql.log"
        self.sockdir.mkdir(exist_ok=True)
        os.chmod(self.tmpdir, 0o700)
        if self._user is not None:
            for p in (self.tmpdir, self.sockdir):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)

    def _cmd(self, argv: list) -> list:
        if self._user is None:
            return argv
        return ["runuser", "-u", self._user.pw_name, "--"] + argv

    def _run_ctl(self, args: list, check: bool = True) -> subprocess.CompletedProcess:
        cmd = self._cmd([str(self.bindir / "pg_ctl")] + args)
        # cwd: the server user may not be able to enter our cwd (e.g. /root).
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=self.tmpdir, timeout=60,
                           env=client_env())
        if check and r.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
        return r

    def _initdb(self) -> None:
        base = [str(self.bindir / "initdb"), "-D", str(self.datadir), "--nosync", "-U", self.superuser,
                "--auth=trust", "-E", "UTF8"]
        last = ""
        for locale in ("C.UTF-8", "C"):
            if self.datadir.exists():
                shutil.rmtree(self.datadir)
            r = subprocess.run(self._cmd(base + [f"--locale={locale}"]), capture_output=True,
                               text=True, cwd=self.tmpdir, timeout=120, env=client_env())
            if r.returncode == 0:
                break
            last = r.stdout + r.stderr
        else:
            raise HarnessError(f"initdb failed:\n{last}")
        conf = self.datadir / "postgresql.conf"
        with open(conf, "a", encoding="utf-8") as f:
            f.write(
                "\n# kiotviet-sync test harness\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 100\n"
                "shared_buffers = 64MB\n"
                "log_min_messages = warning\n"
                "log_checkpoints = off\n"
                "log_line_prefix = '%m [%p] %d '\n"
                "password_encryption = 'scram-sha-256'\n"
            )

    def _start_server(self) -> None:
        last = ""
        for _ in range(5):   # the port may be taken between choosing and binding it
            self.port = _free_port()
            r = self._run_ctl(["start", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
                               "-t", "60", "-o", f"-p {self.port}"], check=False)
            if r.returncode == 0:
                self._running = True
                self._wait_ready()
                return
            last = r.stdout + r.stderr + self.log_tail()
            time.sleep(0.1)
        raise HarnessError(f"pg_ctl start failed:\n{last}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run([_psql(), "-X", "-At", "-d", self.superuser_dsn, "-c", "SELECT 1"],
                               capture_output=True, text=True, env=client_env())
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"server not accepting connections:\n{r.stderr}")
            time.sleep(0.05)


class Database:
    """One test database: .name, .dsn, .conn (psycopg, autocommit), .sql(), .run_file()."""

    def __init__(self, cluster: PgCluster, name: str) -> None:
        import psycopg
        self.cluster = cluster
        self.name = name
        self.dsn = cluster.dsn(name)
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.shape: Optional[str] = None

    def sql(self, query: str, *params) -> list:
        """Runs one statement; returns its rows as a list of tuples ([] if it returns none)."""
        with self.conn.cursor() as cur:
            cur.execute(query, params if params else None)
            if cur.description is None:
                return []
            return cur.fetchall()

    def value(self, query: str, *params):
        """The single value of a one-row, one-column query."""
        rows = self.sql(query, *params)
        if len(rows) != 1 or len(rows[0]) != 1:
            raise HarnessError(f"expected one value, got {rows!r}")
        return rows[0][0]

    def run_file(self, path) -> str:
        return apply_file(self.dsn, path)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


_db_counter = 0


def new_database(cluster: PgCluster, prefix: str = "t", template: Optional[str] = None,
                 owner: Optional[str] = None) -> Database:
    """Creates a uniquely named database (optionally a copy of template) and connects to it."""
    global _db_counter
    _db_counter += 1
    name = f"{prefix}_{os.getpid()}_{_db_counter}"
    cluster.create_database(name, owner=owner, template=template)
    return Database(cluster, name)


def shop_template(cluster: PgCluster, shape: str) -> str:
    """Name of a database holding the shop schema of that shape with the migrations applied,
    built once per cluster; CREATE DATABASE ... TEMPLATE it is faster than re-running the files."""
    cache = cluster.__dict__.setdefault("_shop_templates", {})
    if shape not in cache:
        name = f"kvs_tpl_{shape}"
        dsn = cluster.create_database(name)
        apply_shop_schema(dsn, shape)
        apply_migrations(dsn)
        cache[shape] = name
    return cache[shape]


def new_shop_database(cluster: PgCluster, shape: str) -> Database:
    """A fresh database with the shop schema of that shape and the migrations applied."""
    db = new_database(cluster, template=shop_template(cluster, shape))
    db.shape = shape
    return db


# -- Supabase's roles ------------------------------------------------------------------------------

SUPABASE_ROLES = ("anon", "authenticated", "service_role")


def create_supabase_roles(cluster: PgCluster) -> None:
    """The API roles a Supabase project has (cluster-wide; drop them with drop_supabase_roles)."""
    with cluster.connect() as c:
        for role, attrs in (("anon", "NOLOGIN NOINHERIT"), ("authenticated", "NOLOGIN NOINHERIT"),
                            ("service_role", "NOLOGIN NOINHERIT BYPASSRLS")):
            if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                c.execute(f"CREATE ROLE {role} {attrs}")


def grant_like_supabase(db: Database, owner: str = SUPERUSER) -> None:
    """The grants Supabase makes in schema public: everything to the API roles, now and by default
    for tables/sequences/functions the owner creates later."""
    roles = ", ".join(SUPABASE_ROLES)
    for q in (f"GRANT USAGE ON SCHEMA public TO {roles}",
              f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {roles}",
              f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {roles}",
              f"GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO {roles}",
              f"ALTER DEFAULT PRIVILEGES FOR ROLE {_quote_ident(owner)} IN SCHEMA public "
              f"GRANT ALL ON TABLES TO {roles}",
              f"ALTER DEFAULT PRIVILEGES FOR ROLE {_quote_ident(owner)} IN SCHEMA public "
              f"GRANT ALL ON SEQUENCES TO {roles}",
              f"ALTER DEFAULT PRIVILEGES FOR ROLE {_quote_ident(owner)} IN SCHEMA public "
              f"GRANT ALL ON FUNCTIONS TO {roles}"):
        db.sql(q)


def drop_supabase_roles(cluster: PgCluster) -> None:
    """Drops the roles again (databases that still hold grants to them must be dropped first)."""
    with cluster.connect() as c:
        present = [r for (r,) in c.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                           (list(SUPABASE_ROLES),)).fetchall()]
        if present:
            c.execute("DROP OWNED BY " + ", ".join(present))
            c.execute("DROP ROLE " + ", ".join(present))


def drop_database(db: Database) -> None:
    db.close()
    db.cluster.drop_database(db.name)


# -- inspection helpers for tests ------------------------------------------------------------------

def catalog_snapshot(db: Database) -> dict:
    """Everything a migration could change in schema public, as comparable lists: columns,
    constraints, indexes, table flags and ACLs, policies, triggers, and row counts."""
    snap = {}
    snap["columns"] = db.sql("""
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0
           AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum""")
    snap["constraints"] = db.sql("""
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), convalidated
          FROM pg_constraint
         WHERE connamespace = 'public'::regnamespace
         ORDER BY 1, 2""")
    snap["indexes"] = db.sql("""
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' ORDER BY 1, 2""")
    snap["tables"] = db.sql("""
        SELECT relname, relkind, relrowsecurity, relforcerowsecurity, relacl::text
          FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY relname""")
    snap["policies"] = db.sql("SELECT * FROM pg_policies WHERE schemaname = 'public' ORDER BY 1, 2, 3")
    snap["triggers"] = db.sql("""
        SELECT tgrelid::regclass::text, tgname FROM pg_trigger
         WHERE NOT tgisinternal ORDER BY 1, 2""")
    counts = []
    for (t,) in db.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"):
        counts.append((t, db.value(f"SELECT count(*) FROM public.{_quote_ident(t)}")))
    snap["row_counts"] = counts
    return snap


def table_columns(db: Database, table: str) -> list:
    """Column names of public.<table> in order."""
    return [r[0] for r in db.sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", f"public.{table}")]


def dump_rows(db: Database, table: str, columns: list, order_by: str = "id") -> list:
    """Every row of public.<table> as (xmin, ctid, ROW(columns)::text), ordered by order_by.
    The text form comes from each type's output function, so equal dumps mean equal values;
    an unchanged xmin/ctid means the row was not even rewritten."""
    cols = ", ".join(_quote_ident(c) for c in columns)
    return db.sql(f"SELECT xmin::text, ctid::text, ROW({cols})::text FROM public.{_quote_ident(table)} "
                  f"ORDER BY {_quote_ident(order_by)}")


# -- pgbouncer in front of a cluster -----------------------------------------------------------------

class PgBouncer:
    """Debian's pgbouncer in front of a PgCluster, in pool_mode `mode` ("transaction" or
    "session"), on its own free 127.0.0.1 port; trust authentication for the listed users.
    Runs as the cluster's server user (pgbouncer refuses root). Stop with stop() (also atexit).

        bouncer = PgBouncer.start(cluster, "transaction")
        dsn = bouncer.dsn("mydb")        # postgresql://postgres@127.0.0.1:PORT/mydb
    """

    def __init__(self, cluster: PgCluster, mode: str) -> None:
        self.cluster = cluster
        self.mode = mode
        self.host = "127.0.0.1"
        self.port: Optional[int] = None
        self.dir = cluster.tmpdir / f"pgbouncer-{mode}"
        self.logfile = self.dir / "pgbouncer.log"
        self.proc: Optional[subprocess.Popen] = None

    @staticmethod
    def binary() -> str:
        for c in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
            if c and Path(c).is_file():
                return c
        raise HarnessError("pgbouncer not found (install the pgbouncer package: make deps)")

    @classmethod
    def start(cls, cluster: PgCluster, mode: str, users=(SUPERUSER,)) -> "PgBouncer":
        b = cls(cluster, mode)
        b.dir.mkdir(exist_ok=True)
        (b.dir / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in users))
        last = ""
        for _ in range(5):   # the port may be taken between choosing and binding it
            b.port = _free_port()
            (b.dir / "pgbouncer.ini").write_text(
                "[databases]\n"
                f"* = host={cluster.host} port={cluster.port}\n"
                "[pgbouncer]\n"
                f"listen_addr = {b.host}\n"
                f"listen_port = {b.port}\n"
                "unix_socket_dir =\n"
                "auth_type = trust\n"
                f"auth_file = {b.dir / 'userlist.txt'}\n"
                f"pool_mode = {mode}\n"
                "max_client_conn = 200\n"
                "default_pool_size = 10\n"
                f"logfile = {b.logfile}\n"
                f"pidfile = {b.dir / 'pgbouncer.pid'}\n"
                "log_connections = 0\n"
                "log_disconnections = 0\n")
            if cluster._user is not None:
                for f in [b.dir, *b.dir.iterdir()]:
                    os.chown(f, cluster._user.pw_uid, cluster._user.pw_gid)
            b.proc = subprocess.Popen(cluster._cmd([cls.binary(), str(b.dir / "pgbouncer.ini")]),
                                      cwd=b.dir, env=client_env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
            if b._wait_ready():
                atexit.register(b.stop)
                return b
            b.stop()
            last = b.log_tail()
        raise HarnessError(f"pgbouncer ({mode}) did not start:\n{last}")

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            r = subprocess.run([_psql(), "-X", "-At", "-d", self.dsn(), "-c", "SELECT 1"],
                               capture_output=True, text=True, env=client_env())
            if r.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def log_tail(self, nbytes: int = 4000) -> str:
        if not self.logfile.exists():
            return ""
        return self.logfile.read_bytes()[-nbytes:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# -- a Supabase-like cluster --------------------------------------------------------------------------

SUPABASE_ADMIN = "supabase_admin"


def supabase_like_setup(cluster: PgCluster) -> None:
    """Supabase's roles on a cluster whose superuser is supabase_admin: `postgres` a LOGIN role
    that is NOT a superuser (CREATEDB, CREATEROLE, BYPASSRLS, member of the API roles, search_path
    "$user", public, extensions), and anon / authenticated / service_role."""
    with cluster.connect() as c:
        c.execute("CREATE ROLE postgres LOGIN CREATEROLE CREATEDB REPLICATION BYPASSRLS")
        c.execute("CREATE ROLE anon NOLOGIN NOINHERIT")
        c.execute("CREATE ROLE authenticated NOLOGIN NOINHERIT")
        c.execute("CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS")
        c.execute("GRANT anon, authenticated, service_role TO postgres")
        c.execute('ALTER ROLE postgres SET search_path = "$user", public, extensions')


def new_supabase_database(cluster: PgCluster) -> Database:
    """A database as a Supabase project has it: made by supabase_admin, schema public usable and
    writable by postgres, schema extensions, and Supabase's default privileges: ALL on tables,
    sequences and functions that supabase_admin or postgres create in public goes to postgres,
    anon, authenticated and service_role. Returns it connected as postgres (not a superuser)."""
    global _db_counter
    _db_counter += 1
    name = f"supa_{os.getpid()}_{_db_counter}"
    cluster.create_database(name)
    roles = "postgres, anon, authenticated, service_role"
    with psycopg_connect(cluster.dsn(name)) as c:
        for q in ("GRANT ALL ON SCHEMA public TO postgres",
                  f"GRANT USAGE ON SCHEMA public TO {roles}",
                  "CREATE SCHEMA extensions",
                  f"GRANT USAGE ON SCHEMA extensions TO {roles}",
                  "GRANT ALL ON SCHEMA extensions TO postgres"):
            c.execute(q)
        for owner in (SUPABASE_ADMIN, "postgres"):
            for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
                c.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                          f"GRANT ALL ON {kind} TO {roles}")
    db = Database.__new__(Database)
    db.cluster = cluster
    db.name = name
    db.dsn = f"postgresql://postgres@{cluster.host}:{cluster.port}/{name}"
    db.conn = psycopg_connect(db.dsn)
    db.shape = None
    return db


def psycopg_connect(dsn: str):
    import psycopg
    return psycopg.connect(dsn, autocommit=True)
