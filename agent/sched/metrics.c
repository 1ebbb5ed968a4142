/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - the registry of mk_metrics.h.
 *
 * Families are a small array searched by name (a few dozen at most).
 * Series live in one array that grows by doubling up to max_series, are
 * found through an open-addressing hash table sized for max_series at a
 * load of at most 1/2, and are chained per family in creation order so
 * rendering is deterministic. Nothing is ever removed, so the table needs
 * no tombstones. Label values are copied into one allocation per series.
 */
#include "mk_metrics.h"
#include "mk_alloc.h"
#include "mk_err.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_NLABELS 3
#define METRICS_DROPPED_NAME "mailkeep_metrics_series_dropped_total"

static const double metrics_bounds[MK_METRICS_HIST_BUCKETS] = {0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
							       0.5,   1,    2.5,  5,    10};
/* le="" values, in the canonical form client libraries print */
static const char *const metrics_le[MK_METRICS_HIST_BUCKETS + 1] = {
	"0.005", "0.01", "0.02", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"};
static const char *const metrics_label_names[METRICS_NLABELS] = {"account", "folder", "kind"};

struct metrics_family {
	char *name;
	char *help;
	enum mk_metrics_type type;
	int32_t first, last; /* series indexes, -1: none */
};

struct metrics_hist {
	uint64_t buckets[MK_METRICS_HIST_BUCKETS + 1]; /* not cumulative; last is +Inf */
	uint64_t count;
	double sum;
};

struct metrics_series {
	uint32_t family;
	int32_t next; /* in the family, -1: last */
	uint64_t hash;
	char *labels[METRICS_NLABELS]; /* into `label_store`; NULL: absent */
	char *label_store;
	union {
		uint64_t counter;
		double gauge;
	} v;
	struct metrics_hist *hist;
};

struct mk_metrics {
	struct metrics_family families[MK_METRICS_MAX_FAMILIES];
	size_t nfamilies;
	struct metrics_series *series;
	size_t nseries, series_cap, max_series;
	int32_t *slots; /* series index + 1; 0: empty */
	size_t nslots;  /* a power of two */
	uint64_t dropped;
};

struct mk_metrics *mk_metrics_new(size_t max_series)
{
	struct mk_metrics *m = mk_xcalloc(1, sizeof(*m));
	m->max_series = max_series > 0 ? max_series : MK_METRICS_MAX_SERIES;
	MK_ASSERT(m->max_series < INT32_MAX / 4);
	m->nslots = 16;
	while (m->nslots < m->max_series * 2)
		m->nslots *= 2;
	m->slots = mk_xcalloc(m->nslots, sizeof(*m->slots));
	return m;
}

void mk_metrics_free(struct mk_metrics **mp)
{
	struct mk_metrics *m = *mp;
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nseries; i++) {
		mk_free(m->series[i].label_store);
		mk_free(m->series[i].hist);
	}
	for (size_t i = 0; i < m->nfamilies; i++) {
		mk_free(m->families[i].name);
		mk_free(m->families[i].help);
	}
	mk_free(m->series);
	mk_free(m->slots);
	mk_free(m);
	*mp = NULL;
}

static bool metrics_name_ok(const char *name)
{
	if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == ':'))
			return false;
	}
	return true;
}

static bool metrics_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n > k && strcmp(s + n - k, suffix) == 0;
}

static struct metrics_family *metrics_family_find(const struct mk_metrics *m, const char *name, uint32_t *idx_r)
{
	for (size_t i = 0; i < m->nfamilies; i++) {
		if (strcmp(m->families[i].name, name) == 0) {
			if (idx_r != NULL)
				*idx_r = (uint32_t)i;
			return (struct metrics_family *)&m->families[i];
		}
	}
	return NULL;
}

int mk_metrics_define(struct mk_metrics *m, const char *name, enum mk_metrics_type type, const char *help)
{
	if (!metrics_name_ok(name) || type < MK_METRICS_COUNTER || type > MK_METRICS_HISTOGRAM)
		return MK_EINVAL;
	if (type == MK_METRICS_COUNTER && !metrics_ends_with(name, "_total"))
		return MK_EINVAL;
	if (strcmp(name, METRICS_DROPPED_NAME) == 0)
		return MK_EINVAL; /* ours */
	struct metrics_family *f = metrics_family_find(m, name, NULL);
	if (f != NULL)
		return f->type == type ? 0 : MK_EINVAL;
	if (m->nfamilies >= MK_METRICS_MAX_FAMILIES)
		return MK_ETOOBIG;
	f = &m->families[m->nfamilies++];
	f->name = mk_xstrdup(name);
	f->help = mk_xstrdup(help != NULL ? help : "");
	f->type = type;
	f->first = f->last = -1;
	return 0;
}

