"""Issue 17's done-when: the README's set-up steps, followed with the installed files.

`make install DESTDIR=...` (the binary under test), then the commands make install prints for
the target system (systemd-sysusers, chgrp: they create the real user kiotviet-sync on this
machine), then the README's steps 3 to 7 against the harness's PostgreSQL and the simulator:
the migrations from the installed copies with the README's own loop, the credentials, the URL in
the installed credential file, `--check-config --as-service`, `--once --as-service`, and the
daemon itself run as the unprivileged user with the credential handed over as systemd's
LoadCredential= does, serving `kiotviet-syncd sync kiotviet`. Needs root (CI runs as root).
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402
import pgharness  # noqa: E402
from kvsim.client import Sim  # noqa: E402

ROOT = kvsd.ROOT
USER = "kiotviet-sync"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it creates the service's "
                                "user and runs the daemon as that user (CI runs as root)")


def readme_step(n):
    m = re.search(r"(?ms)^%d\. \*\*(.*?)(?=^\d+\. \*\*)" % n, README_SETUP)
    assert m, f"README set-up step {n}"
    return m.group(0)


README_SETUP = re.search(r"(?ms)^## Setting it up against your database\n(.*?)(?=^## )",
                         (ROOT / "README.md").read_text()).group(1)


def sh_block(text):
    [block] = re.findall(r"(?ms)^[ \t]*```sh\n(.*?)^[ \t]*```", text)
    return block


def run(argv, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)
    return kvsd.Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def dest():
    # World-traversable, as / is: the service's user must reach the installed files.
    d = Path(tempfile.mkdtemp(prefix="kvs-install-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_readme_setup_with_installed_files(fresh_db, dest, tmp_path):
    binary = os.path.abspath(kvsd.BIN)
    # 1. make install, with DESTDIR: it prints what to run on the target system (this one).
    r = run(["make", "-C", str(ROOT), "--no-print-directory", "install", f"DESTDIR={dest}",
             f"BIN={binary}", "-o", binary])
    assert r.rc == 0, r
    post = r.out.split("on the target system, as root, run:\n", 1)[1].strip().splitlines()
    assert [ln.split()[0] for ln in post] == ["systemd-sysusers", "chgrp"], post
    for line in post:
        argv = [a if not a.startswith("/") else f"{dest}{a}" for a in line.split()]
        res = run(argv)
        assert res.rc == 0, (line, res)
    etc = dest / "etc" / "kiotviet-sync"
    conf, cred = etc / "kiotviet-sync.conf", etc / "database-url"
    installed = dest / "usr" / "local" / "bin" / "kiotviet-syncd"
    import grp
    import pwd
    gid = grp.getgrnam(USER).gr_gid
    st = conf.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)
    st = cred.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_size) == (0, 0o600, 0)
    for unit in ("kiotviet-sync.service", "kiotviet-sync@.service"):
        assert (dest / "lib" / "systemd" / "system" / unit).exists()

    # 3. The migrations, with the README's loop over the installed copies.
    fresh_db.run_file(ROOT / "db" / "schema" / "shop_base.sql")  # the shop (a stand-in)
    loop = sh_block(readme_step(3)).replace("/usr/local/share", f"{dest}/usr/local/share")
    loop = re.sub(r"(?m)^\s*export DATABASE_URL=.*$", "", loop)  # the test database's instead
    env = dict(pgharness.client_env(), DATABASE_URL=fresh_db.dsn)
    env["PATH"] = os.path.dirname(pgharness._psql()) + ":" + env.get("PATH", "")
    res = run(["bash", "-euc", loop], env=env)
    assert res.rc == 0 and "error" not in res.err.lower(), (loop, res)
    assert fresh_db.value("SELECT count(*) FROM public.third_party_integrations"
                          " WHERE name = 'kiotviet'") == 1

    with Sim(products=80, seed=11) as sim:
        # 4. The credentials (the simulator stands in for KiotViet).
        kvsd.setup_integration(fresh_db, sim)
        # 5. The URL in the installed credential file, then the check as the service.
        with open(cred, "w") as f:
            f.write(fresh_db.dsn + "\n")
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600
        clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
        res = run([str(installed), "-c", str(conf), "--check-config", "--as-service"], env=clean)
        assert res.rc == 0, res
        assert "configuration OK, read as user kiotviet-sync as the service will" in res.out
        assert fresh_db.dsn not in res.out + res.err
        # ... and as the user without the credential, the URL is not there: the user cannot
        # read root's file (only systemd, as root, hands it over).
        res = run(["runuser", "-u", USER, "--", str(installed), "-c", str(conf),
                   "--check-config"], env=clean)
        assert res.rc == 78 and "[database] url: not set" in res.err, res
        assert "Permission denied" in res.err, res

        # 6. One run by hand, as the service would run it.
        res = run([str(installed), "-c", str(conf), "--once", "--as-service"], env=clean)
        assert res.rc == 0 and "kiotviet: success (full" in res.out, res
        assert kvsd.last_log(fresh_db)["status"] == "success"

        # 7. The daemon as the service runs it: user kiotviet-sync, the installed configuration,
        # the URL in a credentials directory only that user can read (LoadCredential=).
        creds = tmp_path / "credentials"
        creds.mkdir()
        shutil.copy(cred, creds / "database-url")
        uid = pwd.getpwnam(USER).pw_uid
        os.chown(creds / "database-url", uid, gid)
        os.chmod(creds / "database-url", 0o400)
        os.chown(creds, uid, gid)
        os.chmod(creds, 0o500)
        os.chmod(tmp_path, 0o755)
        for parent in tmp_path.parents:  # pytest's base directory is 0700
            if str(parent).startswith("/tmp/") and stat.S_IMODE(parent.stat().st_mode) == 0o700:
                os.chmod(parent, 0o711)
        denv = dict(clean, CREDENTIALS_DIRECTORY=str(creds))
        daemon = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups",
                                   "--", str(installed), "-c", str(conf)], env=denv,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            kvsd.wait_until(lambda: fresh_db.value(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                " 'kiotviet-syncd control' AND usename IS NOT NULL") == 1, timeout=60,
                what="the daemon connected")
            res = run([str(installed), "-c", str(conf), "sync", "kiotviet", "--timeout", "90"],
                      env=clean)
            assert res.rc == 0 and "kiotviet: success" in res.out, res
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, _ = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, out.decode(errors="replace")[-3000:]
        assert fresh_db.value("SELECT count(*) FROM public.sync_logs WHERE status = 'success'") == 2

    # make uninstall removes what install put outside /etc/kiotviet-sync, and keeps that.
    r = run(["make", "-C", str(ROOT), "--no-print-directory", "uninstall", f"DESTDIR={dest}"])
    assert r.rc == 0, r
    assert not installed.exists() and conf.exists() and cred.exists()
    assert not (dest / "lib" / "systemd" / "system" / "kiotviet-sync.service").exists()
