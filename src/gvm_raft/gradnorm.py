"""Per-sample gradient norms of the summed response log-likelihood, in batches.

For sample s with response tokens y_1..y_T, G_s = ||grad_theta sum_t log pi_theta(y_t | x, y_<t)||_2
with theta one parameter group: "embedding" (the input embedding matrix, as in the RLHFlow
implementation), "lm_head" (the output projection), "lora" (a LoRA adapter's matrices) or "all"
(every trained parameter). A frozen group (the embedding under LoRA) is measured all the same.
Tied weights count once, with the gradient of every use (a tied embedding's gradient includes
the lm_head's).

One forward and one backward per micro-batch: hooks record each module's input and the gradient
of the loss with respect to its output (``torch.autograd.grad`` on the outputs, so no parameter
gradient is accumulated), and per-sample parameter gradients are rebuilt from them:
Linear  dW_s = sum_t g_{s,t} a_{s,t}^T, db_s = sum_t g_{s,t};
Embedding  dE_s[v] = sum_{t: x_{s,t} = v} g_{s,t};
elementwise affine (RMSNorm, LayerNorm)  dw_s = sum_t g_{s,t} * u_{s,t}, u the unit-weight output.
This is exact because samples in a batch do not interact. A Linear weight used once never
materialises dW_s when its "ghost norm" is cheaper (tokens T < in*out / (in+out)):
||dW_s||^2 = sum_{t,u} (a_{s,t} . a_{s,u}) (g_{s,t} . g_{s,u}), two T x T Gram matrices.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from gvm_raft.config import ParameterGroup
from gvm_raft.logprobs import token_log_probs

PARAMETER_GROUPS: tuple[str, ...] = typing.get_args(ParameterGroup)
_DENSE_FLOATS = 1 << 25  # per-sample gradients materialised at once (128 MiB of float32)


def group_parameters(model: nn.Module, group: ParameterGroup) -> list[nn.Parameter]:
    """The parameters whose gradient norm is measured, each once."""
    if group == "embedding":
        return [model.get_input_embeddings().weight]
    if group == "lm_head":
        return list(model.get_output_embeddings().parameters())
    if group == "lora":
        adapters = [p for name, p in model.named_parameters() if "lora_" in name]
        if not adapters:
            raise ValueError("grad_norm_group=lora needs a LoRA model (use_peft=true)")
        return adapters
    if group == "all":
        return [p for p in model.parameters() if p.requires_grad]
    raise ValueError(f"parameter group must be one of {', '.join(PARAMETER_GROUPS)}; got {group!r}")


def per_sample_grad_norms(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    group: ParameterGroup = "embedding",
    micro_batch_size: int = 16,
) -> torch.Tensor:
    """G_s for each sample, shape (B,), float32.

    input_ids, attention_mask: (B, T), left or right padded.
    response_mask: (B, T-1), aligned with ``token_log_probs``: 1 where token t+1 is a response
        token whose log-probability enters the sum.
    """
    params = group_parameters(model, group)
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:  # the outputs of their modules must carry gradients
        p.requires_grad_(True)
    try:
        norms = [
            _micro_batch_norms(
                model,
                params,
                input_ids[i : i + micro_batch_size],
                attention_mask[i : i + micro_batch_size],
                response_mask[i : i + micro_batch_size],
            )
            for i in range(0, input_ids.shape[0], micro_batch_size)
        ]
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return torch.cat(norms) if norms else torch.zeros(0)


@dataclass
class _Use:
    """One call of a module that owns measured parameters."""

    module: nn.Module
    inputs: torch.Tensor
    output: torch.Tensor
    grad: torch.Tensor | None = None


@dataclass
class _Recorder:
    owners: dict[nn.Module, list[str]]
    uses: list[_Use] = field(default_factory=list)
    paused: bool = False

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.paused:
            return
        inputs = args[0]
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            self.paused = True  # the unit-weight call below runs this hook again
            inputs = _unit_affine_output(module, inputs)
            self.paused = False
        self.uses.append(_Use(module, inputs.detach(), output))


def _micro_batch_norms(
    model: nn.Module,
    params: list[nn.Parameter],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    recorder = _Recorder(_owners(model, params))
    handles = [m.register_forward_hook(recorder.hook) for m in recorder.owners]
    try:
        log_probs = token_log_probs(model, input_ids, attention_mask)
    finally:
        for handle in handles:
            handle.remove()
    loss = (log_probs * response_mask.to(log_probs.dtype)).sum()
    grads = torch.autograd.grad(loss, [use.output for use in recorder.uses], allow_unused=True)
    for use, grad in zip(recorder.uses, grads, strict=True):
        use.grad = torch.zeros_like(use.output) if grad is None else grad.detach()
    total = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    for param in params:
        total += _squared_norms(param, recorder, input_ids.shape[0])
    return total.sqrt()


def _owners(model: nn.Module, params: list[nn.Parameter]) -> dict[nn.Module, list[str]]:
    """Modules that directly hold a measured parameter, with the names they hold it under."""
    wanted = {id(p) for p in params}
    owners: dict[nn.Module, list[str]] = {}
    for module in model.modules():
        names = [n for n, p in module.named_parameters(recurse=False) if id(p) in wanted]
        if not names:
            continue
        elementwise = all(p.dim() == 1 for _, p in module.named_parameters(recurse=False))
        if not isinstance(module, (nn.Linear, nn.Embedding)) and not elementwise:
            raise NotImplementedError(
                f"per-sample gradient norms do not support {type(module).__name__}; "
                "choose the 'embedding' or 'lm_head' parameter group"
            )
        owners[module] = names
    return owners


def _unit_affine_output(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """u with output = weight * u + bias, by running the module with weight 1 and bias 0."""
    unit = {
        name: torch.ones_like(p) if name == "weight" else torch.zeros_like(p)
        for name, p in module.named_parameters(recurse=False)
    }
    with torch.no_grad():
        return functional_call(module, unit, (inputs,))


def _squared_norms(param: nn.Parameter, recorder: _Recorder, batch: int) -> torch.Tensor:
    """||per-sample gradient of param||^2, summing the contributions of all its uses."""
    uses = [
        (use, name)
        for use in recorder.uses
        for name in recorder.owners[use.module]
        if getattr(use.module, name) is param
    ]
    if len(uses) == 1 and isinstance(uses[0][0].module, nn.Embedding):
        return _embedding_squared_norms(uses[0][0], param.shape[0])
    if len(uses) == 1 and uses_ghost_norm(uses[0][0], uses[0][1]):
        return _ghost_squared_norms(uses[0][0])
    chunk = max(1, _DENSE_FLOATS // param.numel())
    out = []
    for start in range(0, batch, chunk):
        rows = slice(start, min(batch, start + chunk))
        dense = torch.zeros((rows.stop - rows.start, *param.shape), device=param.device)
        for use, name in uses:
            dense += _contribution(use, name, rows, param.shape)
        out.append(dense.flatten(1).pow(2).sum(1))
    return torch.cat(out)


def _contribution(use: _Use, name: str, rows: slice, shape: torch.Size) -> torch.Tensor:
    """Per-sample gradient of parameter ``name`` of one module call, (rows, *shape)."""
    grad = use.grad[rows].float().flatten(1, -2)  # (b, tokens, out)
    module = use.module
    if isinstance(module, nn.Embedding):
        ids = use.inputs[rows].flatten(1)
        dense = torch.zeros((grad.shape[0], *shape), device=grad.device)
        dense.scatter_add_(1, ids.unsqueeze(-1).expand_as(grad), grad)
        return dense
    if name == "bias":
        return grad.sum(1)
    inputs = use.inputs[rows].float().flatten(1, -2)
    if isinstance(module, nn.Linear):
        return torch.einsum("bto,bti->boi", grad, inputs)
    return (grad * inputs).sum(1)


def uses_ghost_norm(use: _Use, name: str) -> bool:
    """Whether a Linear weight's per-sample norm is cheaper from Gram matrices (T^2 (in + out)
    multiply-adds per sample) than from the dense gradient (T in out)."""
    if not isinstance(use.module, nn.Linear) or name != "weight":
        return False
    tokens = use.inputs.flatten(1, -2).shape[1]
    return tokens * (use.module.in_features + use.module.out_features) < (
        use.module.in_features * use.module.out_features
    )


def _ghost_squared_norms(use: _Use) -> torch.Tensor:
    """||sum_t g_t a_t^T||_F^2 = <A A^T, G G^T>_F per sample, without forming the gradient."""
    grad = use.grad.float().flatten(1, -2)
    inputs = use.inputs.float().flatten(1, -2)
    return (grad @ grad.transpose(1, 2)).mul_(inputs @ inputs.transpose(1, 2)).sum((1, 2))


def _embedding_squared_norms(use: _Use, vocab: int) -> torch.Tensor:
    """Sparse form for an untied embedding: sum over distinct tokens v of ||sum_{x_t=v} g_t||^2."""
    ids = use.inputs.flatten(1)
    batch = ids.shape[0]
    grad = use.grad.float().flatten(1, -2).reshape(-1, use.grad.shape[-1])
    sample = torch.arange(batch, device=ids.device).repeat_interleave(ids.shape[1])
    keys, inverse = torch.unique(sample * vocab + ids.reshape(-1), return_inverse=True)
    rows = torch.zeros((keys.numel(), grad.shape[1]), device=grad.device).index_add_(
        0, inverse, grad
    )
    return torch.zeros(batch, device=grad.device).index_add_(0, keys // vocab, rows.pow(2).sum(1))
