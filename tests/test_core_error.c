/* test_core_error.c — statuses, strerror, the per-thread last-error message. */
#include "core/error.h"
#include "qkv.h"
#include "test.h"

#include <pthread.h>

static void *other_thread(void *arg) {
    (void)arg;
    /* A fresh thread starts with no message and its failures don't leak to others. */
    CHECK(qkv_last_error()[0] == '\0');
    qkv__fail(QKV_ERR_IO, "thread message");
    CHECK(strcmp(qkv_last_error(), "thread message") == 0);
    return NULL;
}

int main(void) {
    CHECK(strcmp(qkv_strerror(QKV_OK), "ok") == 0);
    /* every status has its own, non-empty text; unknown values don't crash */
    for (int a = 0; a <= QKV_ERR_PEER; a++) {
        CHECK(qkv_strerror((qkv_status)a)[0] != '\0');
        for (int b = 0; b < a; b++)
            CHECK(strcmp(qkv_strerror((qkv_status)a), qkv_strerror((qkv_status)b)) != 0);
    }
    CHECK(strcmp(qkv_strerror((qkv_status)12345), "unknown status") == 0);
    /* the enum is append-only: these values are ABI */
    CHECK_EQ_INT(QKV_ERR_INVALID_ARG, 1);
    CHECK_EQ_INT(QKV_ERR_NOMEM, 2);
    CHECK_EQ_INT(QKV_ERR_INTERNAL, 8);
    CHECK_EQ_INT(QKV_ERR_INTERRUPTED, 9);
    CHECK_EQ_INT(QKV_ERR_NOT_FINITE, 10);
    CHECK_EQ_INT(QKV_ERR_WRITE, 11);
    CHECK_EQ_INT(QKV_ERR_PEER, 12);

    CHECK(qkv_last_error()[0] == '\0');
    CHECK_EQ_INT(qkv__fail(QKV_ERR_FORMAT, "tensor '%s' at %d", "w", 42), QKV_ERR_FORMAT);
    CHECK(strcmp(qkv_last_error(), "tensor 'w' at 42") == 0);

    pthread_t t;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    CHECK(strcmp(qkv_last_error(), "tensor 'w' at 42") == 0);

    /* long messages are truncated, never overflow */
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    qkv__fail(QKV_ERR_IO, "%s", big);
    CHECK(strlen(qkv_last_error()) < sizeof big);
    qkv_clear_error();
    CHECK(qkv_last_error()[0] == '\0');
    CHECK(strcmp(qkv_version(), QKV_VERSION_STRING) == 0);
    CHECK(strstr(qkv_build_info(), "build") != NULL);
    return test_finish("core_error");
}
