build-old/obj/config.o: src/config.c include/config.h include/util.h \
 include/db.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/jewel.h include/log.h
include/config.h:
include/util.h:
include/db.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/jewel.h:
include/log.h:
