/* SPDX-License-Identifier: Apache-2.0 */
/* ca backup and ca restore: the archive's limits, the manifest's set of entries, the tar
 * streams, and the calls between their files. */
#ifndef KWT_CA_BACKUP_INT_H
#define KWT_CA_BACKUP_INT_H

#include "kwt.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#define BK_MAGIC        "keyward-backup 1"
#define BK_MANIFEST     "MANIFEST"
#define BK_MANIFEST_MAX (256u << 20) /* read into memory: ~100 bytes per file */
#define BK_PAX_MAX      (1u << 20)
#define BK_PATH_MAX     4000
#define BK_LINKS_MAX    40 /* symbolic links followed resolving one path (Linux: 40) */
#define BLK             512

typedef struct {
    char type; /* 'f' file, 'd' directory, 'l' symbolic link */
    unsigned mode;
    unsigned long long size;
    char sha[65]; /* files: SHA-256, lower-case hex */
    char *path, *target;
    bool seen; /* restore: the member was in the archive */
} bk_entry;

typedef struct {
    bk_entry *e;
    size_t n, cap;
    size_t *slot; /* open addressing: entry index + 1, 0 for a free slot */
    size_t nslot;
} bk_set;

typedef struct {
    int fd;
    EVP_MD_CTX *md; /* SHA-256 of the archive */
    unsigned long long bytes;
    char buf[1 << 16];
    size_t len;
    int err; /* errno of the first failed write */
} tar_out;

typedef struct {
    int fd;
    const char *file;       /* for messages */
    unsigned long long off; /* bytes read */
    EVP_MD_CTX *md;         /* SHA-256 of the archive */
    char why[1024];         /* why it is refused */
} tar_in;

typedef struct {
    char flag; /* the typeflag */
    char *name, *link;
    unsigned long long size;
    unsigned mode;
} tar_mem;

/* ca_backup_set.c */
bk_entry *bk_set_find(const bk_set *s, const char *path);
bk_entry *bk_set_add(bk_set *s, char type, const char *path);
void bk_set_free(bk_set *s);
const char *bk_type_name(char t);
void bk_esc(kwt_buf *b, const char *s);
char *bk_unesc(const char *s);
const char *bk_shown(const char *s);
const char *bk_path_problem(const char *p);
const char *bk_entry_problem(const bk_set *s, const bk_entry *e);
char *bk_abs_path(const char *path);
char *bk_dir_part(const char *path);
bool bk_is_under(const char *path, const char *dir);

/* ca_backup_manifest.c */
void bk_md_final_hex(EVP_MD_CTX *md, char out[65]);
bool bk_sha256_hex(const void *data, size_t len, char out[65]);
char *bk_manifest_text(const bk_set *s, const char *dir, const char *state);
const char *bk_manifest_parse(char *text, bk_set *s, char *why, size_t wl);

/* ca_backup_tar.c */
/* A reading error: the reason in t->why; returns -1. */
int tar_refuse(tar_in *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tar_out_flush(tar_out *o);
void tar_out_write(tar_out *o, const void *data, size_t n);
void tar_out_pad(tar_out *o, unsigned long long size);
void tar_header(tar_out *o, char type, const char *name, const char *link, unsigned mode,
                unsigned long long size, long long mtime);
int tar_in_read(tar_in *t, void *buf, size_t n);
int tar_read_pad(tar_in *t, unsigned long long size);
int tar_next(tar_in *t, tar_mem *m);
void tar_mem_free(tar_mem *m);
const char *tar_flag_problem(const tar_mem *m);

#endif
