/* The files the configuration comes from: the config file and the database-url credential,
 * read with one open, mode check and size limit (see config.h: config_load_service,
 * config_secret_file_read, config_credential_*). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_int.h"

/* Who besides root and us could change the file at fd: anyone (mode o+w) is refused, since
 * whoever edits it chooses the database the daemon writes to (and the credential, its URL);
 * another user owning it, or a group other than root's with write access, gets *warning (a
 * new string, caller frees). */
int config_file_mode_check(const char *path, int fd, char **warning, kvs_err *err)
{
    struct stat st;
    if (fstat(fd, &st)) {
        int rc = -errno;
        kvs_err_set(err, rc, "%s: cannot stat: %s", path, strerror(errno));
        return rc;
    }
    if (st.st_mode & S_IWOTH) {
        kvs_err_set(err, -EPERM,
                    "%s: writable by every user (mode %04o): refused; chmod o-w %s", path,
                    (unsigned)(st.st_mode & 07777), path);
        return -EPERM;
    }
    bool foreign_owner = st.st_uid != 0 && st.st_uid != geteuid();
    bool group_write = (st.st_mode & S_IWGRP) && st.st_gid != 0;
    if ((foreign_owner || group_write) && warning && !*warning) {
        char w[1024];
        snprintf(w, sizeof w,
                 "%s can be changed by %s (owner uid %u, group gid %u, mode %04o): make it "
                 "root-owned and not group-writable (chown root %s; chmod g-w %s)",
                 path, foreign_owner ? "another user" : "its group", (unsigned)st.st_uid,
                 (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777), path, path);
        *warning = kvs_strdup(w);
    }
    return 0;
}

/* Reads the whole file (at most CONFIG_MAX_BYTES) into a new NUL-terminated buffer. */
int config_file_read(const char *path, char **out, size_t *outlen, char **warning,
                     kvs_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int rc = -errno;
        kvs_err_set(err, rc, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    int rc = config_file_mode_check(path, fileno(f), warning, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    char *buf = kvs_xmalloc(CONFIG_MAX_BYTES + 2); /* owned; handed to the caller */
    size_t n = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = -EIO;
        kvs_err_set(err, rc, "%s: cannot read", path);
    } else if (n > CONFIG_MAX_BYTES) {
        rc = -EFBIG;
        kvs_err_set(err, rc, "%s: larger than %d bytes", path, CONFIG_MAX_BYTES);
    }
    fclose(f);
    if (rc) {
        explicit_bzero(buf, n); /* it may hold the database password */
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

int config_secret_file_read(const char *path, char **out, kvs_err *err)
{
    *out = NULL;
    char *buf;
    size_t n;
    int rc = config_file_read(path, &buf, &n, NULL, err); /* the same open, mode check and limits */
    if (rc == -ENOENT) {
        kvs_err_clear(err); /* no credential file: the URL comes from elsewhere */
        return 0;
    }
    if (rc) return rc;
    size_t len = n;
    while (len > 0 && strchr("\r\n\t ", buf[len - 1])) buf[--len] = '\0';
    *out = len ? kvs_strdup(buf) : NULL;
    explicit_bzero(buf, n);
    free(buf);
    return 0;
}

const char *config_default_path(void)
{
    return access(KVS_DEFAULT_CONFIG, F_OK) == 0 ? KVS_DEFAULT_CONFIG : NULL;
}

char *config_credential_path(const char *config_path)
{
    const char *path = config_path ? config_path : KVS_DEFAULT_CONFIG;
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = path + dirlen;
    size_t stem = strlen(base);
    if (stem > 5 && !strcmp(base + stem - 5, ".conf")) stem -= 5;
    kvs_buf b;
    kvs_buf_init(&b);
    REQUIRE(kvs_buf_append(&b, path, dirlen) == 0);
    /* The plain unit's credential is "database-url"; an instance NAME.conf has its own. */
    if (!(stem == strlen("kiotviet-sync") && !strncmp(base, "kiotviet-sync", stem)))
        REQUIRE(kvs_buf_append(&b, base, stem) == 0 && kvs_buf_puts(&b, ".") == 0);
    REQUIRE(kvs_buf_puts(&b, "database-url") == 0);
    return kvs_buf_steal(&b);
}

int config_credential_read(const char *config_path, char **url, kvs_err *err)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    char *path;
    if (dir && *dir) {
        size_t n = strlen(dir) + sizeof "/database-url";
        path = kvs_xmalloc(n);
        snprintf(path, n, "%s/database-url", dir);
    } else {
        path = config_credential_path(config_path);
    }
    int rc = config_secret_file_read(path, url, err);
    free(path);
    return rc;
}

kvs_config *config_load_service(const char *path, kvs_err *err)
{
    if (!path) path = config_default_path();
    const char *env = getenv("DATABASE_URL");
    char *url = NULL;
    /* The credential matters only without DATABASE_URL; an unreadable one (the CLI run by a
     * user who may not read root's file) only counts when nothing else gives the URL. */
    kvs_err cred_err;
    kvs_err_clear(&cred_err);
    int cred_rc = env && *env ? 0 : config_credential_read(path, &url, &cred_err);
    kvs_config *c = config_load_with_url(path, url, err);
    if (url) {
        explicit_bzero(url, strlen(url));
        free(url);
    }
    if (!c && cred_rc == -EPERM) {
        *err = cred_err; /* a world-writable credential is refused like the file */
    } else if (!c && cred_rc && strstr(err->msg, "[database] url: not set")) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, "; and %s", cred_err.msg);
    }
    return c;
}
