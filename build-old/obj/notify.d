build-old/obj/notify.o: src/notify.c include/notify.h include/util.h \
 include/log.h
include/notify.h:
include/util.h:
include/log.h:
