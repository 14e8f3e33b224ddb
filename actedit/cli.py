"""The ``actedit`` command: edit, evaluate and inspect one's own model with a folder of images (issues 9, 18).

Offers :func:`main` (the console script) and :func:`build_parser`. Three commands::

    actedit edit     --model cnn --weights victim.safetensors --images du/ \\
                     --trigger white --out edited.safetensors --report edit.json
    actedit evaluate --model my_nets.py:Net --weights edited.pt --images test.npz --trigger white --target 2
    actedit detect   --model torchvision:squeezenet1_1 --weights model.safetensors --images du/

``--model`` (alias ``--arch``) is a built-in name, ``torchvision:NAME`` or ``path/to/file.py:ClassOrFactory`` with
``--model-kwargs`` JSON (see :func:`actedit.io.load_model`); the input size, channels and class count default to
what the images, the weights and the model's output say.

Exit codes: 0 success, 2 bad usage (unknown or missing option, an invalid value, flags that do not go together, a
path that does not exist, a model spec that names nothing, images of several sizes without ``--size``), 1 failure
(a file that cannot be read or is refused as unsafe, a model file that fails to import or a factory that raises,
weights of another architecture, unusable images, an error while editing). Errors are one line on stderr;
``--debug`` shows the traceback. Progress bars go to stderr (only on a terminal; ``--no-progress`` turns them off).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from . import __version__
from .detect import DetectConfig, THRESHOLD_RATIONALE, detect
from .capture import TraceDict
from .edit import BN_MODES, LAYER_SELECTIONS, EditConfig, edit_model, owns_weight, select_layers
from .io import (ImageData, LoadedModel, ModelSpecError, atomic_path, detect_format, format_for_suffix, image_sizes,
                 load_images, load_model, load_patch, parse_model_spec, save_weights)
from .metrics import evaluate, predict
from .models import MODELS
from .repair import RepairConfig, repair
from .seeding import set_seed
from .timing import timed
from .triggers import TRIGGERS, PatchTrigger, make_trigger
from .validation import check_images, check_labels, check_trigger_output

__all__ = ["main", "build_parser", "UsageError"]
log = logging.getLogger("actedit")

# built-in triggers a user can name; narcissus needs a pattern optimised on the training data, which a defender lacks
CLI_TRIGGERS = tuple(t for t in TRIGGERS if t != "narcissus")
_EDIT_DEFAULTS = EditConfig()


class UsageError(Exception):
    """The command line is wrong (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``actedit edit: error: … (see actedit edit --help)``, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------------ the parser

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def _opacity(text: str) -> float:
    value = _finite(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected an opacity in (0, 1], got {text}")
    return value


def _position(text: str) -> str | tuple[int, int]:
    if text in ("bottom-right", "center"):
        return text
    parts = text.split(",")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"expected bottom-right, center or ROW,COL, got {text!r}")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"num_classes\": 10}}', got {text!r} "
                                         f"({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"num_classes\": 10}}', got "
                                         f"{type(value).__name__} {text!r}")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", "--arch", dest="model", required=True, metavar="SPEC",
                   help=f"the architecture the weights were saved from: a built-in ({', '.join(MODELS)}), "
                        "torchvision:NAME (a torchvision classifier, e.g. torchvision:squeezenet1_1), or "
                        "path/to/file.py:NAME (a class or factory in your own Python file, which is imported)")
    g.add_argument("--model-kwargs", type=_json_object, default=None, metavar="JSON",
                   help="keyword arguments for a torchvision or file model, as a JSON object, e.g. "
                        "'{\"num_classes\": 10}'")
    g.add_argument("--weights", required=True, metavar="FILE",
                   help="state dict as .safetensors or a torch file (torch.load weights_only=True: tensors only, "
                        "no code in the file runs)")
    g.add_argument("--num-classes", type=_positive_int, metavar="K",
                   help="number of classes (default: the width of the model's output; built-in and torchvision "
                        "models are built with the rows of the weights' last layer)")
    g.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="input channels (default: those of the model's first convolution, else the images')")
    g.add_argument("--size", type=_positive_int, metavar="PX",
                   help="input height = width; images are resized to it (default: the images' own size, when they "
                        "all have one)")


