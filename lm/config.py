"""Configuration of an LM training run: one flat dataclass, filled from YAML plus ``--key value`` overrides.

Every value is cast to its annotated type by :func:`ecg2llm.core.config.parse_config` before it reaches
transformers (its configs are strict dataclasses in 5.x: ``hidden_size=128.0`` raises). The resolved
config is written to ``run_info.json`` and given to the trackers as a plain dict; it holds no patient
data (record numbers only, never WFDB header comments).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ecg2llm.core.errors import ConfigError
from ecg2llm.tokenizer.splits import DEFAULT_VALID

REPORT_TO = ("none", "wandb", "tensorboard")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class LMTrainConfig:
    """Fields of ``lm/train.py`` (``python lm/train.py --help`` lists them as flags)."""

    # ------------------------------------------------------------------ data
    tokenizer: str = "v2"                    # tokenizer folder or shipped name ("v2"; LM v3: "v3", beat_stream)
    store: str = "runs/store/default_mlii"   # token store; built with `tokenizer` if it does not exist
    data_dir: str | None = None              # data root for building the store ($ECG2LLM_DATA otherwise)
    records: list[str] = field(default_factory=list)  # records to tokenize when building; empty = all 48
    leads: list[str] = field(default_factory=lambda: ["MLII"])
    download: bool = True                    # fetch missing MIT-BIH records from PhysioNet when building
    valid_records: list[str] = field(default_factory=lambda: list(DEFAULT_VALID))
    context_length: int = 512                # tokens per training sequence, BOS included
    conditioning: bool = False               # add rhythm-prefix and beat-label tokens from the .atr files
    condition_lead_s: float = 0.2            # a beat token precedes its R peak by this many seconds
    # LM v2 corpus (lm/mixture.py): empty = the v1 layout above. With sources, `store` is an every-lead MIT-BIH
    # store (built by lm/corpora.py), `leads` the MIT-BIH leads trained on, and sequences start
    # BOS source:<db> lead:<lead> [rhythm]; validation/test stay MIT-BIH MLII (DS1 validation records, DS2).
    sources: list[str] = field(default_factory=list)  # "mitdb", "cinc2017"
    source_weights: list[float] = field(default_factory=list)  # share of training crops per source (aligned
    #                                          with `sources`, normalized); empty = in proportion to their tokens
    record_weights: dict[str, float] = field(default_factory=dict)  # MIT-BIH training records' relative share
    #                                          of crops (every lead and view), e.g. {"205": 0.25}; unlisted = 1
    cinc_store: str = "runs/store/default_cinc2017"    # CinC 2017 token store, built on first use
    cinc_max_records: int = 0                # CinC recordings tokenized when building (0 = all 8,528)
    cinc_labels: list[str] = field(default_factory=list)  # CinC labels trained on (N/A/O/~); empty = all
    cinc_min_r_mv: float = 0.0               # leave out CinC recordings whose R amplitude (mV) is below (0 = keep)
    augment_views: int = 0                   # augmented copies (gain, offset, tempo) of each DS1 training record
    augment_mix_deg: float = 0.0             # each view also rotates the record's two leads by up to this many
    #                                          degrees (ecg2llm.lm.corpora.rotate_leads: a new axis, a new "patient");
    #                                          0 = off
    condition_dropout: float = 0.0           # classifier-free guidance: P(rhythm/beat labels -> null) per sequence
    input_noise: float = 0.0                 # share of input ECG codes moved to an FSQ lattice neighbour (targets
    #                                          stay clean; ecg2llm.lm.data.LatticeNoise); needs an FSQ tokenizer
    init_from: str | None = None             # LM folder whose weights start this run (pretrain -> fine-tune)
    # LM v3 (lm/beatstream.py): the stream is beats of a beat tokenizer (tokenizer v3) -- per beat its label,
    # RR and coarse tokens under the prefix BOS source lead rhythm beat; `store` is a beat store (built on
    # first use), `sources` [mitdb] or [mitdb, cinc2017] (cinc_max_records recordings), `leads` the MIT-BIH
    # training leads; condition_dropout nulls the rhythm and beat conditions independently.
    beat_stream: bool = False
    beat_condition_share: float = 0.1        # share of a crop's labelled beats of a class that makes it beat:<class>
    rhythm_slot: bool = False                # LM v3: each beat opens with the rhythm in force at it (lm/beat_layout.py)
    unconditional_rhythm: str = "sample"     # LM v3 rhythm slot with no rhythm condition: "sample" (drawn) | "null"
    focus_share: float = 0.0                 # LM v3: share of training crops that start inside an episode of one of
    #                                          focus_rhythms (a rhythm drawn uniformly, then one of its beats), with
    #                                          their conditions never dropped; 0 = every crop drawn as usual
    focus_rhythms: list[str] = field(default_factory=lambda: ["VT", "B", "T", "SVTA", "IVR", "AFL"])
    ectopic_weight: float = 1.0              # LM v3: loss weight of the RR and coarse tokens of beats labelled S, V
    #                                          or F (the label itself keeps weight 1, so no class is favoured)
    cinc_weak_v: bool = False                # LM v3: label the CinC 2017 beats a token rule calls ventricular-like
    #                                          (premature, a pause after, a shape unlike both neighbours;
    #                                          lm.beatstream.weak_v_beats) beat:V instead of unlabelled
    distill_dirs: list[str] = field(default_factory=list)  # LM v3 guidance distillation: folders of an LM's own
    #                                          guided samples (lm/generate.py --label_guidance; their beat_units.npy);
    #                                          their crops train only the tokens the guidance moved (the RR and
    #                                          coarse tokens of beats labelled S, V or F and the RR after each)
    distill_share: float = 0.0               # share of training crops drawn from distill_dirs
    distill_dropout: bool = True             # condition dropout on those crops too (false: the null-condition
    #                                          branch of classifier-free guidance never learns the guided samples)
    anchor_weight: float = 0.0               # fine-tuning: this weight times KL(init_from model || this model), the
    #                                          mean over the targets of every crop not drawn from distill_dirs, added
    #                                          to the loss: the model keeps its starting predictions wherever the data
    #                                          asks nothing new (a frozen copy of init_from; needs init_from)

    # ------------------------------------------------------------------ model (Llama-style, lm/model.py)
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None             # grouped-query attention; None = n_head
    d_model: int = 128
    d_ff: int | None = None                  # None = 8/3 d_model rounded to 64 (SwiGLU)
    rope_theta: float = 10000.0
    attention_dropout: float = 0.0
    tie_embeddings: bool = True
    vocab_multiple: int = 64                 # pad the vocabulary (codes + PAD/BOS/EOS) to a multiple of this
    init_std: float = 0.02

    # ------------------------------------------------------------------ optimization
    max_steps: int = 300                     # optimizer steps
    batch_size: int = 8                      # sequences per process per micro-step
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4          # cosine decay floor
    warmup_steps: int = 30
    lr_decay_steps: int | None = None        # length of the cosine schedule; None = max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    mixed_precision: str = "auto"            # auto = bf16 on a GPU that supports it, else fp32
    num_threads: int = 0                     # torch CPU threads per process; 0 = cores / processes

    # ------------------------------------------------------------------ evaluation
    eval_every: int = 100                    # optimizer steps between validations (0 = only at the end)
    eval_crops: int = 64                     # validation sequences at each periodic evaluation
    final_eval_crops: int = 0                # sequences for the final val/test numbers; 0 = every tile
    eval_batch_size: int = 16
    keep_best: bool = False                  # final/ = the weights of the best periodic validation (early stopping)

    # ------------------------------------------------------------------ checkpoints, logging, outputs
    output_dir: str = "runs/lm/tiny"
    overwrite_output_dir: bool = False       # start fresh even if output_dir holds checkpoints
    save_every: int = 100                    # optimizer steps between checkpoints (0 = none)
    save_total_limit: int = 2                # rotating checkpoints kept
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    log_every: int = 10
    report_to: str = "none"                  # wandb | tensorboard | none
    wandb_project: str = "ecg2llm"
    run_name: str | None = None
    figure_samples: int = 3                  # generated ECGs in the evaluation figure (0 = none)
    figure_seconds: float = 10.0
    progress: bool = True                    # tqdm bar on the main process

    def __post_init__(self):
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"report_to must be one of {REPORT_TO}, got {self.report_to!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        for name in ("context_length", "n_layer", "n_head", "d_model", "max_steps", "batch_size",
                     "gradient_accumulation_steps", "eval_batch_size", "vocab_multiple"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.context_length < 2:
            raise ConfigError("context_length must be >= 2 (BOS plus at least one token)")
        for name in ("eval_every", "save_every", "eval_crops", "final_eval_crops", "warmup_steps",
                     "save_total_limit", "log_every", "figure_samples", "num_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ConfigError(
                f"need 0 <= min_learning_rate ({self.min_learning_rate}) <= learning_rate ({self.learning_rate})"
            )
        if not 0.0 <= self.condition_dropout <= 1.0:
            raise ConfigError(f"condition_dropout must be in [0, 1], got {self.condition_dropout}")
        if not 0.0 <= self.input_noise < 1.0:
            raise ConfigError(f"input_noise must be in [0, 1) (a share of input codes), got {self.input_noise}")
        if not 0.0 < self.beat_condition_share <= 1.0:
            raise ConfigError(f"beat_condition_share must be in (0, 1], got {self.beat_condition_share}")
        if not 0.0 <= self.focus_share < 1.0:
            raise ConfigError(f"focus_share must be in [0, 1) (a share of training crops), got {self.focus_share}")
        if not self.ectopic_weight > 0:
            raise ConfigError(f"ectopic_weight must be > 0 (1 = plain cross-entropy), got {self.ectopic_weight}")
        if not self.beat_stream and (self.focus_share > 0 or self.ectopic_weight != 1.0 or self.cinc_weak_v):
            raise ConfigError("focus_share, ectopic_weight and cinc_weak_v are LM v3 settings: they need "
                              "beat_stream: true")
        if not 0.0 <= self.distill_share < 1.0:
            raise ConfigError(f"distill_share must be in [0, 1) (a share of training crops), got {self.distill_share}")
        if bool(self.distill_dirs) != (self.distill_share > 0):
            raise ConfigError(f"distill_dirs {list(self.distill_dirs)} and distill_share {self.distill_share} go "
                              "together: give both (folders of guided samples and the share of crops from them) "
                              "or neither")
        if self.distill_dirs and not self.beat_stream:
            raise ConfigError("distill_dirs is an LM v3 setting (guided samples' beat units): it needs "
                              "beat_stream: true")
        if self.cinc_weak_v and "cinc2017" not in self.sources:
            raise ConfigError(f"cinc_weak_v labels CinC 2017 beats, but sources {list(self.sources)} leave it out; "
                              "add cinc2017 to sources or set cinc_weak_v: false")
        if self.beat_stream and (self.input_noise > 0 or self.augment_views > 0):
            raise ConfigError("beat_stream (LM v3) supports neither input_noise nor augment_views: set them to 0")
        if self.condition_dropout > 0 and not (self.beat_stream or (self.conditioning and self.sources)):
            raise ConfigError("condition_dropout needs a v2 conditional run (conditioning: true and sources)")
        if self.source_weights:
            if len(self.source_weights) != len(self.sources):
                raise ConfigError(f"source_weights {self.source_weights} must give one weight per source of "
                                  f"{self.sources} (or be empty: crops in proportion to each source's tokens)")
            if any(not w > 0 for w in self.source_weights):
                raise ConfigError(f"source_weights must all be > 0, got {self.source_weights}; drop a source "
                                  "from `sources` instead of giving it weight 0")
        if self.record_weights:
            if not self.sources:
                raise ConfigError("record_weights needs a v2 corpus (`sources`, e.g. [mitdb]); the v1 layout "
                                  "draws every record in proportion to its tokens")
            weights = {}
            for rec, w in self.record_weights.items():
                try:
                    w = float(w)
                except (TypeError, ValueError):
                    raise ConfigError(f"record_weights[{rec!r}] must be a number, got {w!r}") from None
                if not w > 0:
                    raise ConfigError(f"record_weights[{rec!r}] must be > 0, got {w}; leave a record out of "
                                      "`records` (or move it to valid_records) instead of giving it weight 0")
                weights[str(rec)] = w
            self.record_weights = weights
        if self.cinc_labels:
            from .corpora import CINC_RHYTHM  # the challenge's labels

            bad = [lab for lab in self.cinc_labels if lab not in CINC_RHYTHM]
            if bad:
                raise ConfigError(f"cinc_labels {self.cinc_labels}: {bad} are not CinC 2017 labels; choose "
                                  "from N (normal), A (AF), O (other rhythm), ~ (noisy), or leave it empty for all")
        if self.cinc_min_r_mv < 0:
            raise ConfigError(f"cinc_min_r_mv must be >= 0 (mV), got {self.cinc_min_r_mv}")
        if self.augment_views < 0 or self.cinc_max_records < 0:
            raise ConfigError("augment_views and cinc_max_records must be >= 0")
        if not 0.0 <= float(self.augment_mix_deg) <= 90.0:
            raise ConfigError(f"augment_mix_deg must be in [0, 90] degrees, got {self.augment_mix_deg}")
        if self.augment_mix_deg > 0 and self.augment_views == 0:
            raise ConfigError("augment_mix_deg rotates the leads of augmented views: set augment_views >= 1 too")
        if self.init_from in ("", "none", "None"):
            self.init_from = None
        if not self.anchor_weight >= 0:
            raise ConfigError(f"anchor_weight must be >= 0 (0 = no anchor), got {self.anchor_weight}")
        if self.anchor_weight > 0 and self.init_from is None:
            raise ConfigError(f"anchor_weight {self.anchor_weight} keeps a fine-tune near the model it starts from, "
                              "but init_from is not set: give init_from (an LM folder) or set anchor_weight: 0")
        if self.resume_from_checkpoint in ("", "none", "None"):
            self.resume_from_checkpoint = None
