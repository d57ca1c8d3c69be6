// SPDX-License-Identifier: GPL-2.0
/*
 * CO-RE against module BTF: struct ovl_fs exists only in overlay's BTF, struct p9_client
 * in each of 9pnet's, 9p's and 9pnet_virtio's; task_struct and enum nf_nat_manip_type are vmlinux types
 * -- the latter only as an empty forward declaration; nf_conntrack's BTF has the full
 * enum, which must NOT be consulted because vmlinux has a candidate (libbpf's rule), so
 * NF_NAT_MANIP_DST does not exist for CO-RE.  The loader's values land in .bss; the test compares them
 * with the BTF in /sys/kernel/btf.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "module_common.h"

int ovl_exists = -1, ovl_size = -1, ovl_id = -1;
int ovl_layers_off = -1, ovl_cred_off = -1, ovl_errseq_off = -1;
int ovl_numdatalayer_exists = -1, ovl_bogus_exists = -1;
int p9_msize_off = -1, p9_name_off = -1, p9_name_size = -1, p9_size = -1;
int task_pid_off = -1, task_id = -1;
int manip_id = -1, manip_dst_exists = -1;

SEC("syscall")
int module_core(void *ctx)
{
	ovl_exists = bpf_core_type_exists(struct ovl_fs___tk);
	ovl_size = bpf_core_type_size(struct ovl_fs___tk);
	ovl_id = bpf_core_type_id_kernel(struct ovl_fs___tk);
	ovl_layers_off = bpf_core_field_offset(struct ovl_fs___tk, layers);
	ovl_cred_off = bpf_core_field_offset(struct ovl_fs___tk, creator_cred);
	ovl_errseq_off = bpf_core_field_offset(struct ovl_fs___tk, errseq);
	ovl_numdatalayer_exists = bpf_core_field_exists(struct ovl_fs___tk, numdatalayer);
	ovl_bogus_exists = bpf_core_field_exists(struct ovl_fs___tk, tracekit_no_such_member);

	p9_msize_off = bpf_core_field_offset(struct p9_client___tk, msize);
	p9_name_off = bpf_core_field_offset(struct p9_client___tk, name);
	p9_name_size = bpf_core_field_size(struct p9_client___tk, name);
	p9_size = bpf_core_type_size(struct p9_client___tk);

	task_pid_off = bpf_core_field_offset(struct task_struct, pid);
	task_id = bpf_core_type_id_kernel(struct task_struct);
	manip_id = bpf_core_type_id_kernel(enum nf_nat_manip_type);
	manip_dst_exists = bpf_core_enum_value_exists(enum nf_nat_manip_type, NF_NAT_MANIP_DST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
