#!/usr/bin/python3
"""make_reference.py - writes tests/reference/model_reference.bin, the PyTorch
state that tests/test_model.c checks Strata's gpt2 and llama against
(logits, loss, every parameter's gradient, losses along 5 AdamW steps).

Run with Debian's interpreter (python3-torch):
    /usr/bin/python3 tests/reference/make_reference.py [OUT]

The models are written here in plain PyTorch, mirroring Hugging Face's
GPT2LMHeadModel (pre-LN blocks, Conv1D weights [in, out], tanh GELU, lm head
tied to wte) and LlamaForCausalLM (RMSNorm, rotate_half RoPE, SwiGLU,
grouped-query attention through repeat_kv, nn.Linear weights [out, in]);
the transformers library is not needed. Weights are drawn once from a
seeded generator in float32 and exported; the math then runs in float64 so
the reference is the exact answer for those float32 weights.

File format (little-endian):
    magic   8 bytes  b"STREF\\0\\0\\1"
    u32     version (1)
    u32     number of entries
    entry:  u32 name length, name bytes (UTF-8, no NUL),
            u32 dtype (0 = f32, 1 = i32, 2 = UTF-8 text bytes),
            u32 ndim, u32 dims[ndim], then the data (prod(dims) elements;
            text: dims[0] bytes)
Entry names: "<arch>/config" (config.json text with HF names),
"<arch>/param/<HF name>", "<arch>/ids" [B,T] i32, "<arch>/targets" [B,T]
i32 (-1 = ignored), "<arch>/logits" [B,T,V], "<arch>/loss" [1],
"<arch>/grad/<HF name>", "<arch>/adamw_losses" [6] (loss after k = 0..5
AdamW updates; lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on
tensors with >= 2 dims only, via two param groups).
Archs: "gpt2", "llama", then "gpt2-nobias" (nanoGPT's bias=False: the same
GPT-2 without Linear and LayerNorm biases, config key "bias": false). New
cases are appended after the old ones, so the old entries stay identical.
"""
import json
import math
import struct
import sys

import torch

torch.manual_seed(0)
B, T = 2, 8
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
N_ADAMW = 5


def randn(g, *shape, std=0.02, mean=0.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean)


# ---- GPT-2 -------------------------------------------------------------------------------
GPT2 = dict(model_type="gpt2", n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=16,
            layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            activation_function="gelu_new", tie_word_embeddings=True)


def gpt2_params(cfg, g):
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    p = {"wte.weight": randn(g, V, C), "wpe.weight": randn(g, cfg["n_positions"], C)}
    for i in range(L):
        h = f"h.{i}."
        p[h + "ln_1.weight"] = randn(g, C, std=0.1, mean=1.0)
        p[h + "ln_1.bias"] = randn(g, C, std=0.02)
        p[h + "attn.c_attn.weight"] = randn(g, C, 3 * C)
        p[h + "attn.c_attn.bias"] = randn(g, 3 * C)
        p[h + "attn.c_proj.weight"] = randn(g, C, C)
        p[h + "attn.c_proj.bias"] = randn(g, C)
        p[h + "ln_2.weight"] = randn(g, C, std=0.1, mean=1.0)
        p[h + "ln_2.bias"] = randn(g, C)
        p[h + "mlp.c_fc.weight"] = randn(g, C, 4 * C)
        p[h + "mlp.c_fc.bias"] = randn(g, 4 * C)
        p[h + "mlp.c_proj.weight"] = randn(g, 4 * C, C)
        p[h + "mlp.c_proj.bias"] = randn(g, C)
    p["ln_f.weight"] = randn(g, C, std=0.1, mean=1.0)
    p["ln_f.bias"] = randn(g, C)
    return p


