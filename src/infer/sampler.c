/*
 * sampler.c — next-token selection (strata/infer.h).
 *
 * Order of operations on the logits of one step (llama.cpp's order, minus
 * its typical/tfs/mirostat samplers):
 *   1. penalties over the history: repetition (CTRL: a seen token's logit
 *      is divided by the penalty when positive, multiplied when negative),
 *      then frequency (- count * f) and presence (- p when seen), OpenAI's;
 *   2. log-probabilities for the caller: log-softmax of the penalized
 *      logits (before temperature), the chosen token's and the top n;
 *   3. temperature 0: argmax (lowest id on ties); else logits / T, softmax;
 *   4. top-k, then top-p (smallest prefix of the sorted candidates whose
 *      mass reaches p), then min-p (drop p_i < min_p * p_max), renormalize;
 *   5. one uniform draw u in [0, 1) from a counter-based generator:
 *      splitmix64(seed, number of calls), so a seed reproduces a run and the
 *      k-th draw does not depend on what the filters did before.
 * With no filter the draw walks the probabilities in id order (no sort);
 * with filters the candidates are sorted by probability, ties by id: top-k
 * sorts its k after an O(V) selection; top-p sorts the 256 most likely when
 * they hold the prefix it needs (nearly always), the whole vocabulary only
 * when not. argmax and the exp sums over the vocabulary (log-probabilities,
 * temperature) run at the CPU's SIMD level (infer_kernels.h).
 *
 * Memory: scratch for V floats, ids and counts is allocated once at
 * creation; sampling allocates nothing. Not thread-safe (one per sequence).
 */
#include "strata/infer.h"

#include "infer/infer_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct st_sampler {
    st_sampler_params p;
    const st__vocab_kernels *vk; /* argmax and exp sums at this CPU's SIMD level */
    int V;
    uint64_t n_calls;
    float *prob;     /* [V] */
    int32_t *cand;   /* [V] */
    int32_t *count;  /* [V], zero between calls */
};

st_sampler_params st_sampler_default_params(void) {
    st_sampler_params p = {.temperature = 1.0f,
                           .top_k = 0,
                           .top_p = 1.0f,
                           .min_p = 0.0f,
                           .repetition_penalty = 1.0f,
                           .frequency_penalty = 0.0f,
                           .presence_penalty = 0.0f,
                           .seed = 0};
    return p;
}

