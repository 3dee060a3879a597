"""Train the ECG language model from scratch on the token store (Accelerate: CPU, GPU, DDP, bf16).

Launch (from the repo root)::

    accelerate launch lm/train.py --config configs/lm/tiny.yaml                 # CPU demo, <= 5 min on 2 cores
    accelerate launch --cpu --num_processes 2 lm/train.py --config configs/lm/tiny.yaml   # 2-process DDP
    accelerate launch --mixed_precision bf16 lm/train.py --config configs/lm/small.yaml --report_to wandb
    python lm/train.py --config configs/lm/tiny.yaml --max_steps 50 --output_dir runs/lm/try
    accelerate launch lm/train.py --config configs/lm/tiny.yaml --resume_from_checkpoint latest

Every field of :class:`ecg2llm.lm.config.LMTrainConfig` is a flag (``--batch_size 16``) overriding the YAML. If the
token store named by ``store`` does not exist, it is built first with ``tokenizer`` (main process; the
others wait). Outputs in ``output_dir``: ``run_info.json``, ``train_log.jsonl``, ``metrics.json`` (val/test
loss, perplexity, bits/token, bits per ECG second, unigram/bigram baselines), rotating
``checkpoints/checkpoint_<step>/``, ``figures/``, and ``final/`` (``save_pretrained`` + the tokenizer) for
``lm/generate.py --model <output_dir>/final``.
"""
import sys

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.lm.config import LMTrainConfig


@run_main
def main(argv=None):
    """Parse ``--config`` and overrides into :class:`LMTrainConfig`, train, print where the model went."""
    from ecg2llm.core.distributed import relaunch_cpu_ddp
    from ecg2llm.lm.trainer import Trainer

    if argv is None:  # only a real command line can be relaunched
        relaunch_cpu_ddp(sys.argv[0], sys.argv[1:])
    cfg = parse_config(LMTrainConfig, argv, description=__doc__)
    trainer = Trainer(cfg)
    final = trainer.run()
    if trainer.acc.is_main_process:
        print(f"LM saved to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
