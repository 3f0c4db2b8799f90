"""CG-IAA's ClipCap expert in torch, in the released key layout: the reference of the parity tests
(`tests/test_clipcap.py`) and the peer of `benchmarks/critique.py`.

`TorchClipCap` is the published `ClipCaptionModel` with the "transformer_encoder" mapper written
here from its description (SCIENCE.md section 6): `clip_project.{linear, prefix_const,
transformer.layers.{i}.{norm1, attn.{to_queries, to_keys_values, project}, norm2, mlp.{fc1, fc2}}}`
and transformers' `GPT2LMHeadModel` as `gpt`; `state_dict()` has the names of CG-IAA's
`{attribute}.pt`. `released_beam_search` is the released `generate_beam` algorithm (no KV cache:
GPT-2 re-reads the whole sequence each step, as released): log(softmax), length-averaged scores,
stopped beams continue with token 0 at no cost, stop on the stop token, beams best first.
"""

from __future__ import annotations

import torch
import transformers


class _Attention(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.to_queries = torch.nn.Linear(width, width, bias=False)
        self.to_keys_values = torch.nn.Linear(width, 2 * width, bias=False)
        self.project = torch.nn.Linear(width, width)

    def forward(self, x):
        b, n, c = x.shape
        hd = c // self.heads
        q = self.to_queries(x).reshape(b, n, self.heads, hd)
        kv = self.to_keys_values(x).reshape(b, n, 2, self.heads, hd)
        weights = (torch.einsum("bnhd,bmhd->bnmh", q, kv[:, :, 0]) * hd**-0.5).softmax(dim=2)
        return self.project(torch.einsum("bnmh,bmhd->bnhd", weights, kv[:, :, 1]).reshape(b, n, c))


class _Mlp(torch.nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(width, hidden), torch.nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class _Layer(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.attn, self.mlp = _Attention(width, heads), _Mlp(width, 2 * width)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Transformer(torch.nn.Module):
    def __init__(self, width, heads, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList([_Layer(width, heads) for _ in range(layers)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class _Mapper(torch.nn.Module):
    def __init__(self, prefix_dim, width, prefix_length, clip_length, layers, heads):
        super().__init__()
        self.clip_length = clip_length
        self.linear = torch.nn.Linear(prefix_dim, clip_length * width)
        self.prefix_const = torch.nn.Parameter(torch.randn(prefix_length, width))
        self.transformer = _Transformer(width, heads, layers)

    def forward(self, x):
        x = self.linear(x).view(x.shape[0], self.clip_length, -1)
        x = torch.cat([x, self.prefix_const.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        return self.transformer(x)[:, self.clip_length:]


class TorchClipCap(torch.nn.Module):
    """CG-IAA's ClipCaptionModel layout (`clip_project.*` + `gpt.*`), random weights from `seed`.

    Defaults are CG-IAA's experts (ViT-B/16 feature 512, prefix 40, 8 mapper layers of 8 heads,
    GPT-2 small). `spread`: re-draw the weights with this scale (norm gains 1 + spread/3), so that
    random logits are well separated (transformers' std-0.02 init makes near-ties everywhere, and a
    parity test on near-ties tests float rounding); 0 keeps the frameworks' own initialisation."""

    def __init__(self, seed=0, *, prefix_dim=512, width=768, gpt_heads=12, gpt_layers=12, vocab=50257, n_positions=1024,
                 prefix_length=40, clip_length=40, mapper_layers=8, mapper_heads=8, spread=0.0):
        super().__init__()
        torch.manual_seed(seed)
        cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=width, n_layer=gpt_layers,
                                      n_head=gpt_heads, bos_token_id=vocab - 1, eos_token_id=vocab - 1)
        self.gpt = transformers.GPT2LMHeadModel(cfg)
        self.clip_project = _Mapper(prefix_dim, width, prefix_length, clip_length, mapper_layers, mapper_heads)
        self.prefix_length = prefix_length
        if spread:
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if "norm" in name or ".ln_" in name:
                        p.copy_((1.0 if name.endswith("weight") else 0.0) + spread / 3 * torch.randn_like(p))
                    else:
                        p.copy_(spread * torch.randn_like(p))
        self.eval()

    def logits(self, features, tokens):
        """Teacher-forced logits of `tokens` after the prefix of `features` ([B, T, vocab])."""
        prefix = self.clip_project(features)
        embeds = torch.cat([prefix, self.gpt.transformer.wte(tokens)], dim=1)
        return self.gpt(inputs_embeds=embeds).logits[:, self.prefix_length - 1:-1]


@torch.no_grad()
def released_beam_search(model, prefix, beam, max_tokens, stop):
    """The released beam search (module docstring) for one image's prefix [1, P, width]: the beams'
    token lists, best first."""
    generated, tokens, scores = prefix, None, None
    lengths = torch.ones(beam)
    stopped = torch.zeros(beam, dtype=torch.bool)
    for _ in range(max_tokens):
        logp = model.gpt(inputs_embeds=generated).logits[:, -1, :].softmax(-1).log()
        if scores is None:
            scores, nxt = logp.topk(beam, -1)
            generated = generated.expand(beam, *generated.shape[1:])
            nxt, scores = nxt.permute(1, 0), scores.squeeze(0)
            tokens = nxt
        else:
            logp[stopped] = -float("inf")
            logp[stopped, 0] = 0
            sums = scores[:, None] + logp
            lengths[~stopped] += 1
            avg, flat = (sums / lengths[:, None]).view(-1).topk(beam, -1)
            src = flat // sums.shape[1]
            lengths, nxt = lengths[src], (flat % sums.shape[1]).unsqueeze(1)
            tokens = torch.cat([tokens[src], nxt], dim=1)
            generated = generated[src]
            scores = avg * lengths
            stopped = stopped[src]
        generated = torch.cat([generated, model.gpt.transformer.wte(nxt.squeeze(1)).view(beam, 1, -1)], dim=1)
        stopped = stopped | nxt.eq(stop).squeeze(1)
        if stopped.all():
            break
    order = (scores / lengths).argsort(descending=True)
    return [tokens[i, :int(lengths[i])].tolist() for i in order]