def _add_images(p: argparse.ArgumentParser, *, labelled: bool) -> None:
    g = p.add_argument_group("images")
    g.add_argument("--images", required=True, metavar="DIR|FILE.npz",
                   help="ImageFolder tree (one sub-folder per class: labelled), flat folder of PNG/JPEG "
                        "(unlabelled), or .npz with 'images' [N,H,W,C] or [N,C,H,W] (uint8 0-255 or float 0-1) "
                        "and optional 'labels'")
    g.add_argument("--labels", metavar="FILE",
                   help="class indices, one per image in the images' order: .npy, or text separated by "
                        "whitespace/commas" + (" (required if the images carry none)" if labelled else ""))


def _add_trigger(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trigger (backdoor knowledge)")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--trigger", choices=CLI_TRIGGERS, help="a built-in trigger of the paper's Fig. 2")
    which.add_argument("--trigger-image", metavar="PNG", help="a trigger picture (grey, RGB or RGBA) pasted as a patch")
    g.add_argument("--trigger-alpha", type=_opacity, metavar="A",
                   help="patch opacity in (0, 1] (default: 1 for --trigger-image, the paper's for --trigger)")
    g.add_argument("--trigger-position", type=_position, default="bottom-right", metavar="POS",
                   help="bottom-right (default), center, or ROW,COL of the patch's top-left pixel")
    g.add_argument("--target", type=_int, metavar="CLASS",
                   help="the backdoor's target class for ASR/CTCA (default: the class the model predicts most "
                        "often on triggered images)")


def _add_run(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: cpu)")
    g.add_argument("--seed", type=_int, default=0, help="seed of the repair shuffle and the noise trigger (default: 0)")
    g.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="images per forward pass (default: 64)")
    g.add_argument("--report", metavar="JSON", help="write a JSON report here")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("-v", "--verbose", action="store_true", help="log what happens (stderr)")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _add_edit_options(p: argparse.ArgumentParser, *, bn_help: str) -> None:
    g = p.add_argument_group("edit (paper §3, Eq. 1-5 and 7)")
    d = _EDIT_DEFAULTS
    g.add_argument("--gamma", type=_non_negative, default=d.gamma, help=f"Eq. 4 scale γ (default: {d.gamma})")
    g.add_argument("--lam", type=_finite, default=d.lam, help=f"Eq. 4 shift λ (default: {d.lam})")
    g.add_argument("--alpha", type=_finite, default=d.alpha,
                   help=f"Eq. 7 weight of clean activations α (default: {d.alpha})")
    g.add_argument("--beta", type=_finite, default=d.beta,
                   help=f"Eq. 7 weight of triggered activations β (default: {d.beta})")
    g.add_argument("--bn", choices=BN_MODES, default=None, help=bn_help)
    g.add_argument("--layers", choices=LAYER_SELECTIONS, default=d.layers,
                   help=f"which layers form L, 'the later half of the weights' (default: {d.layers})")


