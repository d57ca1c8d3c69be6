/* Shared preamble of the CO-RE conformance objects: they are built without vmlinux.h
 * (use_vmlinux_h=False), once against the "local" type definitions and once with
 * -DTARGET, whose .BTF then plays the kernel's BTF. */
#pragma once
typedef unsigned long long __u64;
typedef unsigned int __u32;
typedef unsigned short __u16;
typedef unsigned char __u8;
typedef long long __s64;
typedef int __s32;
typedef short __s16;
typedef signed char __s8;
typedef __u32 __wsum;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* field-info kinds by number (bpf_core_read.h has no wrapper for all of them) */
#define CORE_FIELD(field, kind) __builtin_preserve_field_info(field, kind)
#define K_BYTE_OFFSET 0
#define K_BYTE_SIZE 1
#define K_EXISTS 2
#define K_SIGNED 3
#define K_LSHIFT 4
#define K_RSHIFT 5

#ifdef TARGET
/* The target build only has to carry the target types in its BTF. */
#define ANCHOR(type, name) type name##_anchor SEC(".data.anchors");
#else
#define ANCHOR(type, name)
#endif

#define PAC __attribute__((preserve_access_index))
