/* A stand-in for Rockchip's librkllmrt.so, written from the RKLLM 1.2.3 header's layout
 * (rkllm-runtime/Linux/librkllm_api/include/rkllm.h), so Parley's ctypes binding can be run
 * on a machine with no NPU. It exports the runtime's functions with the same signatures and
 * behaves as the runtime is documented to: it copies what it is given, streams a reply
 * through the callback piece by piece (RKLLM_RUN_WAITING while a UTF-8 character is
 * incomplete), stops on rkllm_abort, keeps the history only with keep_history, and reports
 * perf stats with RKLLM_RUN_FINISH. Its "model" echoes: the reply to a prompt P is
 * "You said: P"; with tools set, a prompt "/call NAME ARGS" is answered with a Qwen-style
 * <tool_call> block. It also exports fake_offset() (C's offsetof for every field, so the
 * test can hold the Python structs to it) and fake_report() (what it last received).
 *
 * Build variants: -DFAKE_VERSION='"1.3.0"' changes the banner, -DFAKE_NO_BANNER leaves it
 * out; -DFAKE_V11 leaves out the functions 1.1.x did not have.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FAKE_VERSION
#define FAKE_VERSION "1.2.3"
#endif

/* The banner the real runtime prints at init; Parley reads the version from it. */
#ifdef FAKE_NO_BANNER
static const char fake_banner[] = "runtime";
#else
__attribute__((used)) const char fake_banner[] = "rkllm-runtime version: " FAKE_VERSION;
#endif

typedef void *LLMHandle;
typedef enum { RKLLM_RUN_NORMAL = 0, RKLLM_RUN_WAITING = 1, RKLLM_RUN_FINISH = 2,
               RKLLM_RUN_ERROR = 3 } LLMCallState;
typedef enum { RKLLM_INPUT_PROMPT = 0, RKLLM_INPUT_TOKEN = 1, RKLLM_INPUT_EMBED = 2,
               RKLLM_INPUT_MULTIMODAL = 3 } RKLLMInputType;
typedef enum { RKLLM_INFER_GENERATE = 0, RKLLM_INFER_GET_LAST_HIDDEN_LAYER = 1,
               RKLLM_INFER_GET_LOGITS = 2 } RKLLMInferMode;

typedef struct {
    int32_t base_domain_id;
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
} RKLLMExtendParam;

typedef struct {
    const char *model_path;
    int32_t max_context_len;
    int32_t max_new_tokens;
    int32_t top_k;
    int32_t n_keep;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    bool skip_special_token;
    bool is_async;
    const char *img_start;
    const char *img_end;
    const char *img_content;
    RKLLMExtendParam extend_param;
} RKLLMParam;

typedef struct {
    const char *lora_adapter_path;
    const char *lora_adapter_name;
    float scale;
} RKLLMLoraAdapter;

typedef struct { float *embed; size_t n_tokens; } RKLLMEmbedInput;
typedef struct { int32_t *input_ids; size_t n_tokens; } RKLLMTokenInput;
typedef struct {
    char *prompt;
    float *image_embed;
    size_t n_image_tokens;
    size_t n_image;
    size_t image_width;
    size_t image_height;
} RKLLMMultiModalInput;

typedef struct {
    const char *role;
    bool enable_thinking;
    RKLLMInputType input_type;
    union {
        const char *prompt_input;
        RKLLMEmbedInput embed_input;
        RKLLMTokenInput token_input;
        RKLLMMultiModalInput multimodal_input;
    };
} RKLLMInput;

typedef struct { const char *lora_adapter_name; } RKLLMLoraParam;
typedef struct { int save_prompt_cache; const char *prompt_cache_path; } RKLLMPromptCacheParam;

typedef struct {
    float *encoder_k_cache;
    float *encoder_v_cache;
    float *encoder_mask;
    int32_t *encoder_pos;
    int num_tokens;
} RKLLMCrossAttnParam;

typedef struct {
    RKLLMInferMode mode;
    RKLLMLoraParam *lora_params;
    RKLLMPromptCacheParam *prompt_cache_params;
    int keep_history;
} RKLLMInferParam;

