/* test_prompt_clean.c — dfm_prompt_clean against diffusers' Wan prompt_clean without ftfy
 * (html.unescape twice, strip, regex \\s+ -> " ", strip): the expected strings were printed by
 * Python 3.11 (html, regex 2026.11.19) from the inputs below. */
#include "test.h"
#include "text/prompt_clean.h"

#include <stdlib.h>
#include <string.h>

TEST(prompt_clean_matches_python)
{
    static const char *const cases[][2] = {
        {"a red fox", "a red fox"},
        {"  a  red\x09""fox \x0a""", "a red fox"},
        {"a&amp;amp;b   c ", "a&b c"},
        {"&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b>"},
        {"x &ampx; y", "x &x; y"},
        {"caf&eacute; &#233; &#xe9;", "caf\xc3""\xa9"" \xc3""\xa9"" \xc3""\xa9"""},
        {"&#128; &#0; &#x110000; &#55296;", "\xe2""\x82""\xac"" \xef""\xbf""\xbd"" \xef""\xbf""\xbd"" \xef""\xbf""\xbd"""},
        {"dash&ndash;dash &ndash no semi", "dash\xe2""\x80""\x93""dash &ndash no semi"},
        {"&nbsp;lead\xc2""\xa0""nbsp\xe3""\x80""\x80""ideo\xe2""\x80""\x83""em", "lead nbsp ideo em"},
        {"&unknown; &; &#; &#x;", "&unknown; &; &#; &#x;"},
        {"tab\x1c""fs", "tab\x1c""fs"},
        /* str.strip() takes U+001C..U+001F at the ends (the regex's \s does not, inside) */
        {"\x1c""abc\x1f", "abc"},
        {"  \x1c"" a \x1d"" ", "a"},
        {"a\x1c"" b", "a\x1c"" b"},
        {"\x1c", ""},
        {" \x1c""\xc2""\xa0""x\xe3""\x80""\x80""\x1f""\xc2""\x85", "x"},
        {"\xe2""\x80""\xa8""\x1e""q\x1e""\xe2""\x80""\xa8", "q"},
        {"&amp", "&"},
        {"&quot;quoted&quot; it&apos;s", "\"quoted\" it's"},
        {"\xc2""\x85""nel\xe2""\x80""\xa8""ls", "nel ls"},
        {"&AMP; &Amp;", "& &Amp;"},
        {"a&copy2024", "a\xc2""\xa9""2024"},
        {"&#39;x&#39;", "'x'"},
        {"&lt&gt", "<>"},
        {"emoji \xf0""\x9f""\x98""\x80""  two", "emoji \xf0""\x9f""\x98""\x80"" two"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *o = dfm_prompt_clean(cases[i][0], strlen(cases[i][0]));
        CHECK(o != NULL);
        if (!o) continue;
        if (strcmp(o, cases[i][1])) fprintf(stderr, "  case %zu: got '%s', want '%s'\n", i, o, cases[i][1]);
        CHECK_STR(o, cases[i][1]);
        free(o);
    }
}
