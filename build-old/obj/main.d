build-old/obj/main.o: src/main.c /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/config.h include/util.h \
 include/ctl.h include/explain.h include/config.h include/http.h \
 include/log.h include/mapping.h include/jewel.h include/notify.h \
 include/scheduler.h include/http.h include/store.h include/db.h \
 include/mapping.h include/version.h
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/config.h:
include/util.h:
include/ctl.h:
include/explain.h:
include/config.h:
include/http.h:
include/log.h:
include/mapping.h:
include/jewel.h:
include/notify.h:
include/scheduler.h:
include/http.h:
include/store.h:
include/db.h:
include/mapping.h:
include/version.h:
