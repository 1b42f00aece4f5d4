/* json.h — JSON output helpers on top of cJSON (which prints with tabs): two-space indentation
 * for files people read (index.json). Parsing is plain cJSON. */
#ifndef DFM_BASE_JSON_H
#define DFM_BASE_JSON_H
typedef struct cJSON cJSON;

/* Pretty-print with two-space indentation and ": " separators, ending in a newline.
 * Returns a malloc'd string (free()), or NULL on out of memory. */
char *dfm_json_pretty(const cJSON *j);

#endif
