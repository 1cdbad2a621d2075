#!/usr/bin/python3
"""Golden files for tests/models/sit_test.cc: a plain-PyTorch SiT written from the reference
SiT/DiT models.py semantics (timm Attention/Mlp, adaLN-Zero blocks, 2-D sin-cos pos_embed,
unpatchify, learn_sigma chunk) plus the CellFluxMM gene tokens as DESIGN.md §1 describes them.

Every parameter is overwritten with random non-zero values (the reference init zeroes adaLN and
the heads, which would make outputs trivially zero). The forward runs in float64; the files hold
float32 weights/inputs and the float64 result rounded to float32.

Run from the repository root with Debian's interpreter (it has python3-torch):
    /usr/bin/python3 tests/models/golden/sit_reference.py
Writes tests/models/golden/sit_{plain,gene}_{weights,io}.safetensors.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import safetensors_io  # noqa: E402


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def sincos_1d(dim, pos):
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid_size):
    gh = np.arange(grid_size, dtype=np.float32)
    gw = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid_size, grid_size)  # w first
    return np.concatenate([sincos_1d(dim // 2, grid[0]), sincos_1d(dim // 2, grid[1])], axis=1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq = freq

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.freq).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, y):
        return self.embedding_table(y)


class PatchEmbed(nn.Module):
    def __init__(self, cin, hidden, p):
        super().__init__()
        self.proj = nn.Conv2d(cin, hidden, kernel_size=p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):  # timm.models.vision_transformer.Attention, qkv_bias=True
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        sm, cm, gm, sp, cp, gp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, cm))
        return x + gp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sp, cp))


class FinalLayer(nn.Module):
    def __init__(self, hidden, p, cout):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, p * p * cout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class GeneFinalLayer(nn.Module):
    def __init__(self, hidden, k, g):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(k * hidden, g)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = modulate(self.norm_final(x), shift, scale)
        return self.linear(x.reshape(x.shape[0], -1))


class SiT(nn.Module):
    def __init__(self, input_size, patch_size, in_channels, hidden_size, depth, num_heads, mlp_ratio,
                 num_classes, learn_sigma, gene_latent_dim=0, gene_tokens=0):
        super().__init__()
        self.c = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.p = patch_size
        self.hidden = hidden_size
        self.k = gene_tokens
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(hidden_size, grid)).float().unsqueeze(0),
                                      requires_grad=False)
        self.blocks = nn.ModuleList([SiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        if gene_latent_dim > 0:
            self.gene_embedder = nn.Linear(gene_latent_dim, gene_tokens * hidden_size)
            self.gene_pos_embed = nn.Parameter(torch.zeros(1, gene_tokens, hidden_size))
            self.gene_final_layer = GeneFinalLayer(hidden_size, gene_tokens, gene_latent_dim)

    def unpatchify(self, x):
        c, p = self.out_channels, self.p
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x, t, y, gene=None):
        x = self.x_embedder(x) + self.pos_embed
        num_image = x.shape[1]
        c = self.t_embedder(t) + self.y_embedder(y)
        if gene is not None:
            g = self.gene_embedder(gene).reshape(gene.shape[0], self.k, self.hidden) + self.gene_pos_embed
            x = torch.cat([x, g], dim=1)
        for block in self.blocks:
            x = block(x, c)
        img = self.unpatchify(self.final_layer(x[:, :num_image], c))
        if self.learn_sigma:
            img, _ = img.chunk(2, dim=1)
        gv = self.gene_final_layer(x[:, num_image:], c) if gene is not None else None
        return img, gv


def make_case(name, cfg, n, seed):
    torch.manual_seed(seed)
    model = SiT(**cfg)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname == "pos_embed":
                continue  # fixed sin-cos: the C++ model must produce the same values itself
            # Non-zero everywhere, large enough that adaLN shifts/scales/gates matter.
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() == 1 else 1.0 / math.sqrt(p[0].numel())))
    weights = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    x = torch.randn(n, cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    t = torch.rand(n)
    y = torch.randint(0, cfg["num_classes"] + 1, (n,))
    y[-1] = cfg["num_classes"]  # always exercise the null row
    io = {"x": x, "t": t, "y": y}
    gene = None
    if cfg.get("gene_latent_dim", 0) > 0:
        gene = torch.randn(n, cfg["gene_latent_dim"])
        io["gene"] = gene
    model64 = model.double()
    with torch.no_grad():
        img, gv = model64(x.double(), t.double(), y, None if gene is None else gene.double())
    io["v_image"] = img.float()
    if gv is not None:
        io["v_gene"] = gv.float()
    meta = {k: str(v) for k, v in cfg.items()}
    safetensors_io.save(os.path.join(HERE, f"sit_{name}_weights.safetensors"), weights, meta)
    safetensors_io.save(os.path.join(HERE, f"sit_{name}_io.safetensors"), io, meta)
    print(name, "params", sum(v.numel() for v in weights.values()), "|v_image| mean",
          float(img.abs().mean()), "" if gv is None else f"|v_gene| mean {float(gv.abs().mean()):.4f}")


def main():
    base = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                mlp_ratio=4.0, num_classes=5)
    make_case("plain", dict(base, learn_sigma=True), n=3, seed=1)
    make_case("gene", dict(base, learn_sigma=False, gene_latent_dim=6, gene_tokens=3), n=3, seed=2)


if __name__ == "__main__":
    main()
