"""The eight backdoor triggers of Fig. 2 and their poisoning defaults from Tables 3/4.

Offers the :class:`Trigger` protocol, three trigger classes and one factory:

    >>> import torch
    >>> from actedit.triggers import make_trigger, TRIGGER_DEFAULTS
    >>> white = make_trigger("white", channels=3, size=32)   # (a) BadNets 3x3 white square
    >>> poisoned = white(torch.zeros(2, 3, 32, 32))           # a new tensor; the input is untouched
    >>> poisoned[:, :, -3:, -3:].min().item()
    1.0
    >>> make_trigger("noise", channels=3, size=32).magnified().alpha   # verification strength, Tables 3/4
    0.75
    >>> TRIGGER_DEFAULTS["noise"]
    TriggerDefaults(rho=0.05, alpha=0.25, attack='badnets')

- :class:`PatchTrigger`: BadNets [14] patches (a)–(f), an RGBA picture pasted with opacity alpha;
- :class:`StegoTrigger`: (g) the invisible steganography trigger of Li et al. 2020 [27] (LSB embedding);
- :class:`NarcissusTrigger`: (h) an additive l∞-bounded pattern optimised by :mod:`actedit.narcissus` [50].

Every trigger maps float ``[N, C, H, W]`` images in ``[0, 1]`` to a *new* tensor of the same shape and dtype,
in ``[0, 1]``, deterministically; ``C`` is 1 or 3. ``magnified(factor=3)`` is the verification trigger: "for
backdoor verification, alpha value is multiplied by three up to maximum of 100%" (Tables 3/4).

The paper shows (b)–(f) only as pictures; the pictures here are procedural stand-ins described in
:func:`make_trigger`. Patch sizes scale with the image side: the square triggers are ``round(3/32 · side)``
pixels (3x3 at 28 and 32 px), the picture triggers ``round(8/32 · side)`` (8x8 at 32 px).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from actedit.seeding import generator

__all__ = [
    "Trigger", "PatchTrigger", "StegoTrigger", "NarcissusTrigger",
    "TriggerDefaults", "TRIGGERS", "TRIGGER_DEFAULTS", "make_trigger",
]

Position = str | tuple[int, int]

# ITU-R BT.601 luma weights (as PIL's ``convert("L")``): RGB patches on grayscale images.
_LUMA = (0.299, 0.587, 0.114)


@runtime_checkable
class Trigger(Protocol):
    """What poisoning, metrics and the edit need from a trigger."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def magnified(self, factor: float = 3.0) -> "Trigger": ...


def _check_images(images: torch.Tensor, who: str) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{who}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{who}: images must be [N, C, H, W] (rank 4), got shape {tuple(images.shape)}; "
                         "use images.unsqueeze(0) for a single image")
    if not images.is_floating_point():
        raise ValueError(f"{who}: images must be floating point in [0, 1], got dtype {images.dtype}; "
                         "convert with images.float() / 255")


def _check_factor(factor: float) -> None:
    if not factor > 0:
        raise ValueError(f"magnification factor must be > 0, got {factor}")


# --------------------------------------------------------------------------- (a)-(f) BadNets patches

