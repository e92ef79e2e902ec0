build-old/obj/log.o: src/log.c include/log.h include/util.h
include/log.h:
include/util.h:
