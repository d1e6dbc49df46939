#!/usr/bin/env python
"""Train the built-in default detector (ShelfNet, see densedet_tile/detector/builtin.py) from scratch
on synthetic shelves drawn on the fly by densedet_tile.synth.shelves. The losses, augmentation, EMA and
checkpoint format live in densedet_tile.train (shared with ``densedet-tile adapt``); this script is the
command line and the loop around them.

Sample ``i`` of the stream is drawn from ``np.random.default_rng([seed, i])``, so the data do not
depend on the number of workers; the network init and augmentations are seeded too. Given
``--steps`` the run is reproducible (up to nondeterministic GPU kernels); with ``--minutes`` the
number of steps depends on the machine's speed, and the learning-rate schedule follows
whichever of the two budgets runs out first.

Examples:
    # CPU, 2 cores, about 85 minutes (the documented CPU recipe)
    python scripts/train_default.py --device cpu --size 384 --batch 8 --workers 1 --reuse 2 --minutes 85 --out runs/cpu
    # GPU (what scripts/gpu_train_default.sh runs)
    python scripts/train_default.py --device cuda --size 640 --batch 32 --reuse 3 --lr 2e-3 --workers 14 \
        --minutes 7 --save-every 60 --seed 0 --out $OUT
    # continue a stopped or killed run where its state left it (same options, same budget)
    python scripts/train_default.py --resume --out runs/cpu

Writes ``OUT/default.pt`` (fp16 EMA weights + config + training info, loadable with
``torch.load(weights_only=True)``), ``OUT/state.pt`` (what ``--resume`` needs: fp32 model,
optimiser, EMA, step, images, the data stream position, the augmentation generator and the run's
options; loadable with ``weights_only=True`` too) every ``--save-every`` seconds, at the end and
when stopped (Ctrl-C, SIGTERM, ``--stop-at-step``, a crash after at least one step; in
``--state-dir`` instead where given, as the GPU script does), and
``OUT/train_log.csv`` (step, seconds, images, loss terms, lr, boxes per image, and the ``--distill`` term; appended to by ``--resume``).

A folder that already holds ``default.pt`` or ``state.pt`` is refused unless ``--resume``
(continue that run) or ``--overwrite`` (start a new one over it) is given. A run that stops
before its first step writes nothing, so it never replaces weights already there.

With ``--resume`` the run options (``--size``, ``--batch``, ``--lr``, ``--reuse``, ``--seed``,
``--ema``, ``--steps``, ``--minutes``, ``--init``) come from the state; giving one with another
value is refused, since that would be a different run. ``--workers``, ``--save-every``,
``--device`` and ``--stop-at-step`` may change. A ``--steps`` run stopped and resumed ends with
the weights and log rows of an uninterrupted one (on the CPU, ``--workers`` any).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
except ModuleNotFoundError:  # the light install has no torch: one line naming the extra, no traceback
    print("train_default: needs torch: pip install 'densedet-tile[train]'", file=sys.stderr)
    raise SystemExit(2) from None

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densedet_tile.detector.builtin import DEFAULT_CONFIG, ShelfNet  # noqa: E402
from densedet_tile.errors import InvalidInputError, one_line  # noqa: E402
from densedet_tile.io import (  # noqa: E402
    atomic_write,
    ensure_out_dir,
    new_folders,
    remove_empty,
    sweep_temporaries,
    write_files,
)
from densedet_tile.train import (  # noqa: E402
    ShelfStream,
    checkpoint_bytes,
    checkpoint_dict,
    ema_copy,
    learning_rate,
    make_optimizer,
    normaliser,
    train_step,
)

NAME = "train_default"
STATE_FORMAT = "densedet-tile/train-default-state@1"
WEIGHTS_NAME, STATE_NAME, LOG_NAME = "default.pt", "state.pt", "train_log.csv"
#: ``distill`` is the learning-without-forgetting term (empty without ``--distill``; a log begun
#: before the column existed gets it in its header on resume, its old rows stay shorter)
LOG_HEADER = ["step", "seconds", "images", "loss", "heat", "box", "lr", "boxes_per_img", "distill"]
#: Options that define a run: a resumed run takes them from its state and refuses other values.
RUN_OPTIONS = ("size", "batch", "lr", "reuse", "seed", "ema", "steps", "minutes", "init", "distill")
DEFAULTS: dict[str, Any] = {"device": "cpu", "size": 640, "batch": 16, "workers": 2, "lr": 2e-3, "reuse": 1,
                            "seed": 0, "save_every": 60.0, "ema": 0.999, "steps": None, "minutes": None,
                            "init": None, "distill": 0.0}


def _updates(opt: torch.optim.Optimizer) -> int:
    """The optimizer updates made so far (AdamW counts them per parameter; 0 before the first)."""
    for st in opt.state.values():
        if "step" in st:
            return int(st["step"])
    return 0


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    # `timeout`, a scheduler or Ctrl-C signal the whole process group: the data workers keep
    # going, so that the main process can finish its step and save (it shuts them down after)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # every default is None here: a resumed run must tell an option given from one left out
    ap.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default cpu")
    ap.add_argument("--size", type=int, default=None, help="training crop side (multiple of 32, default 640)")
    ap.add_argument("--batch", type=int, default=None, help="default 16")
    ap.add_argument("--workers", type=int, default=None, help="data workers (default 2; 0 loads in this process)")
    ap.add_argument("--minutes", type=float, default=None, help="time budget")
    ap.add_argument("--steps", type=int, default=None, help="step budget")
    ap.add_argument("--lr", type=float, default=None, help="default 2e-3")
    ap.add_argument("--reuse", type=int, default=None,
                    help="optimizer steps per loaded batch (fresh augmentation each, default 1)")
    ap.add_argument("--seed", type=int, default=None, help="default 0")
    ap.add_argument("--save-every", type=float, default=None, help="seconds between checkpoints (default 60)")
    ap.add_argument("--ema", type=float, default=None, help="weight average decay (default 0.999)")
    ap.add_argument("--init", default=None, help="start from this checkpoint (fine-tuning)")
    ap.add_argument("--distill", type=float, default=None,
                    help="with --init: weight of a loss keeping the heatmap where no product is labelled "
                         "close to the --init weights' own (learning without forgetting; default 0, off)")
    ap.add_argument("--resume", action="store_true", help="continue the run whose OUT/state.pt is there")
    ap.add_argument("--overwrite", action="store_true", help="start a new run over a trained model in --out")
    ap.add_argument("--stop-at-step", type=int, default=None,
                    help="stop this session after this step, saving the state (continue with --resume)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--state-dir", default=None,
                    help="where state.pt goes (default: --out); scripts/gpu_train_default.sh keeps it out of the "
                         "folder the device brings back (60 MB, over its 16 MiB a file)")
    return ap


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_init(path: str, model: torch.nn.Module) -> None:
    """Load the weights of the checkpoint ``path`` (``--init``) into ``model``, or say in one line
    why they cannot be."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"--init {path}: no such file")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a foreign or damaged file
        raise InvalidInputError(f"--init {path}: not a torch checkpoint loadable with weights_only=True "
                                f"({type(exc).__name__})") from None
    sd = ck.get("state_dict") if isinstance(ck, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InvalidInputError(f"--init {path}: not a ShelfNet weights file (no 'state_dict' of tensors)")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except RuntimeError as exc:
        raise InvalidInputError(f"--init {path}: its weights do not fit the default ShelfNet "
                                f"({one_line(exc)[:200]})") from None


def _check_options(o: dict[str, Any]) -> None:
    """Refuse values that cannot make a run, one line naming the option."""
    if o["minutes"] is None and o["steps"] is None:
        raise InvalidInputError("give --minutes or --steps (the run's budget)")
    if o["minutes"] is not None and not (math.isfinite(o["minutes"]) and o["minutes"] > 0):
        raise InvalidInputError(f"--minutes {o['minutes']}: must be a number above 0")
    if o["steps"] is not None and o["steps"] < 1:
        raise InvalidInputError(f"--steps {o['steps']}: must be at least 1")
    if o["size"] % 32 or o["size"] < 96:
        raise InvalidInputError(f"--size {o['size']}: must be a multiple of 32, at least 96 "
                                "(smaller crops cannot hold the generated products)")
    if o["batch"] < 1:
        raise InvalidInputError(f"--batch {o['batch']}: must be at least 1")
    if o["reuse"] < 1:
        raise InvalidInputError(f"--reuse {o['reuse']}: must be at least 1 (optimizer steps per loaded batch)")
    if o["workers"] < 0:
        raise InvalidInputError(f"--workers {o['workers']}: must be 0 or more")
    if not (math.isfinite(o["lr"]) and o["lr"] > 0):
        raise InvalidInputError(f"--lr {o['lr']}: must be a number above 0")
    if not (0.0 <= o["ema"] < 1.0):
        raise InvalidInputError(f"--ema {o['ema']}: must be in [0, 1)")
    if not (math.isfinite(o["save_every"]) and o["save_every"] >= 0):
        raise InvalidInputError(f"--save-every {o['save_every']}: must be 0 or more seconds")
    if o["seed"] < 0:
        raise InvalidInputError(f"--seed {o['seed']}: must be 0 or more")
    if not (math.isfinite(o["distill"]) and o["distill"] >= 0):
        raise InvalidInputError(f"--distill {o['distill']}: must be 0 or more")
    if o["distill"] > 0 and o["init"] is None:
        raise InvalidInputError("--distill keeps the --init weights' opinion: give --init too")
    if o["device"] == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("--device cuda: torch sees no CUDA GPU on this machine")


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidInputError(f"--resume: {path} does not exist (nothing to resume: a run writes it at its "
                                "first save; a folder holding only default.pt can start a new run with --init)")
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInputError(f"--resume: {path} cannot be read ({type(exc).__name__}): damaged or not a "
                                "training state") from None
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise InvalidInputError(f"--resume: {path} is not a state of scripts/train_default.py ({STATE_FORMAT})")
    return st


def _resumed_options(args: argparse.Namespace, saved: dict[str, Any], state_path: Path) -> dict[str, Any]:
    """The saved run options, with the session options given now; a run option given with
    another value than the saved one is refused."""
    o = {"distill": 0.0, **saved}  # (a state from before --distill has none)
    for k in RUN_OPTIONS:
        given = getattr(args, k)
        if given is None:
            continue
        if k == "init":
            p = Path(given)
            same = saved["init"] is not None and p.is_file() and _sha256(p) == saved["init"]["sha256"]
            old = None if saved["init"] is None else saved["init"]["path"]
        else:
            same, old = given == o[k], o[k]
        if not same:
            flag = "--" + k.replace("_", "-")
            raise InvalidInputError(f"{flag} {given}: the run in {state_path} has {flag} {old}; a resumed run keeps "
                                    "its options (start a new run with --overwrite to change them)")
    for k in ("device", "workers", "save_every"):
        if getattr(args, k) is not None:
            o[k] = getattr(args, k)
    return o


def _trim_log(path: Path, step: int) -> None:
    """Keep the header and the rows up to ``step`` of the log (rows written after the state's
    last save are logged again by the resumed run)."""
    rows: list[list[str]] = []
    if path.is_file():
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
    keep = [LOG_HEADER] + [r for r in rows[1:] if r[0].isdigit() and int(r[0]) <= step]
    if keep != rows:
        buf = io.StringIO()
        csv.writer(buf).writerows(keep)
        atomic_write(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.time()
    out = Path(args.out)
    state_dir = out if args.state_dir is None else Path(args.state_dir)
    wpath, spath, lpath = out / WEIGHTS_NAME, state_dir / STATE_NAME, out / LOG_NAME
    again = "" if state_dir == out else f" --state-dir {state_dir}"  # for the resume hints
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out}: exists and is not a folder")
    if args.resume and args.overwrite:
        raise InvalidInputError("--resume and --overwrite: give one (continue the run, or start a new one over it)")
    if args.stop_at_step is not None and args.stop_at_step < 1:
        raise InvalidInputError(f"--stop-at-step {args.stop_at_step}: must be at least 1")

    state: dict[str, Any] | None = None
    if args.resume:
        state = _load_state(spath)
        opts = _resumed_options(args, state["options"], spath)
        # the session options the run had, unless given now: a CUDA run resumed without --device
        # went on on the CPU, and --workers 0 came back as 2 (an outside review); a state from
        # before they were kept has its device only
        had = state.get("session") or {"device": state.get("device")}
        for k in ("device", "workers", "save_every"):
            if getattr(args, k) is None and had.get(k) is not None:
                opts[k] = had[k]
        if args.device is None and str(opts["device"]).startswith("cuda") and not torch.cuda.is_available():
            # (a GPU run resumed on a machine without one: on the CPU, as before it was kept, said)
            print(f"note: the run trained on {opts['device']}; this machine has no CUDA GPU: it goes on on the CPU "
                  "(--device to choose)", file=sys.stderr)
            opts["device"] = "cpu"
    else:
        if not args.overwrite:
            for p in (wpath, spath):
                if p.exists():
                    raise InvalidInputError(f"--out {out}: already holds {p.name} of an earlier run; continue it "
                                            "with --resume or replace it with --overwrite")
        opts = {k: (DEFAULTS[k] if getattr(args, k) is None else getattr(args, k)) for k in DEFAULTS}
    for k in ("device", "workers", "save_every"):
        if opts.get(k) is None:
            opts[k] = DEFAULTS[k]
    _check_options(opts)

    torch.manual_seed(opts["seed"])
    np.random.seed(opts["seed"])
    config = dict(DEFAULT_CONFIG)
    stride = config["stride"]
    tile_ratio = 1280 / config["input_size"]  # products appear as in a 1280 tile resized to input_size
    model = ShelfNet(config)
    teacher = None
    if state is None and opts["init"] is not None:
        _read_init(opts["init"], model)
        # (absolute: a resumed --distill run reads it again, maybe from another folder)
        opts["init"] = {"path": os.path.abspath(opts["init"]), "sha256": _sha256(Path(opts["init"]))}
    if opts["distill"] > 0:  # the --init weights, frozen (a resumed run reads them again: its state keeps the path)
        teacher = ShelfNet(config)
        if not Path(opts["init"]["path"]).is_file():
            raise InvalidInputError(f"the --init weights of this run, {opts['init']['path']}, are gone; --distill "
                                    "needs them as its teacher")
        _read_init(opts["init"]["path"], teacher)
        if _sha256(Path(opts["init"]["path"])) != opts["init"]["sha256"]:
            raise InvalidInputError(f"--init {opts['init']['path']}: changed since the run started (--distill needs it as it was)")
        # in training mode as the student is (BatchNorm on the batch's own statistics, so the two
        # start equal), its running statistics frozen (momentum 0)
        teacher.train()
        for mod in teacher.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.momentum = 0.0
        for prm in teacher.parameters():
            prm.requires_grad_(False)

    made = new_folders(out)
    ensure_out_dir(out)
    sweep_temporaries(out)  # what a killed save left (old ones only: nothing else writes here)
    if state_dir != out:
        made = new_folders(state_dir) + made  # deepest first, both
        ensure_out_dir(state_dir, option="--state-dir")
        sweep_temporaries(state_dir)

    # SIGTERM (`timeout`, schedulers) and Ctrl-C stop the run after the step under way, so that
    # the weights, the optimizer and the counters saved belong together (a stop raised in the
    # middle of a step saved a model one update ahead of its step count); a second signal stops
    # at once, keeping the last periodic save
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if stopping:
            raise SystemExit(128 + signum)
        stopping.append(signum)
        print(f"signal {signum}: stopping after this step (again to stop at once)", flush=True)

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    dev = torch.device(opts["device"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    gen = torch.Generator().manual_seed(opts["seed"] + 1)
    run_opts = {k: opts[k] for k in RUN_OPTIONS}
    # the position of the next step: batch number in the stream, and how many steps that batch has had
    step, images, batch_no, reuse_pos, seconds_before, run_loss, bad_in_a_row, sessions = 0, 0, 0, 0, 0.0, None, 0, 1
    budget_s = None
    if state is not None:
        model.load_state_dict(state["model"])
    model.to(dev).to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.to(dev).to(memory_format=torch.channels_last)
    ema = ema_copy(model)
    opt = make_optimizer(model, opts["lr"])
    if state is not None:
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        step, images, batch_no, reuse_pos = state["step"], state["images"], state["batch_no"], state["reuse_pos"]
        seconds_before, run_loss, bad_in_a_row = state["seconds"], state["loss_ema"], state["bad_in_a_row"]
        budget_s, sessions = state["budget_s"], state["sessions"] + 1
        if opts["device"] != state["device"]:
            print(f"note: this {state['device']} run continues on {opts['device']}; the numbers will not match an "
                  "uninterrupted run exactly", flush=True)
    start_step = step
    if args.stop_at_step is not None and args.stop_at_step <= step:
        raise InvalidInputError(f"--stop-at-step {args.stop_at_step}: the run is already at step {step}")

    bs, reuse = opts["batch"], opts["reuse"]
    ds = ShelfStream(seed=opts["seed"], size=opts["size"], stride=stride, tile_ratio=tile_ratio, start=batch_no * bs)
    workers = opts["workers"]
    loader = torch.utils.data.DataLoader(
        ds, batch_size=bs, shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda",
        drop_last=True, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_worker_init)
    mean, std = normaliser(config, dev)
    amp = dev.type == "cuda"
    warmup = 200 if opts["steps"] is None else min(200, max(1, opts["steps"] // 10))

    t0 = time.time()
    if opts["minutes"] is not None and budget_s is None:  # fixed at the first session's start
        budget_s = max(opts["minutes"] * 60 - (t0 - t_start), 1e-3)

    def clock() -> float:
        return seconds_before + (time.time() - t0)

    def progress() -> float:
        prog = 0.0 if opts["steps"] is None else step / opts["steps"]
        if budget_s is not None:
            prog = max(prog, clock() / budget_s)
        return prog

    if progress() >= 1.0:
        print(f"nothing to do: the run in {out} already finished at step {step}", flush=True)
        return 0

    def run_info(**extra: object) -> dict:
        return {"steps": step, "images": images, "seconds": round(clock(), 1), "size": opts["size"],
                "batch": bs, "seed": opts["seed"], "loss_ema": run_loss, "device": str(dev), "reuse": reuse,
                "lr": opts["lr"], "sessions": sessions, **({"init": opts["init"]["path"]} if opts["init"] else {}),
                **({"distill": opts["distill"]} if opts["distill"] else {}),
                **extra}

    def save(**extra: object) -> dict:
        """The weights and the state, together (both files or neither)."""
        info = run_info(**extra)
        st = {"format": STATE_FORMAT, "options": run_opts, "device": opts["device"],
              "session": {k: opts[k] for k in ("device", "workers", "save_every")},
              "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
              "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
              "opt": opt.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
              "step": step, "images": images, "batch_no": batch_no, "reuse_pos": reuse_pos,
              "seconds": clock(), "budget_s": budget_s, "loss_ema": run_loss, "bad_in_a_row": bad_in_a_row,
              "sessions": sessions, "info": info}
        write_files({spath: checkpoint_bytes(st), wpath: checkpoint_bytes(checkpoint_dict(ema, config, info))})
        _adopt_log()
        return info

    # the log: appended to on resume (rows after the state's step dropped); a new run's log
    # replaces an old one only once it has a row, so a run that never steps leaves it alone
    # A new run writes its rows beside the log (train_log.csv.new) until its first save: killed
    # before that, the folder's weights, state and log all stay the earlier run's.
    log_f = None
    staged_log = lpath.with_name(lpath.name + ".new") if state is None else None
    if state is not None:
        _trim_log(lpath, step)

    def log_row(row: list) -> None:
        nonlocal log_f
        if log_f is None:
            log_f = open(staged_log or lpath, "w" if staged_log else "a", newline="")
            if staged_log:
                csv.writer(log_f).writerow(LOG_HEADER)
        csv.writer(log_f).writerow(row)
        log_f.flush()

    def _adopt_log() -> None:
        """After a save: the staged log of a new run becomes the log, appended to from then on."""
        nonlocal log_f, staged_log
        if staged_log is None or log_f is None:
            return
        log_f.close()
        os.replace(staged_log, lpath)
        log_f = open(lpath, "a", newline="")
        staged_log = None

    print(f"device={dev} size={opts['size']} batch={bs} workers={workers} params="
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"
          + (f" resuming at step {step}" if state is not None else ""), flush=True)
    last_save = time.time()
    done = False
    info: dict = {}
    it = iter(loader)
    try:
        while not done:
            img_u8, heat, box_t, weight, nbox = next(it)
            img = img_u8.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
            heat, box_t, weight = (t.to(dev, non_blocking=True) for t in (heat, box_t, weight))
            while True:  # the steps on this batch (from reuse_pos: a resumed run may start mid-batch)
                if progress() >= 1.0:
                    done = True
                    break
                lr = learning_rate(opts["lr"], step, progress(), warmup)
                terms = train_step(model, ema, opt, (img, heat, box_t, weight), step=step, lr=lr, gen=gen, mean=mean,
                                   std=std, stride=stride, ema_decay=opts["ema"], amp=amp,
                                   memory_format=torch.channels_last, teacher=teacher, distill=opts["distill"])
                if terms is None:  # nothing was updated: skip the batch, unless it keeps happening
                    bad_in_a_row += 1
                    print(f"non-finite loss at step {step} ({bad_in_a_row} in a row); batch skipped", flush=True)
                    if bad_in_a_row >= 20:
                        raise FloatingPointError(f"20 batches in a row with a non-finite loss at step {step}")
                    batch_no, reuse_pos = batch_no + 1, 0
                    break
                bad_in_a_row = 0
                if reuse_pos == 0:  # a batch counts once, when it is first trained on
                    images += img.shape[0]
                reuse_pos += 1
                step += 1
                if step <= 20 or step % 25 == 0:
                    lv, hv, bv = terms["loss"], terms["heat"], terms["box"]
                    run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
                    el = clock()
                    log_row([step, f"{el:.1f}", images, f"{lv:.4f}", f"{hv:.4f}", f"{bv:.4f}", f"{lr:.2e}",
                             f"{float(nbox.float().mean()):.1f}", f"{terms['distill']:.4f}" if "distill" in terms else ""])
                    dv = f" distill {terms['distill']:.3f}" if "distill" in terms else ""
                    print(f"step {step:6d} t={el:7.1f}s img={images:7d} loss={lv:.3f} (heat {hv:.3f} box {bv:.3f}{dv}) "
                          f"lr={lr:.1e} img/s={images / max(el, 1e-6):.1f}", flush=True)
                batch_done = reuse_pos >= reuse
                if batch_done:
                    batch_no, reuse_pos = batch_no + 1, 0
                if stopping or (args.stop_at_step is not None and step >= args.stop_at_step):
                    done = True
                    break
                if time.time() - last_save > opts["save_every"]:
                    save()
                    last_save = time.time()
                    print(f"saved {wpath} and {spath.name} at step {step}", flush=True)
                if batch_done:
                    break
        info = save()
    except BaseException as exc:  # a crash or a kill midway still leaves the latest weights and state
        if _updates(opt) != step:  # stopped inside a step: the weights are an update ahead of the counters
            print(f"aborted during step {step + 1}; the last save stands (continue with --resume)", flush=True)
            if log_f is None and step == start_step:
                remove_empty(made)
        elif step > start_step:
            try:
                info = save(aborted=f"{type(exc).__name__}: {exc}"[:300])
                print(f"aborted at step {step}; saved {wpath} and {spath.name} (continue with --resume)", flush=True)
            except Exception as save_exc:  # (the device itself may be what failed)
                print(f"aborted at step {step}; could not save: {save_exc}", flush=True)
        else:  # no step taken: whatever the folder held stays as it was
            print(f"aborted at step {step} before training; nothing written", flush=True)
            if log_f is None:
                remove_empty(made)
        raise
    finally:
        if log_f is not None:
            log_f.close()
        if staged_log is not None and staged_log.exists():  # a new run that never saved: no log of it
            staged_log.unlink()
        for sig, handler in handlers.items():  # a caller's own handlers come back
            signal.signal(sig, handler)
    if stopping:
        print(f"stopped by signal {stopping[0]} at step {step}: continue with --resume --out {out}{again}", flush=True)
        return 128 + stopping[0]
    if args.stop_at_step is not None and step >= args.stop_at_step and progress() < 1.0:
        print(f"stopped at step {step}: continue with --resume --out {out}{again}", flush=True)
    print(f"done: {info}", flush=True)
    return 0


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` with a bad input reported in one line naming the option (exit status 2)."""
    from densedet_tile.errors import DensedetError

    try:
        return int(main(argv) or 0)
    except DensedetError as exc:
        print(f"{NAME}: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(cli())
