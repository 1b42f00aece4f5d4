/* config.h — typed run configuration: a schema of "section.name" keys with types, defaults and
 * docs; values from a YAML file (a mapping of sections) and from "--section.name value" command-line
 * overrides, later settings winning; getters by key; the resolved config written back as YAML.
 *
 * File layout:            seed: 42             # top-level key (schema key without a dot)
 *                         optim:               # a section: a mapping of its keys
 *                           lr: 1e-4
 *                           betas: [0.9, 0.999]
 *                         optim.eps: 1e-8      # a dotted key at top level is the same as nested
 *
 * Type rules (file, command line and defaults alike): INT an integer (an integral number such as
 * 1e4 is accepted; 1.5 is not); FLOAT a finite decimal number; BOOL true/false/yes/no/on/off in
 * any case; ENUM one of its choices; STR any scalar; STRLIST a scalar (one element) or a sequence
 * of scalars; FLOATLIST a sequence of numbers. Plain `null`, `~` or an empty value resets a key to
 * "no value" when it is STR, STRLIST or FLOATLIST, or when its default is NULL; for any other
 * key it is an error. Every scalar goes through environment interpolation first: `${VAR}`,
 * `${VAR:-default}` (default when VAR is unset or empty); `$${` is a literal `${`.
 * On the command line every value is read as a YAML scalar or flow sequence ("[0.9, 0.999]"),
 * except STR and ENUM values, which are taken literally ("a: b #1" stays that text) but for the
 * exact words `null` and `~`.
 *
 * Bad input (file or command line) never aborts: it returns DFM_E_ARG (DFM_E_IO for a file that
 * cannot be read) with a message "WHERE: what" — WHERE is "FILE:LINE" or "command line" — that
 * names the key and, for a misspelt key, suggests the close one. A load or set that fails leaves
 * the config as it was. A getter called with a key outside the schema or of another type is a
 * programmer error: it prints the key and aborts (DFM_ASSERT).
 *
 * Not here: nested sections deeper than one level, YAML merge keys ('<<'), anchors across
 * files, includes. Numbers are read and printed in the C locale's format (the programs never
 * call setlocale).
 */
#ifndef DFM_BASE_CONFIG_H
#define DFM_BASE_CONFIG_H
#include <stdint.h>
#include <stdio.h>

typedef enum {
    DFM_CFG_INT,
    DFM_CFG_FLOAT,
    DFM_CFG_BOOL,
    DFM_CFG_STR,
    DFM_CFG_ENUM,
    DFM_CFG_STRLIST,
    DFM_CFG_FLOATLIST
} dfm_cfg_type;

typedef struct {
    const char *key;     /* "section.name", e.g. "optim.lr"; top-level keys have no dot ("seed") */
    dfm_cfg_type type;
    const char *def;     /* default as YAML text ("1e-4", "true", "[0.9, 0.999]", "cosine"); NULL: no default (null / unset) */
    const char *choices; /* ENUM only: "uniform|logit_normal|mode|sigmoid" */
    const char *doc;     /* one line, for --help-config and the saved config's comments */
} dfm_cfg_key;

typedef struct dfm_config dfm_config;

/* A config holding every key's default. The schema is not copied: it must outlive *c. A bad
 * schema (duplicate or malformed key, a key that is also a section, a default that does not
 * parse as its type, an ENUM without choices) returns DFM_E_ARG naming the key. */
int dfm_config_new(dfm_config **c, const dfm_cfg_key *schema, int n);
void dfm_config_free(dfm_config *c);

/* Apply a YAML file (a mapping of sections and top-level keys; at most 16 MiB). Messages say
 * "PATH:LINE: ...". On error nothing is applied. */
int dfm_config_load_file(dfm_config *c, const char *path);
/* The same from text; `name` stands for the file in messages and origins (NULL: "<string>"). */
int dfm_config_load_string(dfm_config *c, const char *yaml, const char *name);

/* Set one key from text as the command line gives it. `key` is "optim.lr" or "--optim.lr" (the
 * spelling messages use); value NULL is null. origin names the source in messages and in
 * dfm_config_origin (NULL: "command line"). On error nothing is applied. */
int dfm_config_set(dfm_config *c, const char *key, const char *value, const char *origin);

/* argv overrides: consumes "--section.key value" and "--section.key=value" pairs (a bare "--a.b"
 * before another "--" argument or the end sets a BOOL true); any argument containing no '.'
 * after "--" (before any '='), any argument not starting with "--", and everything from a lone
 * "--" on is left for the caller. argv[0] is never consumed. Returns the number of arguments
 * consumed or < 0 (the message names the option and "command line"; arguments before the bad
 * one stay applied); compacts argv in place so the caller sees the rest in order (*argc updated,
 * argv[*argc] = NULL). */
int dfm_config_parse_args(dfm_config *c, int *argc, char **argv);

/* Getters. Keys must be in the schema with the getter's type (else abort: programmer error).
 * INT/FLOAT/BOOL without a value (NULL default, never set) read as 0; see dfm_config_has. */
int64_t dfm_config_int(const dfm_config *c, const char *key);
double dfm_config_float(const dfm_config *c, const char *key);
int dfm_config_bool(const dfm_config *c, const char *key);
/* STR and ENUM; NULL when null/unset. The string is owned by c, valid until the key changes. */
const char *dfm_config_str(const dfm_config *c, const char *key);
/* STRLIST/FLOATLIST: the length (0 when null), element i (0 <= i < len, else abort). */
int dfm_config_list_len(const dfm_config *c, const char *key);
const char *dfm_config_list_str(const dfm_config *c, const char *key, int i);
double dfm_config_list_float(const dfm_config *c, const char *key, int i);
/* 1 when the key holds a value (not null / unset), any type. */
int dfm_config_has(const dfm_config *c, const char *key);
/* 1 when the value was given by a file or the command line, not the default. */
int dfm_config_is_set(const dfm_config *c, const char *key);
/* Where the value came from: "default", "FILE:LINE", "command line" (the origin given to set). */
const char *dfm_config_origin(const dfm_config *c, const char *key);

/* The resolved config as YAML that dfm_config_load_* reads back to the same values: top-level
 * keys and sections in schema order (a section at its first key), each key followed by
 * "  # doc". Floats in the shortest text that reads back to the same double, always with a '.'
 * (1.0e-04) so YAML 1.1 readers (PyYAML) see floats; strings double-quoted, `${` written `$${`.
 * Returns 0 or DFM_E_IO. */
int dfm_config_write(const dfm_config *c, FILE *f);
/* dfm_config_write to path.tmp, fsync, rename onto path. */
int dfm_config_save(const dfm_config *c, const char *path);
/* The value of one key as dfm_config_write prints it ("1.0e-04", "\"text\"", "[1, 2]", "null");
 * malloc'd (free()), NULL on out of memory. */
char *dfm_config_value_text(const dfm_config *c, const char *key);

/* Keys whose resolved values differ between a and b (same schema): calls fn (may be NULL) for
 * each, in schema order, with the key and both values as dfm_config_value_text gives them;
 * returns the count, or DFM_E_ARG when the schemas differ. */
int dfm_config_diff(const dfm_config *a, const dfm_config *b,
                    void (*fn)(void *ctx, const char *key, const char *va, const char *vb),
                    void *ctx);

/* Every key: name, type (or its choices), default and doc — for `--help-config`. */
void dfm_config_help(const dfm_cfg_key *schema, int n, FILE *f);

#endif
