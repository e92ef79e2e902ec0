/* A throwaway PostgreSQL 15 cluster for unit tests (header-only: unit tests are single files).
 *
 *     static pgtmp pg;
 *     static int group_setup(void **s) { (void)s; return pgtmp_start(&pg); }
 *     static int group_teardown(void **s) { (void)s; pgtmp_stop(&pg); return 0; }
 *     ... db_opts o = { .conninfo = pg.conninfo };
 *
 * or, for a file that needs nothing more than the server and a log level, PGTMP_GROUP below.
 *
 * initdb + `pg_ctl -w start` in a fresh mkdtemp directory, trust authentication, UTF8, fsync off,
 * listening on a unix socket inside that directory only (no TCP). Starting takes ~1-2 s, so start
 * it once per test executable (cmocka group setup). When we are root, initdb and pg_ctl run as
 * the `postgres` OS user through `runuser -u postgres --` (the server refuses to run as root) and
 * the directory is chowned to it. Missing binaries are a failure, not a skip: the tests promise
 * to run against a real server. Commands are run with fork/exec (no shell) and their output goes
 * to <dir>/setup.log, which is printed when something fails. */
#ifndef KVS_TEST_PGTMP_H
#define KVS_TEST_PGTMP_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PGTMP_BINDIR
#define PGTMP_BINDIR "/usr/lib/postgresql/15/bin"
#endif

/* Every helper is static; unused ones must not trip -Werror=unused-function. */
#define PGTMP_FN static __attribute__((unused))

typedef struct pgtmp {
    char dir[256];       /* mkdtemp directory: socket dir, holds data/ and the logs */
    char datadir[300];   /* dir + "/data" */
    int port;            /* names the socket file .s.PGSQL.<port>; no TCP listener */
    char conninfo[512];  /* "host=<dir> port=<port> user=postgres dbname=postgres" */
    bool running;        /* pg_ctl start succeeded; pgtmp_stop stops it */
    uid_t run_uid;       /* uid the server runs as; (uid_t)-1 = ourselves */
} pgtmp;

/* Prints the tail of a log file to stderr (for failures). */
PGTMP_FN void pgtmp_print_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[4096];
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        if (sz > (long)sizeof buf - 1) fseek(f, sz - (long)sizeof buf + 1, SEEK_SET);
        else fseek(f, 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fprintf(stderr, "---- %s ----\n%s\n----\n", path, buf);
    fclose(f);
}

/* Runs argv (argv[0] is a full path) as the server user with stdout/stderr appended to
 * <dir>/setup.log; returns the exit status, or -1 if it could not run or was killed. */