typedef struct { const float *hidden_states; int embd_size; int num_tokens; }
    RKLLMResultLastHiddenLayer;
typedef struct { const float *logits; int vocab_size; int num_tokens; } RKLLMResultLogits;
typedef struct {
    float prefill_time_ms;
    int prefill_tokens;
    float generate_time_ms;
    int generate_tokens;
    float memory_usage_mb;
} RKLLMPerfStat;

typedef struct {
    const char *text;
    int32_t token_id;
    RKLLMResultLastHiddenLayer last_hidden_layer;
    RKLLMResultLogits logits;
    RKLLMPerfStat perf;
} RKLLMResult;

typedef int (*LLMResultCallback)(RKLLMResult *result, void *userdata, LLMCallState state);

/* ---- the fake runtime's state ---- */

typedef struct {
    RKLLMParam param;
    char *model_path;
    LLMResultCallback callback;
    char *system_prompt, *prefix, *postfix, *tools, *lora_name;
    char history[65536];
    char loaded_cache[1024];
    int clears;
    volatile int abort_requested;
    volatile int running;
} Fake;

static char report[131072];

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void replace(char **slot, const char *value) {
    free(*slot);
    *slot = dup_or_null(value);
}

static int exists(const char *path) { return path && access(path, R_OK) == 0; }

RKLLMParam rkllm_createDefaultParam(void) {
    RKLLMParam p;
    memset(&p, 0, sizeof p);
    p.max_context_len = 512;
    p.max_new_tokens = -1;
    p.top_k = 1;
    p.top_p = 0.9f;
    p.temperature = 0.8f;
    p.repeat_penalty = 1.1f;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.skip_special_token = true;
    p.extend_param.enabled_cpus_num = 4;
    p.extend_param.enabled_cpus_mask = 0xF0;
    p.extend_param.n_batch = 1;
    return p;
}

int rkllm_init(LLMHandle *handle, RKLLMParam *param, LLMResultCallback callback) {
    printf("I rkllm: %s, rknpu driver version: 0.9.8, platform: FAKE\n", fake_banner);
    if (!handle || !param || !callback || !exists(param->model_path)) {
        printf("E rkllm: failed to load model file %s\n",
               param && param->model_path ? param->model_path : "(null)");
        return -1;
    }
    Fake *f = calloc(1, sizeof *f);
    f->param = *param;
    f->model_path = strdup(param->model_path);
    f->callback = callback;
    const RKLLMExtendParam *e = &param->extend_param;
    snprintf(report, sizeof report,
             "model_path=%s max_context_len=%d max_new_tokens=%d top_k=%d n_keep=%d "
             "top_p=%.2f temperature=%.2f repeat_penalty=%.2f frequency_penalty=%.2f "
             "presence_penalty=%.2f mirostat=%d mirostat_tau=%.2f mirostat_eta=%.2f "
             "skip_special_token=%d is_async=%d img_start=%s base_domain_id=%d "
             "embed_flash=%d enabled_cpus_num=%d enabled_cpus_mask=0x%X n_batch=%d "
             "use_cross_attn=%d",
             param->model_path, param->max_context_len, param->max_new_tokens, param->top_k,
             param->n_keep, param->top_p, param->temperature, param->repeat_penalty,
             param->frequency_penalty, param->presence_penalty, param->mirostat,
             param->mirostat_tau, param->mirostat_eta, param->skip_special_token,
             param->is_async, param->img_start ? param->img_start : "(null)",
             e->base_domain_id, e->embed_flash, e->enabled_cpus_num, e->enabled_cpus_mask,
             e->n_batch, e->use_cross_attn);
    *handle = f;
    return 0;
}

int rkllm_destroy(LLMHandle handle) {
    Fake *f = handle;
    if (!f) return -1;
    free(f->model_path);
    free(f->system_prompt);
    free(f->prefix);
    free(f->postfix);
    free(f->tools);
    free(f->lora_name);
    free(f);
    return 0;
}

int rkllm_load_lora(LLMHandle handle, RKLLMLoraAdapter *lora) {
    Fake *f = handle;
    if (!f || !lora || !exists(lora->lora_adapter_path)) return -1;
    replace(&f->lora_name, lora->lora_adapter_name);
    return 0;
}

int rkllm_load_prompt_cache(LLMHandle handle, const char *path) {
    Fake *f = handle;
    if (!f || !exists(path)) return -1;
    snprintf(f->loaded_cache, sizeof f->loaded_cache, "%s", path);
    return 0;
}

int rkllm_release_prompt_cache(LLMHandle handle) { return handle ? 0 : -1; }

int rkllm_abort(LLMHandle handle) {
    Fake *f = handle;
    if (!f) return -1;
    f->abort_requested = 1;
    return 0;
}

int rkllm_is_running(LLMHandle handle) {
    Fake *f = handle;
    return f && f->running ? 0 : -1; /* 1.2.3: 0 while running */
}

static size_t utf8_whole(const char *text, size_t start, size_t want, size_t len) {
    /* How many bytes from start make whole characters, at most want (or the next one). */
    size_t end = start + want < len ? start + want : len;
    while (end < len && ((unsigned char)text[end] & 0xC0) == 0x80) end++;
    return end - start;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

int rkllm_run(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer, void *userdata) {
    Fake *f = handle;
    if (!f || !input || !infer) return -1;
    const char *prompt = input->input_type == RKLLM_INPUT_PROMPT ? input->prompt_input : NULL;
    RKLLMPromptCacheParam *cache = infer->prompt_cache_params;
    snprintf(report, sizeof report,
             "role=%s enable_thinking=%d input_type=%d mode=%d keep_history=%d lora=%s "
             "save_prompt_cache=%d prompt_cache_path=%s loaded_cache=%s clears=%d "
             "system=%s prefix=%s postfix=%s tools=%s\nprompt=%s",
             input->role ? input->role : "(null)", input->enable_thinking, input->input_type,
             infer->mode, infer->keep_history,
             infer->lora_params ? infer->lora_params->lora_adapter_name : "(null)",
             cache ? cache->save_prompt_cache : -1,
             cache && cache->prompt_cache_path ? cache->prompt_cache_path : "(null)",
             f->loaded_cache[0] ? f->loaded_cache : "(null)", f->clears, f->system_prompt ? f->system_prompt : "(null)",
             f->prefix ? f->prefix : "(null)", f->postfix ? f->postfix : "(null)",
             f->tools ? f->tools : "(null)", prompt ? prompt : "(null)");
    if (!prompt) return -1;
    RKLLMResult result;
    memset(&result, 0, sizeof result);
    /* Like the runtime, a prompt that does not fit the context is an error in the run. */
    size_t tokens = (strlen(f->history) + strlen(prompt)) / 4 + 1;
    if ((int)tokens > f->param.max_context_len) {
        f->callback(&result, userdata, RKLLM_RUN_ERROR);
        return -1;
    }
    if (cache && cache->save_prompt_cache && cache->prompt_cache_path) {
        FILE *out = fopen(cache->prompt_cache_path, "w");
        if (out) {
            fputs(f->system_prompt ? f->system_prompt : "", out);
            fclose(out);
        }
    }
    char reply[65536];
    char name[256];
    const char *args = NULL;
    if (f->tools && sscanf(prompt, "/call %255s", name) == 1 && (args = strchr(prompt + 6, ' ')))
        snprintf(reply, sizeof reply,
                 "<tool_call>\n{\"name\": \"%s\", \"arguments\": %s}\n</tool_call>", name,
                 args + 1);
    else
        snprintf(reply, sizeof reply, "You said: %s", prompt);
    f->running = 1;
    f->abort_requested = 0;
    double start = now_ms();
    size_t len = strlen(reply), at = 0;
    int pieces = 0;
    char piece[64];
    while (at < len && !f->abort_requested) {
        /* Three bytes a token: a multi-byte character is sometimes cut, and then the
         * runtime says WAITING until the rest of it arrives. */
        size_t n = at + 3 < len ? 3 : len - at;
        size_t whole = utf8_whole(reply, at, 3, len);
        if (whole > n) {
            memcpy(piece, reply + at, n);
            piece[n] = 0;
            result.text = piece;
            f->callback(&result, userdata, RKLLM_RUN_WAITING);
            n = whole;
        }
        memcpy(piece, reply + at, n);
        piece[n] = 0;
        result.text = piece;
        result.token_id = pieces++;
        at += n;
        f->callback(&result, userdata, RKLLM_RUN_NORMAL);
        usleep(2000);
    }
    if (infer->keep_history && strlen(f->history) + strlen(prompt) + at + 1 < sizeof f->history) {
        strcat(f->history, prompt);
        strncat(f->history, reply, at);
    } else if (!infer->keep_history) {
        f->history[0] = 0;
    }
    memset(&result, 0, sizeof result);
    result.perf.prefill_tokens = (int)tokens;
    result.perf.prefill_time_ms = 0.5f * (float)tokens;
    result.perf.generate_tokens = pieces;
    result.perf.generate_time_ms = (float)(now_ms() - start);
    result.perf.memory_usage_mb = 123.5f;
    f->running = 0;
    f->callback(&result, userdata, RKLLM_RUN_FINISH);
    return 0;
}

int rkllm_run_async(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer,
                    void *userdata) {
    return rkllm_run(handle, input, infer, userdata);
}

#ifndef FAKE_V11
int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int *start_pos,
                         int *end_pos) {
    Fake *f = handle;
    if (!f) return -1;
    (void)start_pos;
    (void)end_pos;
    (void)keep_system_prompt; /* the template's system prompt stays set either way */
    f->history[0] = 0;
    f->clears++;
    return 0;
}

