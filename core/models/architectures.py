"""The seeds' own language models, in transformers' format, decodable by the engine.

- `TransformerLM`: seed 001's post-LayerNorm Transformer (learned positions, causal mask, ReLU FFN,
  Add & Norm after each sub-layer), with a KV cache for decoding.
- `LSTMLM`: the forward half of seed 000's ELMo: embeddings, stacked LSTMs, a linear read-out.

Both are `PreTrainedModel`s registered with the Auto classes here, in our own code, so
`save_pretrained` writes config.json + model.safetensors and `AutoModelForCausalLM.from_pretrained`
loads them with `trust_remote_code=False`. For decoding they offer `prefill`, `step` and `select_rows`
on an explicit state, which `core.models.lm.NativeLM` hands to the engine.

They also work with transformers' `model.generate()` (greedy, beam search, sampling and the logits
processors), with an incremental cache: `forward` wraps the model's own state in a `StateCache`, which
generate() carries from step to step (and reorders for beam search), so generate() prefills the prompt
once and then runs one token per step through the same `_run` as the engine: same numbers, same tokens.

This file imports only math, torch and transformers: the app's recipe export pastes it as it is into a
standalone script, and it may run twice in one process (the Auto registrations below allow for that).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast


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


class StateCache:
    """A model's own decoding state as generate() carries it between forward passes.

    The state is whatever the model's `_run` returns (the Transformer's list of per-layer (keys, values),
    the LSTM's (h, c)); `select_rows` is the model's own. generate() asks the cache for its length (to
    feed only the tokens it has not seen) and, in beam search, to `reorder_cache` its rows after every
    step. `forward` updates it in place, as transformers' own caches are.
    """

    is_compileable = False  # generate() must not try to torch.compile around it
    is_croppable = False  # no rolling back (assisted decoding is refused: the models say `_is_stateful`)

    def __init__(self, state, seq_length: int, select_rows):
        self.state = state
        self.seq_length = seq_length  # tokens seen so far, per row
        self.select_rows = select_rows

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seq_length

    @property
    def batch_size(self) -> int:
        return self.state[0][0].shape[0] if isinstance(self.state, list) else self.state[0].shape[1]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """New row i continues old row beam_idx[i] (beam search). Rows that stay put are not copied."""
        rows = torch.arange(beam_idx.shape[0], device=beam_idx.device)
        if beam_idx.shape[0] == self.batch_size and torch.equal(beam_idx, rows):
            return
        self.state = self.select_rows(self.state, beam_idx)

    def __repr__(self) -> str:
        return f"StateCache(batch_size={self.batch_size}, seq_length={self.seq_length})"


class _StatefulLM(PreTrainedModel, GenerationMixin):
    """forward for training, scoring and generate(), prefill/step for the engine, all over the
    subclass's `_trunk(input_ids, state) -> (last hidden states (B, T, H), state)` and its
    `output_layer`."""

    _is_stateful = True  # generate(): the state cannot be rolled back, so no assisted decoding

    def forward(self, input_ids, past_key_values=None, attention_mask=None, use_cache=None, labels=None,
                return_dict=None, **kwargs):
        """Logits for `input_ids`; with `use_cache` (generate() sets it) also the state after them as a
        `StateCache`, and given `past_key_values` (a `StateCache`) `input_ids` continue that state.

        Sequences are never padded, so an `attention_mask` must be all ones (generate() passes one)."""
        if past_key_values is not None and not isinstance(past_key_values, StateCache):
            raise TypeError(f"{type(self).__name__} keeps its own decoding state: past_key_values must be the "
                            f"StateCache that a previous call returned, got {type(past_key_values).__name__}.")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError(f"{type(self).__name__} does not support padding: the attention_mask must be all "
                             "ones, so generate() one prompt (or prompts of equal length) at a time.")
        if use_cache is None:
            use_cache = past_key_values is not None
        if past_key_values is not None:
            logits, state = self._run(input_ids, past_key_values.state)
        elif use_cache and input_ids.shape[0] > 1 and torch.equal(input_ids, input_ids[:1].expand_as(input_ids)):
            # generate() repeats the prompt for every beam or returned sample before its first pass; run it
            # once and repeat the state, as the engine does (fewer FLOPs, and the same numbers in every row)
            logits, state = self._run(input_ids[:1])
            rows = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
            logits, state = logits.expand(input_ids.shape[0], -1, -1), self.select_rows(state, rows)
        else:
            logits, state = self._run(input_ids)
        cache = None
        if use_cache:
            cache = past_key_values if past_key_values is not None else StateCache(None, 0, self.select_rows)
            cache.state, cache.seq_length = state, cache.seq_length + input_ids.shape[1]
        return CausalLMOutputWithPast(loss=_lm_loss(logits, labels), logits=logits, past_key_values=cache)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, use_cache=None,
                                      **kwargs):
        """generate()'s inputs for the next pass: the whole prompt first, then only the tokens the cache
        has not seen (one per step)."""
        if past_key_values is not None:
            input_ids = input_ids[:, past_key_values.get_seq_length():]
        return {"input_ids": input_ids.contiguous(), "past_key_values": past_key_values,
                "attention_mask": attention_mask, "use_cache": use_cache}

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() must not make a DynamicCache: forward makes the StateCache itself

    def _run(self, input_ids, state=None):
        hidden, state = self._trunk(input_ids, state)
        return self.output_layer(hidden), state

    def prefill(self, input_ids, hidden_states=False):
        return self._last(input_ids, None, hidden_states)

    def step(self, input_ids, state, hidden_states=False):
        return self._last(input_ids, state, hidden_states)

    def _last(self, input_ids, state, hidden_states: bool):
        """Last-position logits (B, V) in float32 and the state; with hidden_states also the last
        layer's hidden states (B, T, H), what the output layer reads (contrastive search compares them)."""
        hidden, state = self._trunk(input_ids, state)
        logits = self.output_layer(hidden)[:, -1, :].float()
        return (logits, state, hidden) if hidden_states else (logits, state)


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

    def _trunk(self, input_ids, past=None):
        """The last post-LayerNorm layer's output (B, T, H) and the per-layer (keys, values)."""
        start = 0 if past is None else past[0][0].shape[2]
        if start + input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"{start + input_ids.shape[1]} tokens are past this model's "
                             f"{self.config.max_position_embeddings} positions; generate fewer new tokens.")
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        x = self.word_embedding(input_ids) + self.pos_embedding(positions)[None]
        new = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, None if past is None else past[i])
            new.append(kv)
        return x, new

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

    def _trunk(self, input_ids, state=None):
        """The top LSTM layer's output (B, T, H), what its output layer reads (contrastive search
        compares these as a transformer's last hidden states), and the LSTM's (h, c)."""
        out, state = self.lstm(self.drop(self.word_embedding(input_ids)), state)
        return self.drop(out), state

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


def _register(config_class, model_class) -> None:
    """Register with the Auto classes once: if this source already ran in this process (the module, then
    a recipe pasted from it), the first registration stays."""
    try:
        AutoConfig.for_model(config_class.model_type)
        return  # already registered
    except ValueError:
        pass
    AutoConfig.register(config_class.model_type, config_class)
    AutoModelForCausalLM.register(config_class, model_class)


_register(TransformerLMConfig, TransformerLMForCausalLM)
_register(LSTMLMConfig, LSTMLMForCausalLM)
