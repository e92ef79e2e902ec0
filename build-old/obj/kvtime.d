build-old/obj/kvtime.o: src/kvtime.c include/kvtime.h include/util.h
include/kvtime.h:
include/util.h:
