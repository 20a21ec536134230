/* test_core_tensor.c — qkv_tensor views: init (strides, validation, overflow), numel,
 * is_contiguous. */
#include "qkv.h"
#include "test.h"

#include <stdint.h>

static void test_init(void) {
    qkv_tensor t;
    float buf[24];
    const int64_t shape[3] = {2, 3, 4};
    CHECK_OK(qkv_tensor_init(&t, QKV_DTYPE_F32, 3, shape, buf));
    CHECK_EQ_INT(t.dtype, QKV_DTYPE_F32);
    CHECK_EQ_INT(t.ndim, 3);
    CHECK(t.data == buf);
    CHECK_EQ_INT(t.shape[0], 2);
    CHECK_EQ_INT(t.shape[2], 4);
    CHECK_EQ_INT(t.strides[0], 12);
    CHECK_EQ_INT(t.strides[1], 4);
    CHECK_EQ_INT(t.strides[2], 1);
    CHECK_EQ_INT(qkv_tensor_numel(&t), 24);
    CHECK(qkv_tensor_is_contiguous(&t));

    /* a scalar */
    CHECK_OK(qkv_tensor_init(&t, QKV_DTYPE_BF16, 0, NULL, NULL));
    CHECK_EQ_INT(t.ndim, 0);
    CHECK_EQ_INT(qkv_tensor_numel(&t), 1);
    CHECK(qkv_tensor_is_contiguous(&t));

    /* the maximum rank */
    const int64_t ones[QKV_MAX_DIMS] = {1, 2, 1, 2, 1, 2, 1, 2};
    CHECK_OK(qkv_tensor_init(&t, QKV_DTYPE_I8, QKV_MAX_DIMS, ones, NULL));
    CHECK_EQ_INT(qkv_tensor_numel(&t), 16);
    CHECK_EQ_INT(t.strides[QKV_MAX_DIMS - 1], 1);
    CHECK_EQ_INT(t.strides[0], 16);

    /* empty: zero dims count as 1 in strides */
    const int64_t empty[3] = {4, 0, 5};
    CHECK_OK(qkv_tensor_init(&t, QKV_DTYPE_F16, 3, empty, NULL));
    CHECK_EQ_INT(qkv_tensor_numel(&t), 0);
    CHECK_EQ_INT(t.strides[0], 5);
    CHECK_EQ_INT(t.strides[1], 5);
    CHECK(qkv_tensor_is_contiguous(&t));
}

static void test_init_errors(void) {
    qkv_tensor t;
    memset(&t, 0x5a, sizeof t);
    qkv_tensor before = t;
    const int64_t shape[2] = {2, 3};
    CHECK_STATUS(qkv_tensor_init(NULL, QKV_DTYPE_F32, 2, shape, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_F32, -1, shape, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_F32, QKV_MAX_DIMS + 1, shape, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_F32, 2, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_COUNT_, 2, shape, NULL), QKV_ERR_INVALID_ARG);
    const int64_t neg[2] = {2, -1};
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_F32, 2, neg, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "negative") != NULL);

    /* overflow of the element count, and of the byte size only */
    const int64_t big[2] = {INT64_C(1) << 32, INT64_C(1) << 32};
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_U8, 2, big, NULL), QKV_ERR_OVERFLOW);
    const int64_t bytes[1] = {INT64_MAX / 4};
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_F64, 1, bytes, NULL), QKV_ERR_OVERFLOW);
    CHECK_OK(qkv_tensor_init(&t, QKV_DTYPE_U8, 1, bytes, NULL)); /* fits */
    t = before;
    /* a zero dim does not hide an unrepresentable stride */
    const int64_t zero_big[3] = {0, INT64_C(1) << 40, INT64_C(1) << 40};
    CHECK_STATUS(qkv_tensor_init(&t, QKV_DTYPE_F32, 3, zero_big, NULL), QKV_ERR_OVERFLOW);
    CHECK(memcmp(&t, &before, sizeof t) == 0); /* untouched on failure */
}

static void test_numel(void) {
    qkv_tensor t;
    memset(&t, 0, sizeof t);
    t.ndim = 2;
    t.shape[0] = INT64_C(1) << 40;
    t.shape[1] = INT64_C(1) << 40;
    CHECK_EQ_INT(qkv_tensor_numel(&t), -1); /* overflow */
    t.shape[1] = 0;
    CHECK_EQ_INT(qkv_tensor_numel(&t), 0);
    t.shape[1] = -3;
    CHECK_EQ_INT(qkv_tensor_numel(&t), -1);
    t.ndim = QKV_MAX_DIMS + 1;
    CHECK_EQ_INT(qkv_tensor_numel(&t), -1);
    CHECK_EQ_INT(qkv_tensor_numel(NULL), -1);
    CHECK(!qkv_tensor_is_contiguous(NULL));
    CHECK(!qkv_tensor_is_contiguous(&t));
}

static void test_contiguous(void) {
    qkv_tensor t;
    const int64_t shape[3] = {2, 3, 4};
    CHECK_OK(qkv_tensor_init(&t, QKV_DTYPE_F32, 3, shape, NULL));
    qkv_tensor tr = t; /* transpose of the last two dims */
    tr.shape[1] = 4, tr.shape[2] = 3, tr.strides[1] = 1, tr.strides[2] = 4;
    CHECK(!qkv_tensor_is_contiguous(&tr));
    qkv_tensor sl = t; /* a slice of the middle dim: [2, 2, 4] with the parent's strides */
    sl.shape[1] = 2;
    CHECK(!qkv_tensor_is_contiguous(&sl));
    qkv_tensor row = t; /* one row: [1, 3, 4] */
    row.shape[0] = 1;
    row.strides[0] = 9999; /* the stride of a size-1 dim does not matter */
    CHECK(qkv_tensor_is_contiguous(&row));
    qkv_tensor pad = t; /* padded rows: stride 5 over 4 elements */
    pad.strides[1] = 5, pad.strides[0] = 15;
    CHECK(!qkv_tensor_is_contiguous(&pad));
    qkv_tensor bc = t; /* broadcast (stride 0) */
    bc.strides[0] = 0;
    CHECK(!qkv_tensor_is_contiguous(&bc));
}

int main(void) {
    test_init();
    test_init_errors();
    test_numel();
    test_contiguous();
    return test_finish("core_tensor");
}
