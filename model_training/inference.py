"""Score tokenized documents with a classifier: the one code path for the end-of-training
measurements, ``evaluate``, ``predict`` and ``tune-thresholds``, so all of them see the same
probabilities (in the checkpoint's own dtype, as the worker on a CPU runs it)."""

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model_training.batching import eval_loader
from model_training.tokenization import TokenizedSplit


@torch.inference_mode()
def predict_probabilities(
    model: PreTrainedModel,
    split: TokenizedSplit,
    tokenizer: PreTrainedTokenizerBase,
    *,
    batch_size: int = 64,
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
        logits = model(**inputs).logits
        chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
    model.train(was_training)
    num_labels = model.config.num_labels
    probabilities = np.empty((len(split), num_labels), dtype=np.float32)
    if chunks:
        probabilities[order] = np.concatenate(chunks)
    return probabilities
