/* ops.c — the two sets of layers the module compositions (mha.c, block.c) run over
 * (nn_internal.h): the reference twins, and the fast layers behind the reference signatures. */
#include "nn/nn.h"
#include "nn/nn_internal.h"

/* The fast linear layer for a weight in the nn.Linear layout [out, in], as the modules hold
 * their weights. */
static qkv_status linear_fwd_fast(qkv_runtime *rt, float *out, const float *inp,
                                  const float *weight, const float *bias, int64_t N, int64_t C,
                                  int64_t OC) {
    const qkv_nn_linear L = qkv_nn_linear_dense(weight, bias, C, OC);
    return qkv_nn_linear_forward(rt, &L, out, inp, N, QKV_ACT_NONE, NULL);
}

static qkv_status linear_bwd_fast(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                  const float *dout, const float *inp, const float *weight,
                                  int64_t N, int64_t C, int64_t OC) {
    const qkv_nn_linear L = qkv_nn_linear_dense(weight, NULL, C, OC);
    return qkv_nn_linear_backward(rt, &L, dinp, dweight, dbias, dout, inp, N);
}

const qkv__nn_ops qkv__nn_ops_ref = {
    "_ref",
    qkv_nn_linear_forward_ref,
    qkv_nn_linear_backward_ref,
    qkv_nn_rope_forward_ref,
    qkv_nn_rope_backward_ref,
    qkv_nn_act_forward_ref,
    qkv_nn_act_backward_ref,
    qkv_nn_layernorm_forward_ref,
    qkv_nn_layernorm_backward_ref,
    qkv_nn_residual_forward_ref,
    qkv_nn_residual_backward_ref,
};

const qkv__nn_ops qkv__nn_ops_fast = {
    "",
    linear_fwd_fast,
    linear_bwd_fast,
    qkv_nn_rope_forward,
    qkv_nn_rope_backward,
    qkv_nn_act_forward,
    qkv_nn_act_backward,
    qkv_nn_layernorm_forward,
    qkv_nn_layernorm_backward,
    qkv_nn_residual_forward,
    qkv_nn_residual_backward,
};
