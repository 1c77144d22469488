"""Schemas of analysis: per-stream settings and rules.

The stream form, the rule form, import/export and the workers all validate with these,
so their keys never drift apart. A field's `title` is its form label and `description` its help.
Percentages are stored as percent (0-100) the way people type them.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from glimpser import schema_helpers
from glimpser.models import SEVERITIES

Severity = Literal["info", "low", "medium", "high", "critical"]
assert set(Severity.__args__) == set(SEVERITIES)  # type: ignore[attr-defined]

# A point as fractions of the picture's width and height: (0, 0) top left, (1, 1) bottom right.
Point = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)]
# A polygon (a rectangle is four points). Masks and regions are drawn on a snapshot in the form.
Polygon = Annotated[list[Point], Field(min_length=3, max_length=64)]

# Defaults for when a snapshot counts as changed (percent of the picture, after masks).
DEFAULT_TRIGGER_PERCENT = {"motion": 0.5, "change": 0.1}


def detection_mode(kind: str) -> Literal["motion", "change"]:
    """Cameras and video get motion detection; websites and dashboards a changed-area measure."""
    return "change" if kind == "website" else "motion"


class AnalysisSettings(BaseModel):
    """What the analysis job does with a stream's snapshots."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    detect: bool = Field(
        True,
        title="Detect motion and change",
        description="Compare each snapshot with the previous ones.",
    )
    sensitivity: int = Field(
        50,
        ge=1,
        le=100,
        title="Sensitivity",
        description="Higher notices smaller and fainter movement (1-100).",
    )
    trigger_percent: float | None = Field(
        None,
        ge=0,
        le=100,
        title="Changed when at least (% of the picture)",
        description="Blank: 0.5 % for cameras and video, 0.1 % for websites.",
    )
    masks: list[Polygon] = Field(
        default_factory=list,
        max_length=16,
        title="Masks",
        description="Areas to ignore (timestamps, trees, busy roads).",
    )
    region: Polygon | None = Field(
        None,
        title="Region of interest",
        description="Only this area counts (e.g. one panel of a dashboard). Blank: all of it.",
    )
    describe_on_change: bool = Field(
        False,
        title="Describe changes with AI",
        description="Ask the vision AI what it sees when a snapshot changed.",
    )
    describe_prompt: str = Field(
        "",
        max_length=2000,
        title="What to look for",
        description="Added to the AI's instructions, e.g. 'Note vehicles and their colour.'",
    )
    describe_every_minutes: int = Field(
        0,
        ge=0,
        le=7 * 24 * 60,
        title="Also describe every (minutes)",
        description="A description even without change; 0 = only on change.",
    )
    daily_token_budget: int | None = Field(
        None,
        ge=0,
        le=10**9,
        title="AI tokens per day",
        description="Blank: the global GLIMPSER_AI_DAILY_TOKEN_BUDGET; 0 = no limit.",
    )

    def trigger_for(self, kind: str) -> float:
        """The changed share (0..1) from which a snapshot of this kind counts as changed."""
        percent = self.trigger_percent
        if percent is None:
            percent = DEFAULT_TRIGGER_PERCENT[detection_mode(kind)]
        return percent / 100.0


def analysis_settings(data: dict[str, Any] | None) -> AnalysisSettings:
    """A stored stream's settings (older rows have {}: every default)."""
    return AnalysisSettings.model_validate(data or {})


# --- rules ------------------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class TimeWindow(BaseModel):
    """Days of the week and a time range; an end before the start runs past midnight."""

    model_config = ConfigDict(extra="forbid")

    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: list(range(7)), min_length=1, title="Days (0 = Monday)"
    )
    start: str = Field("00:00", title="From (HH:MM)")
    end: str = Field("24:00", title="Until (HH:MM)")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        v = v.strip()
        if v != "24:00" and not _HHMM.match(v):
            raise ValueError("must be a time like 07:30")
        return v

    @field_validator("days")
    @classmethod
    def _unique_days(cls, v: list[int]) -> list[int]:
        return sorted(set(v))

    def contains(self, weekday: int, at: time) -> bool:
        """Whether a local weekday (0 = Monday) and time of day fall in the window."""
        start, end = self.start, self.end
        now = at.strftime("%H:%M")
        if start <= end:
            return weekday in self.days and start <= now < end
        # Past midnight: the part after midnight belongs to the day the window started.
        return (weekday in self.days and now >= start) or (
            (weekday - 1) % 7 in self.days and now < end
        )