st_status st_sampler_new(const st_sampler_params *p, int vocab_size, st_sampler **out) {
    if (!p || !out) return st__fail(ST_ERR_INVALID_ARG, "st_sampler_new: NULL argument");
    *out = NULL;
    if (vocab_size <= 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_sampler_new: vocab_size %d", vocab_size);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return st__fail(ST_ERR_INVALID_ARG, "sampler: temperature %g must be >= 0",
                        (double)p->temperature);
    if (p->top_k < 0)
        return st__fail(ST_ERR_INVALID_ARG, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return st__fail(ST_ERR_INVALID_ARG, "sampler: top_p %g must be in (0, 1]",
                        (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return st__fail(ST_ERR_INVALID_ARG, "sampler: min_p %g must be in [0, 1]",
                        (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return st__fail(ST_ERR_INVALID_ARG, "sampler: repetition_penalty %g must be > 0",
                        (double)p->repetition_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return st__fail(ST_ERR_INVALID_ARG, "sampler: penalties must be finite");
    st_sampler *s = st_calloc(1, sizeof *s);
    if (!s) return ST_ERR_NOMEM;
    s->p = *p;
    s->vk = st__vocab_kernels_for(st__vocab_level());
    s->V = vocab_size;
    s->prob = st_malloc((size_t)vocab_size * sizeof(float));
    s->cand = st_malloc((size_t)vocab_size * sizeof(int32_t));
    s->count = st_calloc((size_t)vocab_size, sizeof(int32_t));
    if (!s->prob || !s->cand || !s->count) {
        st_sampler_free(s);
        return st__fail(ST_ERR_NOMEM, "st_sampler_new: no memory for %d tokens", vocab_size);
    }
    *out = s;
    return ST_OK;
}

void st_sampler_free(st_sampler *s) {
    if (!s) return;
    st_free(s->prob);
    st_free(s->cand);
    st_free(s->count);
    st_free(s);
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* u in [0, 1) for draw number k of seed */
static double draw(uint64_t seed, uint64_t k) {
    uint64_t x = splitmix64(seed ^ splitmix64(k + 0x632be59bd9b4e019ULL));
    return (double)(x >> 11) * 0x1.0p-53;
}

static void apply_penalties(st_sampler *s, float *logits, const int32_t *hist, int64_t n) {
    const st_sampler_params *p = &s->p;
    if (!hist || n <= 0) return;
    if (p->repetition_penalty == 1.0f && p->frequency_penalty == 0.0f &&
        p->presence_penalty == 0.0f)
        return;
    for (int64_t i = 0; i < n; i++)
        if (hist[i] >= 0 && hist[i] < s->V) s->count[hist[i]]++;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = hist[i];
        if (id < 0 || id >= s->V || s->count[id] == 0) continue;
        float l = logits[id];
        if (p->repetition_penalty != 1.0f)
            l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= (float)s->count[id] * p->frequency_penalty + p->presence_penalty;
        logits[id] = l;
        s->count[id] = 0; /* once per distinct token; leaves count zeroed */
    }
}

/* candidates sorted by probability, ties by id */
static int cmp_cand(const void *a, const void *b, void *ctx) {
    const float *prob = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float px = prob[x], py = prob[y];
    if (px != py) return px > py ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* k-th largest value of prob over ids [0, V) (1-based k), by selection on a copy */
static float kth_largest(float *tmp, int n, int k) {
    /* quickselect for index n - k in ascending order */
    int lo = 0, hi = n - 1, target = n - k;
    while (lo < hi) {
        float pivot = tmp[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (tmp[i] < pivot) i++;
            while (tmp[j] > pivot) j--;
            if (i <= j) {
                float t = tmp[i];
                tmp[i] = tmp[j];
                tmp[j] = t;
                i++;
                j--;
            }
        }
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else break;
    }
    return tmp[target];
}

/* top-p without a sort of the whole vocabulary: the smallest prefix whose
 * mass reaches p usually lies among the few most likely tokens, so take the
 * TOP_P_PREFIX largest (a selection, O(V)), sort only them, and keep them
 * when their mass already reaches top_p of the mass above the threshold
 * (then the sorted prefix the full sort would give starts with exactly
 * these). Without top-k only (top-k's own cut would need the ties it drops).
 * Returns how many candidates s->cand holds, sorted, with *mass the mass of
 * all tokens above thresh; 0 when the prefix is not enough (the caller then
 * sorts everything). */
#define TOP_P_PREFIX 256
static int top_p_prefix(st_sampler *s, float thresh, double *mass) {
    const int V = s->V;
    const float *prob = s->prob;
    if (V <= 2 * TOP_P_PREFIX) return 0;
    memcpy(s->cand, prob, (size_t)V * sizeof(float)); /* as float scratch */
    float tk = kth_largest((float *)s->cand, V, TOP_P_PREFIX);
    if (tk < thresh || !(tk > 0.0f)) return 0;
    double all = 0.0, top = 0.0;
    int n = 0;
    for (int i = 0; i < V; i++) {
        if (!(prob[i] >= thresh && prob[i] > 0.0f)) continue;
        all += prob[i];
        if (prob[i] >= tk) {
            s->cand[n++] = i;
            top += prob[i];
        }
    }
    /* a margin over the rounding of sums taken in another order */
    if (top < (double)s->p.top_p * all * (1.0 + 1e-6)) return 0;
    qsort_r(s->cand, (size_t)n, sizeof *s->cand, cmp_cand, (void *)prob);
    *mass = all;
    return n;
}

st_status st_sampler_sample(st_sampler *s, float *logits, const int32_t *history,
                            int64_t n_history, int32_t *token, st_token_logprob *chosen,
                            st_token_logprob *top, int n_top) {
    if (!s || !logits || !token || n_top < 0 || (n_top > 0 && !top) ||
        (n_history > 0 && !history))
        return st__fail(ST_ERR_INVALID_ARG, "st_sampler_sample: bad arguments");
    const int V = s->V;
    const st_sampler_params *p = &s->p;
    const uint64_t call = s->n_calls++;
    apply_penalties(s, logits, history, n_history);

    /* log-softmax normalizer of the penalized logits (for log-probabilities) */
    double lse = 0.0;
    const int best = s->vk->argmax(V, logits);
    if (chosen || n_top > 0)
        lse = (double)logits[best] + log(s->vk->exp_sum(V, logits, logits[best], 1.0f, NULL));

    int32_t id = best;
    if (p->temperature > 0.0f) {
        float *prob = s->prob;
        const double sum =
            s->vk->exp_sum(V, logits, logits[best], (float)(1.0 / (double)p->temperature), prob);
        const bool filter = (p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f || p->min_p > 0.0f;
        const double u = draw(p->seed, call);
        if (!filter) {
            double r = u * sum, acc = 0.0;
            id = best;
            for (int i = 0; i < V; i++) {
                acc += prob[i];
                if (r < acc && prob[i] > 0.0f) {
                    id = i;
                    break;
                }
            }
        } else {
            int n = 0;
            float thresh = 0.0f;
            if (p->top_k > 0 && p->top_k < V) {
                memcpy(s->cand, prob, (size_t)V * sizeof(float)); /* as float scratch */
                thresh = kth_largest((float *)s->cand, V, p->top_k);
            }
            /* min-p prefilter: nothing below min_p * p_max survives anyway */
            const float pmin = p->min_p * prob[best];
            if (pmin > thresh) thresh = pmin;
            double mass = 0.0;
            if (p->top_p < 1.0f && p->top_k == 0) n = top_p_prefix(s, thresh, &mass);
            if (n == 0) {
                /* everything above the threshold, sorted */
                for (int i = 0; i < V; i++)
                    if (prob[i] >= thresh && prob[i] > 0.0f) s->cand[n++] = i;
                qsort_r(s->cand, (size_t)n, sizeof *s->cand, cmp_cand, prob);
                if (p->top_k > 0 && n > p->top_k) n = p->top_k;
                mass = 0.0;
                for (int i = 0; i < n; i++)
                    mass += prob[s->cand[i]];
            }
            if (p->top_p < 1.0f) {
                double acc = 0.0, need = (double)p->top_p * mass;
                for (int i = 0; i < n; i++) {
                    acc += prob[s->cand[i]];
                    if (acc >= need) {
                        n = i + 1;
                        mass = acc;
                        break;
                    }
                }
            }
            double r = u * mass, acc = 0.0;
            id = s->cand[0];
            for (int i = 0; i < n; i++) {
                acc += prob[s->cand[i]];
                if (r < acc) {
                    id = s->cand[i];
                    break;
                }
            }
            if (n > 0 && r >= acc) id = s->cand[n - 1];
        }
    }
    *token = id;
    if (chosen) {
        chosen->id = id;
        chosen->logprob = (float)((double)logits[id] - lse);
    }
    if (n_top > 0) {
        /* n_top is small: repeated selection of the next best */
        int m = n_top < V ? n_top : V;
        for (int k = 0; k < m; k++) {
            int b = -1;
            for (int i = 0; i < V; i++) {
                bool taken = false;
                if (b >= 0 && !(logits[i] > logits[b])) continue;
                for (int t = 0; t < k; t++)
                    if (top[t].id == i) {
                        taken = true;
                        break;
                    }
                if (!taken) b = i;
            }
            top[k].id = b;
            top[k].logprob = (float)((double)logits[b] - lse);
        }
        for (int k = m; k < n_top; k++) top[k] = (st_token_logprob){-1, -INFINITY};
    }
    return ST_OK;
}
