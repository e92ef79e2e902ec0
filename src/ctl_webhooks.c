/* `kiotviet-syncd webhooks register NAME --url URL | list NAME | unregister NAME`: KiotViet's
 * webhook subscriptions of one integration (issue 14).
 *
 * A CLI path that runs instead of the daemon, never inside it, and BLOCKS on purpose: the
 * database through ctl's blocking libpq connection; KiotViet through kiotviet.c's client (the
 * daemon's token, headers and 401 refresh; no retries, no budget, no token stored) on a PRIVATE
 * uv loop run until each request has answered, as --explain-product does.
 *
 * register: a new random secret (24 random bytes, Base64, as KiotViet's documentation asks) is
 * stored in third_party_integrations.webhook_secret first (so the listener verifies what comes
 * next), then, for every type the daemon applies (mapping_webhook.h), the existing hooks of that
 * type are deleted (KiotViet keeps one per type; so do its own clients) and one is registered
 * for URL?noecho with the secret. The secret is never printed: only its length and first 4
 * characters. unregister deletes the hooks of those types and clears webhook_secret (the
 * listener then refuses notifications for the integration). */
#include "ctl_int.h"

#include <getopt.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiotviet_cli.h"
#include "log.h"
#include "mapping_webhook.h"
#include "store.h"

/* Sends one request through the session (blocking: see the top). The answer's JSON (caller
 * deletes), or NULL with k->err. */
static cJSON *call(kv_cli *k, const char *method, const char *path, const char *json)
{
    if (kv_cli_call(k, method, path, json) != KV_OK) return NULL;
    cJSON *j = k->body ? cJSON_Parse(k->body) : NULL;
    if (!j) snprintf(k->err, sizeof k->err, "KiotViet's answer to %s is not JSON", path);
    return j;
}

static bool handled_type(const char *t)
{
    for (int i = 0; t && i < WH__TYPES; i++)
        if (!strcasecmp(t, wh_type_names[i])) return true;
    return false;
}

/* Deletes the hooks of the types the daemon applies; prints each. -1 on a failed call. */
static int delete_ours(kv_cli *k, const char *name)
{
    cJSON *list = call(k, NULL, "/webhooks", NULL);
    if (!list) return -1;
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(list, "data"))
    {
        const cJSON *type = cJSON_GetObjectItem(it, "type"), *id = cJSON_GetObjectItem(it, "id");
        if (!cJSON_IsNumber(id) || !handled_type(cJSON_GetStringValue(type))) continue;
        char path[64];
        snprintf(path, sizeof path, "/webhooks/%.0f", id->valuedouble);
        cJSON *r = call(k, "DELETE", path, NULL);
        if (!r) {
            rc = -1;
            break;
        }
        cJSON_Delete(r);
        printf("%s: deleted webhook %.0f (%s)\n", name, id->valuedouble, type->valuestring);
    }
    cJSON_Delete(list);
    return rc;
}

static int do_list(kv_cli *k, const char *name)
{
    cJSON *list = call(k, NULL, "/webhooks", NULL);
    if (!list) return -1;
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(list, "data"))
    {
        const cJSON *id = cJSON_GetObjectItem(it, "id");
        printf("%s: webhook %.0f %s %s%s\n", name, cJSON_IsNumber(id) ? id->valuedouble : 0,
               cJSON_GetStringValue(cJSON_GetObjectItem(it, "type")) ?: "?",
               cJSON_GetStringValue(cJSON_GetObjectItem(it, "url")) ?: "?",
               cJSON_IsFalse(cJSON_GetObjectItem(it, "isActive")) ? " (inactive)" : "");
        n++;
    }
    if (!n) printf("%s: no webhooks registered\n", name);
    cJSON_Delete(list);
    return 0;
}

static int do_register(kv_cli *k, const char *name, const char *url, const char *secret)
{
    if (delete_ours(k, name)) return -1;
    for (int i = 0; i < WH__TYPES; i++) {
        cJSON *body = cJSON_CreateObject(), *w = cJSON_AddObjectToObject(body, "Webhook");
        char full[2048];
        snprintf(full, sizeof full, "%s%snoecho", url, strchr(url, '?') ? "&" : "?");
        cJSON_AddStringToObject(w, "Type", wh_type_names[i]);
        cJSON_AddStringToObject(w, "Url", full);
        cJSON_AddBoolToObject(w, "IsActive", true);
        cJSON_AddStringToObject(w, "Description", "kiotviet-syncd");
        cJSON_AddStringToObject(w, "Secret", secret);
        char *text = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        cJSON *r = call(k, "POST", "/webhooks", text);
        free(text);
        if (!r) return -1;
        const cJSON *id = cJSON_GetObjectItem(r, "id");
        printf("%s: registered %s -> %s (webhook %.0f)\n", name, wh_type_names[i], full,
               cJSON_IsNumber(id) ? id->valuedouble : 0);
        cJSON_Delete(r);
    }
    return 0;
}