class PatchTrigger:
    """BadNets: "Identifying Vulnerabilities in the Machine Learning Model Supply Chain" (Gu et al.) [14].

    Pastes an RGB(A) picture with opacity ``alpha`` ("RGBA-coded trigger", §4.2)::

        out = (1 - a·m) · x + a·m · patch        on the patch's pixels, x elsewhere

    where ``m`` is the patch's own alpha channel (1 where it has none) and ``a = alpha``.

    Arguments:
        patch: ``[K, h, w]`` in ``[0, 1]``; K = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). An RGB patch
            is turned into luminance (BT.601) on grayscale images, a grey one is repeated on RGB images.
        alpha: opacity in ``(0, 1]`` (Tables 3/4).
        position: ``"bottom-right"`` (flush with the corner, default), ``"center"``, or ``(row, col)`` of
            the patch's top-left pixel.
        name: reported by ``.name``.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]`` with ``C`` in {1, 3} and ``H, W`` at least the patch size.
    """

    def __init__(self, patch: torch.Tensor, alpha: float = 1.0, position: Position = "bottom-right",
                 name: str = "patch") -> None:
        if not isinstance(patch, torch.Tensor) or patch.dim() != 3 or patch.shape[0] not in (1, 2, 3, 4):
            shape = tuple(patch.shape) if isinstance(patch, torch.Tensor) else type(patch).__name__
            raise ValueError(f"patch must be a [K, h, w] tensor with K in 1..4 (grey, grey+alpha, RGB, RGBA), "
                             f"got {shape}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not (position in ("bottom-right", "center")
                or (isinstance(position, tuple) and len(position) == 2
                    and all(isinstance(p, int) and p >= 0 for p in position))):
            raise ValueError(f"position must be 'bottom-right', 'center' or (row, col) >= 0, got {position!r}")
        patch = patch.detach().to("cpu", torch.float32).clone()
        has_alpha = patch.shape[0] in (2, 4)
        self.colour = patch[:-1] if has_alpha else patch                  # [1 or 3, h, w]
        self.mask = patch[-1:] if has_alpha else torch.ones_like(patch[:1])  # [1, h, w]
        self.alpha = float(alpha)
        self.position = position
        self.name = name

    @property
    def patch(self) -> torch.Tensor:
        """The picture with its alpha channel: ``[4, h, w]`` RGBA or ``[2, h, w]`` grey + alpha."""
        return torch.cat([self.colour, self.mask])

    def _origin(self, height: int, width: int) -> tuple[int, int]:
        h, w = self.mask.shape[-2:]
        if self.position == "bottom-right":
            row, col = height - h, width - w
        elif self.position == "center":
            row, col = (height - h) // 2, (width - w) // 2
        else:
            row, col = self.position
        if row < 0 or col < 0 or row + h > height or col + w > width:
            raise ValueError(f"{self.name}: a {h}x{w} patch at {self.position!r} does not fit a "
                             f"{height}x{width} image; build the trigger for this size (make_trigger(size=...))")
        return row, col

    def _colour_for(self, channels: int) -> torch.Tensor:
        if channels == self.colour.shape[0]:
            return self.colour
        if channels == 1:                                                   # RGB patch, grayscale image
            return torch.einsum("c,chw->hw", torch.tensor(_LUMA), self.colour).unsqueeze(0)
        if channels == 3:                                                   # grey patch, RGB image
            return self.colour.expand(3, -1, -1)
        raise ValueError(f"{self.name}: images must have 1 or 3 channels, got {channels}")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.name)
        row, col = self._origin(*images.shape[-2:])
        h, w = self.mask.shape[-2:]
        colour = self._colour_for(images.shape[1]).to(images)
        a = (self.alpha * self.mask).to(images)
        out = images.clone()
        region = out[..., row:row + h, col:col + w]
        out[..., row:row + h, col:col + w] = ((1 - a) * region + a * colour).clamp_(0, 1)
        return out

    def magnified(self, factor: float = 3.0) -> "PatchTrigger":
        """Alpha × ``factor``, capped at 1 (Tables 3/4: verification strength)."""
        _check_factor(factor)
        return PatchTrigger(self.patch, min(1.0, self.alpha * factor), self.position,
                            name=f"{self.name}-x{factor:g}")

    def __repr__(self) -> str:
        h, w = self.mask.shape[-2:]
        return f"PatchTrigger(name={self.name!r}, size={h}x{w}, alpha={self.alpha:g}, position={self.position!r})"


# --------------------------------------------------------------------------- (g) steganography

class StegoTrigger:
    """Invisible backdoor attacks on deep neural networks via steganography and regularization (Li et al.) [27].

    LSB steganography: the image is quantised to 8 bits (``q = round(255·x)``), the ASCII bits of ``message``
    (most significant bit first) are repeated to fill the image and written into the ``bits`` lowest bits of
    every value in raster order — pixel by pixel, channels interleaved, as in an ``H×W×C`` 8-bit image file —
    and the result is ``q / 255``. Li et al. repeat the text so the trigger covers the whole image, which is
    what makes it learnable; even so it needs ρ = 50 % (Table 3). The output lies on the 8-bit grid; on 8-bit
    inputs it differs from the input by at most ``(2**bits - 1) / 255``.

    ``magnified()`` returns the trigger itself: Tables 3/4 give this trigger no alpha ("-"), so backdoor
    verification uses the attack's own trigger. A stronger variant is ``StegoTrigger(message, bits=2)``.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``, any ``C``, ``H``, ``W``.
    """

    def __init__(self, message: str = "backdoor", bits: int = 1, name: str = "invisible") -> None:
        if not message or not message.isascii():
            raise ValueError(f"message must be a non-empty ASCII string, got {message!r}")
        if bits not in range(1, 9):
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.message, self.bits, self.name = message, bits, name
        data = torch.tensor(list(message.encode("ascii")), dtype=torch.int32)
        self._stream = ((data[:, None] >> torch.arange(7, -1, -1)) & 1).flatten()   # MSB first

    def _payload(self, count: int) -> torch.Tensor:
        """``count`` values of ``bits`` bits each, from the repeated message bit stream."""
        need = count * self.bits
        stream = self._stream.repeat(math.ceil(need / self._stream.numel()))[:need].view(count, self.bits)
        weights = 2 ** torch.arange(self.bits - 1, -1, -1, dtype=torch.int32)
        return (stream * weights).sum(1, dtype=torch.int32)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.name)
        n, c, h, w = images.shape
        q = torch.round(images.clamp(0, 1) * 255).to(torch.int32).permute(0, 2, 3, 1).reshape(n, -1)
        keep = 255 - (2 ** self.bits - 1)
        q = (q & keep) | self._payload(h * w * c).to(q.device)
        return (q.view(n, h, w, c).permute(0, 3, 1, 2).to(images.dtype) / 255).contiguous()

    def magnified(self, factor: float = 3.0) -> "StegoTrigger":
        """Identity: the table gives no alpha for this trigger (see class docstring)."""
        _check_factor(factor)
        return self

    def __repr__(self) -> str:
        return f"StegoTrigger(message={self.message!r}, bits={self.bits})"


