/* kiotviet-syncd: start-up, signals and shutdown. The work lives in scheduler.c and sync.c. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <libpq-fe.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "db.h"
#include "ctl.h"
#include "explain.h"
#include "http.h"
#include "kiotviet.h"
#include "log.h"
#include "mapping.h"
#include "metrics.h"
#include "notify.h"
#include "scheduler.h"
#include "store.h"
#include "version.h"
#include "webhook.h"

#define EX_USAGE_CODE 64

typedef struct app {
    uv_loop_t *loop;
    const char *config_path;
    http_client *http;
    sched *sched;
    kvs_metrics *metrics; /* owned; freed after the loop is closed */
    webhook *web;         /* owned; NULL in --once mode; webhook_stop frees it */
    int fatal_code;       /* a start-up check that failed after the loop started: exit code */
    uv_signal_t sig_hup, sig_term, sig_int;
    int exit_code;
    int stop_signals;
} app;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kiotviet-syncd [-c FILE] [options]\n"
            "       kiotviet-syncd [-c FILE] status [--json]\n"
            "       kiotviet-syncd [-c FILE] sync NAME [--full] [--timeout S]\n"
            "Keeps a shop's PostgreSQL catalogue in step with its KiotViet account.\n\n"
            "  -c, --config FILE   configuration file (INI); default " KVS_DEFAULT_CONFIG "\n"
            "                      when it exists. The database URL: DATABASE_URL, else\n"
            "                      [database] url, else the credential database-url\n"
            "      --once          sync every active, sync-enabled KiotViet integration now, then\n"
            "                      exit: 0 if all ran and succeeded, 1 if any failed, 75 if none\n"
            "                      failed but another live daemon held some (they were skipped)\n"
            "      --wait          with --once: wait for another daemon's lease instead of skipping\n"
            "      --full          with --once: ignore cursors and read everything\n"
            "      --force-deletes with --once --full: apply a reconciliation even when it marks\n"
            "                      more than [sync] max_delete_ratio of the products deleted\n"
            "      --only NAME     with --once: only the integration called NAME\n"
            "      --explain-product CODE  show how KiotViet product CODE maps to the shop's\n"
            "                      columns and why (read-only; --only picks the integration)\n"
            "      --check-config  validate the configuration, print it, and exit\n"
            "      --print-keys    print every configuration key with its default and range\n"
            "      --as-service    (as root) read the credential as systemd does, then run as\n"
            "                      user " KVS_SERVICE_USER ", as the service would\n"
            "      --allow-root    run even as root (not recommended)\n"
            "      --version       print the version and exit\n"
            "  -h, --help          this text\n\n"
            "Without --once it runs as a daemon: SIGHUP reloads, SIGTERM stops gracefully.\n"
            "status shows every integration; sync asks the running daemon to run one now\n"
            "and waits for it (exit 0 ok, 1 failed, 2 timeout). See kiotviet-syncd(8).\n"
            "Exit codes: 0 ok, 1 failure, 64 bad usage, 75 (--once) skipped: leased by another\n"
            "daemon, 78 configuration error.\n");
}

/* `kiotviet-syncd -c FILE status ...`: global options before a subcommand, as git and
 * systemctl accept. Returns the index of the subcommand in argv when every argument before
 * it is a -c/--config option, else 0. */
static int subcommand_index(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        const char *a = argv[i];
        if (ctl_is_command(a)) return i;
        if (!strcmp(a, "-c") || !strcmp(a, "--config"))
            i += 2;
        else if (!strncmp(a, "--config=", 9) || (!strncmp(a, "-c", 2) && a[2]))
            i += 1;
        else
            return 0;
    }
    return 0;
}

/* Runs the subcommand at argv[at] with the global options before it moved after it. */
static int subcommand_run(int argc, char **argv, int at)
{
    char **v = kvs_xcalloc((size_t)argc + 1, sizeof *v);
    int n = 0;
    v[n++] = argv[at];
    for (int i = 1; i < at; i++) v[n++] = argv[i];
    for (int i = at + 1; i < argc; i++) v[n++] = argv[i];
    int rc = ctl_main(n, v);
    free(v);
    return rc;
}

