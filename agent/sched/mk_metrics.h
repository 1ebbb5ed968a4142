/* SPDX-License-Identifier: MIT */
/*
 * mk_metrics.h - the agent's counters, gauges and push-latency histogram,
 * rendered as OpenMetrics (or Prometheus 0.0.4) text.
 *
 * A registry holds metric families (name, type, help) and, per family,
 * series told apart by up to three labels: account, folder and kind. The
 * number of series is bounded (default 4096): an update that would create
 * one more is dropped and counted in mailkeep_metrics_series_dropped_total,
 * so a hostile server (thousands of folder names) cannot grow memory.
 * Histograms share one bucket layout, in seconds:
 * 0.005 0.01 0.02 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf.
 *
 * Single-threaded: use a registry from the loop thread only. No I/O, no
 * libuv. Numbers are printed with printf, so LC_NUMERIC must stay "C".
 */
#ifndef MK_METRICS_H
#define MK_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mk_buf.h"

#define MK_METRICS_MAX_SERIES 4096
#define MK_METRICS_MAX_FAMILIES 64
/* A longer label value is refused (and the update dropped). */
#define MK_METRICS_LABEL_MAX 512
#define MK_METRICS_HIST_BUCKETS 11 /* plus +Inf */

enum mk_metrics_type {
	MK_METRICS_COUNTER = 1,
	MK_METRICS_GAUGE,
	MK_METRICS_HISTOGRAM,
};

enum mk_metrics_format {
	/* application/openmetrics-text; version=1.0.0: counter families
	 * are named without "_total", and the text ends with "# EOF" */
	MK_METRICS_OPENMETRICS = 0,
	/* text/plain; version=0.0.4 */
	MK_METRICS_PROMETHEUS,
};

/* Label values; NULL or "" means the label is absent. Rendered in this
 * order. The strings are copied when a series is created. */
struct mk_metrics_labels {
	const char *account;
	const char *folder;
	const char *kind;
};

struct mk_metrics;

/* A new, empty registry; max_series 0 means MK_METRICS_MAX_SERIES. */
struct mk_metrics *mk_metrics_new(size_t max_series);
/* Frees *m and sets it to NULL; NULL is fine. */
void mk_metrics_free(struct mk_metrics **m);

/* Declares a family. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*, and a
 * counter's name must end in "_total". `help` is copied. Declaring the same
 * name again with the same type is a no-op.
 * Returns: 0; MK_EINVAL (bad name, or the name exists with another type);
 * MK_ETOOBIG (more than MK_METRICS_MAX_FAMILIES families). */
int mk_metrics_define(struct mk_metrics *m, const char *name, enum mk_metrics_type type, const char *help);

/* Declares mailkeep's standard families (the names below). Cannot fail. */
void mk_metrics_define_std(struct mk_metrics *m);
#define MK_METRIC_MESSAGES_STORED "mailkeep_messages_stored_total" /* account folder */
#define MK_METRIC_BYTES_STORED "mailkeep_bytes_stored_total"       /* account folder */
#define MK_METRIC_SYNCS "mailkeep_syncs_total"                     /* account folder kind=full|incremental|poll|push */
#define MK_METRIC_ERRORS "mailkeep_errors_total"                   /* account kind=temp|wait|final|auth|... */
#define MK_METRIC_RECONNECTS "mailkeep_reconnects_total"           /* account */
#define MK_METRIC_IDLE_EVENTS "mailkeep_idle_events_total"         /* account folder kind=exists|expunge|fetch|refresh */
#define MK_METRIC_THROTTLED "mailkeep_throttled_total"             /* account */
#define MK_METRIC_CONNECTIONS "mailkeep_connections"               /* account (gauge) */
#define MK_METRIC_IDLING "mailkeep_idling_folders"                 /* account (gauge) */
#define MK_METRIC_ACCOUNT_UP "mailkeep_account_up"                 /* account (gauge 0/1) */
#define MK_METRIC_LAST_SYNC "mailkeep_last_sync_timestamp_seconds" /* account folder (gauge) */
#define MK_METRIC_PUSH_LATENCY "mailkeep_push_latency_seconds"     /* account (histogram) */

/* Adds n to a counter series, creating it at 0 first.
 * Returns: 0; MK_ENOTFOUND (no such family); MK_EINVAL (family of another
 * type); MK_ETOOBIG (series table full or label too long: dropped and
 * counted). Callers may ignore the result. */
int mk_metrics_counter_add(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels,
			   uint64_t n);
/* Sets / adds to a gauge series. Returns: as mk_metrics_counter_add(). */
int mk_metrics_gauge_set(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels, double v);
int mk_metrics_gauge_add(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels,
			 double delta);
/* Records one observation in seconds; a negative one counts as 0.
 * Returns: as mk_metrics_counter_add(); MK_EINVAL also for NaN. */
int mk_metrics_hist_observe(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels,
			    double seconds);

/* Updates dropped because the table was full or a label too long. */
uint64_t mk_metrics_dropped(const struct mk_metrics *m);

/* Appends the OpenMetrics text (ending in "# EOF\n") to out. Families
 * appear in definition order, series in creation order; families without
 * series are left out. Returns: 0, MK_ETOOBIG (out's max reached; out then
 * holds a truncated text). */
int mk_metrics_render(const struct mk_metrics *m, struct mk_buf *out);
/* Same, in a chosen format. Returns: as mk_metrics_render(). */
int mk_metrics_render_format(const struct mk_metrics *m, enum mk_metrics_format format, struct mk_buf *out);

#endif
