"""What a screen is given when it is built, instead of reaching up into the app for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from plans.plan import Plan
from session.recording.writer import Recorder


@dataclass(frozen=True, slots=True)
class ScreenContext:
    """The session a screen shows: its environment, plan and services, its clock, and the recorder the drive
    screen writes its actions to (a replay's records nothing). The app builds it once; what a screen needs
    the app to do, it asks for with a message (`MainScreen.ProblemRaised`, `MainScreen.TaskFailed`)."""

    env_name: str
    protected: bool
    plan: Plan
    services: tuple[str, ...]  # the environment's app services in inventory order
    recorder: Recorder
    clock: Callable[[], float] = field(default=time.time)
