#!/usr/bin/python3
"""torch_train.py — the PyTorch side of `strata bench train`.

The same GPT as Strata's gpt2 (nanoGPT's model.py in plain torch: learned
positions, pre-LayerNorm blocks (biases unless --bias 0), causal self-attention
(scaled_dot_product_attention when torch has it, else nanoGPT's explicit
masked softmax), tanh-GELU MLP, lm head tied to wte, init normal(0, 0.02) with residual projections scaled by 1/sqrt(2 n_layer)), the
same AdamW (weight decay on 2-D tensors only, betas, lr) and grad clipping,
timed on random token batches for the same shapes and thread count.

Prints one JSON line: {"tokens_per_s", "step_s" (median), "steps", "threads",
"torch"}. Exits 3 when torch cannot be imported. Run with /usr/bin/python3
(Debian's python3-torch).
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means "no peer"
    print(json.dumps({"error": f"torch unavailable: {e}"}))
    sys.exit(3)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT's; torch 1.13's has no bias=False)."""

    def __init__(self, c, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Block(nn.Module):
    def __init__(self, c, n_head, dropout, bias):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1 = LayerNorm(c, bias)
        self.c_attn = nn.Linear(c, 3 * c, bias=bias)
        self.c_proj = nn.Linear(c, c, bias=bias)
        self.ln_2 = LayerNorm(c, bias)
        self.c_fc = nn.Linear(c, 4 * c, bias=bias)
        self.mlp_proj = nn.Linear(4 * c, c, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0: fused kernel
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        else:  # nanoGPT's explicit path (Debian's torch 1.13)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
            y = self.drop(att) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.drop(self.c_proj(y))
        x = x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")))
        return x


class GPT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.wte = nn.Embedding(a.vocab, a.n_embd)
        self.wpe = nn.Embedding(a.block, a.n_embd)
        self.drop = nn.Dropout(a.dropout)
        self.h = nn.ModuleList([Block(a.n_embd, a.n_head, a.dropout, bool(a.bias))
                                for _ in range(a.n_layer)])
        self.ln_f = LayerNorm(a.n_embd, bool(a.bias))
        self.lm_head = nn.Linear(a.n_embd, a.vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for n, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * a.n_layer) if n.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    for k, t, d in [("n_layer", int, 4), ("n_head", int, 4), ("n_embd", int, 128),
                    ("block", int, 64), ("batch", int, 12), ("vocab", int, 65),
                    ("dropout", float, 0.0), ("lr", float, 1e-3), ("beta1", float, 0.9),
                    ("beta2", float, 0.99), ("weight_decay", float, 0.1),
                    ("grad_clip", float, 1.0), ("threads", int, 1), ("warmup", int, 2),
                    ("steps", int, 5), ("seed", int, 1337), ("bias", int, 1)]:
        ap.add_argument("--" + k.replace("_", "-"), type=t, default=d, dest=k)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(a.seed)
    model = GPT(a)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8)
    times = []
    for i in range(a.warmup + a.steps):
        data = torch.randint(0, a.vocab, (a.batch, a.block + 1))
        x, y = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        loss = model(x, y)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"tokens_per_s": a.batch * a.block / med, "step_s": med, "steps": a.steps,
                      "threads": a.threads, "torch": torch.__version__,
                      "loss": float(loss.item())}))


if __name__ == "__main__":
    main()
