"""The engine in one background thread, and text streams with stop strings for each sample.

The engine is not thread-safe, so one thread owns it: HTTP handlers (asyncio) send it commands through a
queue, and it steps the batch whenever there is work and hands each event to its request's asyncio queue.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from herd.model.engine import Engine, Event, SamplingParams

log = logging.getLogger("herd.serve")


@dataclass
class Failure:
    """Put on a request's queue instead of events when the engine could not run it."""

    message: str


class Handle:
    """One prompt of a request as the HTTP side sees it: its engine id (once added) and the asyncio queue
    its events arrive on, as (tag, event) pairs: the prompts of one request share a queue."""

    def __init__(self, n: int, events: asyncio.Queue, tag: int = 0) -> None:
        self.events, self.tag, self.loop = events, tag, asyncio.get_running_loop()
        self.n, self.request_id = n, -1
        self.done: set[int] = set()  # samples finished or aborted (engine thread only)

    def end(self, index: int | None) -> bool:
        """Mark a sample (None: all) as over; True when none is left. A sample counts once, however it ended."""
        self.done.update(range(self.n) if index is None else (index,))
        return len(self.done) >= self.n

    def push(self, item: Event | Failure) -> None:
        # Called from the engine thread: asyncio queues may only be touched from their loop.
        self.loop.call_soon_threadsafe(self.events.put_nowait, (self.tag, item))


class EngineRunner:
    """Owns the engine's thread. `submit`/`abort` may be called from any thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._inbox: queue.Queue[tuple] = queue.Queue()
        self._handles: dict[int, Handle] = {}
        self._stopping = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="herd-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every request already submitted, then end the thread."""
        self._stopping.set()
        self._running.set()
        self._inbox.put(("wake",))
        self._thread.join(timeout)

    def pause(self) -> None:
        """Stop stepping (requests still queue up); `resume` goes on. For maintenance and tests."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()
        self._inbox.put(("wake",))

    def submit(self, prompt: Sequence[int], params: SamplingParams, events: asyncio.Queue, tag: int = 0) -> Handle:
        """Queue a prompt (from the event loop that owns `events`); its events arrive there tagged `tag`."""
        handle = Handle(params.n, events, tag)
        self._inbox.put(("add", handle, list(prompt), params))
        return handle

    def abort(self, handle: Handle, index: int | None = None) -> None:
        self._inbox.put(("abort", handle, index))

    # ------------------------------------------------------------------ the engine thread
    def _loop(self) -> None:
        while True:
            idle = not self.engine.has_work() or not self._running.is_set()
            self._drain(block=idle)
            if self._stopping.is_set() and not self.engine.has_work() and self._inbox.empty():
                return
            if self._running.is_set() and self.engine.has_work():
                self._step()

    def _drain(self, block: bool) -> None:
        try:
            command = self._inbox.get(timeout=0.1) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(command)
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _apply(self, command: tuple) -> None:
        if command[0] == "add":
            _, handle, prompt, params = command
            try:
                handle.request_id = self.engine.add(prompt, params)
                self._handles[handle.request_id] = handle
            except ValueError as e:
                handle.push(Failure(str(e)))
        elif command[0] == "abort":
            _, handle, index = command
            if index is not None and index in handle.done:
                return  # it finished in the engine before the abort arrived
            self.engine.abort(handle.request_id, index)
            if handle.end(index):
                self._handles.pop(handle.request_id, None)

    def _step(self) -> None:
        try:
            events = self.engine.step()
        except Exception as e:  # a bug: fail what is in flight rather than leave clients waiting
            log.exception("engine step failed")
            for handle in list(self._handles.values()):
                self.engine.abort(handle.request_id)
                handle.push(Failure(f"engine error: {e}"))
            self._handles.clear()
            return
        for event in events:
            handle = self._handles.get(event.request_id)
            if handle is None:
                continue
            handle.push(event)
            if event.finish is not None and handle.end(event.index):
                del self._handles[event.request_id]


class TextStream:
    """One sample's text as its tokens arrive: holds back an incomplete UTF-8 character and any tail that
    could be the start of a stop string, and ends the text before the first stop string."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()) -> None:
        self.decode, self.stop = decode, [s for s in stop if s]
        self.ids: list[int] = []
        self.sent = ""  # text handed out so far
        self.stopped = False

    def add(self, token: int) -> str:
        """The new text that is safe to show after `token`; sets `stopped` when a stop string appears."""
        self.ids.append(token)
        text = self.decode(self.ids)
        cuts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self.stopped = True
            return self._advance(text[: min(cuts)])
        if text.endswith("\ufffd"):  # the rest of a multi-byte character is still to come
            return ""
        hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return self._advance(text[: len(text) - hold])

    def flush(self) -> str:
        """Whatever was held back, once the sample has ended without a stop string."""
        return "" if self.stopped else self._advance(self.decode(self.ids))

    def _advance(self, text: str) -> str:
        delta = text[len(self.sent) :] if text.startswith(self.sent) else ""
        self.sent = text if text.startswith(self.sent) else self.sent
        return delta
