"""The student's side of recovery: what trains, and whether a teacher fits the student.

The vision tower is always frozen; `train="mm"` trains the projector, `"mm+lora"` also puts
peft LoRA on the LLM's linear layers (regexes limited to the language model), merged into
the weights before saving so that the checkpoint is a plain model. `check_pair` reads only
configs and tokenizers, so `recover` runs it before any weights load.
"""

from __future__ import annotations

from studylib.compress.recipes import RecoveryRecipe
from studylib.errors import StudyError

LORA_TARGETS = {
    # Regexes (peft full-matches module names) limited to the language model: a plain name
    # list would also wrap the vision tower's q/k/v (CLIP) or fc1/fc2 (SigLIP).
    "llama": r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    "phi": r".*language_model.*\.(q_proj|k_proj|v_proj|dense|fc1|fc2)",
    # Phi-3 fuses q/k/v and gate/up: LoRA adapts each fused linear as one
    "phi3": r".*language_model.*\.(qkv_proj|o_proj|gate_up_proj|down_proj)",
}
LORA_TARGETS["mistral"] = LORA_TARGETS["qwen2"] = LORA_TARGETS["llama"]


def prepare_student(model, recipe: RecoveryRecipe):
    """Freeze the vision tower (always) and choose the trainable parameters.

    "mm": projector only. "mm+lora": peft LoRA on the LLM's linear layers (regex limited to
    the language model) plus the projector trained in full (`modules_to_save`).
    """
    model.requires_grad_(False)
    if recipe.train == "mm":
        model.model.multi_modal_projector.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    kind = model.config.text_config.model_type
    if kind not in LORA_TARGETS:
        raise StudyError(f"no LoRA target modules known for a {kind!r} language model")
    config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                        lora_dropout=recipe.lora_dropout, target_modules=LORA_TARGETS[kind],
                        modules_to_save=["multi_modal_projector"], bias="none")
    return get_peft_model(model, config)


def finish_student(model):
    """Merge LoRA into the weights (a plain transformers model again), eval mode."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.requires_grad_(False)
    return model.eval()


def trainable_parameters(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def check_pair(s_config, s_tokenizer, t_config, t_tokenizer, recipe: RecoveryRecipe) -> None:
    """The teacher must speak the student's tokens and, for L2, have its hidden size/depth.

    It reads configs and tokenizers only (`models.peek`), so it runs before any weights load.
    """
    s_text, t_text = s_config.text_config, t_config.text_config
    if s_tokenizer.get_vocab() != t_tokenizer.get_vocab() or \
            s_text.vocab_size != t_text.vocab_size:
        raise StudyError("teacher's tokenizer differs from the student's "
                         f"({len(t_tokenizer)} vs {len(s_tokenizer)} tokens): KD needs the same "
                         "vocabulary")
    if recipe.gamma > 0:
        hs, ht = s_text.hidden_size, t_text.hidden_size
        if hs != ht:
            raise StudyError(f"hidden sizes differ (student {hs}, teacher {ht}): "
                             "L2 matching needs equal widths")
        ls, lt = s_text.num_hidden_layers, t_text.num_hidden_layers
        deepest = -min(recipe.match_layers)
        if deepest > min(ls, lt):
            raise StudyError(f"recipe {recipe.name!r} matches the last {deepest} layers but "
                             f"the student has {ls} and the teacher {lt}")
