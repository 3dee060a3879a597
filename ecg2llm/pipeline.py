"""``ECGPipeline``: load an ECG language model with its tokenizer, generate and forecast ECGs in millivolts.

A thin front door over the stage packages, in the style of chronos-forecasting's ``ChronosPipeline``:
loading goes through :func:`ecg2llm.lm.model.load_lm` / :func:`ecg2llm.lm.model.load_tokenizer_for` (one save/load path,
:mod:`ecg2llm.core.hub`), sampling through :func:`ecg2llm.lm.synthesize.synthesize` (the one sampling path
``lm/generate.py`` uses too, so the same model, seed and batch size give the same arrays here and there).
torch and transformers are imported when a pipeline is built, not when this module is imported.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ecg2llm.tokenizer.base import ECGTokenizer

__all__ = ["ECGPipeline"]


class ECGPipeline:
    """A trained ECG language model and the tokenizer it was trained with.

    Build one with :meth:`from_pretrained`. Signals in and out are 1-D (one lead, MLII for the shipped
    models) in millivolts; outputs are at :attr:`fs` Hz.

    Attributes
    ----------
    model : transformers.LlamaForCausalLM
        The LM, in eval mode.
    tokenizer : tokenizer.ECGTokenizer
        Its ECG tokenizer: ``ids, state = pipe.tokenizer.encode(signal_mv, fs)``,
        ``x = pipe.tokenizer.decode(ids)``.
    folder : pathlib.Path or None
        The local folder the model was loaded from.

    Examples
    --------
    >>> from ecg2llm import ECGPipeline
    >>> pipe = ECGPipeline.from_pretrained("default", device="cpu")
    >>> x = pipe.generate(num_samples=2, seconds=2, seed=0)
    >>> x.shape, x.dtype, pipe.fs
    ((2, 720), dtype('float32'), 360.0)
    >>> f = pipe.forecast(x[0], fs=pipe.fs, seconds=1, num_samples=3, seed=0)
    >>> f.shape
    (3, 360)
    """

    def __init__(self, model: Any, tokenizer: ECGTokenizer, folder: str | Path | None = None):
        from ecg2llm.lm.sampling import check_stateless

        check_stateless(tokenizer)  # an LM samples ids only: decode(ids, None) must give millivolts
        self.model = model
        self.tokenizer = tokenizer
        self.folder = None if folder is None else Path(folder)
        self._beat = None  # LM v3: its ecg2llm.lm.beat_generate.BeatLM (spec, layout, masks, detail head), built once
        from ecg2llm.lm.beat_layout import is_beat_lm

        if is_beat_lm(model):
            from ecg2llm.lm.beat_detail import load_detail
            from ecg2llm.lm.beat_generate import BeatLM

            self._beat = BeatLM(model, tokenizer, load_detail(folder) if folder is not None else None)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "default", *, device: str = "auto",
                        dtype: str | torch.dtype | None = None, tokenizer: str | Path | None = None,
                        revision: str | None = None) -> ECGPipeline:
        """Load a pipeline: a shipped name, a local folder, or a Hugging Face Hub id.

        Parameters
        ----------
        name_or_path : str or Path
            ``"default"`` (= ``"conditional"`` = ``"v3"``: LM v3 on tokenizer v3, unconditional and with rhythm/beat
            control tokens), ``"v2"`` / ``"v2-conditional"`` (LM v2d / LM v2 on tokenizer v2), shipped in
            ``lm/pretrained/`` (names resolved through ``lm/pretrained/aliases.json``); a folder written by
            :meth:`save_pretrained` or an ``lm/train.py`` run (``<output_dir>/final``, or the run directory
            itself); or a Hub id ``"user/repo"`` (``huggingface_hub.snapshot_download``: the local cache is used,
            and ``HF_HUB_OFFLINE=1`` never touches the network).
        device : str
            ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype : str or torch.dtype, optional
            Weights' dtype (``"bfloat16"``, ``torch.float16``...); default float32. Sampling computes
            the softmax in float32 either way.
        tokenizer : str or Path, optional
            Override the tokenizer (default: the copy saved with the LM); it must be the one the LM was
            trained with (same config and weights hash), else a ``TokenizerError``.
        revision : str, optional
            Hub branch, tag or commit (Hub ids only).

        Returns
        -------
        ECGPipeline

        Raises
        ------
        ValueError
            (``ecg2llm.core.errors.ConfigError`` / ``TokenizerError``) when nothing loadable is found: the
            message names what was asked for and what to do.

        Examples
        --------
        >>> from ecg2llm import ECGPipeline
        >>> pipe = ECGPipeline.from_pretrained("default", device="cpu")     # LM v3 on tokenizer v3 (beats)
        >>> pipe.fs, type(pipe.tokenizer).__name__
        (360.0, 'BeatTokenizer')
        """
        import torch

        from ecg2llm.core.errors import ConfigError
        from ecg2llm.core.hub import is_hub_id, resolve_folder
        from ecg2llm.lm.model import PRETRAINED_DIR, load_lm, load_tokenizer_for

        dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        source: str | Path = name_or_path
        if revision is not None:
            if not is_hub_id(name_or_path):
                raise ConfigError(f"revision={revision!r} applies to Hugging Face Hub ids ('user/repo') "
                                  f"only; {str(name_or_path)!r} is a shipped name or a local folder")
            source = resolve_folder(name_or_path, PRETRAINED_DIR, what="LM", error=ConfigError,
                                    revision=revision)
        model, folder = load_lm(source, dev)
        if dtype is not None:
            model = model.to(_torch_dtype(dtype))
        from ecg2llm.lm.beat_layout import is_beat_lm

        if is_beat_lm(model):  # LM v3: the beat tokenizer saved beside it
            from ecg2llm.lm.beat_train import load_beat_tokenizer
            from ecg2llm.lm.model import TOKENIZER_SUBDIR

            return cls(model, load_beat_tokenizer(tokenizer or Path(folder) / TOKENIZER_SUBDIR), folder)
        tok = load_tokenizer_for(model.config, folder, tokenizer)
        return cls(model, tok, folder)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def fs(self) -> float:
        """Sampling rate (Hz) of every signal this pipeline returns (360 for the shipped models)."""
        return float(self.tokenizer.fs)

    @property
    def tokens_per_second(self) -> float:
        """Tokenizer tokens per second of ECG: 36 for tokenizer v2 (one per 10 samples); for tokenizer v3 (beats)
        the nominal rate at 60 bpm (one beat unit per second; the real rate follows the heart rate)."""
        return float(self.tokenizer.tokens_per_second)

    @property
    def device(self) -> torch.device:
        """Where the LM's weights live."""
        return next(self.model.parameters()).device

    @property
    def is_conditional(self) -> bool:
        """True when the LM has rhythm/beat control tokens (``generate(condition=...)`` works)."""
        return self._spec() is not None

    @property
    def conditions(self) -> list[str]:
        """Conditions this LM accepts (``"rhythm:AFIB"``, ``"beat:V"``..., seen in training), else ``[]``."""
        spec = self._spec()
        if spec is None:
            return []
        names = [n for n in spec.names if n != "rhythm:other" and n.partition(":")[0] in ("beat", "rhythm")
                 and not n.endswith(":?")]  # LM v2: no null, source or lead tokens
        return [n for n in names if spec.counts.get(n, 0) > 0] if spec.counts else names

    @property
    def supports_guidance(self) -> bool:
        """True for an LM v2 trained with condition dropout (``generate(guidance=...)`` works)."""
        from ecg2llm.lm.control import ControlSpec

        if self._beat is not None:
            return self._beat.spec.condition_dropout > 0
        ctl = ControlSpec.of_model(self.model)
        return ctl is not None and ctl.conditional and ctl.condition_dropout > 0

    @property
    def has_texture(self) -> bool:
        """True when the tokenizer decodes with texture (tokenizer v2): ``generate`` does so by default."""
        from ecg2llm.lm.synthesize import has_texture

        return has_texture(self.tokenizer)

    def __repr__(self) -> str:
        kind = "conditional" if self.is_conditional else "unconditional"
        return (f"ECGPipeline({kind} LM from {self.folder}, {self.fs:g} Hz, "
                f"{self.tokens_per_second:g} tokens/s, device={self.device})")

    # ------------------------------------------------------------------------------------------ sampling
    def generate(self, num_samples: int = 1, seconds: float = 10.0, *, seed: int = 0,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 condition: str | Sequence[str] | None = None, condition_strength: float = 3.0,
                 guidance: float | None = None, texture: bool | None = None, source: str | None = None,
                 lead: str | None = None, grammar: bool = True, beat_cache: float | None = None,
                 lead_guidance: float | None = None, contrast_lead: str | None = None,
                 kv_cache: str = "auto", batch_size: int = 64, progress: bool = False,
                 request=None) -> np.ndarray:
        """Sample synthetic ECGs from scratch.

        An LM v3 (beats) is sampled by :class:`ecg2llm.lm.beat_generate.BeatLM` from one request,
        :class:`ecg2llm.lm.synthesize.GenerateConfig`: pass ``request=GenerateConfig(...)`` (its ``num_samples``,
        ``seconds`` and sampling fields win), or the keyword arguments below, which fill one.

        Parameters
        ----------
        num_samples : int
            How many ECGs.
        seconds : float
            Length of each, in seconds.
        seed : int
            Same seed (and ``batch_size``) => identical arrays; batch ``i`` uses ``seed + i``.
        temperature, top_k, top_p : float, int, float
            Sampling settings (1, 0 = off, 1 = off: the model as trained).
        condition : str or sequence of str, optional
            Conditional LMs only (:attr:`conditions`): ``"rhythm:AFIB"``, ``["rhythm:N", "beat:V"]`` or
            ``"rhythm:N,beat:V"``. At most one rhythm; beat classes are boosted at every step.
        condition_strength : float
            Log-odds added to each requested beat class's control token.
        guidance : float, optional
            LM v2 trained with condition dropout (:attr:`supports_guidance`): the classifier-free guidance
            scale (:func:`ecg2llm.lm.guidance.sample_guided`). None: the conditional branch alone; ``1``: the same
            samples; ``> 1``: stronger adherence to ``condition``; ``0``: unconditional. A v1 LM refuses it.
        texture : bool, optional
            Decode with the tokenizer's texture model (noise, mains, fine detail). None: on when the
            tokenizer has one (:attr:`has_texture`, tokenizer v2), seeded per sample from ``seed`` (same
            seed => identical); ``False``: the clean ECG band; ``True`` without a texture model raises.
        source, lead : str, optional
            LM v2: the database and lead to imitate (None: ``"mitdb"``, ``"MLII"``; also ``"cinc2017"``,
            ``"V1"``, ``"I"``...). A v1 LM refuses them.
        grammar : bool
            LM v2 with ``rhythm:N``, ``B``, ``T`` or ``VT``: draw the beat labels that rhythm is made of (N V
            alternating for bigeminy, V at 120-200 bpm for VT...; :mod:`ecg2llm.lm.grammar`). ``False``: the rhythm
            prefix alone. No effect on other rhythms or v1 LMs.
        beat_cache : float, optional
            Conditional LM v2: strength of the beat cache (:mod:`ecg2llm.lm.beatcache`), which tethers each code to
            the same phase of the sample's previous beats so that a sample's beats repeat as a patient's do
            (0.25: the shipped LM's likelihood-optimal strength, in the shape its config records). None or
            ``0``: the LM alone (the default). A v1 LM refuses a non-zero strength.
        lead_guidance, contrast_lead : float, str, optional
            LM v2: lead-contrast guidance (:func:`ecg2llm.lm.guidance.sample_guided`), a negative prompt on the lead
            that keeps complexes of the other leads out of an MLII sample (``1.25``: the setting of
            ``docs/notes/lm-v2-notebook.md``; ``contrast_lead`` default V1). ``1``: off; None: the LM's default for the
            requested condition (``config.ecg_condition_defaults``: ``v2`` uses 2 for ``rhythm:VT``), else
            off. A v1 LM refuses it.
        kv_cache : str
            LM v2: the sampler's KV cache (:mod:`ecg2llm.lm.kvdecode`). ``"auto"``: float16 with a compiled attention
            kernel on CPU where ``torch.compile`` works (~1.3x faster), else float32; ``"float32"``: logits
            equal to the model's to float rounding. Same distribution; identical arrays need the same cache.
        batch_size : int
            Sequences sampled together (memory vs speed).
        progress : bool
            Show a tqdm bar over batches.

        Returns
        -------
        np.ndarray of float32, shape (num_samples, round(seconds * fs))
            ECGs in millivolts at :attr:`fs` Hz.

        Raises
        ------
        ValueError
            A bad argument, an unknown condition (the message lists the known ones), a condition
            given to an unconditional LM, guidance/source/lead given to a v1 LM, or ``texture=True``
            with a tokenizer without texture.

        Examples
        --------
        >>> from ecg2llm import ECGPipeline
        >>> pipe = ECGPipeline.from_pretrained("conditional", device="cpu")
        >>> y = pipe.generate(2, 2, condition="rhythm:AFIB", seed=0)
        >>> y.shape
        (2, 720)
        """
        if self._beat is not None:
            return self._generate_beats(request, num_samples, seconds, seed=seed, temperature=temperature,
                                        top_k=top_k, top_p=top_p, condition=condition, guidance=guidance,
                                        texture=texture, source=source, lead=lead, batch_size=batch_size,
                                        progress=progress)
        conds = self._check_conditions(condition)
        n, secs = self._check_sizes(num_samples, seconds)
        syn = self._synthesize(n, secs, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p,
                               condition=conds, condition_strength=condition_strength, batch_size=batch_size,
                               progress=progress, guidance=guidance, texture=texture, source=source,
                               lead=lead, grammar=grammar, beat_cache=beat_cache, lead_guidance=lead_guidance,
                               contrast_lead=contrast_lead, kv_cache=kv_cache)
        return syn.signals[:, : round(secs * self.fs)]  # (K, T)

    def forecast(self, prefix_mv: Any, fs: float | None = None, seconds: float = 5.0,
                 num_samples: int = 16, *,
                 seed: int = 0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Sample ``num_samples`` continuations of a real ECG prefix (probabilistic forecasting).

        The prefix is resampled to :attr:`fs` if ``fs`` differs, trimmed at its start to whole tokens
        (the most recent samples are kept), tokenized, and continued by the LM; prefix and continuation
        are decoded together (the tokenizer's decoder sees the real prefix at the seam), and only the part
        after the prefix is returned, without texture (the clean band, as ``lm/forecast.py`` scores it).
        A conditional LM v2 sees the prefix as an unlabelled stream (``beat:?`` at XQRS-detected beats,
        :func:`ecg2llm.lm.guidance.null_label_stream`) and continues it through its unconditional branch.
        An LM v3 is prompted with the prefix's beats (tokenizer v3's R peaks, RR and coarse tokens, null
        labels; :mod:`ecg2llm.lm.beat_forecast`): the prefix must end with a detected heartbeat.
        ``lm/forecast.py`` task ``i`` with
        ``--seed s --k K`` equals
        ``forecast(prefix_i, num_samples=K, seed=s * 100003 + i, batch_size=K)``.

        Parameters
        ----------
        prefix_mv : array-like, shape (samples,)
            One lead in millivolts, finite, at least one token long (``fs / tokens_per_second`` samples
            at :attr:`fs`). For a WFDB ``(samples, leads)`` array pass ``signal[:, lead]``.
        fs : float, optional
            Its sampling rate in Hz (default :attr:`fs`).
        seconds : float
            Forecast horizon.
        num_samples : int
            Continuations drawn.
        seed, temperature, top_k, top_p, batch_size, progress
            As in :meth:`generate`.

        Returns
        -------
        np.ndarray of float32, shape (num_samples, round(seconds * fs))
            Continuations in millivolts at :attr:`fs` Hz, starting right after the prefix's last sample.

        Raises
        ------
        ValueError
            Prefix not 1-D, empty, too short, non-numeric or with NaN/inf; bad sizes or sampling settings.

        Examples
        --------
        >>> import numpy as np
        >>> from ecg2llm import ECGPipeline
        >>> pipe = ECGPipeline.from_pretrained("default", device="cpu")
        >>> prefix = pipe.generate(1, 3, seed=1)[0]               # any ECG in mV, e.g. a real MLII lead
        >>> f = pipe.forecast(prefix, fs=360, seconds=1, num_samples=4, seed=0)
        >>> f.shape
        (4, 360)
        """
        n, secs = self._check_sizes(num_samples, seconds)
        if self._beat is not None:  # LM v3: the prefix's beats are the prompt (ecg2llm.lm.beat_forecast)
            from ecg2llm.lm.beat_forecast import forecast_beats
            from ecg2llm.lm.synthesize import GenerateConfig

            x = self._prefix_signal(prefix_mv, self.fs if fs is None else fs)
            req = GenerateConfig(num_samples=n, seconds=secs, seed=seed, temperature=temperature, top_k=top_k,
                                 top_p=top_p, batch_size=batch_size, texture=False)
            return forecast_beats(self._beat, x, req, progress=progress)
        ids = self._prefix_ids(prefix_mv, self.fs if fs is None else fs)
        # one token past the horizon, so the contextual decoder sees real right context at its end
        # (as lm/forecast.py does: the same prefix and seed give the same continuations there)
        syn = self._synthesize(n, secs + 0.999 / self.tokens_per_second, seed=seed, temperature=temperature,
                               top_k=top_k, top_p=top_p, batch_size=batch_size, progress=progress, prompt=ids,
                               texture=False)
        p = round(len(ids) * self.tokenizer.samples_per_token)  # decoded prefix samples
        return syn.signals[:, p : p + round(secs * self.fs)]  # (K, H)

    # ------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the LM and its tokenizer copy into ``path`` (replaced as a whole, atomically).

        The layout is that of an ``lm/train.py`` run's ``final/`` folder (``config.json``,
        ``model.safetensors``, ``generation_config.json``, ``tokenizer/``; LM v3 also ``detail/``), so the folder
        loads with :meth:`from_pretrained`, ``lm/generate.py --model``, and every other entry point.

        Returns
        -------
        Path
            ``path``.

        Examples
        --------
        >>> import tempfile
        >>> from ecg2llm import ECGPipeline
        >>> pipe = ECGPipeline.from_pretrained("default", device="cpu")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     again = ECGPipeline.from_pretrained(pipe.save_pretrained(f"{d}/my_model"), device="cpu")
        ...     bool((again.generate(1, 1, seed=3) == pipe.generate(1, 1, seed=3)).all())
        True
        """
        from ecg2llm.core.io import atomic_path
        from ecg2llm.lm.model import TOKENIZER_SUBDIR

        path = Path(path)
        with atomic_path(path) as tmp:
            self.model.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(tmp / TOKENIZER_SUBDIR)
            if self._beat is not None and self._beat.detail is not None:  # LM v3: its detail head in detail/
                from ecg2llm.lm.beat_detail import SUBDIR, save_detail

                save_detail(self._beat.detail, tmp / SUBDIR)
        return path

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload ecg2llm model") -> str:
        """Save into a temporary folder (:meth:`save_pretrained`) and upload it to the Hugging Face Hub.

        Parameters
        ----------
        repo_id : str
            ``"user/repo"``; created if missing.
        private : bool
            Create the repository as private.
        token : str, optional
            A Hub token (default: the one ``huggingface-cli login`` stored).
        commit_message : str

        Returns
        -------
        str
            The commit URL.

        Examples
        --------
        >>> pipe.push_to_hub("user/ecg-gpt")                        # doctest: +SKIP
        >>> ECGPipeline.from_pretrained("user/ecg-gpt")             # doctest: +SKIP
        """
        import tempfile

        from ecg2llm.core.hub import push_folder

        with tempfile.TemporaryDirectory() as d:
            folder = self.save_pretrained(Path(d) / "model")
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)

    # ------------------------------------------------------------------------------------------ internals
    def _spec(self):
        """The LM's condition vocabulary: v1 ``ConditionSpec``, v2 ``ControlSpec`` (None if unconditional)."""
        from ecg2llm.lm.conditioning import ConditionSpec
        from ecg2llm.lm.control import ControlSpec

        if self._beat is not None:
            return self._beat.spec
        ctl = ControlSpec.of_model(self.model)
        if ctl is not None:
            return ctl if ctl.conditional else None
        return ConditionSpec.of_model(self.model)

    def _generate_beats(self, request, num_samples, seconds, *, progress: bool = False, **kw) -> np.ndarray:
        """LM v3: one :class:`ecg2llm.lm.synthesize.GenerateConfig` (given, or filled from the keyword arguments)."""
        from ecg2llm.lm.synthesize import GenerateConfig

        if request is None:
            n, secs = self._check_sizes(num_samples, seconds)
            kw["condition"] = self._check_conditions(kw.get("condition"))
            request = GenerateConfig(num_samples=n, seconds=secs, **{k: v for k, v in kw.items() if v is not None})
        signals, _, _, _ = self._beat.synthesize(request, progress=progress)
        return signals[:, : round(request.seconds * self.fs)]  # (K, T) mV

    def _check_conditions(self, condition: str | Sequence[str] | None) -> list[str]:
        from ecg2llm.core.errors import ConfigError

        if condition is None:
            return []
        raw = [condition] if isinstance(condition, str) else list(condition)
        conds = [c.strip() for r in raw for c in str(r).split(",") if c.strip()]
        if not conds:
            return []
        spec = self._spec()
        if spec is None:
            raise ConfigError(
                f"condition {','.join(conds)!r} needs a conditional LM, but the LM in {self.folder} has no "
                f"control tokens; use ECGPipeline.from_pretrained('conditional') or an LM trained with "
                f"`conditioning: true` (configs/lm/tiny_cond.yaml)")
        spec.parse_conditions(conds)  # raises a ConfigError listing the known conditions
        return conds

    def _check_sizes(self, num_samples: Any, seconds: Any) -> tuple[int, float]:
        from ecg2llm.core.errors import ConfigError

        try:
            n, secs = int(num_samples), float(seconds)
        except (TypeError, ValueError):
            raise ConfigError(f"num_samples must be an integer and seconds a number, got {num_samples!r}, "
                              f"{seconds!r}") from None
        if n != num_samples or n < 1:
            raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not (np.isfinite(secs) and secs > 0):
            raise ConfigError(f"seconds must be a positive number, got {seconds!r}")
        return n, secs

    def _prefix_ids(self, prefix_mv: Any, fs: Any) -> np.ndarray:
        """Prefix in mV at ``fs`` -> its token ids, trimmed at the start to whole tokens."""
        from ecg2llm.core.errors import ConfigError

        x = self._prefix_signal(prefix_mv, fs)
        spt = self.tokenizer.samples_per_token
        n_tok = int(np.floor(len(x) / spt + 1e-9))
        if n_tok < 1:
            raise ConfigError(f"prefix is too short: {x.size} samples at {self.fs:g} Hz, the LM needs "
                              f"at least "
                              f"one token ({spt:g} samples, {spt / self.fs * 1e3:g} ms)")
        keep = round(n_tok * spt)
        ids, _ = self.tokenizer.encode(x[len(x) - keep:], self.fs)
        return ids[-n_tok:]

    def _prefix_signal(self, prefix_mv: Any, fs: Any) -> np.ndarray:
        """Prefix in mV at ``fs``, checked (one lead, numeric, finite) and resampled to :attr:`fs`."""
        from ecg2llm.core.errors import ConfigError

        x = np.asarray(prefix_mv)
        if x.ndim != 1:
            raise ConfigError(f"forecast expects one lead as a 1-D array of samples, got shape {x.shape}; "
                              f"pass signal[:, lead] for a (samples, leads) WFDB array")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ConfigError(f"prefix must be numeric (mV), got dtype {x.dtype}")
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise ConfigError(f"fs must be a number in Hz, got {fs!r}") from None
        if not (np.isfinite(fs) and fs > 0):
            raise ConfigError(f"fs must be positive, got {fs}")
        if x.size and not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x))[0])
            raise ConfigError(f"prefix has NaN/inf samples (first at index {i}); fill gaps first, e.g. "
                              f"ecg2llm.tokenizer.data.fill_nan_gaps(x, fs, max_gap_s)")
        x = x.astype(np.float32)
        if fs != self.fs and x.size:
            from ecg2llm.tokenizer.data import resample

            x = resample(x, fs, self.fs).astype(np.float32)
        if x.size == 0:
            raise ConfigError("prefix is empty: give at least a few seconds of one ECG lead in mV")
        return x

    def _synthesize(self, num_samples: int, seconds: float, *, seed: int, temperature: float, top_k: int,
                    top_p: float, batch_size: int, progress: bool, condition: Sequence[str] = (),
                    condition_strength: float = 3.0, prompt: np.ndarray | None = None,
                    guidance: float | None = None, texture: bool | None = None, source: str | None = None,
                    lead: str | None = None, grammar: bool = True, beat_cache: float | None = None,
                    lead_guidance: float | None = None, contrast_lead: str | None = None,
                    kv_cache: str = "auto"):
        from ecg2llm.core.errors import ConfigError
        from ecg2llm.lm.sampling import SamplingParams
        from ecg2llm.lm.synthesize import synthesize

        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        return synthesize(self.model, self.tokenizer, num_samples, seconds, seed=int(seed),
                          params=SamplingParams(float(temperature), int(top_k), float(top_p)),
                          batch_size=int(batch_size), condition=list(condition),
                          condition_strength=float(condition_strength), prompt=prompt, progress=progress,
                          guidance=guidance, texture=texture, source=source, lead=lead,
                          grammar=bool(grammar), beat_cache=beat_cache, lead_guidance=lead_guidance,
                          contrast_lead=contrast_lead, kv_cache=kv_cache)


def _torch_dtype(dtype: Any) -> torch.dtype:
    import torch

    from ecg2llm.core.errors import ConfigError

    if isinstance(dtype, torch.dtype):
        return dtype
    t = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(t, torch.dtype) or not t.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch dtype such as 'float32' or 'bfloat16', "
                          f"got {dtype!r}")
    return t