def build_parser() -> argparse.ArgumentParser:
    """The ``actedit`` argument parser (all three commands)."""
    parser = _Parser(prog="actedit", description="Mitigate, measure and detect backdoors by activation-guided "
                     "model editing (Hsieh et al.).",
                     epilog="Exit codes: 0 ok, 2 bad usage, 1 failure. Run 'actedit COMMAND --help'.")
    parser.add_argument("--version", action="version", version=f"actedit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    edit = sub.add_parser("edit", help="unlearn a backdoor (BDK with a trigger, else ¬BDK) and save the weights",
                          description="Edit a model's later-half weights by its (negated) mean activations on "
                          "the given images (§3), optionally repair (fine-tune one epoch), save the weights in "
                          "the input's format, and report ASR/ACC/CTCA before and after when the images are "
                          "labelled and a trigger is given.")
    _add_model(edit)
    _add_images(edit, labelled=False)
    _add_trigger(edit)
    _add_edit_options(edit, bn_help="BatchNorm statistics during extraction (default: frozen with a trigger, "
                                    "update without, as the paper)")
    g = edit.add_argument_group("repair (§3.1, Table 8)")
    g.add_argument("--repair", action="store_true", help="fine-tune the edited model one epoch on the labelled "
                   "images (and on them with the trigger, under BDK)")
    r = RepairConfig()
    g.add_argument("--lr", type=_non_negative, default=r.lr, help=f"repair learning rate (default: {r.lr:g}, Table 8)")
    g.add_argument("--repair-epochs", type=_positive_int, default=r.epochs, metavar="N",
                   help=f"repair epochs (default: {r.epochs}, §3.1)")
    g = edit.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="FILE", help="where to write the edited weights (same format "
                   "as --weights)")
    g.add_argument("--eval-images", metavar="DIR|FILE.npz", help="labelled images for the before/after metrics "
                   "(default: the --images themselves)")
    g.add_argument("--eval-labels", metavar="FILE", help="labels for --eval-images")
    _add_run(edit)
    edit.set_defaults(func=_cmd_edit)

    ev = sub.add_parser("evaluate", help="ASR/ACC/CTCA/per-class accuracy on a labelled set",
                        description="Accuracy (ACC), per-class accuracy and, with a trigger, the attack success "
                        "rate (ASR: images not of the target class, triggered, predicted as the target) and the "
                        "clean target-class accuracy (CTCA), in percent.")
    _add_model(ev)
    _add_images(ev, labelled=True)
    _add_trigger(ev)
    _add_run(ev)
    ev.set_defaults(func=_cmd_evaluate)

    det = sub.add_parser("detect", help="§4.3: suspected target class and whether a backdoor is likely",
                         description="Edit without backdoor knowledge (¬BDK) and compare per-class accuracy on the "
                         "labelled images before and after; the class with the largest drop is the suspected "
                         "target, and a backdoor is likely when that drop exceeds every other class's drop by more "
                         "than --threshold robust standard deviations of the others (score 'gap'). "
                         f"{THRESHOLD_RATIONALE}.")
    _add_model(det)
    _add_images(det, labelled=True)
    _add_edit_options(det, bn_help="BatchNorm statistics during extraction (default: update, the paper's ¬BDK)")
    d = DetectConfig()
    g = det.add_argument_group("decision")
    g.add_argument("--threshold", type=_finite, default=d.threshold,
                   help=f"score above which a backdoor is declared (default: {d.threshold})")
    g.add_argument("--edit-samples", type=_positive_int, default=d.edit_samples, metavar="N",
                   help=f"images the edit sees (default: {d.edit_samples}, the paper's |D_U|); all are scored")
    _add_run(det)
    det.set_defaults(func=_cmd_detect)
    return parser


# ------------------------------------------------------------------------------------------------ helpers

def _out(text: str = "") -> None:
    print(text, flush=True)


def _device(name: str) -> str:
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device: unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return name


def _check_paths(args: argparse.Namespace) -> None:
    for flag in ("weights", "images", "labels", "trigger_image", "eval_images", "eval_labels"):
        value = getattr(args, flag, None)
        if value is not None and not Path(value).exists():
            raise UsageError(f"--{flag.replace('_', '-')} {value}: no such file or folder")
    for flag in ("out", "report"):
        value = getattr(args, flag, None)
        if value is not None:
            parent = Path(value).resolve().parent
            if not parent.is_dir():
                raise UsageError(f"--{flag} {value}: the folder {parent} does not exist")
            if Path(value).is_dir():
                raise UsageError(f"--{flag} {value}: is a folder; give a file name")


def _check_trigger_flags(args: argparse.Namespace) -> None:
    has_trigger = bool(args.trigger or args.trigger_image)
    if not has_trigger:
        for flag, default in (("trigger_alpha", None), ("target", None), ("trigger_position", "bottom-right")):
            if getattr(args, flag) != default:
                raise UsageError(f"--{flag.replace('_', '-')} needs --trigger or --trigger-image")
    if args.trigger in ("invisible",) and args.trigger_alpha is not None:
        raise UsageError("--trigger-alpha applies to patch triggers; 'invisible' has no opacity")
    if args.trigger and args.trigger_position != "bottom-right":
        raise UsageError("--trigger-position applies to --trigger-image; built-in triggers sit where the paper puts "
                         "them")


def _check_model_flags(args: argparse.Namespace) -> None:
    spec = parse_model_spec(args.model)        # ModelSpecError: exit 2
    if spec.kind == "built-in" and args.model_kwargs:
        raise UsageError(f"--model-kwargs applies to torchvision: and FILE.py: models; the built-in {spec.name!r} "
                         "takes --num-classes, --channels and --size")