/* --as-service as root: becomes the service's user (its groups included), so that what follows
 * reads the files as the service will. Returns 0, or -1 after printing why. */
static int become_service_user(void)
{
    struct passwd *pw = getpwnam(KVS_SERVICE_USER);
    if (!pw) {
        fprintf(stderr, "kiotviet-syncd: --as-service: no user " KVS_SERVICE_USER " (make install "
                        "creates it: systemd-sysusers kiotviet-sync.conf)\n");
        return -1;
    }
    if (geteuid() == pw->pw_uid) return 0;
    if (geteuid() != 0) {
        fprintf(stderr, "kiotviet-syncd: --as-service needs root (it reads the credential as "
                        "systemd does, then switches to user " KVS_SERVICE_USER "): use sudo\n");
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) || setgid(pw->pw_gid) || setuid(pw->pw_uid)) {
        fprintf(stderr, "kiotviet-syncd: --as-service: cannot become " KVS_SERVICE_USER ": %s\n",
                strerror(errno));
        return -1;
    }
    return 0;
}

/* The configuration as the service sees it: the credential read now (as root, as systemd's
 * LoadCredential= does), the file read after switching to the service's user. */
static kvs_config *config_load_as_service(const char *path, kvs_err *err)
{
    if (!path) path = config_default_path();
    char *url = NULL;
    const char *env = getenv("DATABASE_URL");
    if (!(env && *env) && config_credential_read(path, &url, err) < 0) return NULL;
    kvs_config *cfg = NULL;
    if (become_service_user() == 0) {
        cfg = config_load_with_url(path, url, err);
    } else {
        kvs_err_set(err, -EPERM, "%s: not checked as user " KVS_SERVICE_USER,
                    path ? path : "(defaults)");
    }
    if (url) {
        explicit_bzero(url, strlen(url));
        free(url);
    }
    return cfg;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* --once: prints each outcome the scheduler reports, one line each, to stdout. */
static void once_print(const sched_report *rep, void *arg)
{
    (void)arg;
    const sync_result *r = rep->result;
    if (rep->kind == SCHED_REPORT_NONE) {
        printf("no active, sync-enabled KiotViet integration%s%s to sync\n",
               rep->name ? " named " : "", rep->name ? rep->name : "");
    } else if (rep->kind == SCHED_REPORT_WAITING) {
        printf("%s: waiting: %s\n", rep->name, r->message);
    } else {
        const sync_counts *c = &r->counts;
        printf("%s: %s", rep->name, sync_status_name(r->status));
        if (r->status == SYNC_SUCCESS || r->status == SYNC_PARTIAL || r->status == SYNC_FAILED ||
            r->status == SYNC_CANCELLED)
            printf(" (%s, run %s, %.1f s): categories %d synced (%d new, %d changed, %d failed, "
                   "%d removed); products %d synced (%d new, %d changed, %d failed, %d removed); "
                   "%d requests",
                   r->full ? "full" : "incremental", r->log_id[0] ? r->log_id : "-",
                   rep->ms / 1000.0, c->categories_synced, c->categories_created,
                   c->categories_updated, c->categories_failed, c->categories_deactivated,
                   c->products_synced, c->products_created, c->products_updated,
                   c->products_failed, c->products_deactivated, c->requests + c->token_requests);
        if (r->message[0]) printf(": %s", r->message);
        printf("\n");
    }
    fflush(stdout);
}

static void sched_done(int code, void *arg)
{
    app *a = arg;
    a->exit_code = a->fatal_code ? a->fatal_code : code;
    webhook_stop(a->web);
    a->web = NULL;
    notify_watchdog_stop();
    if (a->http) {
        http_client_close(a->http);
        a->http = NULL;
    }
    uv_signal_stop(&a->sig_hup);
    uv_signal_stop(&a->sig_term);
    uv_signal_stop(&a->sig_int);
    uv_close((uv_handle_t *)&a->sig_hup, NULL);
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
}

static void on_hup(uv_signal_t *h, int signum)
{
    app *a = h->data;
    (void)signum;
    notify_reloading();
    log_notice("SIGHUP: reloading %s", a->config_path ? a->config_path : "(defaults)");
    kvs_err e;
    kvs_err_clear(&e);
    kvs_config *cfg = config_load_service(a->config_path, &e);
    map_opts mo;
    if (cfg && map_opts_from_config(cfg, &mo, &e)) {
        config_free(cfg);
        cfg = NULL;
    } else if (cfg) {
        map_opts_free(&mo);
    }
    if (!cfg) log_err("reload failed, keeping the old configuration: %s", e.msg);
    if (cfg && cfg->warning) log_warn("%s", cfg->warning);
    if (cfg && a->web && webhook_reload(a->web, cfg, &e))
        log_err("reload: %s; the listener keeps its old address", e.msg);
    /* Even with a bad file the integrations are re-read; READY=1 follows that. */
    sched_reload(a->sched, cfg);
}

static void on_stop(uv_signal_t *h, int signum)
{
    app *a = h->data;
    if (++a->stop_signals > 1) {
        log_warn("second stop signal: exiting now");
        _exit(1);
    }
    log_notice("%s: stopping", strsignal(signum));
    notify_stopping();
    webhook_stop(a->web);
    a->web = NULL;
    sched_stop(a->sched);
}

/* The listener's start-up check found migration 004 missing: the daemon cannot run as
 * configured (a configuration error, as at start). */
static void webhook_fatal(const char *msg, void *arg)
{
    app *a = arg;
    log_err("configuration error: %s", msg);
    a->fatal_code = KVS_EX_CONFIG;
    webhook_stop(a->web);
    a->web = NULL;
    sched_stop(a->sched);
}

/* A notification was stored: the scheduler applies it (an inbox run) now. */
static void webhook_event(void *arg, const char *integration_id)
{
    app *a = arg;
    if (a->sched) scheduler_inbox_kick(a->sched, integration_id);
}

static void daemon_id_make(char *out, size_t cap)
{
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned r = (unsigned)ts.tv_nsec ^ ((unsigned)getpid() << 16);
    snprintf(out, cap, "%s:%d:%08x", host, (int)getpid(), r);
}

/* Whether a conninfo string or URI sets a password, by libpq's own parser (so exactly what
 * libpq would send). 1 yes, 0 no, -1 unparsable (libpq will refuse it; it may hold one). */
static int conninfo_has_password(const char *conninfo)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    PQfreemem(errmsg); /* it can quote the string, password included: never shown */
    if (!opts) return -1;
    int has = 0;
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (!strcmp(o->keyword, "password") && o->val && *o->val) has = 1;
    PQconninfoFree(opts);
    return has;
}

