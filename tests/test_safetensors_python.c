/* test_safetensors_python.c — round trips with the reference implementation (Hugging Face's
 * `safetensors` Python package) through tools/safetensors_roundtrip.py:
 *   Python writes the spec (st_spec.h) -> qkv reads and checks every byte and the metadata;
 *   qkv writes the spec -> Python reads it (raw and through numpy) and checks it.
 * The Python is $QKV_PYTHON, else tools/.venv/bin/python, else python3; the test is skipped
 * (exit 77) when none of them has safetensors and numpy. */
#include "qkv.h"
#include "st_spec.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int has_packages(const char *py) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import safetensors, numpy' >/dev/null 2>&1", py);
    return system(cmd) == 0;
}

static const char *find_python(void) {
    static char venv[600];
    const char *env = getenv("QKV_PYTHON");
    if (env && *env) return has_packages(env) ? env : NULL;
    snprintf(venv, sizeof venv, "%s/tools/.venv/bin/python", QKV_SOURCE_DIR);
    if (access(venv, X_OK) == 0 && has_packages(venv)) return venv;
    if (has_packages("python3")) return "python3";
    return NULL;
}

static int run_script(const char *py, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tools/safetensors_roundtrip.py' %s", py, QKV_SOURCE_DIR,
             args);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

int main(void) {
    const char *py = find_python();
    if (!py)
        TEST_SKIP("no Python with the safetensors and numpy packages (set QKV_PYTHON, or create "
                  "tools/.venv: python3 -m venv tools/.venv && tools/.venv/bin/pip install "
                  "safetensors numpy)");
    printf("python: %s\n", py);
    char dir[256], py_file[512], c_file[512], args[1100];
    snprintf(dir, sizeof dir, "%s/qkv_stpy_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(py_file, sizeof py_file, "%s/python.safetensors", dir);
    snprintf(c_file, sizeof c_file, "%s/qkv.safetensors", dir);

    /* Python -> qkv */
    snprintf(args, sizeof args, "write '%s'", py_file);
    CHECK(run_script(py, args) == 0);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(py_file, &st));
    if (st) {
        st_spec_check_file(st);
        /* the reference writes tensors sorted by dtype alignment then name; qkv lists them by
         * offset whatever the header order */
        for (size_t i = 1; i < qkv_safetensors_count(st); i++)
            CHECK(qkv_safetensors_tensor(st, i)->offset >=
                  qkv_safetensors_tensor(st, i - 1)->offset);
    }
    qkv_safetensors_close(st);

    /* qkv -> Python */
    CHECK_OK(st_spec_write(c_file));
    snprintf(args, sizeof args, "check '%s'", c_file);
    CHECK(run_script(py, args) == 0);

    unlink(py_file);
    unlink(c_file);
    rmdir(dir);
    return test_finish("safetensors_python");
}
