#!/usr/bin/env python3
"""Golden data for tests/models/vae_test.cc: a plain-PyTorch AutoencoderKL with diffusers semantics.

diffusers is not installed here, so this re-implements the pieces the SD VAE uses, following
diffusers' code (models/resnet.py ResnetBlock2D with temb=None and output_scale_factor 1;
downsampling.py Downsample2D(use_conv=True, padding=0): F.pad(x, (0, 1, 0, 1)) then 3×3 stride-2
conv; upsampling.py Upsample2D(use_conv=True): nearest ×2 then 3×3 conv; attention_processor.py
Attention(heads=1, dim_head=C, norm_num_groups, residual_connection=True, rescale_output_factor=1,
bias=True) with AttnProcessor semantics; autoencoders/vae.py Encoder/Decoder with
UNetMidBlock2D; autoencoder_kl.py quant_conv/post_quant_conv and DiagonalGaussianDistribution
with logvar clamped to [-30, 20]). Module attribute names equal diffusers', so state_dict() keys
are the diffusers safetensors names.

Run from the repo root (Debian python3 with python3-torch):  /usr/bin/python3 tests/models/golden/vae_reference.py
Writes tests/models/golden/:
  vae_config.json             the tiny VaeConfig (cellflux JSON field names)
  vae_weights.safetensors     random weights, current names (to_q/to_k/to_v/to_out.0)
  vae_weights_old.safetensors same weights, old names (query/key/value/proj_attn) stored as
                              1×1 conv weights [C, C, 1, 1]
  vae_io.safetensors          x [2,3,16,16], mean, logvar, eps, sample = mean + std·eps,
                              decoded = Decode(sample), kl (per-sample KL to N(0, I)),
                              cp_x [1,5,16,16], cp_latent (CellPainting encode, mean, scaled),
                              cp_decoded (CellPainting decode of cp_latent)
With --count it also prints the parameter count of the default SD config (83,653,863).
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import safetensors_io  # noqa: E402

EPS = 1e-6


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=EPS, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=EPS, affine=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout p=0 in the VAE
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / 1.0


class Downsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Attention(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.heads = 1
        self.scale = c ** -0.5
        self.group_norm = nn.GroupNorm(groups, c, eps=EPS, affine=True)
        self.to_q = nn.Linear(c, c, bias=True)
        self.to_k = nn.Linear(c, c, bias=True)
        self.to_v = nn.Linear(c, c, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(c, c, bias=True), nn.Dropout(0.0)])

    def forward(self, hidden_states):
        residual = hidden_states
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        q, k, v = self.to_q(hidden_states), self.to_k(hidden_states), self.to_v(hidden_states)
        # AttnProcessor: baddbmm(empty, q, kᵀ, beta=0, alpha=scale) then softmax.
        scores = torch.baddbmm(torch.empty(b, h * w, h * w), q, k.transpose(-1, -2), beta=0, alpha=self.scale)
        probs = scores.softmax(dim=-1)
        hidden_states = torch.bmm(probs, v)
        hidden_states = self.to_out[1](self.to_out[0](hidden_states))
        hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        return (hidden_states + residual) / 1.0


class UNetMidBlock2D(nn.Module):
    def __init__(self, c, groups, attention):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, groups), ResnetBlock2D(c, c, groups)])
        self.attentions = nn.ModuleList([Attention(c, groups)]) if attention else None

    def forward(self, x):
        x = self.resnets[0](x)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class DownEncoderBlock2D(nn.Module):
    def __init__(self, cin, cout, layers, groups, add_downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if add_downsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, cin, cout, layers, groups, add_upsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc, groups = cfg["block_out_channels"], cfg["norm_num_groups"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        out = boc[0]
        for i, width in enumerate(boc):
            prev, out = out, width
            self.down_blocks.append(DownEncoderBlock2D(prev, out, cfg["layers_per_block"], groups, i != len(boc) - 1))
        self.mid_block = UNetMidBlock2D(boc[-1], groups, cfg["mid_block_attention"])
        self.conv_norm_out = nn.GroupNorm(groups, boc[-1], eps=EPS)
        self.conv_out = nn.Conv2d(boc[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc, groups = cfg["block_out_channels"], cfg["norm_num_groups"]
        rev = list(reversed(boc))
        self.conv_in = nn.Conv2d(cfg["latent_channels"], boc[-1], 3, padding=1)
        self.mid_block = UNetMidBlock2D(boc[-1], groups, cfg["mid_block_attention"])
        self.up_blocks = nn.ModuleList()
        out = rev[0]
        for i, width in enumerate(rev):
            prev, out = out, width
            self.up_blocks.append(UpDecoderBlock2D(prev, out, cfg["layers_per_block"] + 1, groups, i != len(rev) - 1))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=EPS)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        z = self.conv_in(z)
        z = self.mid_block(z)
        for b in self.up_blocks:
            z = b(z)
        return self.conv_out(F.silu(self.conv_norm_out(z)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        lc = cfg["latent_channels"]
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, x):
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


def kl(mean, logvar):
    return 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=[1, 2, 3])


def old_names(state):
    """diffusers' pre-refactor attention names, with projections stored as 1×1 convolutions."""
    out = {}
    for name, t in state.items():
        new = name
        for a, b in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
            if a in name:
                new = name.replace(a, b)
                if name.endswith(".weight"):
                    t = t[:, :, None, None]
        out[new] = t.clone()
    return out