/* Whether gid is this process's group or one of its supplementary groups. */
static bool gid_is_ours(gid_t gid)
{
    if (gid == getegid()) return true;
    gid_t groups[256];
    int n = getgroups((int)ARRAY_SIZE(groups), groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == gid) return true;
    return false;
}

/* Warns when the configuration file sets a database password and other users can read it.
 * Group read counts only for a group other than ours: the unit's documented setup is
 * root:kiotviet-sync 0640, the daemon reading through its own group. Names the file and the
 * remedies, never the password. */
static void warn_config_mode(const kvs_config *cfg)
{
    struct stat st;
    if (!cfg->path || cfg->db_url_from_env || !cfg->db_url) return;
    if (stat(cfg->path, &st) != 0) return;
    bool exposed = (st.st_mode & S_IROTH) || ((st.st_mode & S_IRGRP) && !gid_is_ours(st.st_gid));
    if (!exposed) return;
    int has = conninfo_has_password(cfg->db_url);
    if (has == 0) return;
    char *cred = config_credential_path(cfg->path);
    log_warn("%s %s the database password and is readable by other users (mode %04o): make it "
             "root:" KVS_SERVICE_USER " mode 0640 (make install does), or keep the password out "
             "of it: the credential file %s (the unit's LoadCredential=), or a libpq passfile",
             cfg->path, has > 0 ? "holds" : "may hold", (unsigned)(st.st_mode & 07777), cred);
    free(cred);
}

