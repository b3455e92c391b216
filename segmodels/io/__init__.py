"""Model files on disk: checkpoints read and written, model folders (safetensors + config.json), ONNX."""