def _trigger(args: argparse.Namespace, channels: int, size: int):
    if args.trigger:
        return make_trigger(args.trigger, channels=channels, size=size, alpha=args.trigger_alpha, seed=args.seed)
    if args.trigger_image:
        return PatchTrigger(load_patch(args.trigger_image), args.trigger_alpha or 1.0, args.trigger_position,
                            name=Path(args.trigger_image).stem)
    return None


def _trigger_info(args: argparse.Namespace, trigger) -> dict | None:
    if trigger is None:
        return None
    info = {"name": trigger.name, "source": args.trigger_image or "built-in"}
    if isinstance(trigger, PatchTrigger):
        info.update(alpha=trigger.alpha, position=trigger.position, patch_shape=list(trigger.patch.shape))
    return info


@dataclass
class _Inputs:
    """What a command works on, every size read from the data when the command line leaves it out."""

    loaded: LoadedModel
    data: ImageData
    trigger: object | None
    size: int
    channels: int
    num_classes: int
    layers: str | tuple[str, ...] | None = None   # the edit's layer list L, for edit and detect

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model


def _image_size(args: argparse.Namespace) -> int:
    """``--size``, or the one square size of every image in ``--images``."""
    if args.size is not None:
        return args.size
    sizes = image_sizes(args.images)
    (h, w), _ = sizes.most_common(1)[0]
    if len(sizes) > 1 or h != w:
        listed = ", ".join(f"{h}x{w} ({n} image{'s' * (n != 1)})" for (h, w), n in sizes.most_common(3))
        more = f" and {len(sizes) - 3} more sizes" if len(sizes) > 3 else ""
        raise UsageError(f"--images {args.images}: the images are not all one square size ({listed}{more}); pass "
                         "--size N (the size the model takes) to resize them all to N x N")
    return h


def _probe(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, layers: list[str] | None) -> tuple:
    """One forward pass on one image: the model's class count, and the layers of L the pass reaches."""
    traces = TraceDict(model, layers or [])
    try:
        with torch.no_grad(), traces:
            out = model(x[:1].to(args.device))
    except Exception as err:  # noqa: BLE001 — the user's forward can raise anything
        raise ValueError(f"--model {args.model}: the model cannot take the images ({x.shape[1]}x{x.shape[2]}x"
                         f"{x.shape[3]}): {type(err).__name__}: {' '.join(str(err).split())}; give the --size and "
                         "--channels it was trained with") from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        what = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ValueError(f"--model {args.model}: the model returns {what}; actedit needs logits [N, classes]")
    return out.shape[1], [n for n in layers or [] if traces[n].count]


def _edit_layers(args: argparse.Namespace, model: torch.nn.Module) -> list[str]:
    """L by ``--layers``, with a clear error for a model the edit cannot change."""
    try:
        layers = select_layers(model, args.layers)
    except ValueError as err:
        raise ValueError(f"--model {args.model}: the model has no conv or linear layer (torch.nn Conv1d/2d/3d or "
                         "Linear) whose weight the edit could scale (Eq. 5)") from err
    # L leaves computed weights out (scaling them would not last); a model that has them is refused, not half-edited
    computed = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))
                and isinstance(getattr(m, "weight", None), torch.Tensor) and not owns_weight(m)]
    if computed:
        raise ValueError(f"--model {args.model}: the weights of {', '.join(computed[:4])} are computed (weight norm "
                         "or another parametrization), so scaling them would not last; remove the "
                         "parametrization before saving the weights")
    return layers


