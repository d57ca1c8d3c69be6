/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* funccount: shared constants of the BPF side and its declaration. */
#ifndef __TRACEKIT_FUNCCOUNT_H
#define __TRACEKIT_FUNCCOUNT_H

/* BCC's BCC_PROBE_LIMIT is 1000; the array is sized for a bit more (user space may shrink it) */
#define FUNCCOUNT_MAX_PROBES 1024

#endif /* __TRACEKIT_FUNCCOUNT_H */