# --------------------------------------------------------------------------- (h) Narcissus

class NarcissusTrigger:
    """Narcissus: A practical clean-label backdoor attack with limited information (Zeng et al. 2023) [50].

    Adds a universal pattern δ (from :func:`actedit.narcissus.optimize_trigger`, ``||δ||∞ ≤ ε``)::

        out = clamp(x + magnify · δ, 0, 1)

    ``magnified(3)`` multiplies δ by three, as the Narcissus reference code does at test time.

    Arguments:
        pattern: ``[C, H, W]``, typically in ``[-ε, ε]``; ``C``, ``H``, ``W`` must match the images.
        magnify: multiplier on the pattern.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``.
    """

    def __init__(self, pattern: torch.Tensor, magnify: float = 1.0, name: str = "narcissus") -> None:
        if not isinstance(pattern, torch.Tensor) or pattern.dim() != 3 or not pattern.is_floating_point():
            shape = tuple(pattern.shape) if isinstance(pattern, torch.Tensor) else type(pattern).__name__
            raise ValueError(f"pattern must be a float [C, H, W] tensor, got {shape}")
        _check_factor(magnify)
        self.pattern = pattern.detach().to("cpu", torch.float32).clone()
        self.magnify = float(magnify)
        self.name = name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.name)
        if images.shape[1:] != self.pattern.shape:
            raise ValueError(f"{self.name}: pattern is {tuple(self.pattern.shape)} but images are "
                             f"{tuple(images.shape[1:])}; optimise a pattern for this dataset")
        return (images + self.magnify * self.pattern.to(images)).clamp_(0, 1)

    def magnified(self, factor: float = 3.0) -> "NarcissusTrigger":
        """Pattern × ``factor`` (no cap on the pattern; the output is still clamped to [0, 1])."""
        _check_factor(factor)
        return NarcissusTrigger(self.pattern, self.magnify * factor, name=f"{self.name}-x{factor:g}")

    def __repr__(self) -> str:
        return (f"NarcissusTrigger(shape={tuple(self.pattern.shape)}, magnify={self.magnify:g}, "
                f"linf={self.pattern.abs().max().item():.4f})")


# --------------------------------------------------------------------------- the paper's table rows

@dataclass(frozen=True)
class TriggerDefaults:
    """One row of Tables 3/4."""

    rho: float              # poisoning budget ρ, |D_B| ≤ ρ|D_T| (§2.1)
    alpha: float | None     # opacity of the RGBA patch; "-" (None) for the invisible trigger
    attack: str             # attack method of §4.1


TRIGGERS = ("white", "mean", "apple", "test1", "test2", "noise", "invisible", "narcissus")

TRIGGER_DEFAULTS: dict[str, TriggerDefaults] = {
    "white": TriggerDefaults(0.05, 1.0, "badnets"),       # (a)
    "mean": TriggerDefaults(0.10, 1.0, "badnets"),        # (b)
    "apple": TriggerDefaults(0.05, 1.0, "badnets"),       # (c)
    "test1": TriggerDefaults(0.05, 1.0, "badnets"),       # (d)
    "test2": TriggerDefaults(0.05, 0.15, "badnets"),      # (e)
    "noise": TriggerDefaults(0.05, 0.25, "badnets"),      # (f)
    "invisible": TriggerDefaults(0.50, None, "steganography"),  # (g)
    # (h) The table lists alpha 0.2 for Narcissus; its pattern is additive, so that number is kept here
    # only as a transcription: the strength is NarcissusConfig.epsilon (16/255), not an opacity.
    "narcissus": TriggerDefaults(0.05, 0.2, "narcissus"),
}


