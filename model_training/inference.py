"""Score tokenized documents with a classifier: the one code path for training-time evaluation,
``evaluate``, ``predict`` and ``tune-thresholds``, so all of them see the same probabilities."""

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model_training.batching import eval_loader
from model_training.tokenization import TokenizedSplit


def autocast_context(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


@torch.inference_mode()
def predict_probabilities(
    model: PreTrainedModel,
    split: TokenizedSplit,
    tokenizer: PreTrainedTokenizerBase,
    *,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
    description: str = "scoring",
) -> np.ndarray:
    """Sigmoid probabilities (documents x labels, float32) in the split's document order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loader, order = eval_loader(split, tokenizer, batch_size)
    chunks = []
    for batch in tqdm(loader, desc=description, leave=False, unit="batch", disable=None):
        inputs = {key: value.to(device) for key, value in batch.items() if key != "labels"}
        with autocast_context(device, autocast_dtype):
            logits = model(**inputs).logits
        chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
    model.train(was_training)
    num_labels = model.config.num_labels
    probabilities = np.empty((len(split), num_labels), dtype=np.float32)
    if chunks:
        probabilities[order] = np.concatenate(chunks)
    return probabilities