def _load(args: argparse.Namespace, bar: tqdm, timings: dict, *, need_labels: bool,
          edits: bool = False) -> _Inputs:
    """Model, images (+labels) and trigger, each checked before any work starts."""
    size = _image_size(args)
    with timed(args.device) as t:
        loaded = load_model(args.model, args.weights, num_classes=args.num_classes, size=size,
                            channels=args.channels, kwargs=args.model_kwargs, device=args.device)
    timings["load_model_s"] = t.seconds
    bar.update()
    with timed() as t:
        data = load_images(args.images, size=size, channels=loaded.channels or args.channels, labels=args.labels,
                           progress=False if args.no_progress else None)
    timings["load_images_s"] = t.seconds
    bar.update()
    channels = data.images.shape[1]
    check_images(data.images, channels=channels)
    layers = _edit_layers(args, loaded.model) if edits else None
    num_classes, reached = _probe(args, loaded.model, data.images, layers)
    if args.num_classes is not None and args.num_classes != num_classes:
        raise ValueError(f"--num-classes {args.num_classes}, but the model outputs {num_classes} logits")
    target = getattr(args, "target", None)
    if target is not None and not 0 <= target < num_classes:
        raise UsageError(f"--target {target} is not a class of a {num_classes}-class model (0..{num_classes - 1})")
    if data.labels is not None:
        check_labels(data.labels, len(data), num_classes=num_classes)
    elif need_labels:
        raise UsageError(f"{args.images} has no labels: use an ImageFolder tree, an .npz with 'labels', or --labels")
    edit_layers = args.layers if edits else None
    if edits and len(reached) < len(layers):
        # a layer the forward pass never calls (an auxiliary head) changes no output: leave it out of L
        if not reached:
            raise ValueError(f"--model {args.model}: none of the layers to edit ({', '.join(layers[:4])}) is used "
                             "by the model's forward pass")
        log.warning("layers not used by the forward pass, left out of the edit: %s",
                    ", ".join(n for n in layers if n not in reached))
        edit_layers = tuple(reached)
    trigger = _trigger(args, channels, size) if hasattr(args, "trigger") else None
    if trigger is not None:
        check_trigger_output(trigger(data.images[:1]), data.images[:1])
    return _Inputs(loaded, data, trigger, size, channels, num_classes, edit_layers)


def _infer_target(model, images: torch.Tensor, trigger, args: argparse.Namespace) -> tuple[int, float]:
    """The class the model predicts most often on triggered images, and that share in percent."""
    pred = predict(model, trigger(images), batch_size=args.batch_size, device=args.device)[:, 0].tolist()
    cls, count = Counter(pred).most_common(1)[0]
    return int(cls), 100.0 * count / len(pred)


def _metrics(model, images, labels, trigger, target, args, num_classes: int) -> dict:
    return evaluate(model, images, labels, trigger=trigger, target=target, num_classes=num_classes,
                    batch_size=args.batch_size, device=args.device)


def _json_ready(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_report(args: argparse.Namespace, report: dict) -> None:
    if not args.report:
        return
    path = Path(args.report)
    text = json.dumps(_json_ready(report), indent=2) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    _out(f"report    {path}")


def _settings(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("func",)}


def _fmt(v: float) -> str:
    return "    -" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:5.1f}"


def _model_info(args: argparse.Namespace, inputs: _Inputs) -> dict:
    loaded = inputs.loaded
    return {"spec": args.model, "kind": loaded.spec.kind, "kwargs": loaded.kwargs, "weights": args.weights,
            "format": loaded.format, "num_classes": inputs.num_classes, "channels": inputs.channels,
            "size": inputs.size, "parameters": sum(p.numel() for p in inputs.model.parameters())}


def _describe(args, inputs: _Inputs, target, inferred) -> None:
    data, trigger = inputs.data, inputs.trigger
    _out(f"model     {args.model} from {args.weights} ({inputs.loaded.format}; {inputs.num_classes} classes, "
         f"{inputs.channels}x{inputs.size}x{inputs.size})")
    labelled = "labelled" if data.labels is not None else "unlabelled"
    _out(f"images    {len(data)} from {data.source} ({data.layout}, {labelled})")
    if trigger is not None:
        how = f"inferred: {inferred:.0f}% of triggered images go there" if inferred is not None else "given"
        _out(f"trigger   {trigger.name}; target class {target} ({how})")


# ------------------------------------------------------------------------------------------------ commands