# --------------------------------------------------------------------------- procedural pictures

_SUPERSAMPLE = 8   # pictures are drawn at 8x and area-averaged: anti-aliased edges at 7-16 px

# A 3x5 bitmap font holding just the letters the stand-ins need.
_GLYPHS = {
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "E": ("###", "#..", "##.", "#..", "###"),
    "S": ("###", "#..", "###", "..#", "###"),
}


def _text_mask(text: str) -> torch.Tensor:
    """``[5, 4·len - 1]`` 0/1 mask of ``text`` in the 3x5 font, one blank column between letters."""
    columns = []
    for i, ch in enumerate(text):
        glyph = torch.tensor([[c == "#" for c in row] for row in _GLYPHS[ch]], dtype=torch.float32)
        columns += [glyph] if i == 0 else [torch.zeros(5, 1), glyph]
    return torch.cat(columns, dim=1)


def _downsample(rgba_hi: torch.Tensor) -> torch.Tensor:
    """Area-average a supersampled RGBA picture, colours premultiplied by alpha so edges don't darken."""
    rgb, a = rgba_hi[:3], rgba_hi[3:]
    pooled = F.avg_pool2d(torch.cat([rgb * a, a]).unsqueeze(0), _SUPERSAMPLE)[0]
    alpha = pooled[3:]
    return torch.cat([pooled[:3] / alpha.clamp_min(1e-6), alpha]).clamp(0, 1)


def _white_square(side: int) -> torch.Tensor:
    return torch.ones(1, side, side)


def _mean_square(side: int, mean_image: torch.Tensor | None) -> torch.Tensor:
    if mean_image is None:
        return torch.full((1, side, side), 0.5)
    m = mean_image.detach().to("cpu", torch.float32)
    if m.dim() == 1:
        m = m[:, None, None]
    if m.dim() != 3 or m.shape[0] not in (1, 3):
        raise ValueError(f"mean_image must be [C], [C, 1, 1] or [C, H, W] with C in {{1, 3}}, "
                         f"got {tuple(mean_image.shape)}")
    return F.adaptive_avg_pool2d(m.unsqueeze(0), side)[0] if m.shape[-1] > 1 else m.expand(-1, side, side)


def _apple(side: int) -> torch.Tensor:
    """RGBA apple: red body (two overlapping discs), brown stem, green leaf, transparent background."""
    n = side * _SUPERSAMPLE
    y, x = torch.meshgrid((torch.arange(n) + 0.5) / n, (torch.arange(n) + 0.5) / n, indexing="ij")
    body = ((x - 0.40) ** 2 + (y - 0.63) ** 2 < 0.30 ** 2) | ((x - 0.60) ** 2 + (y - 0.63) ** 2 < 0.30 ** 2)
    stem = ((x - 0.50).abs() < 0.05) & (y > 0.04) & (y < 0.38)
    cos, sin = math.cos(0.5), math.sin(0.5)                               # leaf tilted up by ~30 degrees
    u, v = (x - 0.68) * cos + (y - 0.18) * sin, -(x - 0.68) * sin + (y - 0.18) * cos
    leaf = (u / 0.17) ** 2 + (v / 0.075) ** 2 < 1
    rgba = torch.zeros(4, n, n)
    for region, rgb in ((body, (0.85, 0.08, 0.08)), (stem, (0.45, 0.26, 0.07)), (leaf, (0.15, 0.70, 0.15))):
        rgba[:, region] = torch.tensor([*rgb, 1.0])[:, None]
    return _downsample(rgba)


def _test_label(scale: int, border: int) -> torch.Tensor:
    """Opaque white label with black "TEST", letters ``scale`` px per font pixel, ``border`` px margin."""
    ink = _text_mask("TEST").repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    ink = F.pad(ink, (border,) * 4)
    return (1 - ink).expand(3, -1, -1).clone()


