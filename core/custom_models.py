"""The seeds' own language models, in transformers' format, decodable by the engine.

- `TransformerLM`: seed 001's post-LayerNorm Transformer (learned positions, causal mask, ReLU FFN,
  Add & Norm after each sub-layer), with a KV cache for decoding.
- `LSTMLM`: the forward half of seed 000's ELMo: embeddings, stacked LSTMs, a linear read-out.

Both are `PreTrainedModel`s registered with the Auto classes here, in our own code, so
`save_pretrained` writes config.json + model.safetensors and `AutoModelForCausalLM.from_pretrained`
loads them with `trust_remote_code=False`. For decoding they offer `prefill`, `step` and `select_rows`
on an explicit state, which `core.lm.NativeLM` hands to the engine.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput


class TransformerLMConfig(PretrainedConfig):
    model_type = "playground-transformer-lm"

    def __init__(self, vocab_size=8192, max_position_embeddings=256, hidden_size=192, num_hidden_layers=4,
                 num_attention_heads=4, intermediate_size=768, dropout=0.1, **kwargs):
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        super().__init__(**kwargs)


class LSTMLMConfig(PretrainedConfig):
    model_type = "playground-lstm-lm"

    def __init__(self, vocab_size=8192, hidden_size=256, num_hidden_layers=2, dropout=0.1,
                 max_position_embeddings=1024, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size  # embedding size = LSTM units
        self.num_hidden_layers = num_hidden_layers
        self.dropout = dropout
        # an RNN has no position table; this only bounds how far the app lets it run
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class _PostLNLayer(nn.Module):
    """Seed 001's TransformerLayer: x = LN(x + MHA(x)); x = LN(x + FFN(x))."""

    def __init__(self, c: TransformerLMConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)
        self.out = nn.Linear(c.hidden_size, c.hidden_size)
        self.norm1 = nn.LayerNorm(c.hidden_size)
        self.ffn = nn.Sequential(nn.Linear(c.hidden_size, c.intermediate_size), nn.ReLU(),
                                 nn.Linear(c.intermediate_size, c.hidden_size))
        self.norm2 = nn.LayerNorm(c.hidden_size)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, past=None):
        """x (B, T, H); past: (keys, values) each (B, heads, T0, H/heads) or None. Returns x, (k, v)."""
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # causal within the new block; every cached position is in the past
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=past is None and t > 1,
                                              dropout_p=self.drop.p if self.training else 0.0)
        attn = self.out(attn.transpose(1, 2).reshape(b, t, h))
        x = self.norm1(x + self.drop(attn))
        x = self.norm2(x + self.drop(self.ffn(x)))
        return x, (k, v)


class _StatefulLM(PreTrainedModel):
    """forward for training and scoring, prefill/step for the engine, all over the subclass's
    `_run(input_ids, state) -> (logits (B, T, V), state)`."""

    def forward(self, input_ids, labels=None, **kwargs):
        logits, _ = self._run(input_ids)
        return CausalLMOutput(loss=_lm_loss(logits, labels), logits=logits)

    def prefill(self, input_ids):
        logits, state = self._run(input_ids)
        return logits[:, -1, :].float(), state

    def step(self, input_ids, state):
        logits, state = self._run(input_ids, state)
        return logits[:, -1, :].float(), state


class TransformerLMForCausalLM(_StatefulLM):
    config_class = TransformerLMConfig
    base_model_prefix = "transformer_lm"
    _tied_weights_keys: dict = {}

    def __init__(self, config: TransformerLMConfig):
        super().__init__(config)
        self.word_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.pos_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(_PostLNLayer(config) for _ in range(config.num_hidden_layers))
        self.output_layer = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _run(self, input_ids, past=None):
        start = 0 if past is None else past[0][0].shape[2]
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        x = self.word_embedding(input_ids) + self.pos_embedding(positions)[None]
        new = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, None if past is None else past[i])
            new.append(kv)
        return self.output_layer(x), new

    @torch.no_grad()
    def attention_maps(self, input_ids):
        """Attention weights (layers, heads, T, T) for one sequence, computed explicitly."""
        t = input_ids.shape[1]
        x = self.word_embedding(input_ids) + self.pos_embedding(torch.arange(t, device=input_ids.device))[None]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        maps = []
        for layer in self.layers:
            q, k, _ = layer.qkv(x).view(1, t, 3, layer.heads, -1).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            maps.append(scores.masked_fill(~causal, float("-inf")).softmax(-1)[0])
            x, _ = layer(x)
        return torch.stack(maps)

    @staticmethod
    def select_rows(state, rows):
        """The state is a list of per-layer (keys, values), each (B, heads, T, head size)."""
        return [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in state]


class LSTMLMForCausalLM(_StatefulLM):
    config_class = LSTMLMConfig
    base_model_prefix = "lstm_lm"
    _tied_weights_keys: dict = {}

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        self.word_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.lstm = nn.LSTM(config.hidden_size, config.hidden_size, num_layers=config.num_hidden_layers,
                            dropout=config.dropout, batch_first=True)
        self.drop = nn.Dropout(config.dropout)
        self.output_layer = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)  # as seed 000's ELMo

    def _run(self, input_ids, state=None):
        out, state = self.lstm(self.drop(self.word_embedding(input_ids)), state)
        return self.output_layer(self.drop(out)), state

    @staticmethod
    def select_rows(state, rows):
        """The state is the LSTM's (h, c), each (layers, B, H)."""
        h, c = state
        return h.index_select(1, rows).contiguous(), c.index_select(1, rows).contiguous()


def _lm_loss(logits, labels):
    if labels is None:
        return None
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


AutoConfig.register(TransformerLMConfig.model_type, TransformerLMConfig)
AutoConfig.register(LSTMLMConfig.model_type, LSTMLMConfig)
AutoModelForCausalLM.register(TransformerLMConfig, TransformerLMForCausalLM)
AutoModelForCausalLM.register(LSTMLMConfig, LSTMLMForCausalLM)
