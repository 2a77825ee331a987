"""Models: loading (HF, LoRA, QLoRA), sampling, and the embedded tiny default."""