class RuleSchedule(BaseModel):
    """When a rule may raise events: inside any active window and outside all quiet hours."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    timezone: str = Field("UTC", title="Time zone", description="e.g. Europe/Berlin")
    active: list[TimeWindow] = Field(
        default_factory=list, max_length=16, title="Active", description="Empty: always."
    )
    quiet: list[TimeWindow] = Field(default_factory=list, max_length=16, title="Quiet hours")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class RuleConditions(BaseModel):
    """Every condition that is set must hold (AND). At least one must be set."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    changed: bool = Field(
        False,
        title="Motion or change detected",
        description="The snapshot counted as changed by the stream's detection settings.",
    )
    motion_above: float | None = Field(
        None, ge=0, le=100, title="Motion score above (%)", description="Cameras and video."
    )
    changed_area_above: float | None = Field(
        None, ge=0, le=100, title="Changed area above (%)", description="Any stream, websites too."
    )
    objects_any: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=32,
        title="AI sees any of",
        description="Comma-separated, e.g. person, car",
    )
    threat_at_least: int | None = Field(
        None, ge=1, le=2, title="AI threat level at least", description="1 = unusual, 2 = threat."
    )
    question: str = Field(
        "",
        max_length=1000,
        title="Ask the AI",
        description="A yes/no question about the picture, e.g. 'Is the garage door open?'",
    )
    min_confidence: float = Field(
        0.6, ge=0, le=1, title="Minimum AI confidence (0-1)", description="For the question."
    )
    keywords: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=32,
        title="Description mentions any of",
        description="Comma-separated words, matched in the AI's title and description.",
    )
    capture_failing: bool = Field(
        False,
        title="Capture failing",
        description="The stream failed GLIMPSER_FAILURE_EVENT_AFTER captures in a row.",
    )

    @field_validator("objects_any", "keywords", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return schema_helpers.split_list(v, lower=True)

    @model_validator(mode="after")
    def _something_and_consistent(self) -> RuleConditions:
        snapshot_conditions = self.snapshot_conditions()
        if not snapshot_conditions and not self.capture_failing:
            raise ValueError("choose at least one condition")
        if snapshot_conditions and self.capture_failing:
            raise ValueError("'Capture failing' cannot be combined with picture conditions")
        return self

    def snapshot_conditions(self) -> list[str]:
        """Names of the conditions about a snapshot that are set."""
        names = []
        if self.changed:
            names.append("changed")
        for name in ("motion_above", "changed_area_above", "threat_at_least"):
            if getattr(self, name) is not None:
                names.append(name)
        for name in ("objects_any", "keywords", "question"):
            if getattr(self, name):
                names.append(name)
        return names

    @property
    def needs_ai(self) -> bool:
        return bool(self.objects_any or self.keywords or self.question) or (
            self.threat_at_least is not None
        )


class RuleSpec(BaseModel):
    """Everything that defines a rule, as the rule form and the import submit it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, title="Name")
    description: str = Field("", max_length=2000, title="Description")
    enabled: bool = Field(True, title="Enabled")
    applies_to: Literal["all", "groups", "chosen"] = Field("all", title="Streams")
    groups: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=schema_helpers.MAX_LIST_ITEMS,
        title="Groups",
        description="Comma-separated",
    )
    stream_ids: list[int] = Field(default_factory=list, title="Chosen streams")
    conditions: RuleConditions
    schedule: RuleSchedule = Field(default_factory=RuleSchedule)
    severity: Severity = Field("info", title="Severity")
    cooldown_seconds: int = Field(
        300,
        ge=0,
        le=7 * 24 * 3600,
        title="Cooldown (seconds)",
        description="After an event, the rule stays quiet this long for the same stream.",
    )
    channels: list[int] = Field(default_factory=list, title="Notify")

    @field_validator("groups", mode="before")
    @classmethod
    def _split_groups(cls, v: Any) -> Any:
        return schema_helpers.split_list(v)

    @field_validator("stream_ids", "channels")
    @classmethod
    def _unique_ids(cls, v: list[int]) -> list[int]:
        return sorted(set(v))

    @model_validator(mode="after")
    def _targets(self) -> RuleSpec:
        if self.applies_to == "groups" and not self.groups:
            raise ValueError("name at least one group")
        if self.applies_to == "chosen" and not self.stream_ids:
            raise ValueError("choose at least one stream")
        return self


# The rule's own columns, in form order (besides the nested conditions and schedule).
RULE_FIELDS: tuple[str, ...] = tuple(RuleSpec.model_fields)
