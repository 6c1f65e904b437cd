"""Which kernel PyTorch's scaled_dot_product_attention (SDPA) runs on a CUDA GPU: one setting for both tracks.

On Hopper GPUs (H100, H200) PyTorch tries cuDNN's attention first. cuDNN builds an execution plan on the host for
each new input shape, and length-grouped batches bring new shapes at almost every step (a KoBART epoch about 5x
slower; docs/performance.md). So `auto` turns cuDNN off and keeps PyTorch's order for the rest
(flash, then memory-efficient, then math). Every other value enables one fused kernel plus the math fallback
(a call the kernel cannot take, e.g. flash with a padding mask, runs in math, slowly but correctly).

The flags are process-wide. Without CUDA nothing is changed, so CPU runs (and their results) are the same for
every value. Tracks call `configure_attention(model, config)` once a model is loaded.

Masks without a host sync (`sdpa_sync_free_masks`, both tracks): before each forward, transformers asks whether a
padding mask masks anything at all (`mask.all()`, so it can pass no mask and let SDPA pick flash), and reading that
answer waits for the GPU to finish all queued work. A KoBART training step does it twice (encoder and
cross-attention masks), a causal LM once, beam search at every token. `use_sync_free_masks(model)` switches an
`sdpa` model on CUDA to `SYNC_FREE_SDPA`: the same SDPA call, with the mask always built when a padding mask is given
(a batch without padding gets an all-true mask instead of none: the same attention).

`SYNC_FREE_SDPA`'s attention (`grouped_kv_sdpa_forward`) also takes keys and values that hold one row per group of
consecutive query rows: beam search's cross-attention once its cache keeps one row per dialogue instead of one per
beam (`baselines.model.share_cross_attention_across_beams`). Rows with their own keys take transformers' SDPA as is.
"""

from __future__ import annotations

import typing
from contextlib import contextmanager
from typing import Iterator

import torch

from competition.harness.config import SdpaBackend
from competition.rules.errors import ConfigError

SDPA_BACKENDS = typing.get_args(SdpaBackend)
SYNC_FREE_SDPA = "sdpa_sync_free"  # transformers' SDPA attention under sync_free_sdpa_mask
_KERNELS = ("cudnn", "flash", "efficient", "math")
_ENABLED: dict[str, tuple[str, ...]] = {
    "auto": ("flash", "efficient", "math"),
    "torch": _KERNELS,  # PyTorch's own default: everything on, cuDNN first on Hopper
    "cudnn": ("cudnn", "math"),
    "flash": ("flash", "math"),
    "efficient": ("efficient", "math"),
    "math": ("math",),
}


def check_sdpa_backend(backend: str) -> None:
    """Raise ConfigError for a name that is not in SDPA_BACKENDS."""
    if backend not in SDPA_BACKENDS:
        raise ConfigError(f"sdpa_backend={backend!r}; expected one of {list(SDPA_BACKENDS)}")


def sdpa_flags() -> dict[str, bool]:
    """The SDPA kernels PyTorch may use on CUDA right now, by name."""
    cuda = torch.backends.cuda
    return {"cudnn": cuda.cudnn_sdp_enabled(), "flash": cuda.flash_sdp_enabled(),
            "efficient": cuda.mem_efficient_sdp_enabled(), "math": cuda.math_sdp_enabled()}


def configure_sdpa(backend: str) -> dict[str, bool]:
    """Enable the SDPA kernels that `backend` names on CUDA (process-wide); returns the flags in effect.

    A no-op without a CUDA GPU: PyTorch's CPU attention reads some of the same flags, and CPU results must not move.
    """
    check_sdpa_backend(backend)
    if not torch.cuda.is_available():
        return sdpa_flags()
    _set_flags({kernel: kernel in _ENABLED[backend] for kernel in _KERNELS})
    return sdpa_flags()


@contextmanager
def sdpa_backend_scope(backend: str) -> Iterator[dict[str, bool]]:
    """`configure_sdpa(backend)` for the block (e.g. one benchmark row); the flags before it are put back."""
    before = sdpa_flags()
    try:
        yield configure_sdpa(backend)
    finally:
        if torch.cuda.is_available():
            _set_flags(before)


def _set_flags(flags: dict[str, bool]) -> None:
    cuda = torch.backends.cuda
    cuda.enable_cudnn_sdp(flags["cudnn"])
    cuda.enable_flash_sdp(flags["flash"])
    cuda.enable_mem_efficient_sdp(flags["efficient"])
    cuda.enable_math_sdp(flags["math"])


def sync_free_sdpa_mask(*args, attention_mask=None, allow_is_causal_skip: bool = True,
                        allow_is_bidirectional_skip: bool = False, **kwargs):
    """transformers' `sdpa_mask`, except that a padding mask is never read back to see whether it can be skipped;
    without one, transformers' own skips stay (they read no tensor)."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is not None:
        allow_is_causal_skip = allow_is_bidirectional_skip = False
    return sdpa_mask(*args, attention_mask=attention_mask, allow_is_causal_skip=allow_is_causal_skip,
                     allow_is_bidirectional_skip=allow_is_bidirectional_skip, **kwargs)


def grouped_kv_sdpa_forward(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' `sdpa_attention_forward`; where `key` has B rows and `query` B x G, key row b serves query rows
    b*G .. b*G+G-1 (their masks alike). Each group's queries then go in as one longer query sequence, so a step reads
    each group's keys once instead of G times; every query row still attends exactly as alone."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[0] == key.shape[0]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows, group = key.shape[0], query.shape[0] // key.shape[0]
    _, heads, length, head_dim = query.shape
    grouped = query.view(rows, group, heads, length, head_dim).transpose(1, 2).reshape(rows, heads, group * length,
                                                                                       head_dim)
    if attention_mask is not None:  # [rows x group, 1 or heads, length, keys]: one mask per group, per query row
        attention_mask = attention_mask[::group]
        attention_mask = attention_mask.repeat(1, 1, group, 1) if length > 1 else attention_mask
    output, weights = sdpa_attention_forward(module, grouped, key, value, attention_mask,
                                             **{**kwargs, "is_causal": False})
    return output.reshape(rows * group, length, heads, head_dim), weights  # query row b*G+g: its g-th block


def configure_attention(model, config) -> None:
    """A track's attention settings for a loaded model: its SDPA kernels (`config.sdpa_backend`, process-wide) and
    sync-free masks (`config.sdpa_sync_free_masks`)."""
    configure_sdpa(config.sdpa_backend)
    use_sync_free_masks(model, config.sdpa_sync_free_masks)


def use_sync_free_masks(model, enabled: bool = True, cuda_only: bool = True) -> bool:
    """Switch an `sdpa` model to SYNC_FREE_SDPA (on CUDA only unless `cuda_only=False`); True when switched."""
    config = model.config
    if not enabled or config._attn_implementation != "sdpa" or (cuda_only and not torch.cuda.is_available()):
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(SYNC_FREE_SDPA, grouped_kv_sdpa_forward)
    AttentionMaskInterface.register(SYNC_FREE_SDPA, sync_free_sdpa_mask)
    config._attn_implementation = SYNC_FREE_SDPA
    return True