def cellpainting_encode(vae, x, scaling):
    n, c, h, w = x.shape
    rgb = x.reshape(n * c, 1, h, w).repeat(1, 3, 1, 1)
    mean, _ = vae.encode(rgb)
    return mean.reshape(n, c * mean.shape[1], mean.shape[2], mean.shape[3]) * scaling


def cellpainting_decode(vae, z, latent_channels, scaling):
    n, cl, h, w = z.shape
    c = cl // latent_channels
    out = vae.decode((z / scaling).reshape(n * c, latent_channels, h, w))
    return out.mean(dim=1).reshape(n, c, out.shape[2], out.shape[3])


TINY = {"in_channels": 3, "out_channels": 3, "block_out_channels": [8, 16, 16], "layers_per_block": 1,
        "latent_channels": 4, "norm_num_groups": 4, "scaling_factor": 0.5, "mid_block_attention": True}

SD = {"in_channels": 3, "out_channels": 3, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
      "latent_channels": 4, "norm_num_groups": 32, "scaling_factor": 0.18215, "mid_block_attention": True}


def main():
    if "--count" in sys.argv:
        print(sum(p.numel() for p in AutoencoderKL(SD).parameters()))
        return
    out_dir = os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(1234)
    vae = AutoencoderKL(TINY).eval()
    # Default init leaves GroupNorm at (1, 0); perturb every parameter so all of them matter.
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = {k: v.detach().clone() for k, v in vae.state_dict().items()}

    with torch.no_grad():
        x = torch.rand(2, 3, 16, 16) * 2 - 1
        mean, logvar = vae.encode(x)
        eps = torch.randn_like(mean)
        sample = mean + torch.exp(0.5 * logvar) * eps
        decoded = vae.decode(sample)
        cp_x = torch.rand(1, 5, 16, 16) * 2 - 1
        cp_latent = cellpainting_encode(vae, cp_x, TINY["scaling_factor"])
        cp_decoded = cellpainting_decode(vae, cp_latent, TINY["latent_channels"], TINY["scaling_factor"])

    with open(os.path.join(out_dir, "vae_config.json"), "w") as f:
        json.dump(TINY, f, indent=2)
        f.write("\n")
    safetensors_io.save(os.path.join(out_dir, "vae_weights.safetensors"), state)
    safetensors_io.save(os.path.join(out_dir, "vae_weights_old.safetensors"), old_names(state))
    safetensors_io.save(os.path.join(out_dir, "vae_io.safetensors"), {
        "x": x, "mean": mean, "logvar": logvar, "eps": eps, "sample": sample, "decoded": decoded,
        "kl": kl(mean, logvar), "cp_x": cp_x, "cp_latent": cp_latent, "cp_decoded": cp_decoded})
    print("wrote golden VAE files to", out_dir, "with", sum(v.numel() for v in state.values()), "parameters")


if __name__ == "__main__":
    main()
