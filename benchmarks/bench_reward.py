"""Reward service latency on the CPU: p50/p99 per success query for two 128x128 cameras.

Measured through the Python API of the reward service (``SuccessDetector``), the call the
ROS 2 reward node makes per query:

  - classifier: the HIL-SERL classifier (a ResNet-10 per camera, frozen, + head), one query
    at a time and in batches (per-query figures are the batch time / batch size);
  - vlm: a CLIP ViT-B/32-sized model (random weights: latency does not depend on them;
    nothing is downloaded), zero-shot over 2 success + 2 failure prompts, one query at a time.

Baseline, measured in the same run: the bare ResNet-10 trunk on the same two images (the
compute a classifier query cannot avoid); the ratio shows what the detector adds.

    python benchmarks/bench_reward.py [--queries 200] [--threads 2] [--no-vlm]

Target: classifier p99 < 100 ms per query (a 10 Hz actor asks once per step).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robot_stack.config.schema import ClassifierConfig  # noqa: E402
from robot_stack.reward.classifier import SuccessClassifierModel, SuccessClassifierNet  # noqa: E402
from robot_stack.reward.detector import SuccessDetector  # noqa: E402

CAMERAS = ("front", "wrist")
HW = (128, 128)
TARGET_P99_MS = 100.0


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(call, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def images(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    return {c: rng.integers(0, 255, (batch, *HW, 3), dtype=np.uint8) for c in CAMERAS}


def tiny_tokenizer(directory: Path, words: list[str]) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<|startoftext|>", "<|endoftext|>", "[UNK]"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(words)))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)]
    )
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                            pad_token="<|endoftext|>", unk_token="[UNK]").save_pretrained(directory)


def vlm_latency(queries: int, rng: np.random.Generator) -> tuple[float, float]:
    from transformers import CLIPConfig, CLIPModel

    from robot_stack.config.schema import VlmConfig
    from robot_stack.reward.vlm import VlmSuccessModel

    success = ("the cube is lifted above the table", "the gripper holds the cube up")
    failure = ("the cube is on the table", "the gripper is empty")
    with tempfile.TemporaryDirectory() as directory:
        # ViT-B/32 text and vision towers (CLIP's published sizes), random weights.
        config = CLIPConfig(
            text_config={"vocab_size": 64, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                         "num_attention_heads": 8, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                         "pad_token_id": 1},
            vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                           "image_size": 224, "patch_size": 32},
            projection_dim=512,
        )
        CLIPModel(config).save_pretrained(directory)
        tiny_tokenizer(Path(directory), " ".join(success + failure).split())
        model = VlmSuccessModel.from_config(
            VlmConfig(model_path=Path(directory), success_prompts=success, failure_prompts=failure), CAMERAS
        )
        detector = SuccessDetector(model, threshold=0.5)
        one = images(rng, 1)
        single = {c: v[0] for c, v in one.items()}
        return percentiles(timed(lambda: detector.query(single), max(queries // 4, 20)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-vlm", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    config = ClassifierConfig()
    image_hw = {c: HW for c in CAMERAS}
    net = SuccessClassifierNet(CAMERAS, image_hw, config, 2, load_pretrained=False)
    model = SuccessClassifierModel(net, config, image_hw, ("failure", "success"), threshold=0.9)
    detector = SuccessDetector(model)

    one = images(rng, 1)
    single = {c: v[0] for c, v in one.items()}
    trunk = net.encoders["front"].trunk
    both = torch.from_numpy(np.concatenate([one[c] for c in CAMERAS]))

    def bare_trunk():
        with torch.inference_mode():
            trunk(both)

    rows = []
    base_p50, base_p99 = percentiles(timed(bare_trunk, args.queries))
    rows.append(("baseline: bare ResNet-10 trunk, 2 images", 1, base_p50, base_p99))
    p50, p99 = percentiles(timed(lambda: detector.query(single), args.queries))
    rows.append(("classifier, one query", 1, p50, p99))
    for batch in (8, 32):
        many = images(rng, batch)
        b50, b99 = percentiles(timed(lambda: detector.query_batch(many), max(args.queries // batch * 2, 10), warmup=2))
        rows.append((f"classifier, batched x{batch} (per query)", batch, b50 / batch, b99 / batch))
    if not args.no_vlm:
        v50, v99 = vlm_latency(args.queries, rng)
        rows.append(("vlm (CLIP ViT-B/32 size), zero-shot, one query", 1, v50, v99))

    print(f"reward service latency, two {HW[0]}x{HW[1]} cameras, CPU, {args.threads} torch threads "
          f"({os.cpu_count()} cores), {args.queries} queries")
    print(f"{'':52s} {'p50 ms':>8s} {'p99 ms':>8s} {'p50 / baseline':>15s}")
    for name, _, q50, q99 in rows:
        print(f"{name:52s} {q50:8.2f} {q99:8.2f} {q50 / base_p50:15.2f}")
    ok = p99 < TARGET_P99_MS
    print(f"target: classifier p99 < {TARGET_P99_MS:.0f} ms per query: {'met' if ok else 'NOT met'} ({p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