/* The integration's row (ST_LIST, parsed as the daemon parses it), or NULL with a message. */
static integ_row *find_row(PGconn *pg, const char *schema_q, const char *name)
{
    char *sql = store_sql_build(schema_q, ST_LIST);
    PGresult *res = ctl_query("webhooks", pg, sql, 0, NULL);
    free(sql);
    integ_row *row = NULL;
    for (int i = 0; res && i < PQntuples(res) && !row; i++) {
        integ_row *x = integ_row_parse(res, i);
        if (!strcmp(x->name, name))
            row = x;
        else
            integ_row_free(x);
    }
    if (res && !row)
        fprintf(stderr, "kiotviet-syncd webhooks: no integration named %s (see kiotviet-syncd "
                        "status)\n", name);
    PQclear(res);
    return row;
}

static int set_secret(PGconn *pg, const char *schema_q, const char *id, const char *secret)
{
    char *sql = store_sql_build(schema_q, ST_CTL_WEBHOOK_SECRET);
    const char *p[2] = {id, secret};
    PGresult *res = ctl_query("webhooks", pg, sql, 2, p);
    free(sql);
    int rc = res ? 0 : -1;
    PQclear(res);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "Usage: kiotviet-syncd webhooks register NAME --url https://HOST/webhooks/NAME"
                    " [-c FILE]\n       kiotviet-syncd webhooks list NAME [-c FILE]\n"
                    "       kiotviet-syncd webhooks unregister NAME [-c FILE]\n");
    return EX_USAGE_CODE;
}

int ctl_webhooks(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"url", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *url = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'u': url = optarg; break;
        case 'h': usage(); return 0;
        default: return cli_usage_error("webhooks", argv[optind - 1], c == ':');
        }
    }
    if (argc - optind != 2) return usage();
    const char *action = argv[optind], *name = argv[optind + 1];
    bool reg = !strcmp(action, "register"), unreg = !strcmp(action, "unregister");
    if ((!reg && !unreg && strcmp(action, "list")) || (reg != (url != NULL))) return usage();
    if (reg && strncmp(url, "https://", 8) && strncmp(url, "http://", 7)) {
        fprintf(stderr, "kiotviet-syncd webhooks: --url must be an https:// URL\n");
        return EX_USAGE_CODE;
    }
    kvs_config *cfg = ctl_config("webhooks", path);
    if (!cfg) return KVS_EX_CONFIG;
    int rc = CTL_EX_FAILED;
    char *schema_q = NULL;
    integ_row *row = NULL;
    kv_cli k;
    bool kv_open = false;
    kvs_err e;
    kvs_err_clear(&e);
    PGconn *pg = ctl_connect("webhooks", cfg);
    if (!pg) goto cleanup;
    schema_q = db_quote_ident(cfg->db_schema);
    row = find_row(pg, schema_q, name);
    if (!row) goto cleanup;
    if (kv_cli_open(&k, cfg, row, &e)) {
        fprintf(stderr, "kiotviet-syncd webhooks: integration %s is not usable: %s\n", name,
                e.msg);
        goto cleanup;
    }
    kv_open = true;
    int r = 0;
    if (reg) {
        unsigned char raw[24];
        char secret[64];
        if (RAND_bytes(raw, sizeof raw) != 1) {
            fprintf(stderr, "kiotviet-syncd webhooks: no random bytes for the secret\n");
            goto cleanup;
        }
        EVP_EncodeBlock((unsigned char *)secret, raw, sizeof raw);
        if (set_secret(pg, schema_q, row->id, secret)) goto cleanup;
        printf("%s: new secret stored in third_party_integrations.webhook_secret (%.4s..., %zu "
               "characters)\n", name, secret, strlen(secret));
        r = do_register(&k, name, url, secret);
        OPENSSL_cleanse(secret, sizeof secret);
        OPENSSL_cleanse(raw, sizeof raw);
    } else if (unreg) {
        r = delete_ours(&k, name);
        if (!r && !set_secret(pg, schema_q, row->id, NULL))
            printf("%s: webhook_secret cleared: the listener takes no notification for it\n",
                   name);
    } else {
        r = do_list(&k, name);
    }
    if (r) {
        if (k.status)
            fprintf(stderr, "kiotviet-syncd webhooks %s %s: %s (HTTP %ld)\n", action, name,
                    k.err, k.status);
        else
            fprintf(stderr, "kiotviet-syncd webhooks %s %s: %s\n", action, name, k.err);
        goto cleanup;
    }
    rc = CTL_EX_OK;
cleanup:
    if (kv_open) kv_cli_close(&k);
    integ_row_free(row);
    free(schema_q);
    if (pg) PQfinish(pg);
    config_free(cfg);
    return rc;
}