int rkllm_get_kv_cache_size(LLMHandle handle, int *cache_sizes) {
    Fake *f = handle;
    if (!f || !cache_sizes) return -1;
    cache_sizes[0] = (int)(strlen(f->history) / 4);
    return 0;
}

int rkllm_set_chat_template(LLMHandle handle, const char *system_prompt, const char *prefix,
                            const char *postfix) {
    Fake *f = handle;
    if (!f || !system_prompt || !prefix || !postfix) return -1;
    replace(&f->system_prompt, system_prompt);
    replace(&f->prefix, prefix);
    replace(&f->postfix, postfix);
    return 0;
}

int rkllm_set_function_tools(LLMHandle handle, const char *system_prompt, const char *tools,
                             const char *tool_response_str) {
    Fake *f = handle;
    if (!f || !tools || !tool_response_str) return -1;
    if (system_prompt) replace(&f->system_prompt, system_prompt);
    replace(&f->tools, tools);
    return 0;
}

int rkllm_set_cross_attn_params(LLMHandle handle, RKLLMCrossAttnParam *params) {
    return handle && params ? 0 : -1;
}
#endif

/* ---- for the tests only ---- */

const char *fake_report(void) { return report; }

#define FIELD(s, f) {#s "." #f, offsetof(s, f)}
#define SIZE(s) {#s, sizeof(s)}

static const struct { const char *name; size_t value; } layout[] = {
    SIZE(RKLLMExtendParam), FIELD(RKLLMExtendParam, base_domain_id),
    FIELD(RKLLMExtendParam, embed_flash), FIELD(RKLLMExtendParam, enabled_cpus_num),
    FIELD(RKLLMExtendParam, enabled_cpus_mask), FIELD(RKLLMExtendParam, n_batch),
    FIELD(RKLLMExtendParam, use_cross_attn), FIELD(RKLLMExtendParam, reserved),
    SIZE(RKLLMParam), FIELD(RKLLMParam, model_path), FIELD(RKLLMParam, max_context_len),
    FIELD(RKLLMParam, max_new_tokens), FIELD(RKLLMParam, top_k), FIELD(RKLLMParam, n_keep),
    FIELD(RKLLMParam, top_p), FIELD(RKLLMParam, temperature),
    FIELD(RKLLMParam, repeat_penalty), FIELD(RKLLMParam, frequency_penalty),
    FIELD(RKLLMParam, presence_penalty), FIELD(RKLLMParam, mirostat),
    FIELD(RKLLMParam, mirostat_tau), FIELD(RKLLMParam, mirostat_eta),
    FIELD(RKLLMParam, skip_special_token), FIELD(RKLLMParam, is_async),
    FIELD(RKLLMParam, img_start), FIELD(RKLLMParam, img_end), FIELD(RKLLMParam, img_content),
    FIELD(RKLLMParam, extend_param),
    SIZE(RKLLMLoraAdapter), FIELD(RKLLMLoraAdapter, lora_adapter_path),
    FIELD(RKLLMLoraAdapter, lora_adapter_name), FIELD(RKLLMLoraAdapter, scale),
    SIZE(RKLLMEmbedInput), FIELD(RKLLMEmbedInput, embed), FIELD(RKLLMEmbedInput, n_tokens),
    SIZE(RKLLMTokenInput), FIELD(RKLLMTokenInput, input_ids),
    FIELD(RKLLMTokenInput, n_tokens),
    SIZE(RKLLMMultiModalInput), FIELD(RKLLMMultiModalInput, prompt),
    FIELD(RKLLMMultiModalInput, image_embed), FIELD(RKLLMMultiModalInput, n_image_tokens),
    FIELD(RKLLMMultiModalInput, n_image), FIELD(RKLLMMultiModalInput, image_width),
    FIELD(RKLLMMultiModalInput, image_height),
    SIZE(RKLLMInput), FIELD(RKLLMInput, role), FIELD(RKLLMInput, enable_thinking),
    FIELD(RKLLMInput, input_type), FIELD(RKLLMInput, prompt_input),
    FIELD(RKLLMInput, embed_input), FIELD(RKLLMInput, token_input),
    FIELD(RKLLMInput, multimodal_input),
    SIZE(RKLLMLoraParam), FIELD(RKLLMLoraParam, lora_adapter_name),
    SIZE(RKLLMPromptCacheParam), FIELD(RKLLMPromptCacheParam, save_prompt_cache),
    FIELD(RKLLMPromptCacheParam, prompt_cache_path),
    SIZE(RKLLMCrossAttnParam), FIELD(RKLLMCrossAttnParam, encoder_k_cache),
    FIELD(RKLLMCrossAttnParam, encoder_v_cache), FIELD(RKLLMCrossAttnParam, encoder_mask),
    FIELD(RKLLMCrossAttnParam, encoder_pos), FIELD(RKLLMCrossAttnParam, num_tokens),
    SIZE(RKLLMInferParam), FIELD(RKLLMInferParam, mode), FIELD(RKLLMInferParam, lora_params),
    FIELD(RKLLMInferParam, prompt_cache_params), FIELD(RKLLMInferParam, keep_history),
    SIZE(RKLLMResultLastHiddenLayer), FIELD(RKLLMResultLastHiddenLayer, hidden_states),
    FIELD(RKLLMResultLastHiddenLayer, embd_size), FIELD(RKLLMResultLastHiddenLayer, num_tokens),
    SIZE(RKLLMResultLogits), FIELD(RKLLMResultLogits, logits),
    FIELD(RKLLMResultLogits, vocab_size), FIELD(RKLLMResultLogits, num_tokens),
    SIZE(RKLLMPerfStat), FIELD(RKLLMPerfStat, prefill_time_ms),
    FIELD(RKLLMPerfStat, prefill_tokens), FIELD(RKLLMPerfStat, generate_time_ms),
    FIELD(RKLLMPerfStat, generate_tokens), FIELD(RKLLMPerfStat, memory_usage_mb),
    SIZE(RKLLMResult), FIELD(RKLLMResult, text), FIELD(RKLLMResult, token_id),
    FIELD(RKLLMResult, last_hidden_layer), FIELD(RKLLMResult, logits),
    FIELD(RKLLMResult, perf),
};

/* offsetof(struct, field) for "Struct.field", sizeof(struct) for "Struct"; -1 if unknown. */
long fake_offset(const char *name) {
    for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++)
        if (strcmp(layout[i].name, name) == 0) return (long)layout[i].value;
    return -1;
}
