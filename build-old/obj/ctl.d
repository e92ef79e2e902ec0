build-old/obj/ctl.o: src/ctl.c include/ctl.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/backoff.h \
 include/config.h include/util.h include/db.h include/store.h \
 include/db.h include/mapping.h include/jewel.h include/config.h \
 include/util.h
include/ctl.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/backoff.h:
include/config.h:
include/util.h:
include/db.h:
include/store.h:
include/db.h:
include/mapping.h:
include/jewel.h:
include/config.h:
include/util.h:
