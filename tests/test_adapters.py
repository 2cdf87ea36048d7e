import pytest
import torch
import torch.nn.functional as F

from cptpp.config import ConfigError
from cptpp.peft.adapters import AdapterConfig, BottleneckAdapter, add_adapters, find_targets
from cptpp.peft.peftt import ADDED_NAMES, PEFT_METHODS, PeftSpec, build_classifier, load_peft, save_peft
from cptpp.peft.prompt import SoftPromptConfig
from cptpp.train.params import count_parameters

transformers = pytest.importorskip("transformers")
from tiny_models import tiny_bert, tiny_llama, tiny_gpt2, tiny_t5  # noqa: E402


IDS = torch.tensor([[5, 9, 14, 2, 8], [4, 6, 21, 3, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])


def outputs(model):
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            return model(input_ids=IDS, attention_mask=MASK, decoder_input_ids=IDS[:, :2]).logits
        out = model(input_ids=IDS, attention_mask=MASK)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


def test_bottleneck_adapter_is_identity_at_init_and_has_the_right_size():
    a = BottleneckAdapter(32, 4, "relu", 0.01, torch.Generator().manual_seed(0))
    h = torch.randn(3, 7, 32)
    assert torch.equal(a(h), h)
    assert sum(p.numel() for p in a.parameters()) == 2 * 32 * 4 + 4 + 32
    assert a.down.weight.abs().sum() > 0  # only the up-projection is zero


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama, tiny_gpt2, tiny_t5])
@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer"])
def test_adapters_leave_outputs_unchanged_at_init(make, kind):
    model = make()
    before = outputs(model)
    add_adapters(model, AdapterConfig(kind=kind, reduction_factor=4))
    torch.testing.assert_close(outputs(model), before, rtol=0, atol=0)
    # and they are really on the forward path: a non-zero up-projection changes the output
    for m in model.modules():
        if isinstance(m, BottleneckAdapter):
            torch.nn.init.normal_(m.up.weight)
    assert not torch.allclose(outputs(model), before)


def test_placement_houlsby_vs_pfeiffer_on_bert_and_llama():
    assert find_targets(tiny_bert(), AdapterConfig(kind="houlsby")) == [
        "encoder.layer.0.attention.output.dense", "encoder.layer.0.output.dense",
        "encoder.layer.1.attention.output.dense", "encoder.layer.1.output.dense"]
    assert find_targets(tiny_bert(), AdapterConfig(kind="pfeiffer")) == [
        "encoder.layer.0.output.dense", "encoder.layer.1.output.dense"]
    assert find_targets(tiny_llama(), AdapterConfig(kind="houlsby")) == [
        "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.down_proj"]


def test_adapter_acts_on_the_projection_output_before_the_residual():
    model = tiny_llama()
    add_adapters(model, AdapterConfig(kind="pfeiffer", reduction_factor=4))
    proj = model.model.layers[0].mlp.down_proj
    torch.nn.init.normal_(proj.bottleneck_adapter.up.weight)
    seen = {}
    proj.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0].detach()))
    proj.register_forward_hook(lambda m, inp, out: seen.setdefault("y", out.detach()))
    outputs(model)
    raw = F.linear(seen["x"], proj.weight)
    a = proj.bottleneck_adapter
    torch.testing.assert_close(seen["y"], raw + a.up(a.act(a.down(raw))))


def test_only_adapter_parameters_train():
    backbone = tiny_bert()
    model = build_classifier(backbone, PeftSpec("adapter", 3, adapter=AdapterConfig(reduction_factor=4)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("bottleneck_adapter" in n or n.startswith("head.") for n in trainable)
    assert len([n for n in trainable if n.endswith("up.weight")]) == 4
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = F.cross_entropy(model(IDS, MASK), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable
    hidden, bottleneck = 16, 4
    per_adapter = 2 * hidden * bottleneck + bottleneck + hidden
    count = count_parameters(model, model.backbone, ADDED_NAMES)
    assert count.trainable == 4 * per_adapter + hidden * 3 + 3
    assert count.base == sum(p.numel() for p in tiny_bert().parameters())


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama])
def test_prompt_plus_adapter_trains_both_and_nothing_else(make):
    backbone = make()
    is_lm = hasattr(backbone, "lm_head")
    spec = PeftSpec("prompt+adapter", 3, label_token_ids=[7, 8, 9] if is_lm else None,
                    prompt=SoftPromptConfig(num_tokens=4), adapter=AdapterConfig(kind="pfeiffer", reduction_factor=4))
    model = build_classifier(backbone, spec)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.named_parameters()
                if "bottleneck_adapter" in n or n == "prompt.weight" or n.startswith("head.")}
    assert trainable == expected and "prompt.weight" in trainable
    assert any("bottleneck_adapter" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = F.cross_entropy(model(IDS, MASK), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable


@pytest.mark.parametrize("method", ["full", "prompt", "adapter", "prompt+adapter"])
def test_save_load_restores_outputs(tmp_path, method):
    spec = PeftSpec(method, 3, label_token_ids=[7, 8, 9], prompt=SoftPromptConfig(num_tokens=3),
                    adapter=AdapterConfig(reduction_factor=4))
    model = build_classifier(tiny_llama(), spec)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = F.cross_entropy(model(IDS, MASK), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        want = model(IDS, MASK)
    save_peft(model, tmp_path / "run")
    fresh = tiny_llama()
    with torch.no_grad():
        assert not torch.allclose(build_classifier(tiny_llama(), spec)(IDS, MASK), want)
        loaded = load_peft(fresh, tmp_path / "run")
        torch.testing.assert_close(loaded(IDS, MASK), want)
    assert loaded.peft_spec.method == method


def test_errors_name_valid_choices():
    assert PEFT_METHODS.names() == ["adapter", "full", "probe", "prompt", "prompt+adapter"]
    with pytest.raises(ConfigError, match="method='lora'.*prompt\\+adapter"):
        PeftSpec("lora", 3)
    with pytest.raises(ConfigError, match="kind='parallel'"):
        AdapterConfig(kind="parallel")
    with pytest.raises(ConfigError, match="no default adapter targets"):
        add_adapters(torch.nn.Sequential(torch.nn.Linear(4, 4)), AdapterConfig())
    model = tiny_bert()
    add_adapters(model, AdapterConfig())
    with pytest.raises(ConfigError, match="already has"):
        add_adapters(model, AdapterConfig())
