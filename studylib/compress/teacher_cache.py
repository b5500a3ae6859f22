"""Teacher signals that do not depend on the student (hidden states for L2, top-k logits), computed once per (teacher, subset) and cached as safetensors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from studylib.compress import losses
from studylib.compress.subsets import Subset
from studylib.models.surgery import LayerTap
from studylib.testbed.data import ConversationCollator

CACHE_ENV = "STUDYLIB_TEACHER_CACHE"


def teacher_fingerprint(teacher, path: str | os.PathLike | None = None) -> str:
    """Identity of a teacher: its directory's weight files (name, size, mtime) and config,
    or for an in-memory model a hash of its parameters."""
    h = hashlib.sha256()
    if path is not None:
        path = Path(path).resolve()
        h.update(str(path).encode())
        for f in sorted(path.iterdir()):
            if f.suffix in (".safetensors", ".json", ".bin"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for name, tensor in sorted(teacher.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "studylib" / "teacher-cache"))


class TeacherCache:
    """Teacher hidden states / top-k logits at the KD positions of each subset record.

    Files (safetensors): `hidden_L{-i}.safetensors` {values (N, H), offsets (n+1)} and
    `topk{k}.safetensors` {values (N, k), indices (N, k), offsets (n+1)}, N = KD positions
    of all records in subset order. Positions of a record are independent of batching
    (right padding + causal attention), so rows can be gathered for any batch.
    """

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.hidden: dict[int, dict[str, torch.Tensor]] = {}
        self.topk: dict[str, torch.Tensor] | None = None
        self.built: list[str] = []  # files computed by this process (others were hits)

    @staticmethod
    def key(fingerprint: str, subset: Subset, max_length: int, images: str | None = None,
            image_aspect: str = "crop") -> str:
        """The records' hash covers image file names, not pixels: real data adds its image
        folder, so the same JSON over another folder gets its own cache, and LLaVA's
        padding (`image_aspect="pad"`) its own too."""
        key = f"{fingerprint}-{subset.hash[:16]}-len{max_length}"
        if image_aspect != "crop":
            key += f"-{image_aspect}"
        if images:
            key += "-img" + hashlib.sha256(images.encode()).hexdigest()[:8]
        return key

    def ensure(self, teacher, collator: ConversationCollator, records: Sequence[dict],
               layers: Sequence[int], topk: int, batch_size: int = 32,
               progress: bool = True) -> TeacherCache:
        from safetensors.torch import load_file

        want = {f"hidden_L{i}.safetensors": i for i in layers}
        top_name = f"topk{topk}.safetensors" if topk else None
        missing_layers = [i for name, i in want.items() if not (self.dir / name).is_file()]
        need_top = bool(top_name) and not (self.dir / top_name).is_file()
        if missing_layers or need_top:
            self._build(teacher, collator, records, missing_layers, topk if need_top else 0,
                        batch_size, progress)
        for name, i in want.items():
            self.hidden[i] = load_file(str(self.dir / name))
        if top_name:
            self.topk = load_file(str(self.dir / top_name))
        return self

    @torch.no_grad()
    def _build(self, teacher, collator, records, layers, topk, batch_size, progress):
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        teacher.eval()
        device = next(teacher.parameters()).device
        tap = LayerTap(teacher, layers)
        hidden: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
        top_v, top_i, counts = [], [], []
        try:
            for start in tqdm(range(0, len(records), batch_size), desc="teacher cache",
                              disable=not progress):
                batch = collator(records[start:start + batch_size])
                labels = batch.pop("labels")
                batch = {k: v.to(device) for k, v in batch.items()}
                mask = losses.kd_mask(labels).to(device)
                out = teacher(**batch, use_cache=False, logits_to_keep=0)
                counts += mask.sum(1).tolist()
                for i in layers:
                    hidden[i].append(tap.outputs[i][mask].float().cpu())
                if topk:
                    v, ix = out.logits[mask].float().topk(min(topk, out.logits.shape[-1]), -1)
                    top_v.append(v.cpu())
                    top_i.append(ix.to(torch.int32).cpu())
        finally:
            tap.remove()
        offsets = torch.tensor([0] + counts, dtype=torch.long).cumsum(0)
        self.dir.mkdir(parents=True, exist_ok=True)

        def write(name: str, tensors: dict[str, torch.Tensor]) -> None:
            tmp = self.dir / f".{name}.{os.getpid()}.tmp"
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, self.dir / name)  # atomic: concurrent ranks never see half a file
            self.built.append(name)

        for i in layers:
            write(f"hidden_L{i}.safetensors", {"values": torch.cat(hidden[i]), "offsets": offsets})
        if topk:
            write(f"topk{topk}.safetensors", {"values": torch.cat(top_v),
                                              "indices": torch.cat(top_i), "offsets": offsets})

    @staticmethod
    def _rows(table: dict[str, torch.Tensor], key: str, positions: torch.Tensor) -> torch.Tensor:
        off = table["offsets"]
        return torch.cat([table[key][off[p]:off[p + 1]] for p in positions.tolist()])

    def hidden_rows(self, layer: int, positions: torch.Tensor) -> torch.Tensor:
        return self._rows(self.hidden[layer], "values", positions)

    def topk_rows(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.topk is not None
        return (self._rows(self.topk, "values", positions),
                self._rows(self.topk, "indices", positions))
