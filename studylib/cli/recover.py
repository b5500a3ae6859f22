"""`studylib recover`: recovery training of a pruned student."""

from __future__ import annotations

from studylib.cli import argtypes
from studylib.compress import recipes, recover
from studylib.compress.teacher_cache import CACHE_ENV
from studylib.errors import check_fraction
from studylib.models.checkpoint import resolve_device
from studylib.outputs import check_out_dir, check_writable_dir


def cmd_recover(args) -> int:
    recipe = recipes.get(args.recipe)  # fail fast: before loading anything
    check_fraction(args.data_fraction)
    out = check_out_dir(args.out, args.overwrite)
    if args.cache_dir is not None:
        check_writable_dir(args.cache_dir, "--cache-dir")
    device = resolve_device(args.device)
    records, image_loader = argtypes.read_data(args)  # every record checked before loading
    report = recover.recover(args.student, args.teacher, recipe, records=records,
                             data_fraction=args.data_fraction, epochs=args.epochs,
                             seed=args.seed, out=out, subset_seed=args.subset_seed,
                             subset_file=args.subset, cache_dir=args.cache_dir,
                             use_cache=not args.no_cache, max_steps=args.max_steps,
                             image_loader=image_loader, data_file=args.data,
                             dtype=args.dtype, device=device, max_length=args.max_length,
                             image_aspect=args.image_aspect)
    s = report.summary
    lengths = s["lengths"]
    if lengths["truncated"]:
        print(f"max length {lengths['max_length']}: {lengths['truncated']} of "
              f"{lengths['records']} records lost turns, {lengths['dropped']} of them all "
              f"(the longest has {lengths['longest']} tokens)")
    print(f"recipe {recipe.name}: {s['steps']} steps on {s['subset']['n']} records "
          f"(subset {s['subset_hash'][:12]}), final loss {s['final_loss']:.4f}, "
          f"{s['wall_time_s']:.1f} s -> {out}")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("recover", help="recovery training of a pruned student (SFT / KD / L2)")
    p.add_argument("--student", required=True, help="pruned checkpoint directory")
    p.add_argument("--teacher", required=True, help="unpruned checkpoint directory")
    p.add_argument("--recipe", required=True,
                   help=f"preset ({', '.join(recipes.PRESETS)}) or a recipe .yaml file")
    p.add_argument("--data-fraction", type=argtypes.fraction, default=1.0,
                   help="fraction of the training set (default: 4000 ShapesWorld images x "
                        "3 turns; or the --data records), in (0, 1]")
    argtypes.add_data_options(p, "training set")
    argtypes.add_device_options(p)
    p.add_argument("--epochs", type=argtypes.positive("epochs"), help="default: the recipe's")
    p.add_argument("--seed", type=argtypes.seed_int, default=0, help="training seed")
    p.add_argument("--subset-seed", type=argtypes.seed_int, default=0, help="data-subset seed")
    p.add_argument("--subset", help="reuse a subset.json from an earlier run")
    p.add_argument("--cache-dir", help=f"teacher cache (default ${CACHE_ENV} or ~/.cache)")
    p.add_argument("--no-cache", action="store_true", help="run the teacher online for L2")
    p.add_argument("--max-steps", type=argtypes.positive_int, help="stop after this many steps")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_recover)
