"""PyTorch twin of frugal-lm's CausalLM: the same config.json `frugal` block builds the same model
with the same parameter names, so model.safetensors moves both ways without conversion."""
from .model import CausalLM, ConfigError, resolve_config, load_pretrained, save_pretrained  # noqa: F401
from .safetensors_io import read_safetensors, write_safetensors  # noqa: F401
