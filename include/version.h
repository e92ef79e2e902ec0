#ifndef KVS_VERSION_H
#define KVS_VERSION_H
#define KVS_VERSION "0.1.0"
#endif