void mk_metrics_define_std(struct mk_metrics *m)
{
	static const struct {
		const char *name;
		enum mk_metrics_type type;
		const char *help;
	} std[] = {
		{MK_METRIC_MESSAGES_STORED, MK_METRICS_COUNTER, "Messages committed to the store."},
		{MK_METRIC_BYTES_STORED, MK_METRICS_COUNTER, "Raw bytes of the messages committed to the store."},
		{MK_METRIC_SYNCS, MK_METRICS_COUNTER, "Completed folder synchronisations."},
		{MK_METRIC_ERRORS, MK_METRICS_COUNTER, "Errors, by kind."},
		{MK_METRIC_RECONNECTS, MK_METRICS_COUNTER, "Reconnects after a lost or failed connection."},
		{MK_METRIC_IDLE_EVENTS, MK_METRICS_COUNTER, "Untagged responses received while in IDLE."},
		{MK_METRIC_THROTTLED, MK_METRICS_COUNTER, "Server throttling replies (Suggested Backoff Time)."},
		{MK_METRIC_CONNECTIONS, MK_METRICS_GAUGE, "Open IMAP connections."},
		{MK_METRIC_IDLING, MK_METRICS_GAUGE, "Folders currently in IDLE."},
		{MK_METRIC_ACCOUNT_UP, MK_METRICS_GAUGE, "1 if the account is connected and healthy, else 0."},
		{MK_METRIC_LAST_SYNC, MK_METRICS_GAUGE, "Unix time of the last completed sync."},
		{MK_METRIC_PUSH_LATENCY, MK_METRICS_HISTOGRAM,
		 "Seconds from an IDLE EXISTS to the durable commit of the new messages."},
	};
	for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++) {
		int ret = mk_metrics_define(m, std[i].name, std[i].type, std[i].help);
		MK_ASSERT(ret == 0);
	}
}

/* Absent labels are NULL, "" counts as absent. */
static void metrics_label_values(const struct mk_metrics_labels *labels, const char *v[METRICS_NLABELS])
{
	v[0] = labels != NULL ? labels->account : NULL;
	v[1] = labels != NULL ? labels->folder : NULL;
	v[2] = labels != NULL ? labels->kind : NULL;
	for (int i = 0; i < METRICS_NLABELS; i++)
		if (v[i] != NULL && v[i][0] == '\0')
			v[i] = NULL;
}

/* FNV-1a over the family index and the labels (absent and "" differ from
 * each other only through the separator bytes; both map to absent). */
static uint64_t metrics_hash(uint32_t family, const char *v[METRICS_NLABELS])
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (int i = 0; i < 4; i++) {
		h ^= (family >> (8 * i)) & 0xff;
		h *= 0x100000001b3ull;
	}
	for (int i = 0; i < METRICS_NLABELS; i++) {
		for (const char *p = v[i] != NULL ? v[i] : ""; *p != '\0'; p++) {
			h ^= (uint8_t)*p;
			h *= 0x100000001b3ull;
		}
		h ^= v[i] != NULL ? 0xfe : 0xff;
		h *= 0x100000001b3ull;
	}
	return h;
}

static bool metrics_labels_equal(const struct metrics_series *s, const char *v[METRICS_NLABELS])
{
	for (int i = 0; i < METRICS_NLABELS; i++) {
		if ((s->labels[i] == NULL) != (v[i] == NULL))
			return false;
		if (v[i] != NULL && strcmp(s->labels[i], v[i]) != 0)
			return false;
	}
	return true;
}

/* Finds or creates the series. Returns: 0, MK_ENOTFOUND, MK_EINVAL (type),
 * MK_ETOOBIG (dropped). */
