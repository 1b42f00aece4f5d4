/* json.c — see json.h. cJSON escapes tabs inside strings, so every raw tab in its formatted
 * output is layout and can be rewritten safely. */
#include "base/json.h"
#include "base/buf.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

char *dfm_json_pretty(const cJSON *j)
{
    char *txt = cJSON_Print(j);
    if (!txt) return NULL;
    dfm_buf b = {0};
    int rc = 0, line_start = 1;
    for (const char *p = txt; *p && !rc; p++) {
        if (*p == '\t') rc = dfm_buf_append(&b, line_start ? "  " : " ", line_start ? 2 : 1);
        else {
            rc = dfm_buf_append(&b, p, 1);
            line_start = *p == '\n';
        }
    }
    if (!rc) rc = dfm_buf_append(&b, "\n", 1);
    cJSON_free(txt);
    if (rc) {
        dfm_buf_free(&b);
        return NULL;
    }
    return (char *)dfm_buf_take(&b, NULL);
}
