"""``ECGPipeline``: load an ECG language model with its tokenizer, generate and forecast ECGs in millivolts.

A thin front door over the stage packages, in the style of chronos-forecasting's ``ChronosPipeline``:
loading goes through :func:`ecg2llm.lm.model.load_lm` / :func:`ecg2llm.lm.model.load_tokenizer_for` (one save/load path,
:mod:`ecg2llm.core.hub`), sampling through :func:`ecg2llm.lm.synthesize.synthesize` (the one sampling path
``lm/generate.py`` uses too, so the same model, seed and batch size give the same arrays here and there).
torch and transformers are imported when a pipeline is built, not when this module is imported.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ecg2llm.lm.request import GenerateConfig
    from ecg2llm.tokenizer.base import ECGTokenizer

__all__ = ["ECGPipeline"]

#: keyword arguments of ``generate`` / ``forecast`` that :class:`ecg2llm.lm.request.GenerateConfig` replaced
_GENERATE_LEGACY = ("temperature", "top_k", "top_p", "condition_strength", "guidance", "texture", "source", "lead",
                    "grammar", "beat_cache", "lead_guidance", "contrast_lead", "kv_cache", "batch_size")
_FORECAST_LEGACY = ("temperature", "top_k", "top_p", "batch_size")


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
        """True for an LM v2/v3 trained with condition dropout (``GenerateConfig(guidance=...)`` works)."""
        from ecg2llm.lm.control import ControlSpec

        ctl = self.control
        if self._beat is not None:
            return ctl.condition_dropout > 0
        return isinstance(ctl, ControlSpec) and ctl.conditional and ctl.condition_dropout > 0

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
    def generate(self, num_samples: int | None = None, seconds: float | None = None, *, seed: int | None = None,
                 condition: str | Sequence[str] | None = None, request: GenerateConfig | None = None,
                 progress: bool = False, **deprecated_kwargs) -> np.ndarray:
        """Sample synthetic ECGs from scratch.

        One request, :class:`ecg2llm.lm.request.GenerateConfig` (the fields of ``lm/generate.py``), describes
        the draw; ``num_samples``, ``seconds``, ``seed`` and ``condition``, when given, replace its fields
        (explicit argument > ``request`` > the defaults: 1 sample of 10 s, seed 0). An LM v3 (beats) is
        sampled by :class:`ecg2llm.lm.beat_generate.BeatLM`, an LM v2 by :func:`ecg2llm.lm.guidance.sample_guided`,
        an LM without control tokens by :mod:`ecg2llm.lm.sampling`, all through
        :func:`ecg2llm.lm.synthesize.synthesize`'s path: ``lm/generate.py`` with the same request writes the
        same arrays.

        Parameters
        ----------
        num_samples : int, optional
            How many ECGs (default 1).
        seconds : float, optional
            Length of each, in seconds (default 10).
        seed : int, optional
            Same seed (and ``batch_size``) => identical arrays; batch ``i`` uses ``seed + i`` (default 0).
        condition : str or sequence of str, optional
            Conditional LMs only (:attr:`conditions`): ``"rhythm:AFIB"``, ``["rhythm:N", "beat:V"]`` or
            ``"rhythm:N,beat:V"``. At most one rhythm.
        request : GenerateConfig, optional
            Every other setting: ``temperature``/``top_k``/``top_p``, ``condition_strength``, ``guidance``
            (:attr:`supports_guidance`), ``texture`` (None: on when the tokenizer has one, :attr:`has_texture`),
            ``source``/``lead``, ``grammar``, ``beat_cache``, ``lead_guidance``/``contrast_lead``, ``kv_cache``,
            ``batch_size``, ``detail`` (LM v3); each field's meaning is on :class:`GenerateConfig`.
        progress : bool
            Show a tqdm bar over batches.

        The keyword arguments of before (``temperature=``, ``guidance=``, ``batch_size=``...) still work until
        ecg2llm 0.4.0, with a ``FutureWarning`` naming the ``request=GenerateConfig(...)`` to pass instead.

        Returns
        -------
        np.ndarray of float32, shape (num_samples, round(seconds * fs))
            ECGs in millivolts at :attr:`fs` Hz.

        Raises
        ------
        ValueError
            A bad argument, an unknown condition (the message lists the known ones), a condition
            given to an unconditional LM, guidance/source/lead given to an LM without control tokens, or
            ``texture=True`` with a tokenizer without texture.

        Examples
        --------
        >>> from ecg2llm import ECGPipeline
        >>> from ecg2llm.lm.request import GenerateConfig
        >>> pipe = ECGPipeline.from_pretrained("conditional", device="cpu")
        >>> y = pipe.generate(2, 2, condition="rhythm:AFIB", seed=0)
        >>> y.shape
        (2, 720)
        >>> req = GenerateConfig(num_samples=2, seconds=2, condition=["rhythm:AFIB"], guidance=2.0)
        >>> pipe.generate(request=req).shape
        (2, 720)
        """
        req = self._request("generate", request, deprecated_kwargs, _GENERATE_LEGACY, num_samples=num_samples,
                            seconds=seconds, seed=seed, condition=condition, defaults={"num_samples": 1})
        if self._beat is not None:
            signals, _, _, _ = self._beat.synthesize(req, progress=progress)
        else:
            from ecg2llm.lm.synthesize import synthesize

            signals = synthesize(self.model, self.tokenizer, req, progress=progress).signals
        return signals[:, : round(req.seconds * self.fs)]  # (K, T)

    def forecast(self, prefix_mv: Any, fs: float | None = None, seconds: float | None = None,
                 num_samples: int | None = None, *, seed: int | None = None, request: GenerateConfig | None = None,
                 progress: bool = False, **deprecated_kwargs) -> np.ndarray:
        """Sample ``num_samples`` continuations of a real ECG prefix (probabilistic forecasting).

        The prefix is resampled to :attr:`fs` if ``fs`` differs, trimmed at its start to whole tokens
        (the most recent samples are kept), tokenized, and continued by the LM; prefix and continuation
        are decoded together (the tokenizer's decoder sees the real prefix at the seam), and only the part
        after the prefix is returned, without texture (the clean band, as ``lm/forecast.py`` scores it).
        A conditional LM v2 sees the prefix as an unlabelled stream (``beat:?`` at XQRS-detected beats,
        :func:`ecg2llm.lm.guidance.null_label_stream`) and continues it through its unconditional branch.
        An LM v3 is prompted with the prefix's beats (tokenizer v3's R peaks, RR and coarse tokens, null
        labels; :mod:`ecg2llm.lm.beat_forecast`): the prefix must hold a detected heartbeat.
        ``lm/forecast.py`` task ``i`` with ``--seed s --k K`` equals
        ``forecast(prefix_i, num_samples=K, seed=s * 100003 + i, request=GenerateConfig(batch_size=K))``.

        Parameters
        ----------
        prefix_mv : array-like, shape (samples,)
            One lead in millivolts, finite, at least one token long (``fs / tokens_per_second`` samples
            at :attr:`fs`). For a WFDB ``(samples, leads)`` array pass ``signal[:, lead]``.
        fs : float, optional
            Its sampling rate in Hz (default :attr:`fs`).
        seconds : float, optional
            Forecast horizon (default 5 s; or ``request.seconds`` when a request is given).
        num_samples : int, optional
            Continuations drawn (default 16; or ``request.num_samples``).
        seed, request, progress
            As in :meth:`generate` (``temperature``, ``top_k``, ``top_p``, ``batch_size`` are request fields;
            as keyword arguments they are deprecated). The continuation is decoded without texture.

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
        req = self._request("forecast", request, deprecated_kwargs, _FORECAST_LEGACY, num_samples=num_samples,
                            seconds=seconds, seed=seed, defaults={"num_samples": 16, "seconds": 5.0})
        if self._beat is not None:  # LM v3: the prefix's beats are the prompt (ecg2llm.lm.beat_forecast)
            from ecg2llm.lm.beat_forecast import forecast_beats

            x = self._prefix_signal(prefix_mv, self.fs if fs is None else fs)
            return forecast_beats(self._beat, x, replace(req, texture=False), progress=progress)
        ids = self._prefix_ids(prefix_mv, self.fs if fs is None else fs)
        secs = req.seconds
        # one token past the horizon, so the contextual decoder sees real right context at its end
        # (as lm/forecast.py does: the same prefix and seed give the same continuations there)
        from ecg2llm.lm.synthesize import synthesize

        syn = synthesize(self.model, self.tokenizer,
                         replace(req, seconds=secs + 0.999 / self.tokens_per_second, texture=False), prompt=ids,
                         progress=progress)
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
    @functools.cached_property
    def control(self):
        """The LM's control vocabulary, worked out once per pipeline: LM v3's or v2's
        :class:`ecg2llm.lm.control.ControlSpec`, an older conditional LM's
        :class:`ecg2llm.lm.conditioning.ConditionSpec`, or None (no control tokens)."""
        from ecg2llm.lm.conditioning import ConditionSpec
        from ecg2llm.lm.control import ControlSpec

        if self._beat is not None:
            return self._beat.spec
        ctl = ControlSpec.of_model(self.model)
        return ctl if ctl is not None else ConditionSpec.of_model(self.model)

    def _spec(self):
        """The condition vocabulary requests are checked against (None if the LM takes no conditions)."""
        from ecg2llm.lm.control import ControlSpec

        spec = self.control
        return None if isinstance(spec, ControlSpec) and not spec.conditional else spec

    def _request(self, method: str, request, legacy: dict, allowed: tuple, *, defaults: dict, **given):
        """The :class:`GenerateConfig` of one call: explicit arguments > ``request`` > ``defaults``; the
        deprecated keyword arguments ``legacy`` (names in ``allowed``) on top, with a ``FutureWarning``."""
        from ecg2llm.core.errors import ConfigError
        from ecg2llm.lm.request import GenerateConfig, check_legacy, deprecated, legacy_fields, request_repr

        if request is not None and not isinstance(request, GenerateConfig):
            raise ConfigError(f"request must be an ecg2llm.lm.request.GenerateConfig, got {type(request).__name__}")
        check_legacy(f"ECGPipeline.{method}", legacy, allowed)
        base = request if request is not None else GenerateConfig(**defaults)
        n, secs = self._check_sizes(base.num_samples if given["num_samples"] is None else given["num_samples"],
                                    base.seconds if given["seconds"] is None else given["seconds"])
        over = {"num_samples": n, "seconds": secs}
        if given.get("seed") is not None:
            over["seed"] = int(given["seed"])
        if given.get("condition") is not None:
            over["condition"] = self._check_conditions(given["condition"])
        if legacy:
            old = legacy_fields(legacy)
            shown = request_repr(GenerateConfig(**old)) if request is None else \
                f"dataclasses.replace(request, {', '.join(f'{k}={v!r}' for k, v in old.items())})"
            deprecated(f"ECGPipeline.{method}", sorted(legacy), f"pipe.{method}(..., request={shown})", stacklevel=4)
            over.update(old)
        req = replace(base, **over)
        if given.get("condition") is None:
            req.condition = self._check_conditions(req.condition)
        return req

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