static int metrics_series_get(struct mk_metrics *m, const char *name, enum mk_metrics_type type,
			      const struct mk_metrics_labels *labels, struct metrics_series **s_r)
{
	uint32_t fidx;
	struct metrics_family *f = metrics_family_find(m, name, &fidx);
	if (f == NULL)
		return MK_ENOTFOUND;
	if (f->type != type)
		return MK_EINVAL;
	const char *v[METRICS_NLABELS];
	metrics_label_values(labels, v);
	uint64_t h = metrics_hash(fidx, v);
	size_t mask = m->nslots - 1;
	size_t i = (size_t)h & mask;
	for (; m->slots[i] != 0; i = (i + 1) & mask) {
		struct metrics_series *s = &m->series[m->slots[i] - 1];
		if (s->hash == h && s->family == fidx && metrics_labels_equal(s, v)) {
			*s_r = s;
			return 0;
		}
	}
	size_t len[METRICS_NLABELS], total = 0;
	for (int k = 0; k < METRICS_NLABELS; k++) {
		len[k] = v[k] != NULL ? strlen(v[k]) : 0;
		if (len[k] > MK_METRICS_LABEL_MAX) {
			m->dropped++;
			return MK_ETOOBIG;
		}
		total += v[k] != NULL ? len[k] + 1 : 0;
	}
	if (m->nseries >= m->max_series) {
		m->dropped++;
		return MK_ETOOBIG;
	}
	if (m->nseries == m->series_cap) {
		size_t cap = m->series_cap ? m->series_cap * 2 : 32;
		if (cap > m->max_series)
			cap = m->max_series;
		m->series = mk_xrealloc(m->series, cap * sizeof(*m->series));
		m->series_cap = cap;
	}
	int32_t sidx = (int32_t)m->nseries++;
	struct metrics_series *s = &m->series[sidx];
	memset(s, 0, sizeof(*s));
	s->family = fidx;
	s->next = -1;
	s->hash = h;
	if (total > 0) {
		char *p = s->label_store = mk_xmalloc(total);
		for (int k = 0; k < METRICS_NLABELS; k++) {
			if (v[k] == NULL)
				continue;
			memcpy(p, v[k], len[k] + 1);
			s->labels[k] = p;
			p += len[k] + 1;
		}
	}
	if (type == MK_METRICS_HISTOGRAM)
		s->hist = mk_xcalloc(1, sizeof(*s->hist));
	m->slots[i] = sidx + 1;
	if (f->last >= 0)
		m->series[f->last].next = sidx;
	else
		f->first = sidx;
	f->last = sidx;
	*s_r = s;
	return 0;
}

int mk_metrics_counter_add(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels,
			   uint64_t n)
{
	struct metrics_series *s;
	int ret = metrics_series_get(m, name, MK_METRICS_COUNTER, labels, &s);
	if (ret < 0)
		return ret;
	s->v.counter = n > UINT64_MAX - s->v.counter ? UINT64_MAX : s->v.counter + n;
	return 0;
}

int mk_metrics_gauge_set(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels, double v)
{
	struct metrics_series *s;
	int ret = metrics_series_get(m, name, MK_METRICS_GAUGE, labels, &s);
	if (ret < 0)
		return ret;
	s->v.gauge = v;
	return 0;
}

int mk_metrics_gauge_add(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels,
			 double delta)
{
	struct metrics_series *s;
	int ret = metrics_series_get(m, name, MK_METRICS_GAUGE, labels, &s);
	if (ret < 0)
		return ret;
	s->v.gauge += delta;
	return 0;
}

int mk_metrics_hist_observe(struct mk_metrics *m, const char *name, const struct mk_metrics_labels *labels,
			    double seconds)
{
	if (isnan(seconds))
		return MK_EINVAL;
	struct metrics_series *s;
	int ret = metrics_series_get(m, name, MK_METRICS_HISTOGRAM, labels, &s);
	if (ret < 0)
		return ret;
	if (seconds < 0)
		seconds = 0;
	size_t b = 0;
	while (b < MK_METRICS_HIST_BUCKETS && seconds > metrics_bounds[b])
		b++;
	s->hist->buckets[b]++;
	s->hist->count++;
	s->hist->sum += seconds;
	return 0;
}

uint64_t mk_metrics_dropped(const struct mk_metrics *m)
{
	return m->dropped;
}

/* --- rendering --- */

/* Shortest text that reads back as the same double. */
static int metrics_put_double(struct mk_buf *out, double v)
{
	if (isnan(v))
		return mk_buf_append_str(out, "NaN");
	if (isinf(v))
		return mk_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
	char tmp[40];
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	return mk_buf_append_str(out, tmp);
}

/* HELP text: backslash and newline are escaped in both formats, the
 * double quote in OpenMetrics only. */
static int metrics_put_help(struct mk_buf *out, enum mk_metrics_format format, const char *s)
{
	int ret = 0;
	for (const char *p = s; *p != '\0' && ret == 0; p++) {
		if (*p == '\\')
			ret = mk_buf_append_str(out, "\\\\");
		else if (*p == '"' && format == MK_METRICS_OPENMETRICS)
			ret = mk_buf_append_str(out, "\\\"");
		else if (*p == '\n')
			ret = mk_buf_append_str(out, "\\n");
		else
			ret = mk_buf_append(out, p, 1);
	}
	return ret;
}

/* A label value: backslash, double quote and newline are escaped. */
static int metrics_put_label_value(struct mk_buf *out, const char *s)
{
	int ret = 0;
	for (const char *p = s; *p != '\0' && ret == 0; p++) {
		if (*p == '\\')
			ret = mk_buf_append_str(out, "\\\\");
		else if (*p == '"')
			ret = mk_buf_append_str(out, "\\\"");
		else if (*p == '\n')
			ret = mk_buf_append_str(out, "\\n");
		else
			ret = mk_buf_append(out, p, 1);
	}
	return ret;
}

