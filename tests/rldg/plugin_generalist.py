"""A plug-in generalist for the tests of the seam: per instruction, a least-squares linear map
from state to action (a real, if simple, learner)."""

import json
from pathlib import Path

import numpy as np


class LinearPerInstruction:
    kind = "plugin_generalist:build"

    def __init__(self, features, weights=None):
        self.features = features
        self.weights = weights or {}

    def fit(self, data, out_dir, progress=True):
        for instruction in sorted(set(data.instruction)):
            rows = np.array([text == instruction for text in data.instruction])
            inputs = np.hstack([data.state[rows], np.ones((rows.sum(), 1), np.float32)])
            solution, *_ = np.linalg.lstsq(inputs, data.action[rows], rcond=None)
            self.weights[instruction] = solution
        return {"steps": 1, "frames": len(data.state), "final_loss": 0.0}

    def save(self, directory, summary):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "weights.npz", **{f"w{i}": w for i, w in enumerate(self.weights.values())})
        (directory / "generalist.json").write_text(json.dumps({
            "format_version": 1, "kind": self.kind, "instructions": list(self.weights),
            "features": {"state_names": list(self.features.state_names), "action_names": list(self.features.action_names),
                         "cameras": list(self.features.cameras), "fps": self.features.fps},
        }))

    def reset(self):
        pass

    def act(self, observation, instruction):
        state = np.append(np.asarray(observation["state"], np.float32), 1.0)
        return np.clip(state @ self.weights[instruction], -1, 1).astype(np.float32)


def build(config, features):
    return LinearPerInstruction(features)


def load(directory):
    from learner.rldg.generalist import PolicyFeatures

    meta = json.loads((Path(directory) / "generalist.json").read_text())
    stored = np.load(Path(directory) / "weights.npz", allow_pickle=False)
    weights = {instruction: stored[f"w{i}"] for i, instruction in enumerate(meta["instructions"])}
    f = meta["features"]
    return LinearPerInstruction(PolicyFeatures(tuple(f["state_names"]), tuple(f["action_names"]), tuple(f["cameras"]), f["fps"]), weights)