PGTMP_FN int pgtmp_run(const pgtmp *p, char *const argv[])
{
    char log[320];
    snprintf(log, sizeof log, "%s/setup.log", p->dir);
    char *full[24];
    int n = 0;
    if (p->run_uid != (uid_t)-1) {
        full[n++] = "/usr/sbin/runuser";
        full[n++] = "-u";
        full[n++] = "postgres";
        full[n++] = "--";
    }
    for (int i = 0; argv[i] && n < (int)(sizeof full / sizeof full[0]) - 1; i++) full[n++] = argv[i];
    full[n] = NULL;

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        /* The server user may not be able to enter our cwd (e.g. /root). */
        if (chdir(p->dir) != 0) _exit(126);
        execv(full[0], full);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

PGTMP_FN int pgtmp_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Stops the server (immediate: the data is thrown away) and removes the directory. Safe to call
 * twice and after a failed start. */
PGTMP_FN void pgtmp_stop(pgtmp *p)
{
    if (p->running) {
        char *argv[] = {PGTMP_BINDIR "/pg_ctl", "-D", p->datadir, "-m", "immediate", "-w", "stop",
                        NULL};
        if (pgtmp_run(p, argv) != 0) {
            char setup[320];
            snprintf(setup, sizeof setup, "%s/setup.log", p->dir);
            fprintf(stderr, "pgtmp: pg_ctl stop failed\n");
            pgtmp_print_log(setup);
        }
        p->running = false;
    }
    if (p->dir[0]) nftw(p->dir, pgtmp_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    p->dir[0] = '\0';
}

/* Creates and starts the cluster; fills p. Returns 0, or -1 after printing why (and cleaning up). */
PGTMP_FN int pgtmp_start(pgtmp *p)
{
    memset(p, 0, sizeof *p);
    p->run_uid = (uid_t)-1;
    char initdb[] = PGTMP_BINDIR "/initdb";
    char pg_ctl[] = PGTMP_BINDIR "/pg_ctl";
    if (access(initdb, X_OK) != 0 || access(pg_ctl, X_OK) != 0) {
        fprintf(stderr, "pgtmp: PostgreSQL 15 server binaries not found in %s "
                        "(install postgresql-15)\n", PGTMP_BINDIR);
        return -1;
    }
    snprintf(p->dir, sizeof p->dir, "/tmp/kvs-pgtmp-XXXXXX");
    if (!mkdtemp(p->dir)) {
        fprintf(stderr, "pgtmp: mkdtemp: %s\n", strerror(errno));
        p->dir[0] = '\0';
        return -1;
    }
    snprintf(p->datadir, sizeof p->datadir, "%s/data", p->dir);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            fprintf(stderr, "pgtmp: running as root but there is no 'postgres' user\n");
            goto fail;
        }
        if (chown(p->dir, pw->pw_uid, pw->pw_gid) != 0) {
            fprintf(stderr, "pgtmp: chown %s: %s\n", p->dir, strerror(errno));
            goto fail;
        }
        p->run_uid = pw->pw_uid;
    }
    /* The port only names the socket file inside our private directory, so collisions with other
     * clusters do not matter; vary it anyway to keep SysV IPC keys apart. */
    p->port = 20000 + (int)(getpid() % 20000);

    char log[320], opts[512], setup[320];
    snprintf(log, sizeof log, "%s/server.log", p->dir);
    snprintf(setup, sizeof setup, "%s/setup.log", p->dir);
    char *initdb_argv[] = {initdb, "-D", p->datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--no-sync", "--locale=C", NULL};
    if (pgtmp_run(p, initdb_argv) != 0) {
        fprintf(stderr, "pgtmp: initdb failed\n");
        goto fail_log;
    }
    /* pg_ctl hands -o to the server through a shell, hence the quoted empty listen_addresses. */
    snprintf(opts, sizeof opts,
             "-F -k %s -p %d -c listen_addresses='' -c max_connections=30 -c shared_buffers=16MB",
             p->dir, p->port);
    char *start_argv[] = {pg_ctl, "-D", p->datadir, "-l", log, "-o", opts, "-w", "-t", "60", "start",
                          NULL};
    if (pgtmp_run(p, start_argv) != 0) {
        fprintf(stderr, "pgtmp: pg_ctl start failed\n");
        pgtmp_print_log(log);
        goto fail_log;
    }
    p->running = true;
    snprintf(p->conninfo, sizeof p->conninfo, "host=%s port=%d user=postgres dbname=postgres",
             p->dir, p->port);
    return 0;

fail_log:
    pgtmp_print_log(setup);
fail:
    pgtmp_stop(p);
    return -1;
}

/* The shared group set-up: defines `static pgtmp var`, pgtmp_group_setup (the daemon's log at
 * `level`, then the server) and pgtmp_group_teardown (the server stopped, then log_deinit), for
 * cmocka_run_group_tests(tests, pgtmp_group_setup, pgtmp_group_teardown). Include log.h first. */
#define PGTMP_GROUP(var, level)                                                                 \
    static pgtmp var;                                                                           \
    static int pgtmp_group_setup(void **state)                                                  \
    {                                                                                           \
        (void)state;                                                                            \
        log_set_level(level);                                                                   \
        return pgtmp_start(&var);                                                               \
    }                                                                                           \
    static int pgtmp_group_teardown(void **state)                                               \
    {                                                                                           \
        (void)state;                                                                            \
        pgtmp_stop(&var);                                                                       \
        log_deinit();                                                                           \
        return 0;                                                                               \
    }

#endif