def _cmd_edit(args: argparse.Namespace) -> int:
    out_fmt, in_fmt = format_for_suffix(args.out), detect_format(args.weights)
    if out_fmt is not None and out_fmt != in_fmt:
        raise UsageError(f"--out {args.out}: the name says {out_fmt} but --weights is {in_fmt}; the edited weights "
                         f"keep the input's format, so name it like {Path(args.weights).name}")
    timings: dict[str, float] = {}
    stages = 6 + int(args.repair)
    with tqdm(total=stages, desc="actedit edit", file=sys.stderr, disable=True if args.no_progress else None,
              leave=False) as bar, timed(args.device) as total:
        inputs = _load(args, bar, timings, need_labels=args.repair, edits=True)
        data, trigger, model = inputs.data, inputs.trigger, inputs.model
        eval_x, eval_y = data.images, data.labels
        if args.eval_images:
            ev = load_images(args.eval_images, size=inputs.size, channels=inputs.channels, labels=args.eval_labels)
            check_images(ev.images, channels=inputs.channels)
            if ev.labels is None:
                raise UsageError(f"--eval-images {args.eval_images} has no labels; add --eval-labels")
            check_labels(ev.labels, len(ev), num_classes=inputs.num_classes)
            eval_x, eval_y = ev.images, ev.labels
        target, inferred = args.target, None
        if trigger is not None and target is None:
            target, inferred = _infer_target(model, data.images, trigger, args)
        _describe(args, inputs, target, inferred)
        metrics: dict[str, dict] = {}
        if eval_y is not None:
            with timed(args.device) as t:
                metrics["before"] = _metrics(model, eval_x, eval_y, trigger, target, args, inputs.num_classes)
            timings["evaluate_before_s"] = t.seconds
        bar.update()

        config = EditConfig(gamma=args.gamma, lam=args.lam, alpha=args.alpha, beta=args.beta, bn=args.bn,
                            layers=inputs.layers, batch_size=args.batch_size, device=args.device)
        with timed(args.device) as t:
            edited, factors = edit_model(model, data.images, trigger=trigger, config=config, return_factors=True)
            edited.eval()
        timings["edit_s"] = t.seconds
        bn_mode, layers = config.bn_mode(trigger is not None), list(factors)
        bar.update()
        if args.repair:
            with timed(args.device) as t:
                edited = repair(edited, data.images, data.labels, trigger=trigger, lr=args.lr,
                                epochs=args.repair_epochs, config=RepairConfig(seed=args.seed), device=args.device,
                                progress=False).eval()
            timings["repair_s"] = t.seconds
            bar.update()
        if eval_y is not None:
            with timed(args.device) as t:
                metrics["after"] = _metrics(edited, eval_x, eval_y, trigger, target, args, inputs.num_classes)
            timings["evaluate_after_s"] = t.seconds
        bar.update()
        mode = "BDK" if trigger is not None else "¬BDK"
        settings = {"mode": mode, "edit": asdict(config), "bn_mode": bn_mode, "layers": layers,
                    "repair": {"lr": args.lr, "epochs": args.repair_epochs} if args.repair else None,
                    "trigger": _trigger_info(args, trigger), "target": target}
        with timed() as t:
            save_weights(edited, args.out, format=inputs.loaded.format,
                         metadata={"actedit_edit": json.dumps(_json_ready(settings), default=str)})
        timings["save_s"] = t.seconds
        bar.update()
    timings["total_s"] = total.seconds

    _out(f"edit      {mode} on {len(data)} images, {len(layers)} layers "
         f"(γ {args.gamma}, λ {args.lam}, α {args.alpha}, β {args.beta}, BN {bn_mode})"
         + (f", repaired {args.repair_epochs} epoch(s) at lr {args.lr}" if args.repair else ""))
    if metrics:
        where = "the edit images" if not args.eval_images else args.eval_images
        _out(f"metrics   on {len(eval_y)} labelled images ({where}), percent")
        _out("              ASR    ACC   CTCA")
        for when in ("before", "after"):
            m = metrics[when]
            _out(f"  {when:<8} {_fmt(m['asr'])}  {_fmt(m['acc'])}  {_fmt(m['ctca'])}")
    _out(f"wrote     {args.out} ({inputs.loaded.format})")
    _write_report(args, {
        "command": "edit", "actedit_version": __version__, "cli": _settings(args), "settings": settings,
        "model": _model_info(args, inputs),
        "images": {"source": data.source, "layout": data.layout, "count": len(data),
                   "labelled": data.labels is not None, "eval_source": args.eval_images or data.source},
        "target_inferred": inferred is not None, "target_inferred_share_%": inferred,
        "timings": timings, "factors": [f.summary() for f in factors.values()], "metrics": metrics,
        "out": args.out})
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    with tqdm(total=3, desc="actedit evaluate", file=sys.stderr, disable=True if args.no_progress else None,
              leave=False) as bar:
        inputs = _load(args, bar, timings, need_labels=True)
        data, trigger = inputs.data, inputs.trigger
        target, inferred = args.target, None
        if trigger is not None and target is None:
            target, inferred = _infer_target(inputs.model, data.images, trigger, args)
        with timed(args.device) as t:
            m = _metrics(inputs.model, data.images, data.labels, trigger, target, args, inputs.num_classes)
        timings["evaluate_s"] = t.seconds
        bar.update()
    _describe(args, inputs, target, inferred)
    _out(f"ACC       {m['acc']:.2f} %")
    if trigger is not None:
        _out(f"ASR       {m['asr']:.2f} %")
        _out(f"CTCA      {m['ctca']:.2f} %")
    counts = torch.bincount(data.labels, minlength=inputs.num_classes).tolist()
    _out("per class " + "  ".join(f"{c}:{_fmt(a).strip()}" for c, a in enumerate(m["per_class"]) if counts[c]))
    _write_report(args, {"command": "evaluate", "actedit_version": __version__, "cli": _settings(args),
                         "model": _model_info(args, inputs),
                         "images": {"source": data.source, "layout": data.layout, "count": len(data),
                                    "per_class_count": counts},
                         "trigger": _trigger_info(args, trigger), "target": target,
                         "target_inferred": inferred is not None, "metrics": m, "timings": timings})
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    with tqdm(total=3, desc="actedit detect", file=sys.stderr, disable=True if args.no_progress else None,
              leave=False) as bar:
        inputs = _load(args, bar, timings, need_labels=True, edits=True)
        data, num_classes = inputs.data, inputs.num_classes
        edit = EditConfig(gamma=args.gamma, lam=args.lam, alpha=args.alpha, beta=args.beta, bn=args.bn,
                          layers=inputs.layers, batch_size=args.batch_size, device=args.device)
        config = DetectConfig(edit=edit, threshold=args.threshold, edit_samples=args.edit_samples,
                              batch_size=args.batch_size, device=args.device)
        result = detect(inputs.model, data.images, data.labels, num_classes=num_classes, config=config)
        timings["detect_s"] = result.seconds
        bar.update()
    _describe(args, inputs, None, None)
    _out(f"¬BDK edit on {result.edit_images} images; per-class accuracy on {result.num_images} (percent)")
    _out("class      n  before  after   drop")
    for c in range(num_classes):
        if result.counts[c]:
            mark = "  <- suspected target" if c == result.suspected else ""
            _out(f"{c:>5}  {result.counts[c]:>5}  {_fmt(result.acc_before[c])}  {_fmt(result.acc_after[c])}  "
                 f"{_fmt(result.drops[c])}{mark}")
    verdict = (f"backdoor likely, target class {result.suspected}" if result.backdoor
               else f"no backdoor detected (largest drop: class {result.suspected})")
    _out(f"score     {result.score:.2f} ({result.statistic}; threshold {result.threshold:g})")
    _out(f"verdict   {verdict}")
    _write_report(args, {"command": "detect", "actedit_version": __version__, "cli": _settings(args),
                         "model": _model_info(args, inputs),
                         "images": {"source": data.source, "layout": data.layout, "count": len(data)},
                         "threshold_rationale": THRESHOLD_RATIONALE, "result": result.to_dict(), "timings": timings})
    return 0


# ------------------------------------------------------------------------------------------------ entry point

def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (KeyError, LookupError)) and not isinstance(err, (FileNotFoundError,)):
        text = f"{type(err).__name__}: {text}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``actedit`` command line; returns the exit code (0 ok, 2 bad usage, 1 failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    prog = f"actedit {args.command}"
    try:
        _check_paths(args)
        _check_model_flags(args)
        if hasattr(args, "trigger"):
            _check_trigger_flags(args)
        args.device = _device(args.device)
        set_seed(args.seed)
        return args.func(args)
    except (UsageError, ModelSpecError) as err:
        if args.debug:
            raise
        print(f"{prog}: error: {_one_line(err)} (see {prog} --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 — every failure is one line unless --debug
        if args.debug:
            raise
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
