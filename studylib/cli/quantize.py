"""`studylib quantize`: int8 weights of a (pruned) checkpoint."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import torch

from studylib import models
from studylib.cli import argtypes
from studylib.compress.quantize import BACKENDS, MIB, quantize_int8, require_bitsandbytes
from studylib.evaluation import latency
from studylib.outputs import atomic_write_text, check_out_file


def cmd_quantize(args) -> int:
    from studylib.evaluation import evaluate

    out = check_out_file(args.out) if args.out is not None else None
    bnb_ready = importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available()
    backend = "bitsandbytes" if args.backend == "auto" and bnb_ready else args.backend
    if backend == "bitsandbytes":  # fail before loading; LLM.int8 compares with fp16 on the GPU
        require_bitsandbytes()
        model, processor = models.load(args.model, dtype="float16", device="cuda")
    else:
        model, processor = models.load(args.model)
    quant, report = quantize_int8(copy.deepcopy(model), "torch" if backend == "auto" else backend,
                                  lm_head=args.lm_head)
    result: dict[str, Any] = {"model": str(Path(args.model).resolve()),
                              "quantization": report.to_dict()}
    lines = [f"int8 ({report.backend}): {report.quantized_layers} Linear layers of the LLM; "
             f"kept float: {', '.join(report.kept_float)}",
             f"weights {report.bytes_before['total'] / MIB:.3f} MiB -> "
             f"{report.bytes_after['total'] / MIB:.3f} MiB ({report.ratio:.3f}x; LLM "
             f"{report.bytes_before['llm'] / MIB:.3f} -> {report.bytes_after['llm'] / MIB:.3f})"]
    if args.repeats:
        lat = latency.paired_latency({"float": model, "int8": quant},
                                     text_tokens=args.text_tokens, repeats=args.repeats)
        result["latency"] = lat
        for phase in ("prefill", "decode_per_token"):
            f, q = lat["float"][phase], lat["int8"][phase]
            r = lat["int8"][f"{phase}_ratio"]
            lines.append(f"{phase:>16}: float {f['median_ms']:.2f} ms (IQR {f['iqr_ms']:.2f}), "
                         f"int8 {q['median_ms']:.2f} ms (IQR {q['iqr_ms']:.2f}); int8/float "
                         f"{r['median']:.2f} [IQR {r['q1']:.2f}-{r['q3']:.2f}], batch 1")
    if args.eval:
        for name, m in (("float", model), ("int8", quant)):
            ev = evaluate.evaluate(m, processor, limit=args.limit, seed=args.seed,
                                   progress=False)
            result[f"eval_{name}"] = ev.summary()
            lines.append(f"AVG {name:>5}: {ev.summary().get('AVG', float('nan')):.2f} "
                         f"({ev.wall_time:.1f} s)")
    print(json.dumps(result, indent=2, default=str) if args.json else "\n".join(lines))
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return 0


def add_command(sub) -> None:

    def repeats(text: str) -> int:
        return 0 if text == "0" else argtypes.positive_int(text)

    p = sub.add_parser(
        "quantize", help="int8 weights for the LLM: memory, latency and scores vs float",
        description="Quantize the LLM's Linear layers of a checkpoint (pruned ones included) "
                    "to int8 and report weight memory before/after, batch-1 latency of both "
                    "(timed alternately in one process) and, with --eval, the benchmark "
                    "scores of both. No quantized checkpoint is written: dynamic int8 weights "
                    "are packed objects safetensors cannot store, and quantizing at load time "
                    "takes under a second (studylib.compress.quantize.quantize_int8).")
    p.add_argument("--model", required=True, help="checkpoint directory (model + processor)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="torch: dynamic int8 on CPU; bitsandbytes: LLM.int8 on a CUDA GPU "
                        "(needs the bitsandbytes package); auto: by the model's device")
    p.add_argument("--lm-head", action="store_true",
                   help="quantize the LM head too (bitsandbytes keeps it float by default)")
    p.add_argument("--repeats", type=repeats, default=20,
                   help="latency rounds, float and int8 alternately (0 = no timing)")
    p.add_argument("--text-tokens", type=argtypes.positive_int, default=50)
    p.add_argument("--eval", action="store_true", help="also score both on the benchmarks")
    p.add_argument("--limit", type=argtypes.positive_int, help="items per benchmark for --eval")
    p.add_argument("--seed", type=argtypes.seed_int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", help="write the JSON report to this file")
    p.set_defaults(func=cmd_quantize)
