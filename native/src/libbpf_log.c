/* The libbpf log capture: libbpf's warnings kept for the errors ambit_bpf throws. */
#include "glue.h"

#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * libbpf reports why a load failed (the verifier's log above all) only through its print callback.
 * Keep the newest warnings so the error thrown to JavaScript can carry them instead of stderr.
 */
static char log_buf[16384];
static size_t log_len;

static int log_capture(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	if (level != LIBBPF_WARN)
		return 0;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n <= 0)
		return 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (log_len + (size_t)n >= sizeof(log_buf)) {
		size_t keep = sizeof(log_buf) / 2;

		memmove(log_buf, log_buf + log_len - keep, keep);
		log_len = keep;
	}
	memcpy(log_buf + log_len, line, (size_t)n);
	log_len += (size_t)n;
	log_buf[log_len] = '\0';
	return n;
}

void log_capture_install(void)
{
	libbpf_set_print(log_capture);
}

void log_reset(void)
{
	log_len = 0;
	log_buf[0] = '\0';
}

const char *log_tail(void)
{
	while (log_len && (log_buf[log_len - 1] == '\n' || log_buf[log_len - 1] == ' '))
		log_buf[--log_len] = '\0';
	/* The end of the verifier log says why; 3 KiB of it fits an error message. */
	return log_len > 3072 ? log_buf + log_len - 3072 : log_buf;
}
