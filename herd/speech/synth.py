"""Offline speech from text with espeak-ng, the speech stage's only audio source [P §8 data, offline here].

libespeak-ng and its voice data come in the `espeakng-loader` wheel (the `speech` extra); we drive the
library's C API through ctypes in synchronous mode, so samples come back to Python instead of a sound card.
One process holds one engine: espeak-ng keeps global state, so calls are serialized by a lock.

    wav, sr = synthesize("Hello there.", Voice(language="en", variant="m3", rate=160, pitch=50))
    events = synthesize_phonemes("Hello there.", Voice())     # [(phoneme, start_s, end_s), ...]
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from dataclasses import dataclass

import numpy as np

# espeak-ng's speak_lib.h constants (the ABI this wheel ships, libespeak-ng 1.52).
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # samples come back through the callback before espeak_Synth returns
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 0, 1, 5, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the utterance
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """One speaker setting: espeak-ng language, voice variant (`m1`…`m7`, `f1`…`f5`, or a named one such
    as `Alex`), speaking rate in words per minute, base pitch and pitch range (0–100)."""

    language: str = "en"
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    range: int = 50

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    def key(self) -> str:
        """A short stable id for manifests and per-voice metrics."""
        return f"{self.name}@{self.rate}wpm/p{self.pitch}"


class _Engine:
    """The one espeak-ng engine of this process (the library is not reentrant)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, options)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialize with data at {data.decode()}")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive: the C side holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self.events.append((e.type, e.id.string.decode("utf-8", "replace"), e.audio_position))
            elif e.type in (_EVENT_WORD, _EVENT_END):
                self.events.append((e.type, "", e.audio_position))
            i += 1
        return 0  # 0: go on synthesizing

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, str, int]]]:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice.name!r}")
            for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.range)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            self.chunks, self.events = [], []
            raw = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(raw)
            err = self.lib.espeak_Synth(buf, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak-ng synthesis failed (error {err}) for {text[:40]!r}")
            wav = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
            return wav, list(self.events)


_ENGINE: _Engine | None = None


def engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def synthesize(text: str, voice: Voice, sample_rate: int = 16_000) -> np.ndarray:
    """Float32 waveform in [-1, 1] at `sample_rate` (espeak-ng speaks at 22,050 Hz; resampled polyphase)."""
    wav, _ = engine().speak(text, voice)
    return resample(wav.astype(np.float32) / 32768.0, engine().sample_rate, sample_rate)


def synthesize_phonemes(text: str, voice: Voice) -> list[tuple[str, float, float]]:
    """The phones espeak-ng spoke with their start and end times in seconds (its phoneme events)."""
    _, events = engine().speak(text, voice)
    phones: list[tuple[str, float, float]] = []
    for (kind, name, ms), (_, _, next_ms) in itertools.pairwise(events):
        if kind == _EVENT_PHONEME and name.strip():
            phones.append((name, ms / 1000, next_ms / 1000))
    return phones


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return wav
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(from_rate, to_rate)
    return resample_poly(wav, to_rate // g, from_rate // g).astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at a signal-to-noise ratio in dB (the data stage's "added noise" axis)."""
    power = float(np.mean(wav**2)) if wav.size else 0.0
    noise = rng.standard_normal(wav.shape).astype(np.float32) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(wav + noise, -1.0, 1.0).astype(np.float32)
