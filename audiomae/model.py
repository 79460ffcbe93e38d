"""Audio-MAE: a ViT encoder over visible spectrogram patches and a light decoder with mask tokens.

Input spectrograms are normalised log-mel ``(B, F, T)``; T may be shorter than
``cfg.max_frames`` (the positional table is sliced), but must be a multiple of ``patch_t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiomae.checkpoint import load_model, register_kind, save_model
from audiomae.config import FeatureConfig, ModelConfig, model_preset
from audiomae.features import NormStats, make_frontend, patchify, unpatchify
from audiomae.masking import MaskResult, burst_position, no_mask


def sincos_2d(dim: int, grid_t: int, grid_f: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embeddings ``(grid_t * grid_f, dim)`` in time-major patch order.

    Half the channels encode the time index and half the frequency index (MAE's recipe)."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.double().unsqueeze(1) * omega.unsqueeze(0)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    t_idx = torch.arange(grid_t).repeat_interleave(grid_f)
    f_idx = torch.arange(grid_f).repeat(grid_t)
    return torch.cat([embed(t_idx), embed(f_idx)], dim=1).float()


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


@dataclass(frozen=True)
class MAEOutput:
    """``loss``: scalar, MSE over masked patches. ``pred``: (B, N, P) predicted patches in the
    normalised log-mel domain (per-patch normalised if ``norm_pix_loss``). ``mask``: (B, N) bool."""

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor


class AudioMAE(nn.Module):
    """Masked autoencoder over log-mel patches.

    ``features`` and ``norm`` travel with the model so a checkpoint can turn a waveform into
    the inputs it was trained on (see :meth:`featurize`)."""

    def __init__(
        self, cfg: ModelConfig, features: FeatureConfig | None = None, norm: NormStats | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_cfg = features or FeatureConfig(n_mels=cfg.n_mels)
        if self.feature_cfg.n_mels != cfg.n_mels:
            raise ValueError(f"feature n_mels {self.feature_cfg.n_mels} != model n_mels {cfg.n_mels}")
        self.norm = norm or NormStats()
        n_max = cfg.max_grid_t * cfg.grid_f

        self.patch_embed = nn.Linear(cfg.patch_dim, cfg.enc_dim)
        if cfg.pos_embed == "stored":
            # A table that travels with the weights (the original code's, whose layout differs).
            self.register_buffer("enc_pos", torch.zeros(n_max, cfg.enc_dim))
        else:
            enc_pos = sincos_2d(cfg.enc_dim, cfg.max_grid_t, cfg.grid_f)
            self.register_buffer("enc_pos", enc_pos, persistent=False)
        if cfg.cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.enc_dim))
        self.encoder = nn.ModuleList(
            Block(cfg.enc_dim, cfg.enc_heads, cfg.mlp_ratio, cfg.norm_eps) for _ in range(cfg.enc_depth)
        )
        self.enc_norm = nn.LayerNorm(cfg.enc_dim, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()

        self.dec_embed = self.mask_token = self.decoder = self.dec_norm = self.dec_pred = None
        if cfg.dec_depth:
            self.dec_embed = nn.Linear(cfg.enc_dim, cfg.dec_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_dim))
            dec_pos = sincos_2d(cfg.dec_dim, cfg.max_grid_t, cfg.grid_f)
            self.register_buffer("dec_pos", dec_pos, persistent=False)
            self.decoder = nn.ModuleList(
                Block(cfg.dec_dim, cfg.dec_heads, cfg.mlp_ratio, cfg.norm_eps) for _ in range(cfg.dec_depth)
            )
            self.dec_norm = nn.LayerNorm(cfg.dec_dim, eps=cfg.norm_eps)
            self.dec_pred = nn.Linear(cfg.dec_dim, cfg.patch_dim)
        self._n_max = n_max
        self._frontend: nn.Module | None = None
        self.apply(self._init_weights)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)
        if cfg.cls_token:
            nn.init.normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @classmethod
    def from_preset(cls, name: str, features: FeatureConfig | None = None, **overrides) -> AudioMAE:
        n_mels = (features or FeatureConfig()).n_mels
        return cls(model_preset(name, n_mels=n_mels, **overrides), features=features)

    # ---- inputs -------------------------------------------------------------------------
    def featurize(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, S)`` -> normalised log-mel ``(B, F, T)`` trimmed to whole patch columns."""
        frontend = self.__dict__.get("_frontend")
        if frontend is None or frontend.mel_fb.device != wave.device:
            # Kept out of the module tree: its STFT buffers must not enter state_dict/checkpoints.
            frontend = self.__dict__["_frontend"] = make_frontend(self.feature_cfg).to(wave.device)
        spec = self.norm.normalize(frontend(wave))
        t = spec.shape[-1] - spec.shape[-1] % self.cfg.patch_t
        return spec[..., :t]

    def grid(self, spec: torch.Tensor) -> tuple[int, int]:
        """(grid_t, grid_f) for a spectrogram ``(B, F, T)``, checking its geometry."""
        _, f, t = spec.shape
        cfg = self.cfg
        if f != cfg.n_mels:
            raise ValueError(f"spectrogram has {f} mel bins, model expects {cfg.n_mels}")
        if t % cfg.patch_t or t > cfg.max_frames:
            raise ValueError(
                f"spectrogram has {t} frames; need a multiple of {cfg.patch_t} and at most {cfg.max_frames}"
            )
        return t // cfg.patch_t, cfg.grid_f

    # ---- encoder / decoder --------------------------------------------------------------
    def _encode_visible(
        self, patches: torch.Tensor, m: MaskResult
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Embed only the visible patches (a fifth of them at 80% masking), not all then gather.
        idx = m.keep_idx.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        x = self.patch_embed(torch.gather(patches, 1, idx)) + self.enc_pos[m.keep_idx]
        attn_mask = None
        if m.ragged:  # padded keys must not be attended to
            attn_mask = m.keep_valid[:, None, None, :]
        if not self.cfg.cls_token:
            for blk in self.encoder:
                x = blk(x, attn_mask)
            return self.enc_norm(x), attn_mask
        x = torch.cat([self.cls_token.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        with_cls = attn_mask
        if attn_mask is not None:
            with_cls = torch.cat([torch.ones_like(attn_mask[..., :1]), attn_mask], dim=-1)
        for blk in self.encoder:
            x = blk(x, with_cls)
        return self.enc_norm(x)[:, 1:], attn_mask

    def encode(self, spec: torch.Tensor, mask: MaskResult | None = None) -> torch.Tensor:
        """Patch embeddings ``(B, K, enc_dim)`` of the visible patches (all patches by default;
        a CLS token, where the model has one, is attended to but not returned)."""
        grid_t, grid_f = self.grid(spec)
        patches = patchify(spec, self.cfg.patch_f, self.cfg.patch_t)
        m = mask if mask is not None else no_mask(spec.shape[0], grid_t, grid_f).to(spec.device)
        return self._encode_visible(patches, m)[0]

    def _local_mask(self, n: int, device: torch.device) -> torch.Tensor | None:
        if self.cfg.dec_window is None:
            return None
        col = torch.arange(n, device=device) // self.cfg.grid_f
        return (col[:, None] - col[None, :]).abs() <= self.cfg.dec_window

    def decoder_span(self, columns: tuple[int, int], grid_t: int) -> tuple[int, int]:
        """Patch columns the decoder must run on to predict ``columns`` (start, stop) exactly:
        with local attention of +-w columns, each decoder layer widens the span by w on both
        sides; with full attention it is every column."""
        w = self.cfg.dec_window
        if w is None:
            return 0, grid_t
        reach = w * self.cfg.dec_depth
        return max(0, columns[0] - reach), min(grid_t, columns[1] + reach)

    def decode(
        self, latent: torch.Tensor, m: MaskResult, n: int, columns: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Scatter encoder outputs into a full sequence of mask tokens and predict every patch,
        or only the patches of patch columns ``columns`` = (start, stop): the decoder then runs
        on :meth:`decoder_span` of them, which gives the same predictions for less compute."""
        b = latent.shape[0]
        x = self.dec_embed(latent)
        # Under autocast x is bf16 while the token is a float32 parameter; scatter needs one dtype.
        full = self.mask_token.to(x.dtype).expand(b, n + 1, -1).clone()
        # Padded entries of a ragged batch are sent to the spare slot n and dropped.
        idx = torch.where(m.keep_valid, m.keep_idx, torch.full_like(m.keep_idx, n))
        full = full.scatter(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)[:, :n]
        x = full + self.dec_pos[:n]
        gf = self.cfg.grid_f
        lo, hi = (0, n // gf) if columns is None else self.decoder_span(columns, n // gf)
        x = x[:, lo * gf : hi * gf]
        attn_mask = self._local_mask(x.shape[1], x.device)
        for blk in self.decoder:
            x = blk(x, attn_mask)
        pred = self.dec_pred(self.dec_norm(x))
        if columns is None:
            return pred
        return pred[:, (columns[0] - lo) * gf : (columns[1] - lo) * gf]

    def _checked_patches(
        self, spec: torch.Tensor, mask: MaskResult, columns: tuple[int, int] | None
    ) -> torch.Tensor:
        """Patches ``(B, N, P)`` of ``spec``, once its geometry, ``mask`` and ``columns`` fit."""
        grid_t, _ = self.grid(spec)
        patches = patchify(spec, self.cfg.patch_f, self.cfg.patch_t)
        if mask.mask.shape != patches.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.mask.shape)} != patch grid {tuple(patches.shape[:2])}")
        if columns is not None and not 0 <= columns[0] < columns[1] <= grid_t:
            raise ValueError(f"columns {columns} outside the {grid_t}-column patch grid")
        return patches

    def _predict(
        self, spec: torch.Tensor, mask: MaskResult, columns: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(patches of ``spec``, predictions for every patch or for patch columns ``columns``)."""
        if self.decoder is None:
            raise ValueError("this model is an encoder only (dec_depth=0): it cannot predict patches")
        patches = self._checked_patches(spec, mask, columns)
        latent, _ = self._encode_visible(patches, mask)
        return patches, self.decode(latent, mask, patches.shape[1], columns)

    def forward(self, spec: torch.Tensor, mask: MaskResult, target: torch.Tensor | None = None) -> MAEOutput:
        """``spec``: normalised log-mel (B, F, T). Loss is the MSE on masked patches only.

        ``target`` (B, F, T), default ``spec``: what masked patches should be. PLC fine-tuning
        feeds features of the lossy signal as ``spec`` and the clean signal as ``target``."""
        patches, pred = self._predict(spec, mask)
        if target is None:
            target = patches
        else:
            if target.shape != spec.shape:
                raise ValueError(f"target shape {tuple(target.shape)} != spec shape {tuple(spec.shape)}")
            target = patchify(target, self.cfg.patch_f, self.cfg.patch_t)
        if self.cfg.norm_pix_loss:
            mu = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mu) / (var + 1e-6).sqrt()
        per_patch = (pred.float() - target.float()).square().mean(dim=-1)  # float32 under autocast too
        weight = mask.mask.float()
        loss = (per_patch * weight).sum() / weight.sum().clamp_min(1.0)
        return MAEOutput(loss=loss, pred=pred, mask=mask.mask)

    def reconstruct(
        self, spec: torch.Tensor, mask: MaskResult, columns: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Spectrogram ``(B, F, T)`` with masked patches replaced by predictions (normalised domain).

        ``columns`` = (start, stop) patch columns: predict only those (exactly the same values,
        cheaper with a local-attention decoder); masked patches elsewhere keep the input's values.
        Only meaningful without ``norm_pix_loss`` (predictions are then absolute values)."""
        patches, pred = self._predict(spec, mask, columns)
        gf = self.cfg.grid_f
        lo, hi = columns if columns is not None else (0, patches.shape[1] // gf)
        part = slice(lo * gf, hi * gf)
        merged = patches.clone()
        merged[:, part] = torch.where(mask.mask[:, part].unsqueeze(-1), pred, patches[:, part])
        return unpatchify(merged, self.cfg.n_mels, self.cfg.patch_f, self.cfg.patch_t)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- checkpoints --------------------------------------------------------------------
    def save_pretrained(self, directory, extra: dict | None = None) -> None:
        save_model(directory, self, extra=extra)

    @classmethod
    def from_pretrained(
        cls, directory, map_location: str | torch.device = "cpu", require_checksum: bool = True
    ) -> AudioMAE:
        """Load a checkpoint (:func:`audiomae.checkpoint.load_model`; ``require_checksum=False``
        accepts a hand-made one without ``weights_sha256``)."""
        model = load_model(directory, map_location=map_location, require_checksum=require_checksum)
        if not isinstance(model, cls):
            raise ValueError(f"{directory}: holds a {type(model).__name__}, not an {cls.__name__}")
        return model


class ResidualPLCMAE(AudioMAE):
    """An Audio-MAE that corrects a concealment instead of filling a hole.

    The input spectrogram holds, at lost packet columns, the log-mel of what the MAE-free
    concealer plays there (its LPC continuation, bridge or fade); ``mask`` marks those
    patches. Every patch is encoded (lost ones carry a learned ``lost_token``), and the decoder
    predicts a *correction*: ``pred = input patch + delta``. With the head initialised to zero
    the model starts as the continuation itself, so training can only move it away from the
    DSP answer where that lowers the error (the plain MAE had to learn "continue what was
    playing" from mask tokens and never matched it at the first lost packet).

    Same config, checkpoint layout and ``reconstruct`` interface as :class:`AudioMAE`; the
    encoder has no gather (all patches are visible), the decoder has no scatter."""

    BURST_POSITIONS = 8

    def __init__(
        self,
        cfg: ModelConfig,
        features: FeatureConfig | None = None,
        norm: NormStats | None = None,
        level_offset: list[float] | None = None,
        level_scale: list[float] | None = None,
    ) -> None:
        if cfg.cls_token or cfg.dec_depth == 0:
            raise ValueError("a residual PLC model needs a decoder and no CLS token")
        super().__init__(cfg, features, norm)
        # A level calibration per burst position (natural-log power, all bands of a frame alike),
        # measured on training windows (:func:`audiomae.train.plc_residual.calibrate_levels`) and
        # kept in the JSON config: at a lost frame the prediction's level change over the input's
        # is scaled by ``level_scale`` and ``level_offset`` is subtracted.
        offset = self._position_table(level_offset, 0.0, "level_offset")
        self.register_buffer("level_offset", offset, persistent=False)
        scale = self._position_table(level_scale, 1.0, "level_scale")
        self.register_buffer("level_scale", scale, persistent=False)
        # One token per burst position (1, 2, ..., the last for all deeper ones): how far into
        # a burst a column is decides how far the concealment has drifted from the speech.
        self.lost_token = nn.Parameter(torch.zeros(1, self.BURST_POSITIONS, cfg.enc_dim))
        nn.init.normal_(self.lost_token, std=0.02)
        nn.init.zeros_(self.dec_pred.weight)
        nn.init.zeros_(self.dec_pred.bias)

    @classmethod
    def from_mae(cls, mae: AudioMAE) -> ResidualPLCMAE:
        """A residual model with ``mae``'s encoder and decoder trunk, its head zeroed (so it
        starts as the identity on the continuation)."""
        model = cls(mae.cfg, features=mae.feature_cfg, norm=mae.norm)
        state = {k: v for k, v in mae.state_dict().items() if not k.startswith("dec_pred.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"lost_token", "dec_pred.weight", "dec_pred.bias"}:
            raise ValueError(
                f"cannot start a residual model from {type(mae).__name__}: {missing} {unexpected}"
            )
        return model

    @classmethod
    def _position_table(cls, values: list[float] | None, default: float, name: str) -> torch.Tensor:
        if values is None:
            return torch.full((cls.BURST_POSITIONS,), default)
        if len(values) != cls.BURST_POSITIONS:
            raise ValueError(f"{name} needs {cls.BURST_POSITIONS} values, got {len(values)}")
        out = [float(v) for v in values]
        if not all(math.isfinite(v) for v in out):
            raise ValueError(f"{name} must be finite, got {values}")
        return torch.tensor(out)

    def reset_calibration(self) -> None:
        """No level calibration: the prediction is input + correction."""
        self.level_offset.zero_()
        self.level_scale.fill_(1.0)

    @property
    def calibrated(self) -> bool:
        """Whether a level calibration is set (else the prediction is input + correction)."""
        return bool(self.level_offset.any()) or bool((self.level_scale != 1).any())

    def _lost_tokens(self, lost: torch.Tensor) -> torch.Tensor:
        """(B, N) bool lost patches (time-major) -> (B, N, enc_dim): each lost patch's burst
        position token, zeros for received patches."""
        gf = self.cfg.grid_f
        columns = lost.reshape(lost.shape[0], -1, gf)[..., 0]
        pos = burst_position(columns).clamp_max(self.BURST_POSITIONS)
        tokens = torch.cat([torch.zeros_like(self.lost_token[:, :1]), self.lost_token], dim=1)[0]
        return tokens[pos].repeat_interleave(gf, dim=1)

    def frame_level(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, P) normalised patches -> (B, N / grid_f, patch_t): each frame's total power
        (natural-log, over all bands)."""
        cfg = self.cfg
        x = patches.reshape(patches.shape[0], -1, cfg.grid_f, cfg.patch_f, cfg.patch_t)
        return torch.logsumexp(self.norm.denormalize(x), dim=(2, 3))

    def level_shift(self, patches: torch.Tensor, delta: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        """What the calibration subtracts from ``patches + delta`` (all (B, N, P), normalised;
        ``lost`` (B, N) bool over the same patches, from the window's first column): at a lost
        frame, ``(1 - level_scale) * (level(pred) - level(input)) + level_offset`` of its burst
        position, in every band; zero at received columns."""
        cfg = self.cfg
        gf = cfg.grid_f
        pos = burst_position(lost.reshape(lost.shape[0], -1, gf)[..., 0]).clamp_max(self.BURST_POSITIONS)
        scale = torch.cat([self.level_scale.new_ones(1), self.level_scale])[pos].unsqueeze(-1)
        offset = torch.cat([self.level_offset.new_zeros(1), self.level_offset])[pos].unsqueeze(-1)
        change = self.frame_level(patches + delta) - self.frame_level(patches)  # (B, columns, pt)
        shift = ((1 - scale) * change + offset) / self.norm.std
        b, columns, pt = shift.shape
        return shift[:, :, None, None, :].expand(b, columns, gf, cfg.patch_f, pt).reshape(delta.shape)

    def _encode_all(self, patches: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        n = patches.shape[1]
        x = self.patch_embed(patches) + self.enc_pos[:n]
        x = x + self._lost_tokens(lost).to(x.dtype)
        for blk in self.encoder:
            x = blk(x)
        return self.enc_norm(x)

    def _decode_all(
        self, latent: torch.Tensor, lost: torch.Tensor, columns: tuple[int, int] | None
    ) -> tuple[torch.Tensor, int]:
        n = latent.shape[1]
        gf = self.cfg.grid_f
        lo, hi = (0, n // gf) if columns is None else self.decoder_span(columns, n // gf)
        part = slice(lo * gf, hi * gf)
        x = self.dec_embed(latent[:, part]) + self.dec_pos[part]
        x = x + lost[:, part].unsqueeze(-1).to(x.dtype) * self.mask_token
        attn_mask = self._local_mask(x.shape[1], x.device)
        for blk in self.decoder:
            x = blk(x, attn_mask)
        return self.dec_pred(self.dec_norm(x)), lo

    def _predict(
        self, spec: torch.Tensor, mask: MaskResult, columns: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        patches = self._checked_patches(spec, mask, columns)
        delta, lo = self._decode_all(self._encode_all(patches, mask.mask), mask.mask, columns)
        gf = self.cfg.grid_f
        if self.calibrated:
            part = slice(lo * gf, lo * gf + delta.shape[1])
            delta = delta - self.level_shift(patches[:, part], delta, mask.mask[:, part]).to(delta.dtype)
        if columns is None:
            return patches, patches + delta
        start, stop = columns
        delta = delta[:, (start - lo) * gf : (stop - lo) * gf]
        return patches, patches[:, start * gf : stop * gf] + delta

    def encode(self, spec: torch.Tensor, mask: MaskResult | None = None) -> torch.Tensor:
        """Embeddings ``(B, N, enc_dim)`` of every patch (``mask`` marks concealed ones)."""
        self.grid(spec)  # checks the geometry
        patches = patchify(spec, self.cfg.patch_f, self.cfg.patch_t)
        lost = mask.mask if mask is not None else torch.zeros(patches.shape[:2], dtype=torch.bool)
        return self._encode_all(patches, lost.to(spec.device))


def _describe(model: AudioMAE) -> dict:
    from dataclasses import asdict

    out = {
        "model": asdict(model.cfg),
        "features": asdict(model.feature_cfg),
        "norm": {"mean": model.norm.mean, "std": model.norm.std},
    }
    if isinstance(model, ResidualPLCMAE) and model.calibrated:
        out["residual"] = {
            name: [round(float(v), 6) for v in getattr(model, name)]
            for name in ("level_offset", "level_scale")
        }
    return out


def _build(config: dict) -> AudioMAE:
    from audiomae.config import from_dict

    args = dict(
        features=from_dict(FeatureConfig, config["features"]),
        norm=NormStats(**config["norm"]),
    )
    if config.get("kind") != "residual_plc":
        return AudioMAE(from_dict(ModelConfig, config["model"]), **args)
    residual = config.get("residual", {})
    if not isinstance(residual, dict) or set(residual) - {"level_offset", "level_scale"}:
        raise ValueError(f"residual section: expected level_offset / level_scale lists, got {residual!r}")
    return ResidualPLCMAE(
        from_dict(ModelConfig, config["model"]),
        level_offset=residual.get("level_offset"),
        level_scale=residual.get("level_scale"),
        **args,
    )


_SECTIONS = {"model": ModelConfig, "features": FeatureConfig, "norm": NormStats}
register_kind("audiomae", AudioMAE, _build, _describe, _SECTIONS)
register_kind("residual_plc", ResidualPLCMAE, _build, _describe, _SECTIONS)

__all__ = ["AudioMAE", "MAEOutput", "ResidualPLCMAE", "sincos_2d"]
