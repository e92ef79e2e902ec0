/* KiotViet URL policy: https (or http to loopback), no userinfo, a host in [kiotviet]
 * allowed_hosts (see kv_url_check in kiotviet.h). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kiotviet.h"

/* ---- URL policy ---------------------------------------------------------------------- */

/* Whether curl will connect to this host on the loopback interface. host is curl's own parse
 * (CURLUPART_HOST: IPv4 shorthand normalised, IPv6 in brackets), and the decision is
 * inet_pton's: "127.0.0.-4294967295" or "127.0.0.4294967297" are no address to curl, which
 * resolves them by DNS, so a "%u.%u.%u.%u" scan must not call them loopback. "localhost" is
 * answered by curl itself (never by DNS or /etc/hosts since curl 7.78). */
static bool host_is_loopback(const char *h)
{
    if (!h) return false;
    if (!strcasecmp(h, "localhost")) return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    char v6[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(h);
    if (n < 3 || n > sizeof v6 || h[0] != '[' || h[n - 1] != ']') return false;
    memcpy(v6, h + 1, n - 2);
    v6[n - 2] = '\0';
    struct in6_addr a6;
    return inet_pton(AF_INET6, v6, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Whether host is in allowed, a comma/space-separated list of host names (any case) where the
 * word "loopback" stands for every loopback host. NULL allows every host. */
static bool host_is_allowed(const char *host, const char *allowed)
{
    if (!allowed) return true;
    size_t hl = strlen(host);
    for (const char *p = allowed; *p;) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n == 8 && !strncasecmp(p, "loopback", 8) && host_is_loopback(host)) return true;
        if (n == hl && n && !strncasecmp(p, host, n)) return true;
        p += n;
    }
    return false;
}

/* "scheme://host[:port]" of a parsed URL, for messages: never its userinfo, path, query or
 * fragment, any of which may carry a secret someone pasted into the row. */
static void url_origin(CURLU *u, const char *scheme, const char *host, char *out, size_t cap)
{
    char *port = NULL;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK) port = NULL;
    snprintf(out, cap, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
    curl_free(port);
}

int kv_url_check(const char *url, const char *what, const char *allowed, kvs_err *err)
{
    if (!url || !*url) {
        kvs_err_set(err, -EINVAL, "%s is empty", what);
        return -EINVAL;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *options = NULL;
    char origin[300];
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0)) {
        kvs_err_set(err, -EINVAL, "%s is not a valid URL", what);
        rc = -EINVAL;
        goto out;
    }
    /* user[:password][;options]@ would be sent as HTTP Basic auth and, worse, repeated by any
     * message quoting the URL. KiotViet authenticates with client_id/client_secret only. */
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_OPTIONS, &options, 0) == CURLUE_OK) {
        url_origin(u, scheme, host, origin, sizeof origin);
        kvs_err_set(err, -EINVAL,
                    "%s (%s) must not contain a user name or password (user:password@): "
                    "credentials belong in client_id and client_secret",
                    what, origin);
        rc = -EINVAL;
        goto out;
    }
    if (strcasecmp(scheme, "https") && (strcasecmp(scheme, "http") || !host_is_loopback(host))) {
        url_origin(u, scheme, host, origin, sizeof origin);
        kvs_err_set(err, -EINVAL,
                    "%s must use https (plain http is only allowed to loopback hosts): %s", what,
                    origin);
        rc = -EINVAL;
    } else if (!host_is_allowed(host, allowed)) {
        /* The host is the one part named: it is what the operator must add, and it is not a
         * secret (unlike a path or query someone may have pasted a key into). */
        kvs_err_set(err, -EINVAL,
                    "%s host %s is not in [kiotviet] allowed_hosts (the client secret is sent "
                    "only to listed hosts; add it there if it really is KiotViet's)",
                    what, host);
        rc = -EINVAL;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    if (password) explicit_bzero(password, strlen(password));
    curl_free(password);
    curl_free(options);
    curl_url_cleanup(u);
    return rc;
}
