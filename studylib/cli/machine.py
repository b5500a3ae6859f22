"""`studylib machine`: which CPU kind this is, and what a teacher's retrain costs on it."""

from __future__ import annotations

import statistics

from studylib.cli import argtypes
from studylib.errors import StudyError


def cmd_machine(args) -> int:
    from studylib import machine
    from studylib.testbed import speed, teachers

    summaries = [teachers.read_summary(path) for path in args.teachers]
    for path, summary in zip(args.teachers, summaries, strict=True):
        if "machine" not in summary:
            raise StudyError(f"{path}: its training_summary.json records no machine")
    print(machine.describe())
    for summary in summaries:
        recorded = summary["machine"]
        same = machine.is_recording_machine(recorded)
        print(f"\n{summary['arch']}: trained on {recorded['kind']} ({recorded['cpu']}), torch "
              f"{recorded['torch']}, {recorded['threads']} thread(s), "
              f"in {summary['recipe']['dtype']}")
        print("  prefix checks here: " + ("sha256, bit for bit (same CPU, kernels, torch)"
                                          if same else "fingerprints within tolerance "
                                          "(another CPU kind or torch: floats round apart)"))
        print("  retrain here: " + speed.expected_time(summary))
    if args.bench:
        print(f"\ntraining step (toy-llava, 16 four-turn records, {args.rounds} rounds "
              "interleaved):", flush=True)
        times = speed.step_times(rounds=args.rounds)
        medians = {d: statistics.median(t) for d, t in times.items()}
        for dtype, t in times.items():
            print(f"  {dtype:9s} median {medians[dtype]:.2f} s  (min {min(t):.2f}, "
                  f"max {max(t):.2f})")
        ratio = medians["bfloat16"] / medians["float32"]
        print(f"  bfloat16 / float32 = {ratio:.2f}: bfloat16 is "
              + (f"{1 / ratio:.1f}x faster" if ratio < 1 else f"{ratio:.1f}x slower") + " here")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("machine", help="this CPU's kind (floats, bf16 speed) and what a "
                                       "teacher's retrain costs here")
    p.add_argument("--teachers", nargs="*", default=[], metavar="DIR",
                   help="teacher checkpoints whose training machine to compare with this one")
    p.add_argument("--bench", action="store_true",
                   help="time a training step in float32 and bfloat16 here (~30 s; "
                        "minutes where bf16 is slow)")
    p.add_argument("--rounds", type=argtypes.positive_int, default=6,
                   help="interleaved measurements per dtype with --bench (default 6)")
    p.set_defaults(func=cmd_machine)