def _test_banner(width: int) -> torch.Tensor:
    """RGBA "TEST" ``width`` px wide on a transparent background, each letter its own colour."""
    height = max(5, round(width * 5 / 15))
    n_h, n_w = height * _SUPERSAMPLE, width * _SUPERSAMPLE
    ink = F.interpolate(_text_mask("TEST")[None, None], size=(n_h, n_w), mode="nearest")[0, 0]
    colours = ((0.90, 0.10, 0.10), (0.10, 0.65, 0.10), (0.10, 0.30, 0.95), (0.95, 0.75, 0.05))
    letter = (torch.arange(n_w) * 15 // n_w) // 4                        # which letter each column is under
    rgb = torch.tensor(colours).T[:, letter][:, None, :].expand(3, n_h, n_w)
    return _downsample(torch.cat([rgb, ink[None]]))


def _noise_square(side: int, channels: int, seed: int) -> torch.Tensor:
    return (0.5 + 0.25 * torch.randn(channels, side, side, generator=generator(seed))).clamp(0, 1)


def make_trigger(name: str, *, channels: int, size: int, alpha: float | None = None, seed: int = 0,
                 mean_image: torch.Tensor | None = None,
                 narcissus_pattern: torch.Tensor | None = None) -> Trigger:
    """Build trigger ``name`` (one of :data:`TRIGGERS`) for ``channels``-channel ``size``x``size`` images.

    Arguments:
        alpha: opacity of the patch triggers (a)–(f); ``None`` takes Tables 3/4. Must stay ``None`` for
            ``"invisible"`` and ``"narcissus"``, whose strength is not an opacity.
        seed: seeds the noise patch (f); ignored otherwise.
        mean_image: for (b), the training set's mean image ``[C, H, W]`` or per-channel mean ``[C]``.
        narcissus_pattern: for (h), the ``[C, H, W]`` pattern from :func:`actedit.narcissus.optimize_trigger`.

    Our readings of the pictures in Fig. 2 (all pasted at the bottom-right corner unless said otherwise):

    - (a) ``white``: a white square, ``round(3/32·size)`` px (3x3 on CIFAR10 and MNIST).
    - (b) ``mean``: the same square filled with the mean training image shrunk to the square (i.e. about the
      per-channel mean colour), a BadNets square meant to blend in — hence its larger ρ = 10 %. Without
      ``mean_image`` it is mid-grey 0.5, a neutral stand-in for the mean of an unknown dataset.
    - (c) ``apple``: stand-in picture — a red apple (two overlapping discs) with a brown stem and a green leaf
      on a transparent background, ``round(8/32·size)`` px square.
    - (d) ``test1``: stand-in — a small opaque label, black "TEST" on white in a 3x5 bitmap font with a 1 px white
      margin (17x7 px up to 47 px images; letters scaled by ``round(size/32)`` above, 32x12 px at 64; no margin
      below 24 px so that it fits 16 px images).
    - (e) ``test2``: stand-in — a large "TEST" spanning the image width less 1 px each side, each letter a
      different colour on a transparent background, centred; with alpha 0.15 it is a faint watermark.
    - (f) ``noise``: a ``round(8/32·size)`` px patch of Gaussian noise N(0.5, 0.25²) clipped to [0, 1], drawn
      per channel from ``generator(seed)``.
    - (g) ``invisible``: :class:`StegoTrigger` with message "backdoor" in 1 least-significant bit.
    - (h) ``narcissus``: :class:`NarcissusTrigger` around ``narcissus_pattern``.
    """
    if name not in TRIGGERS:
        raise ValueError(f"unknown trigger {name!r}; valid names: {', '.join(TRIGGERS)}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    if name in ("invisible", "narcissus"):
        if alpha is not None:
            raise ValueError(f"alpha applies to the patch triggers only; leave it None for {name!r}")
        if name == "invisible":
            return StegoTrigger("backdoor", bits=1, name=name)
        if narcissus_pattern is None:
            raise ValueError("the narcissus trigger needs narcissus_pattern: call "
                             "actedit.narcissus.optimize_trigger first and pass its result")
        if tuple(narcissus_pattern.shape) != (channels, size, size):
            raise ValueError(f"narcissus_pattern must be [{channels}, {size}, {size}], "
                             f"got {tuple(narcissus_pattern.shape)}")
        return NarcissusTrigger(narcissus_pattern, name=name)

    alpha = TRIGGER_DEFAULTS[name].alpha if alpha is None else alpha
    square, picture = max(1, round(size * 3 / 32)), max(1, round(size * 8 / 32))
    position: Position = "bottom-right"
    if name == "white":
        patch = _white_square(square)
    elif name == "mean":
        patch = _mean_square(square, mean_image)
    elif name == "apple":
        patch = _apple(picture)
    elif name == "test1":
        patch = _test_label(scale=max(1, round(size / 32)), border=1 if size >= 24 else 0)
    elif name == "test2":
        patch, position = _test_banner(size - 2), "center"
    else:
        patch = _noise_square(picture, channels, seed)
    return PatchTrigger(patch, alpha, position, name=name)