def gelu_new(x):  # HF NewGELUActivation (GPT-2's "gelu_new")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def causal_attention(q, k, v):  # [B,H,T,D]
    D, Tq = q.shape[-1], q.shape[-2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(D)
    mask = torch.ones(Tq, Tq, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    return att @ v


def gpt2_forward(cfg, p, ids):
    C, H, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    Bn, Tn = ids.shape
    ln = torch.nn.functional.layer_norm

    def lin(x, name):  # Conv1D; no bias tensor when cfg has "bias": false
        y = x @ p[name + ".weight"]
        return y + p[name + ".bias"] if name + ".bias" in p else y

    x = p["wte.weight"][ids] + p["wpe.weight"][:Tn]
    for i in range(cfg["n_layer"]):
        h = f"h.{i}."
        a = ln(x, (C,), p[h + "ln_1.weight"], p.get(h + "ln_1.bias"), eps)
        qkv = lin(a, h + "attn.c_attn")
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(Bn, Tn, H, C // H).transpose(1, 2) for t in (q, k, v))
        y = causal_attention(q, k, v).transpose(1, 2).reshape(Bn, Tn, C)
        x = x + lin(y, h + "attn.c_proj")
        a = ln(x, (C,), p[h + "ln_2.weight"], p.get(h + "ln_2.bias"), eps)
        m = gelu_new(lin(a, h + "mlp.c_fc"))
        x = x + lin(m, h + "mlp.c_proj")
    x = ln(x, (C,), p["ln_f.weight"], p.get("ln_f.bias"), eps)
    return x @ p["wte.weight"].t()  # tied head


GPT2_NOBIAS = dict(GPT2, bias=False)


def gpt2_nobias_params(cfg, g):  # the same draws as gpt2_params, biases dropped
    return {k: v for k, v in gpt2_params(cfg, g).items() if not k.endswith(".bias")}


# ---- Llama -------------------------------------------------------------------------------
LLAMA = dict(model_type="llama", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, intermediate_size=64, vocab_size=64,
             max_position_embeddings=16, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=False, hidden_act="silu", attention_dropout=0.0)


def llama_params(cfg, g):
    C, V, F = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = C // H
    p = {"model.embed_tokens.weight": randn(g, V, C)}
    for i in range(cfg["num_hidden_layers"]):
        l = f"model.layers.{i}."
        p[l + "input_layernorm.weight"] = randn(g, C, std=0.1, mean=1.0)
        p[l + "self_attn.q_proj.weight"] = randn(g, C, C)
        p[l + "self_attn.k_proj.weight"] = randn(g, Hkv * D, C)
        p[l + "self_attn.v_proj.weight"] = randn(g, Hkv * D, C)
        p[l + "self_attn.o_proj.weight"] = randn(g, C, C)
        p[l + "post_attention_layernorm.weight"] = randn(g, C, std=0.1, mean=1.0)
        p[l + "mlp.gate_proj.weight"] = randn(g, F, C)
        p[l + "mlp.up_proj.weight"] = randn(g, F, C)
        p[l + "mlp.down_proj.weight"] = randn(g, C, F)
    p["model.norm.weight"] = randn(g, C, std=0.1, mean=1.0)
    p["lm_head.weight"] = randn(g, V, C)
    return p


def rms_norm(x, w, eps):  # HF LlamaRMSNorm
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x, theta):  # x [B,H,T,D], positions 0..T-1, HF LlamaRotaryEmbedding
    D, Tn = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.outer(torch.arange(Tn, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def repeat_kv(x, n_rep):  # [B,Hkv,T,D] -> [B,Hkv*n_rep,T,D]
    Bn, Hkv, Tn, D = x.shape
    return x[:, :, None].expand(Bn, Hkv, n_rep, Tn, D).reshape(Bn, Hkv * n_rep, Tn, D)


def llama_forward(cfg, p, ids):
    C, H, Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, eps, theta = C // H, cfg["rms_norm_eps"], cfg["rope_theta"]
    Bn, Tn = ids.shape
    x = p["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        l = f"model.layers.{i}."
        a = rms_norm(x, p[l + "input_layernorm.weight"], eps)
        q = (a @ p[l + "self_attn.q_proj.weight"].t()).view(Bn, Tn, H, D).transpose(1, 2)
        k = (a @ p[l + "self_attn.k_proj.weight"].t()).view(Bn, Tn, Hkv, D).transpose(1, 2)
        v = (a @ p[l + "self_attn.v_proj.weight"].t()).view(Bn, Tn, Hkv, D).transpose(1, 2)
        q, k = rope(q, theta), rope(k, theta)
        k, v = repeat_kv(k, H // Hkv), repeat_kv(v, H // Hkv)
        y = causal_attention(q, k, v).transpose(1, 2).reshape(Bn, Tn, C)
        x = x + y @ p[l + "self_attn.o_proj.weight"].t()
        a = rms_norm(x, p[l + "post_attention_layernorm.weight"], eps)
        gate = a @ p[l + "mlp.gate_proj.weight"].t()
        up = a @ p[l + "mlp.up_proj.weight"].t()
        x = x + (torch.nn.functional.silu(gate) * up) @ p[l + "mlp.down_proj.weight"].t()
    x = rms_norm(x, p["model.norm.weight"], eps)
    return x @ p["lm_head.weight"].t()


# ---- the reference -----------------------------------------------------------------------
def loss_of(logits, targets):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=-1)


def reference(arch, cfg, params32, forward, ids, targets, out):
    out.append((f"{arch}/config", 2, json.dumps(cfg, indent=2).encode()))
    for name, t in params32.items():
        out.append((f"{arch}/param/{name}", 0, t))
    out.append((f"{arch}/ids", 1, ids.to(torch.int32)))
    out.append((f"{arch}/targets", 1, targets.to(torch.int32)))
    p = {k: v.double().requires_grad_(True) for k, v in params32.items()}
    logits = forward(cfg, p, ids)
    loss = loss_of(logits, targets)
    loss.backward()
    out.append((f"{arch}/logits", 0, logits.detach().float()))
    out.append((f"{arch}/loss", 0, loss.detach().float().reshape(1)))
    for name in params32:
        out.append((f"{arch}/grad/{name}", 0, p[name].grad.float()))
    # AdamW from the same start; decay only on tensors with >= 2 dims.
    p = {k: v.double().requires_grad_(True) for k, v in params32.items()}
    decay = [t for t in p.values() if t.dim() >= 2]
    no_decay = [t for t in p.values() if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    losses = []
    for step in range(N_ADAMW + 1):
        opt.zero_grad()
        loss = loss_of(forward(cfg, p, ids), targets)
        losses.append(loss.item())
        if step == N_ADAMW:
            break
        loss.backward()
        opt.step()
    out.append((f"{arch}/adamw_losses", 0, torch.tensor(losses, dtype=torch.float32)))


def write(path, entries):
    with open(path, "wb") as f:
        f.write(b"STREF\0\0\1")
        f.write(struct.pack("<II", 1, len(entries)))
        for name, dtype, data in entries:
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            if dtype == 2:
                f.write(struct.pack("<III", 2, 1, len(data)) + data)
                continue
            t = data.contiguous()
            f.write(struct.pack("<II", dtype, t.dim()))
            f.write(struct.pack(f"<{t.dim()}I", *t.shape))
            f.write(t.numpy().astype("<f4" if dtype == 0 else "<i4").tobytes())


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else \
        __file__.rsplit("/", 1)[0] + "/model_reference.bin"
    g = torch.Generator().manual_seed(1234)
    out = []
    ids = torch.randint(0, 64, (B, T), generator=g)
    targets = torch.randint(0, 64, (B, T), generator=g)
    reference("gpt2", GPT2, gpt2_params(GPT2, g), gpt2_forward, ids, targets, out)
    ids = torch.randint(0, 64, (B, T), generator=g)
    targets = torch.randint(0, 64, (B, T), generator=g)
    targets[1, 3] = -1  # an ignored target: the mean runs over the other 15
    reference("llama", LLAMA, llama_params(LLAMA, g), llama_forward, ids, targets, out)
    ids = torch.randint(0, 64, (B, T), generator=g)
    targets = torch.randint(0, 64, (B, T), generator=g)
    reference("gpt2-nobias", GPT2_NOBIAS, gpt2_nobias_params(GPT2_NOBIAS, g), gpt2_forward, ids,
              targets, out)
    write(path, out)
    print(f"wrote {path}: {len(out)} entries")


if __name__ == "__main__":
    main()