/* The client secret, tokens and the database password live in this process's memory: no core
 * file may hold them, and no other process of the same user may read its memory or
 * environment (non-dumpable: /proc/PID/mem, environ and ptrace need root). The unit also sets
 * LimitCORE=0. Runs before anything reads a secret, for the CLI subcommands too. */
static void process_harden(void)
{
    const struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none))
        fprintf(stderr, "kiotviet-syncd: cannot disable core dumps (RLIMIT_CORE): %s\n",
                strerror(errno));
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
        fprintf(stderr, "kiotviet-syncd: cannot make the process non-dumpable: %s\n",
                strerror(errno));
}

int main(int argc, char **argv)
{
    process_harden();
    /* Operator subcommands are short-lived database clients, not the daemon (ctl.c). */
    int sub = subcommand_index(argc, argv);
    if (sub) return subcommand_run(argc, argv, sub);
    enum { OPT_ONCE = 256, OPT_FULL, OPT_CHECK, OPT_VERSION, OPT_ROOT, OPT_ONLY, OPT_EXPLAIN,
           OPT_KEYS, OPT_AS_SERVICE, OPT_WAIT, OPT_FORCE_DELETES };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"once", no_argument, NULL, OPT_ONCE},
        {"full", no_argument, NULL, OPT_FULL},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"force-deletes", no_argument, NULL, OPT_FORCE_DELETES},
        {"only", required_argument, NULL, OPT_ONLY},
        {"explain-product", required_argument, NULL, OPT_EXPLAIN},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"print-keys", no_argument, NULL, OPT_KEYS},
        {"as-service", no_argument, NULL, OPT_AS_SERVICE},
        {"allow-root", no_argument, NULL, OPT_ROOT},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app a;
    memset(&a, 0, sizeof a);
    bool once = false, full = false, check = false, allow_root = false, as_service = false,
         wait = false, force_deletes = false;
    const char *only = NULL, *explain_code = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': a.config_path = optarg; break;
        case OPT_ONCE: once = true; break;
        case OPT_FULL: full = true; break;
        case OPT_WAIT: wait = true; break;
        case OPT_FORCE_DELETES: force_deletes = true; break;
        case OPT_ONLY: only = optarg; break;
        case OPT_EXPLAIN: explain_code = optarg; break;
        case OPT_CHECK: check = true; break;
        case OPT_KEYS: config_keys_print(stdout); return 0;
        case OPT_AS_SERVICE: as_service = true; break;
        case OPT_ROOT: allow_root = true; break;
        case OPT_VERSION: printf("kiotviet-syncd %s\n", KVS_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: return cli_usage_error(NULL, argv[optind - 1], c == ':');
        }
    }
    if (optind < argc) return cli_usage_error(NULL, argv[optind], false);
    if (explain_code && (once || full)) {
        fprintf(stderr, "kiotviet-syncd: --explain-product does not go with --once or --full\n");
        return EX_USAGE_CODE;
    }
    if ((full || only) && !once && !explain_code) {
        fprintf(stderr, "kiotviet-syncd: --full and --only go with --once (--only also with "
                        "--explain-product): kiotviet-syncd [-c FILE] --once [--full] [--only "
                        "NAME]; for a run by the daemon: kiotviet-syncd sync NAME [--full]\n");
        return EX_USAGE_CODE;
    }
    if ((wait && !once) || (force_deletes && !(once && full))) {
        fprintf(stderr, "kiotviet-syncd: --wait goes with --once, --force-deletes with --once "
                        "--full\n");
        return EX_USAGE_CODE;
    }
    if (!a.config_path) a.config_path = config_default_path();
    log_init();
    kvs_err err;
    kvs_err_clear(&err);
    kvs_config *cfg = as_service ? config_load_as_service(a.config_path, &err)
                                 : config_load_service(a.config_path, &err);
    if (!cfg) {
        log_err("configuration error: %s", err.msg);
        return KVS_EX_CONFIG;
    }
    if (cfg->warning) log_warn("%s", cfg->warning);
    map_opts mo;
    if (map_opts_from_config(cfg, &mo, &err)) {
        log_err("configuration error: %s", err.msg);
        config_free(cfg);
        return KVS_EX_CONFIG;
    }
    map_opts_free(&mo);
    if (check) {
        config_print(cfg);
        enum db_pooler pooler = DB_POOLER_AUTO;
        (void)db_pooler_parse(cfg->db_pooler, &pooler); /* validated by config_load */
        char line[300];
        db_pooler_describe(cfg->db_url, pooler, line, sizeof line);
        printf("%s\n", line);
        config_free(cfg);
        if (as_service)
            printf("configuration OK, read as user " KVS_SERVICE_USER " as the service will\n");
        else
            printf("configuration OK\n");
        return 0;
    }
    /* The read-only --explain-product is a CLI like status: it does not refuse root. */
    if (geteuid() == 0 && !allow_root && !explain_code) {
        log_err("refusing to run as root: run it as a dedicated user (the systemd unit does; by "
                "hand: sudo kiotviet-syncd --once --as-service), or pass --allow-root");
        config_free(cfg);
        return 1;
    }
    log_set_level(cfg->log_level);
    warn_config_mode(cfg);
    if (explain_code) { /* a read-only CLI path (explain.c): no daemon, no scheduler */
        int rc = explain_product_run(cfg, only, explain_code, stdout);
        config_free(cfg);
        log_deinit();
        return rc;
    }
    /* glibc would hand freed page buffers back to the kernel after every page and fetch them
     * again for the next one; keep a working set instead (PERF-NOTES: 389 vs 690 pages/s). */
    mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    signal(SIGPIPE, SIG_IGN);

    a.loop = uv_default_loop();
    http_opts ho;
    kv_http_opts_from_config(cfg, &ho);
    if (http_client_init(&a.http, a.loop, &ho, &err)) {
        log_err("cannot start the HTTP client: %s", err.msg);
        config_free(cfg);
        return 1;
    }
    uv_signal_init(a.loop, &a.sig_hup);
    uv_signal_init(a.loop, &a.sig_term);
    uv_signal_init(a.loop, &a.sig_int);
    a.sig_hup.data = a.sig_term.data = a.sig_int.data = &a;
    uv_signal_start(&a.sig_hup, on_hup, SIGHUP);
    uv_signal_start(&a.sig_term, on_stop, SIGTERM);
    uv_signal_start(&a.sig_int, on_stop, SIGINT);
    if (!once) notify_watchdog_start(a.loop);

    char daemon_id[200];
    daemon_id_make(daemon_id, sizeof daemon_id);
    sched_opts so = {.once = once, .full = full, .only = only, .daemon_id = daemon_id,
                     .wait = wait, .force_deletes = force_deletes,
                     .report = once ? once_print : NULL};
    a.metrics = metrics_new();
    so.metrics = a.metrics;
    if (!once) {
        /* Stored notifications wake the scheduler (scheduler_inbox_kick); it also reads the
         * inbox at start and after each poll, so none is lost before it exists. */
        webhook_opts wo = {.loop = a.loop, .metrics = a.metrics, .on_event = webhook_event,
                           .on_event_arg = &a, .fatal = webhook_fatal, .fatal_arg = &a};
        if (webhook_start(&a.web, &wo, cfg, &err)) {
            log_err("cannot start: %s", err.msg);
            config_free(cfg);
            http_client_close(a.http);
            uv_walk(a.loop, close_walk_cb, NULL);
            uv_run(a.loop, UV_RUN_DEFAULT);
            metrics_free(a.metrics);
            return 1;
        }
    }
    log_notice("kiotviet-syncd %s starting (%s, id %s)", KVS_VERSION, once ? "once" : "daemon",
               daemon_id);
    a.sched = sched_new(a.loop, cfg, a.http, &so, sched_done, &a);

    uv_run(a.loop, UV_RUN_DEFAULT);
    sched_free(a.sched);
    /* Anything still open is a bug in the shutdown order; close it so the loop can be closed. */
    uv_walk(a.loop, close_walk_cb, NULL);
    uv_run(a.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(a.loop);
    if (rc) log_warn("event loop not empty at exit: %s", uv_strerror(rc));
    metrics_free(a.metrics);
    log_notice("stopped (exit %d)", a.exit_code);
    log_deinit();
    return a.exit_code;
}
