"""Run by the reference venv's python (transformers 4.55.4): generate() outputs as JSON.

stdin: {"model": folder saved with save_pretrained, "cases": [{"prompt_ids": [...], "kwargs": {...}}]}
stdout: one JSON list, per case {"sequences": [[generated ids...], ...], "scores": [sequence score or null]}.
Only the standard library, torch and transformers: nothing of the project is imported here.
"""

import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

assert transformers.__version__ == "4.55.4", transformers.__version__
transformers.logging.set_verbosity_error()
request = json.load(sys.stdin)
model = AutoModelForCausalLM.from_pretrained(request["model"]).eval()
answers = []
for case in request["cases"]:
    prompt = torch.tensor([case["prompt_ids"]])
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), output_scores=True,
                             return_dict_in_generate=True, **case["kwargs"])
    scores = getattr(out, "sequences_scores", None)
    answers.append({"sequences": out.sequences[:, prompt.shape[1]:].tolist(),
                    "scores": scores.tolist() if scores is not None else None})
json.dump(answers, sys.stdout)