/* "name{labels,le="x"} " (braces only when there are labels). */
static int metrics_put_sample_name(struct mk_buf *out, const char *name, const char *suffix,
				   const struct metrics_series *s, const char *le)
{
	int ret = mk_buf_append_str(out, name);
	if (ret == 0 && suffix != NULL)
		ret = mk_buf_append_str(out, suffix);
	bool any = false;
	for (int k = 0; k < METRICS_NLABELS && ret == 0; k++) {
		if (s->labels[k] == NULL)
			continue;
		ret = mk_buf_printf(out, "%s%s=\"", any ? "," : "{", metrics_label_names[k]);
		if (ret == 0)
			ret = metrics_put_label_value(out, s->labels[k]);
		if (ret == 0)
			ret = mk_buf_append_str(out, "\"");
		any = true;
	}
	if (ret == 0 && le != NULL) {
		ret = mk_buf_printf(out, "%sle=\"%s\"", any ? "," : "{", le);
		any = true;
	}
	if (ret == 0)
		ret = mk_buf_append_str(out, any ? "} " : " ");
	return ret;
}

static int metrics_put_meta(struct mk_buf *out, enum mk_metrics_format format, const char *name, const char *type,
			    const char *help)
{
	/* OpenMetrics names a counter family without its "_total" */
	size_t n = strlen(name);
	if (format == MK_METRICS_OPENMETRICS && strcmp(type, "counter") == 0 && metrics_ends_with(name, "_total"))
		n -= strlen("_total");
	int ret = mk_buf_printf(out, "# HELP %.*s ", (int)n, name);
	if (ret == 0)
		ret = metrics_put_help(out, format, help);
	if (ret == 0)
		ret = mk_buf_printf(out, "\n# TYPE %.*s %s\n", (int)n, name, type);
	return ret;
}

static int metrics_render_family(const struct mk_metrics *m, const struct metrics_family *f,
				 enum mk_metrics_format format, struct mk_buf *out)
{
	static const char *const type_names[] = {"", "counter", "gauge", "histogram"};
	int ret = metrics_put_meta(out, format, f->name, type_names[f->type], f->help);
	for (int32_t i = f->first; i >= 0 && ret == 0; i = m->series[i].next) {
		const struct metrics_series *s = &m->series[i];
		switch (f->type) {
		case MK_METRICS_COUNTER:
			ret = metrics_put_sample_name(out, f->name, NULL, s, NULL);
			if (ret == 0)
				ret = mk_buf_printf(out, "%" PRIu64 "\n", s->v.counter);
			break;
		case MK_METRICS_GAUGE:
			ret = metrics_put_sample_name(out, f->name, NULL, s, NULL);
			if (ret == 0)
				ret = metrics_put_double(out, s->v.gauge);
			if (ret == 0)
				ret = mk_buf_append_str(out, "\n");
			break;
		case MK_METRICS_HISTOGRAM: {
			uint64_t cum = 0;
			for (size_t b = 0; b <= MK_METRICS_HIST_BUCKETS && ret == 0; b++) {
				cum += s->hist->buckets[b];
				ret = metrics_put_sample_name(out, f->name, "_bucket", s, metrics_le[b]);
				if (ret == 0)
					ret = mk_buf_printf(out, "%" PRIu64 "\n", cum);
			}
			if (ret == 0)
				ret = metrics_put_sample_name(out, f->name, "_count", s, NULL);
			if (ret == 0)
				ret = mk_buf_printf(out, "%" PRIu64 "\n", s->hist->count);
			if (ret == 0)
				ret = metrics_put_sample_name(out, f->name, "_sum", s, NULL);
			if (ret == 0)
				ret = metrics_put_double(out, s->hist->sum);
			if (ret == 0)
				ret = mk_buf_append_str(out, "\n");
			break;
		}
		default:
			MK_ASSERT(!"unknown metric type");
		}
	}
	return ret;
}

int mk_metrics_render_format(const struct mk_metrics *m, enum mk_metrics_format format, struct mk_buf *out)
{
	int ret = 0;
	for (size_t i = 0; i < m->nfamilies && ret == 0; i++)
		if (m->families[i].first >= 0)
			ret = metrics_render_family(m, &m->families[i], format, out);
	if (ret == 0)
		ret = metrics_put_meta(out, format, METRICS_DROPPED_NAME, "counter",
				       "Metric updates dropped: too many series or a label too long.");
	if (ret == 0)
		ret = mk_buf_printf(out, "%s %" PRIu64 "\n", METRICS_DROPPED_NAME, m->dropped);
	if (ret == 0 && format == MK_METRICS_OPENMETRICS)
		ret = mk_buf_append_str(out, "# EOF\n");
	return ret;
}

int mk_metrics_render(const struct mk_metrics *m, struct mk_buf *out)
{
	return mk_metrics_render_format(m, MK_METRICS_OPENMETRICS, out);
}
